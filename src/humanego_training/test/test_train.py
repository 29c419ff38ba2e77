"""humanego_training train / evaluate on tiny recordings written by the tests, with a tiny flow-matching policy."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from humanego_core.metrics import METRIC_NAMES
from humanego_policy.checkpoint import load_checkpoint
from humanego_training.train import Trainer, TrainingDivergedError, load_training_config
from humanego_training.train import main as train_main

from .training_recordings import write_recording

torch.set_num_threads(1)
TINY_POLICY = {"horizon": 8, "image_size": [32, 32], "image_levels": 2, "image_channels": 8, "dim": 32, "heads": 2,
               "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 64, "dropout": 0.0, "num_steps": 4}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recordings")
    for i in range(3):
        write_recording(root / f"rec{i}", list(range(24)), finished_from=20, grasp_from=8, offset=(0.05 * i, 0, 0),
                        seed=i)
    return root


def write_config(path: Path, recordings: Path, out: Path, **train) -> Path:
    config = {"task": "serve_bread",
              "policy": {"type": "flow", "config": TINY_POLICY},
              "data": {"recordings": [str(recordings)], "held_out": ["rec2"], "cache_dir": str(path.parent / "cache"),
                       "augment": {"crop_scale": 0.9}},
              "train": {"out_dir": str(out), "epochs": 4, "batch_size": 8, "lr": 2e-3, "warmup_steps": 5,
                        "eval_every": 2, "threads": 1, "renders": 1, **train}}
    path.write_text(yaml.safe_dump(config))
    return path


def humanego(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["humanego", "run", "humanego_training", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_unknown_config_key_is_named_with_the_file(tmp_path, recordings, capsys):
    path = write_config(tmp_path / "bad.yaml", recordings, tmp_path / "run", epoks=3)
    assert train_main(["--config", str(path)]) == 2
    assert f"{path}: train.epoks: unknown key; did you mean 'epochs'?" in capsys.readouterr().err
    bad_policy = yaml.safe_load(path.read_text())
    del bad_policy["train"]["epoks"]
    bad_policy["policy"]["config"]["dimm"] = 8
    path.write_text(yaml.safe_dump(bad_policy))
    assert train_main(["--config", str(path)]) == 2
    assert "policy.config: dimm: unknown key; did you mean 'dim'?" in capsys.readouterr().err


@pytest.mark.slow
def test_loss_decreases_on_a_tiny_set_and_divergence_stops_training(tmp_path, recordings):
    path = write_config(tmp_path / "overfit.yaml", recordings, tmp_path / "run", epochs=12, eval_every=100,
                        renders=0, ema_decay=0.0)
    config = load_training_config(path)
    config.data.augment.enabled = False
    trainer = Trainer(config, str(path), tmp_path / "run", progress=False)
    trainer.run()
    loss = np.array(trainer.history.loss)
    steps = trainer.steps_per_epoch
    assert len(loss) == 12 * steps
    assert loss[-3 * steps:].mean() < 0.6 * loss[:3 * steps].mean()  # 0.48 measured
    batch = next(iter(trainer.loader))
    batch["tokens"][0, 0, 1] = float("nan")
    assert trainer.train_step(batch) is None and trainer.history.skipped_batches == 1
    batch["tokens"][0, 0, 1] = 0.0
    with torch.no_grad():
        next(trainer.policy.parameters()).fill_(float("inf"))  # weights blown up by a bad step
    with pytest.raises(TrainingDivergedError, match="loss is (nan|inf) at epoch 13"):
        trainer.train_step(batch)


@pytest.mark.slow
def test_run_outputs_resume_after_kill_and_evaluate(tmp_path, recordings):
    reference = write_config(tmp_path / "reference.yaml", recordings, tmp_path / "reference")
    result = humanego("train", "--config", reference, "--no-progress")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "reference"
    for name in ("config.json", "dataset_stats.json", "latest.pt", "train_curve.png", "eval_curve.png"):
        assert (run / name).stat().st_size > 0, name
    config = json.loads((run / "config.json").read_text())
    assert [Path(p).name for p in config["split"]["held_out"]] == ["rec2"]
    assert json.loads((run / "dataset_stats.json").read_text())["recordings"] == config["split"]["train"]
    snapshots = sorted(p.name for p in (run / "eval_snapshots").iterdir())
    assert snapshots == ["eval_ep_0002.json", "eval_ep_0004.json"]
    final = json.loads((run / "eval_snapshots" / "eval_ep_0004.json").read_text())
    assert set(METRIC_NAMES) <= set(final["metrics"]) and final["metrics"]["samples"] == 24
    assert len(list((run / "eval_renders").glob("eval_ep_0004_rec2.mp4"))) == 1

    # The same run killed once it has saved an epoch, then rerun: it resumes and ends with the same weights.
    killed = write_config(tmp_path / "killed.yaml", recordings, tmp_path / "killed")
    process = subprocess.Popen(["humanego", "run", "humanego_training", "train", "--config", str(killed),
                                "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / "latest.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed = humanego("train", "--config", killed, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout + resumed.stderr
    a, b = load_checkpoint(run), load_checkpoint(tmp_path / "killed")
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    for key, value in a.ema_state_dict.items():
        assert torch.equal(value, b.ema_state_dict[key]), key

    # Re-evaluating the checkpoint on the held-out recording repeats the final snapshot.
    evaluated = humanego("evaluate", "--checkpoint", run, "--recordings", recordings / "rec2", "--out",
                         tmp_path / "evaluate", "--renders", "0", "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())["metrics"]
    assert metrics == pytest.approx(final["metrics"], abs=1e-6)
    missing = humanego("evaluate", "--checkpoint", tmp_path / "nothing", "--recordings", recordings / "rec2")
    assert missing.returncode == 2 and "nothing" in missing.stderr


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path, recordings):
    path = write_config(tmp_path / "ddp.yaml", recordings, tmp_path / "ddp", epochs=2, renders=0)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29517", "-m", "humanego_training.train", "--config", str(path),
                             "--no-progress"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(tmp_path / "ddp")
    # 48 training samples, batch 8 per process, 2 processes: 3 steps per epoch.
    assert checkpoint.training["step"] == 6 and checkpoint.training["epoch"] == 2
