"""ACT's export: its ONNX graph takes no noise input and matches torch; its bundle runs on both backends and
its chunks (steps t+1..t+H) feed the temporal ensembler."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from humanego_core.actions import NormStats
from humanego_core.ensembling import TemporalEnsembler
from humanego_policy.checkpoint import TokenLayout, save_checkpoint
from humanego_policy.policies import build_policy
from humanego_policy.runtime import PolicyRuntime
from humanego_training.export import export_bundle, export_graphs

TINY = {"preset": "cpu", "horizon": 12, "image_size": [16, 16], "image_levels": 2, "image_channels": 8, "dim": 32,
        "heads": 2, "ffn_dim": 64, "latent_dim": 4, "dropout": 0.0}
TOKEN_DIM, MAX_TOKENS = 20, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def observations(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A right-hand token and an anchor token at random positions, the other slots padding."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(n, MAX_TOKENS, TOKEN_DIM)
    tokens[:, 0, 0], tokens[:, 1, 0] = 2, 3
    tokens[:, :2, 1:4] = torch.randn(n, 2, 3, generator=g)
    mask = torch.zeros(n, MAX_TOKENS, dtype=torch.bool)
    mask[:, :2] = True
    return {"image": torch.rand(n, 3, 16, 16, generator=g), "tokens": tokens, "token_mask": mask}


def test_onnx_graph_has_no_noise_input_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    policy = build_policy("act", TINY, TOKEN_DIM, MAX_TOKENS).eval()
    files = export_graphs(policy, "single", tmp_path)
    session = ort.InferenceSession(str(tmp_path / files["policy"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "tokens", "token_mask"]
    batch = observations(2, seed=3)
    actions, done = session.run(None, {k: batch[k].numpy() for k in batch})
    expected = policy.predict(batch)
    np.testing.assert_allclose(actions, expected["actions"].numpy(), atol=1e-4)
    np.testing.assert_allclose(done, expected["done_prob"].numpy(), atol=1e-4)


def test_bundle_runs_on_both_backends_and_its_chunks_feed_the_ensembler(tmp_path):
    torch.manual_seed(0)
    layout = TokenLayout(TOKEN_DIM, MAX_TOKENS)
    policy = build_policy("act", TINY, layout.token_dim, layout.max_tokens)
    stats = NormStats(np.array([0.4, 0.0, 0.2]), np.array([0.1, 0.2, 0.05]))
    checkpoint = save_checkpoint(tmp_path / "run" / "latest.pt", policy, layout, stats.to_dict(), dt=1 / 30)
    result = export_bundle(checkpoint, tmp_path / "tiny_act", progress=False)
    assert result.layout == "single" and result.parity_max_abs_diff <= 1e-4
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    batch = observations(1)
    tokens, mask = batch["tokens"][0].numpy(), batch["token_mask"][0].numpy()
    outputs = [PolicyRuntime(result.path, backend=b).predict(image, tokens, mask) for b in ("onnxruntime", "torch")]
    np.testing.assert_allclose(outputs[0].actions, outputs[1].actions, atol=1e-4)
    chunk = outputs[0]
    assert chunk.T_ref.shape == (12, 4, 4) and chunk.grasp.shape == (12,)
    # ACT runs a chunk per observation, its steps t+1..t+H at dt, averaged per time with the older chunks.
    ensembler = TemporalEnsembler(decay=0.01)
    dt = 1 / 30
    for k in range(3):
        ensembler.add(k * dt + dt, dt, np.c_[chunk.T_ref[:, :3, 3] + k, chunk.grasp])
    w = np.exp(-0.01 * np.arange(3))
    expected = w @ np.stack([chunk.T_ref[3 - k, :3, 3] + k for k in range(3)]) / w.sum()
    np.testing.assert_allclose(ensembler.query(4 * dt)[:3], expected, atol=1e-9)
