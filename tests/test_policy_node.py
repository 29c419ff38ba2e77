"""`humanego run humanego_policy policy` as a real process, talked to over DDS from this one.

A tiny flow-matching policy is trained here in seconds and exported as a bundle; the node, fed
camera/image_clean + ict with the same stamp, publishes the chunk that the same bundle computes in this process
from the same seed, stamped with the observation and framed in the tokens' reference frame. NaN tokens, tokens
of another layout and stale observations are counted on /diagnostics and never produce a chunk. In replay mode
the node plays a preprocessed recording's hand trajectory in the world frame."""

import json
import os
import subprocess
import time

import cv2
import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image

from humanego_core import geometry
from humanego_core.actions import NormStats
from humanego_interfaces.msg import ActionChunk, InteractionTokens
from humanego_policy.checkpoint import TokenLayout, save_checkpoint
from humanego_policy.policies import build_policy
from humanego_policy.runtime import PolicyRuntime
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_training.export import export_bundle

TINY = {"horizon": 12, "image_size": [16, 16], "image_levels": 2, "image_channels": 8, "dim": 32, "heads": 2,
        "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 64, "dropout": 0.0, "num_steps": 4}
LAYOUT = TokenLayout(20, 6)
STATS = NormStats(np.array([0.5, 0.0, 0.3]), np.array([0.1, 0.15, 0.08]))
FPS = 30.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A flow policy trained for a few steps on a random batch, exported by humanego_training.export."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = build_policy("flow", TINY, LAYOUT.token_dim, LAYOUT.max_tokens)
    batch = {"image": torch.rand(4, 3, 16, 16), "tokens": torch.randn(4, *LAYOUT.shape),
             "token_mask": torch.ones(4, LAYOUT.max_tokens, dtype=torch.bool), "actions": torch.randn(4, 12, 10),
             "action_valid": torch.ones(4, 12, dtype=torch.bool), "done": torch.tensor([0.0, 0, 1, 1])}
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for _ in range(20):
        loss, _ = policy.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    root = tmp_path_factory.mktemp("policy_node")
    checkpoint = save_checkpoint(root / "run" / "latest.pt", policy, LAYOUT, STATS.to_dict(), dt=1 / FPS)
    return export_bundle(checkpoint, root / "tiny_flow", progress=False).path


def observation(seed: int):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    tokens = np.zeros(LAYOUT.shape, np.float32)
    tokens[:3, 0] = [2, 3, 4]
    tokens[:3, 1:] = rng.standard_normal((3, LAYOUT.token_dim - 1))
    return image, tokens, np.arange(LAYOUT.max_tokens) < 3


def node_status(msg: DiagnosticArray) -> dict | None:
    status = next((s for s in msg.status if s.name.startswith("policy")), None)
    return None if status is None else {"message": status.message, **{kv.key: kv.value for kv in status.values}}


def latest_status(peer, key: str, at_least: int = 1) -> dict | None:
    for msg in reversed(peer.got["diagnostics"]):
        s = node_status(msg)
        if s is not None and int(s.get(key, 0)) >= at_least:
            return s
    return None


def start_policy(processes, probe, *args: str):
    ns = f"/policy_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    node = processes.start(["humanego", "run", "humanego_policy", "policy", "--ros-args", "-r", f"__ns:={ns}",
                            "-p", "threads:=1", *args])
    peer = probe("policy_probe", {"chunk": (ActionChunk, f"{ns}/action_chunk", qos.COMMAND),
                                  "diagnostics": (DiagnosticArray, "/diagnostics", qos.COMMAND)})
    peer.image = peer.node.create_publisher(Image, f"{ns}/camera/image_clean", qos.SENSOR)
    peer.ict = peer.node.create_publisher(InteractionTokens, f"{ns}/ict", qos.COMMAND)
    return peer, node


def chunks_of(peer, stamp_ns: int) -> list[ActionChunk]:
    return [m for m in peer.got["chunk"] if conv.time_to_ns(m.header.stamp) == stamp_ns]


