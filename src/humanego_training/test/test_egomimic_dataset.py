"""EgoMimic co-training: two-domain samples from tiny HDF5 files written here, per-domain z-scores by hand,
domain balancing, bad files named, and the shared-trunk policy learning both domains with separate heads."""

import h5py
import numpy as np
import pytest
import torch

from humanego_policy.egomimic_policy import EgoMimicPolicy
from humanego_policy.policies import build_policy
from humanego_training import egomimic, robot_episodes
from humanego_training.egomimic_dataset import (
    HUMAN,
    ROBOT,
    DomainStats,
    EgoMimicDataConfig,
    EgoMimicDataError,
    EgoMimicDataset,
    compute_stats,
    load_demos,
    position_metrics,
)

H, J, SIZE = 6, 3, 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def human_demo(T: int, seed: int) -> dict[str, np.ndarray]:
    """A hand moving along +x in front of the camera; the image brightness encodes the frame."""
    rng = np.random.default_rng(seed)
    start = np.array([0.0, 0.1, 0.5]) + rng.normal(0, 0.05, 3)
    path = start + np.arange(T + H)[:, None] * [0.01, 0.0, 0.0]
    future = np.minimum(np.arange(T)[:, None] + 1 + np.arange(H)[None], T - 1)
    images = np.zeros((T, 24, 24, 3), np.uint8)
    images[..., 0] = (np.arange(T) * 10 % 250)[:, None, None]
    return {"front_img_1": images, "ee_pose": path[:T].astype(np.float32),
            "actions_xyz_act": path[future].astype(np.float32)}


def robot_episode(T: int, offset: float) -> robot_episodes.RobotEpisode:
    """A gripper moving along -y, far from the hand's range (another camera and workspace), joints ramping."""
    times = np.arange(T + 20) / 30.0
    ee = np.stack([0.3 + offset + 0 * times, -0.5 * times, 0.9 + 0 * times], axis=1)
    joints = np.stack([times, -times, 0.04 + 0 * times], axis=1)
    images = np.full((T, 24, 24, 3), 200, np.uint8)
    images[..., 2] = (np.arange(T) * 7 % 250)[:, None, None]
    return robot_episodes.RobotEpisode(f"robot{offset}", ["a", "b", "finger"], times[:T], images,
                                       np.repeat(np.eye(4)[None], T, axis=0), times, ee, joints)


@pytest.fixture
def files(tmp_path):
    human = tmp_path / "human.hdf5"
    egomimic.write_demos(human, [(f"h{i}", human_demo(12, i)) for i in range(3)], "human", valid_fraction=0.34)
    robot = tmp_path / "robot.hdf5"
    robot_episodes.write([robot_episode(8, 0.0), robot_episode(8, 0.1)], robot, valid_fraction=0.0, horizon=H)
    return human, robot


def test_stats_are_per_domain_over_the_training_demos(files):
    human, robot = files
    config = EgoMimicDataConfig(human=[str(human)], robot=[str(robot)])
    demos, joint_names = load_demos(config, "train")
    assert joint_names == ["a", "b", "finger"]
    assert sorted(d.domain for d in demos) == ["human", "human", "robot", "robot"]
    stats = compute_stats(demos)
    with h5py.File(human) as f:
        train = [n.decode() for n in f["mask/train"]]
        ee = np.concatenate([f[f"data/{n}/obs/ee_pose"][()] for n in train])
    np.testing.assert_allclose(stats["human"]["ee_pose"].mean, ee.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["human"]["ee_pose"].std, np.maximum(ee.std(0), 1e-3), atol=1e-6)
    with h5py.File(robot) as f:
        joints = np.concatenate([f[f"data/demo_{i}/obs/joint_positions"][()] for i in range(2)])
    np.testing.assert_allclose(stats["robot"]["joint_positions"].mean, joints.mean(0), atol=1e-6)
    assert set(stats["human"]) == {"ee_pose", "actions_xyz_act"}
    again = DomainStats.from_dict(stats.to_dict(), "round trip")
    np.testing.assert_allclose(again["robot"]["actions_joints_act"].std, stats["robot"]["actions_joints_act"].std)


def test_samples_are_normalised_per_domain_with_valid_steps(files):
    human, robot = files
    config = EgoMimicDataConfig(human=[str(human)], robot=[str(robot)])
    demos, names = load_demos(config, "train")
    stats = compute_stats(demos)
    data = EgoMimicDataset(demos, stats, H, (SIZE, SIZE), len(names), config)
    assert len(data) == 2 * 12 + 2 * 8
    robot_index = int(np.flatnonzero(data.domain == ROBOT)[0])
    sample = data[robot_index]
    assert sample["image"].shape == (3, SIZE, SIZE) and sample["domain"] == ROBOT
    with h5py.File(robot) as f:
        raw = f["data/demo_0/actions_joints_act"][0]
    expected = (raw - stats["robot"]["actions_joints_act"].mean) / stats["robot"]["actions_joints_act"].std
    np.testing.assert_allclose(sample["actions_joints"].numpy(), expected, atol=1e-5)
    human_index = int(np.flatnonzero(data.domain == HUMAN)[-1])  # the last frame of a human demo
    last = data[human_index]
    assert not last["action_valid"].any() and not last["joint_positions"].any()
    assert data[human_index - 2]["action_valid"].tolist() == [True, True] + [False] * (H - 2)


