"""Fixtures of humanego_training's tests: small synthetic serve_bread recordings, generated once per session."""

from pathlib import Path

import pytest
import torch

from humanego_sim.generate_demos import generate

SIZE = 320  # px: the bread (10 cm at 0.6 m) must cover enough pixels to be detected and tracked


@pytest.fixture(scope="session")
def demos_dir(tmp_path_factory) -> Path:
    """Two serve_bread demos (seeds 0 and 1) in one folder; tests that change them copy them first."""
    out = tmp_path_factory.mktemp("serve_bread")
    generate("serve_bread", 2, out, seed=0, width=SIZE, height=SIZE, progress=False)
    return out


@pytest.fixture
def one_torch_thread():
    """Tiny models run faster on one thread than split over two, and leave the other core to the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