def test_the_node_publishes_the_chunk_of_the_bundle(processes, probe, bundle):
    peer, node = start_policy(processes, probe, "-p", f"bundle:={bundle}", "-p", "seed:=0",
                              "-p", "max_observation_age_s:=30.0")
    peer.wait(lambda: peer.image.get_subscription_count() and peer.ict.get_subscription_count()
              and peer.subscriptions["chunk"].get_publisher_count(), "the node's topics to match", node)
    image, tokens, mask = observation(1)
    stamp = time.time_ns()

    def publish_until_answered():
        # Best-effort images can be lost while the large-data transport settles: send the same observation again
        # until its chunk comes. Its first inference draws the seeded noise first, whichever copy it used.
        if not chunks_of(peer, stamp):
            peer.image.publish(conv.numpy_to_image(image, "rgb8", stamp, "camera_optical_frame"))
            peer.ict.publish(conv.tokens_to_msg(tokens, mask, ["hand_right", "plate", "bread", "", "", ""],
                                                "camera_frame", stamp, "camera_link"))
        return chunks_of(peer, stamp)

    chunk = peer.wait(publish_until_answered, "the chunk of the observation", node, timeout_s=90)[0]
    expected = PolicyRuntime(bundle, seed=0).predict(image, tokens, mask)
    assert chunk.header.frame_id == "camera_link" and chunk.policy_id == "tiny_flow"
    assert chunk.arms == ["right"] and chunk.dt == pytest.approx(1 / FPS)
    poses, grasp = conv.msg_to_chunk(chunk)
    assert poses.shape == (12, 1, 4, 4)
    np.testing.assert_allclose(poses[:, 0], expected.T_ref, atol=1e-5)
    np.testing.assert_allclose(grasp[:, 0], expected.grasp, atol=1e-6)
    assert chunk.done_prob == pytest.approx(expected.done_prob, abs=1e-6)

    report = peer.wait(lambda: latest_status(peer, "chunks_published"), "diagnostics with a chunk", node)
    assert float(report["inference_p99_ms"]) >= float(report["inference_p50_ms"]) > 0
    assert float(report["latency_p50_ms"]) >= float(report["inference_p50_ms"])
    assert float(report["observation_age_p50_ms"]) > 0
    assert report["backend"].startswith("onnxruntime")

    # NaN tokens: rejected and counted, and their image never becomes an observation.
    nan_stamp = stamp + 10**9
    bad = conv.tokens_to_msg(tokens, mask, [""] * 6, "camera_frame", nan_stamp, "camera_link")
    bad.tokens[5] = float("nan")
    peer.ict.publish(bad)
    peer.image.publish(conv.numpy_to_image(image, "rgb8", nan_stamp, "camera_optical_frame"))
    # Tokens of another layout (8 rows): rejected and counted too.
    wide = np.zeros((8, 20), np.float32)
    peer.ict.publish(conv.tokens_to_msg(wide, np.ones(8, bool), [""] * 8, "camera_frame", nan_stamp + 1,
                                        "camera_link"))
    report = peer.wait(lambda: latest_status(peer, "rejected_ict") and latest_status(peer, "rejected_ict_layout"),
                       "the rejections on /diagnostics", node)
    assert int(report["rejected_ict_layout"]) >= 1

    # A stale observation (100 s old) is dropped and counted.
    old = stamp - 100 * 10**9

    def send_old():
        peer.image.publish(conv.numpy_to_image(image, "rgb8", old, "camera_optical_frame"))
        peer.ict.publish(conv.tokens_to_msg(tokens, mask, [""] * 6, "camera_frame", old, "camera_link"))
        return latest_status(peer, "dropped_stale")

    peer.wait(send_old, "the stale observation to be dropped", node)
    assert not chunks_of(peer, nan_stamp) and not chunks_of(peer, old)
    assert all(conv.time_to_ns(m.header.stamp) == stamp for m in peer.got["chunk"])