def test_balancing_gives_the_robot_its_share(files):
    human, robot = files
    config = EgoMimicDataConfig(human=[str(human)], robot=[str(robot)], robot_fraction=0.6)
    demos, names = load_demos(config, "train")
    data = EgoMimicDataset(demos, compute_stats(demos), H, (SIZE, SIZE), len(names), config, balance=True)
    domains = np.array([int(data[i]["domain"]) for i in range(len(data))])
    assert (domains == HUMAN).sum() == 24
    assert (domains == ROBOT).sum() == 36  # 0.6 of the epoch: every robot frame at least twice
    assert len(set(data.index[domains == ROBOT].tolist())) == 16


def test_bad_files_are_named(files, tmp_path):
    human, robot = files
    with pytest.raises(EgoMimicDataError, match="listed under human but holds the robot domain"):
        load_demos(EgoMimicDataConfig(human=[str(robot)]), "train")
    broken = tmp_path / "broken.hdf5"
    egomimic.write_demos(broken, [("x", {"front_img_1": np.zeros((3, 8, 8, 3), np.uint8),
                                         "ee_pose": np.zeros((3, 3), np.float32)})], "human")
    with pytest.raises(EgoMimicDataError, match=r"broken.hdf5: data/demo_0/actions_xyz_act is missing"):
        load_demos(EgoMimicDataConfig(human=[str(broken)]), "train")
    with pytest.raises(FileNotFoundError, match="nothing.hdf5"):
        load_demos(EgoMimicDataConfig(human=[str(tmp_path / "nothing.hdf5")]), "train")


def test_position_metrics_by_hand():
    pred = np.zeros((2, 3, 3))
    target = np.zeros((2, 3, 3))
    target[0, :, 0] = [0.01, 0.02, 0.03]
    target[1, :, 1] = [0.04, 0.04, 0.04]
    valid = np.array([[True, True, True], [True, True, False]])
    m = position_metrics(pred, target, valid, k=3)
    assert m["pos_err_k1_m"] == pytest.approx((0.01 + 0.04) / 2)
    assert m["pos_err_kK_m"] == pytest.approx(0.03)
    w = np.array([3, 2, 1]) / 6
    expected = (w[0] * 0.01 + w[1] * 0.02 + w[2] * 0.03 + w[0] * 0.04 + w[1] * 0.04) / (2 * w[0] + 2 * w[1] + w[2])
    assert m["pos_err_w_m"] == pytest.approx(expected)


def test_policy_learns_both_domains_through_its_own_heads(files):
    human, robot = files
    config = EgoMimicDataConfig(human=[str(human)], robot=[str(robot)])
    demos, names = load_demos(config, "train")
    data = EgoMimicDataset(demos, compute_stats(demos), H, (SIZE, SIZE), len(names), config)
    batch = {k: v for k, v in torch.utils.data.default_collate([data[i] for i in range(len(data))]).items()
             if k != "index"}
    torch.manual_seed(0)
    policy = build_policy("egomimic", {"joint_dim": J, "horizon": H, "image_size": [SIZE, SIZE], "image_levels": 2,
                                       "image_channels": 8, "dim": 32, "heads": 2, "encoder_layers": 1,
                                       "decoder_layers": 1, "ffn_dim": 64, "dropout": 0.0}, 20, 8)
    assert isinstance(policy, EgoMimicPolicy)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(150):
        loss, logs = policy.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(logs["loss"])
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])
    policy.eval()
    out = policy.predict(batch)
    valid = batch["action_valid"]
    robot = batch["domain"] == ROBOT
    for domain in (~robot, robot):
        mask = valid & domain[:, None]
        assert (out["actions_xyz"] - batch["actions_xyz"]).abs()[mask].mean() < 0.2
    assert (out["actions_joints"] - batch["actions_joints"]).abs()[valid & robot[:, None]].mean() < 0.2
    # The human head only ever speaks for human samples.
    with torch.no_grad():
        policy.human_xyz.weight.add_(1.0)
    changed = policy.predict(batch)
    torch.testing.assert_close(changed["actions_xyz"][robot], out["actions_xyz"][robot])
    assert not torch.allclose(changed["actions_xyz"][~robot], out["actions_xyz"][~robot])
    # A batch of one domain still reaches every parameter (DDP needs a gradient for each).
    policy.train()
    policy.zero_grad()
    policy.loss({k: v[robot] for k, v in batch.items()})[0].backward()
    assert all(p.grad is not None for p in policy.parameters())
