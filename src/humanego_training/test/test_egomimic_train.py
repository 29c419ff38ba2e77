"""EgoMimic co-training through the train CLI: tiny HDF5 files of both domains, a tiny policy, a few epochs,
per-domain metrics in the eval snapshots, resume, and config errors named with the file."""

import json

import numpy as np
import pytest
import yaml

from humanego_policy.checkpoint import load_checkpoint
from humanego_training import egomimic, robot_episodes
from humanego_training.egomimic_dataset import DomainStats
from humanego_training.egomimic_train import EgoMimicTrainer, evaluate_egomimic
from humanego_training.evaluate import main as evaluate_main
from humanego_training.export import main as export_main
from humanego_training.train import load_training_config
from humanego_training.train import main as train_main

H = 5
TINY = {"horizon": H, "image_size": [16, 16], "image_levels": 2, "image_channels": 8, "dim": 32, "heads": 2,
        "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 64, "dropout": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("egomimic")
    rng = np.random.default_rng(0)

    def human(T):
        path = rng.normal(0, 0.05, 3) + np.arange(T + H)[:, None] * [0.01, 0.0, 0.0] + [0, 0.1, 0.5]
        future = np.minimum(np.arange(T)[:, None] + 1 + np.arange(H)[None], T - 1)
        return {"front_img_1": rng.integers(0, 255, (T, 20, 20, 3), dtype=np.uint8),
                "ee_pose": path[:T].astype(np.float32), "actions_xyz_act": path[future].astype(np.float32)}

    egomimic.write_demos(root / "human.hdf5", [(f"h{i}", human(10)) for i in range(4)], "human", valid_fraction=0.25)
    times = np.arange(30) / 30.0
    episodes = [robot_episodes.RobotEpisode(
        f"r{i}", ["j1", "j2", "finger"], times[:10], rng.integers(0, 255, (10, 20, 20, 3), dtype=np.uint8),
        np.repeat(np.eye(4)[None], 10, axis=0), times,
        np.stack([0.3 + 0.1 * i + 0 * times, -times, 0.9 + 0 * times], 1),
        np.stack([times, -times, 0.04 + 0 * times], 1)) for i in range(3)]
    robot_episodes.write(episodes, root / "robot.hdf5", valid_fraction=0.34, horizon=H)
    return root


def write_config(path, files, out, **train):
    config = {"task": "serve_bread",
              "policy": {"type": "egomimic", "config": TINY},
              "data": {"human": [str(files / "human.hdf5")], "robot": [str(files / "robot.hdf5")],
                       "robot_fraction": 0.5},
              "train": {"out_dir": str(out), "epochs": 3, "batch_size": 8, "lr": 2e-3, "warmup_steps": 2,
                        "eval_every": 1, "threads": 1, **train}}
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_cli_co_trains_both_domains_and_resumes(tmp_path, files, capsys):
    out = tmp_path / "run"
    path = write_config(tmp_path / "egomimic.yaml", files, out)
    assert train_main(["--config", str(path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "held-out: human pos_err_w" in printed and "robot joint_err_w" in printed
    for name in ("latest.pt", "config.json", "dataset_stats.json", "train_curve.png", "eval_curve.png"):
        assert (out / name).is_file(), name
    snapshot = json.loads((out / "eval_snapshots" / "eval_ep_0003.json").read_text())
    metrics = snapshot["metrics"]
    for key in ("human/pos_err_k1_m", "human/pos_err_w_m", "robot/pos_err_kK_m", "robot/pos_err_w_m",
                "robot/joint_err_w"):
        assert np.isfinite(metrics[key]), key
    assert metrics["human/samples"] == 10 and metrics["robot/samples"] == 10
    checkpoint = load_checkpoint(out)
    assert checkpoint.policy_type == "egomimic" and checkpoint.model_config["joint_dim"] == 3
    stats = DomainStats.from_dict(json.loads((out / "dataset_stats.json").read_text()), "dataset_stats.json")
    assert set(stats.stats) == {"human", "robot"}
    config_json = json.loads((out / "config.json").read_text())
    assert len(config_json["split"]["train"]) == 5 and config_json["split"]["joint_names"] == ["j1", "j2", "finger"]
    # The balanced epoch: human training frames once, robot frames to half of the epoch.
    trainer = EgoMimicTrainer(load_training_config(path), str(path), out, progress=False)
    assert trainer.step == checkpoint.training["step"]  # resumed
    domains = trainer.train_set.domain[trainer.train_set.index]
    assert (domains == 0).sum() == 30 and (domains == 1).sum() == 30
    # The checkpoint's weights give the snapshot's figures again.
    policy = checkpoint.build_policy()
    again = evaluate_egomimic(policy, trainer.eval_set, stats, np.arange(len(trainer.eval_set)))
    assert again["robot/pos_err_w_m"] == pytest.approx(metrics["robot/pos_err_w_m"], rel=1e-4)
    # No deployment bundle and no re-evaluation on recordings: both say so.
    capsys.readouterr()
    assert export_main(["--checkpoint", str(out), "--out", str(tmp_path / "bundle"), "--no-progress"]) == 1
    assert "the egomimic policy has no deployment bundle" in capsys.readouterr().err
    assert evaluate_main(["--checkpoint", str(out), "--recordings", str(tmp_path)]) == 2
    assert "an EgoMimic run (HDF5 data) is evaluated during training" in capsys.readouterr().err


def test_bad_egomimic_configs_are_named(tmp_path, files, capsys):
    path = write_config(tmp_path / "bad.yaml", files, tmp_path / "run")
    config = yaml.safe_load(path.read_text())
    config["data"]["robott"] = []
    path.write_text(yaml.safe_dump(config))
    assert train_main(["--config", str(path)]) == 2
    assert f"{path}: data.robott: unknown key" in capsys.readouterr().err
    del config["data"]["robott"]
    config["policy"]["config"]["joint_dim"] = 7
    path.write_text(yaml.safe_dump(config))
    assert train_main(["--config", str(path)]) == 2
    assert "joint_dim: 7 but the robot files hold 3 joints" in capsys.readouterr().err