def write_recording(root, times, fps: float = FPS):
    """A preprocessed recording with the right hand on a known trajectory (0.2 m/s along x, turning about z at
    0.5 rad/s, grasp closed from 1 s); every image key points at one small PNG."""
    cv2.imwrite(str(root / "rgb.png"), np.zeros((8, 8, 3), np.uint8))
    images = ["mask_arm_path", "mask_obj_path", "rgb_path", "rgb_WArmObjKpts_path", "rgb_WoArm_path",
              "rgb_WoArm_WArmObjKpts_path"]
    for idx, t in enumerate(times):
        T_hand = geometry.make_transform(Rotation.from_rotvec([0, 0, 0.5 * t]).as_matrix(), [0.3 + 0.2 * t, 0, 0.2])
        plate = geometry.make_transform(np.eye(3), [0.5, 0.1, 0.0]).tolist()
        record = {
            "metadata": {"idx": idx, "ts": float(t), "w": 8, "h": 8, "fps": fps,
                         "k": [[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]], "c2w": np.eye(4).tolist(),
                         "anchor_key": "obj0", "is_finished": bool(t >= 2.0),
                         "world_transforms": {"cam0": np.eye(4).tolist(), "virtual_static_anchor": plate}},
            "obs": dict.fromkeys(images, "rgb.png"),
            "entities": {"hands": {"right": {"T_hand_to_world": T_hand.tolist(), "grasp": float(t >= 1.0)}},
                         "objects": {"obj0": {"T_obj_to_world": plate, "is_dynamic": False}}},
        }
        folder = root / "preprocess" / "all_data" / f"{idx:05d}"
        folder.mkdir(parents=True)
        (folder / "training_data.json").write_text(json.dumps(record))


def test_replay_plays_the_recorded_hand_trajectory_in_the_world_frame(processes, probe, tmp_path):
    times = [i / FPS for i in range(75) if i not in (20, 21, 40)]  # 2.5 s; three frames dropped
    write_recording(tmp_path, times)
    peer, node = start_policy(processes, probe, "-p", "policy:=replay", "-p", f"recording:={tmp_path}",
                              "-p", "replay_horizon:=20")
    chunks = peer.wait(lambda: len(peer.got["chunk"]) >= 3 and peer.got["chunk"], "replayed chunks", node)
    for chunk in chunks:
        assert chunk.header.frame_id == "world" and chunk.policy_id == "replay" and chunk.arms == ["right"]
        assert chunk.dt == pytest.approx(1 / FPS)
        poses, grasp = conv.msg_to_chunk(chunk)
        assert poses.shape == (20, 1, 4, 4)
        t = (poses[:, 0, 0, 3] - 0.3) / 0.2  # the trajectory time of each step
        np.testing.assert_allclose(np.diff(t), 1 / FPS, atol=1e-6)  # consecutive 30 Hz steps (before the end)
        for T, tk in zip(poses[:, 0], t, strict=True):
            np.testing.assert_allclose(T[:3, :3], Rotation.from_rotvec([0, 0, 0.5 * tk]).as_matrix(), atol=1e-6)
            np.testing.assert_allclose(T[1:3, 3], [0, 0.2], atol=1e-6)
        away = np.abs(t - 1.0) > 0.05  # the grasp switches at 1 s
        np.testing.assert_array_equal(grasp[away, 0], (t[away] > 1.0).astype(np.float32))
    starts = [(conv.msg_to_chunk(c)[0][0, 0, 0, 3] - 0.3) / 0.2 for c in chunks]
    assert starts[0] < 0.5 and np.all(np.diff(starts) > 0)  # played from the start, forwards


@pytest.mark.parametrize("arguments, named", [
    (["-p", "bundle:=/nonexistent/bundle"], "/nonexistent/bundle"),
    (["-p", "token_dim:=29"], "(6, 20), but this robot's tokens are (6, 29)"),
    (["-p", "policy:=act"], "policy:=act but"),
    (["-p", "policy:=replay"], "needs the parameter 'recording'"),
])
def test_bad_parameters_fail_at_start_naming_them(bundle, arguments, named):
    if "bundle:=" not in arguments[1] and "replay" not in arguments[1]:
        arguments = ["-p", f"bundle:={bundle}", *arguments]
    out = subprocess.run(["humanego", "run", "humanego_policy", "policy", "--ros-args", *arguments],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "cannot start" in out.stderr and named in out.stderr
