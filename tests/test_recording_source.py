"""`humanego run humanego_drivers recording_source` in its own process, received over real DDS by this one:
a folder of real Aria frames with the real MPS trajectory or hand tracking (TF and hand_tracking agree with
projectaria-tools' readers), and a synthetic recording of the sim (TF and hands agree with its gt/)."""

import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from projectaria_tools.core import calibration, data_provider, mps
from scipy.spatial.transform import Rotation, Slerp
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool
from tf2_msgs.msg import TFMessage

from humanego_core import geometry
from humanego_core.timeutil import nearest_index
from humanego_interfaces.msg import HandTracking
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_sim.aria_recording import Recording

ARIA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aria"
TRAJECTORY = ARIA / "mps_sample" / "trajectory" / "closed_loop_trajectory.csv"
HANDS = ARIA / "mps_sample" / "hand_tracking" / "hand_tracking_results_v2.csv"
pytestmark = pytest.mark.skipif(not (ARIA / "recording.vrs").is_file(), reason=f"no real Aria data at {ARIA}")


def real_frames_folder(root: Path, stamps_ns) -> Path:
    """The 8 real RGB frames of the VRS (shrunk to 352x352 PNGs) and its device calibration, stamped ``stamps_ns``."""
    provider = data_provider.create_vrs_data_provider(str(ARIA / "recording.vrs"))
    stream = provider.get_stream_id_from_label("camera-rgb")
    (root / "rgb").mkdir(parents=True)
    (root / "calibration").mkdir()
    (root / "calibration" / "device_calibration.json").write_text(
        calibration.device_calibration_to_json_string(provider.get_device_calibration()))
    for i in range(len(stamps_ns)):
        rgb = provider.get_image_data_by_index(stream, i)[0].to_numpy_array()
        small = cv2.resize(rgb, (352, 352), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "rgb" / f"{i:06d}.png"), small[..., ::-1])
    lines = ["frame_index,device_timestamp_ns"] + [f"{i},{t}" for i, t in enumerate(stamps_ns)]
    (root / "rgb" / "frame_timestamps.csv").write_text("\n".join(lines) + "\n")
    return root


def replay(processes, probe, folder, name, extra_subscriptions, *params):
    """Start the node paused, connect, play; returns (probe, process)."""
    ns = f"/{name}_{os.getpid()}"
    args = ["humanego", "run", "humanego_drivers", "recording_source", "--ros-args", "-r", f"__ns:={ns}",
            "-p", f"recording:={folder}", "-p", "start_paused:=true", "-p", "width:=96", "-p", "height:=96"]
    for param in params:
        args += ["-p", param]
    proc = processes.start(args)
    subs = {"image": (Image, f"{ns}/camera/image_raw", qos.SENSOR),
            "tf_static": (TFMessage, "/tf_static", qos.TF_STATIC), **extra_subscriptions(ns)}
    peer = probe(f"{name}_probe", subs)
    peer.wait_connected(proc)
    pause = peer.node.create_client(SetBool, f"{ns}/recording_source/pause")
    assert peer.call(pause, SetBool.Request(data=False), proc).success
    return peer, proc


def device_poses(peer) -> dict[int, np.ndarray]:
    """T_world_aria_device by stamp, from the dynamic TF received."""
    return {conv.time_to_ns(t.header.stamp): conv.transform_to_matrix(t.transform)
            for m in peer.got["tf"] for t in m.transforms
            if (t.header.frame_id, t.child_frame_id) == ("world", "aria_device")}


def test_real_mps_trajectory_on_tf_at_the_frame_times(tmp_path, processes, probe):
    reference = mps.read_closed_loop_trajectory(str(TRAJECTORY))
    t_us = np.array([p.tracking_timestamp.total_seconds() * 1e6 for p in reference])
    # Frame times between trajectory samples (not on them), in the middle of the run.
    stamps = [int(t_us[0] * 1000) + 5_000_000_000 + k * 33_333_337 for k in range(8)]
    folder = real_frames_folder(tmp_path / "rec", stamps)
    shutil.copytree(TRAJECTORY.parent, folder / "slam")
    peer, proc = replay(processes, probe, folder, "rec_traj", lambda ns: {"tf": (TFMessage, "/tf", qos.TF)})
    peer.wait(lambda: len(device_poses(peer)) == 8, "8 device poses", proc)
    poses = device_poses(peer)
    assert sorted(poses) == stamps
    # Independent reference: scipy Slerp + linear interpolation of projectaria's poses.
    T = np.stack([p.transform_world_device.to_matrix() for p in reference])
    query = np.array(stamps) / 1000.0
    R = Slerp(t_us, Rotation.from_matrix(T[:, :3, :3]))(query).as_matrix()
    p = np.column_stack([np.interp(query, t_us, T[:, i, 3]) for i in range(3)])
    for k, t in enumerate(stamps):
        np.testing.assert_allclose(poses[t][:3, :3], R[k], atol=1e-6)
        np.testing.assert_allclose(poses[t][:3, 3], p[k], atol=1e-6)
    images = peer.wait(lambda: len(peer.got["image"]) == 8 and peer.got["image"], "8 frames", proc)
    assert [conv.time_to_ns(m.header.stamp) for m in images] == stamps


def test_real_mps_hand_tracking_is_published_as_recorded(tmp_path, processes, probe):
    reference = mps.hand_tracking.read_hand_tracking_results(str(HANDS))
    stamps = [int(r.tracking_timestamp.total_seconds() * 1e6) * 1000 for r in reference]
    folder = real_frames_folder(tmp_path / "rec", stamps)
    (folder / "hand_tracking").mkdir()
    shutil.copy(HANDS, folder / "hand_tracking" / "hand_tracking_results.csv")
    peer, proc = replay(processes, probe, folder, "rec_hands",
                        lambda ns: {"hands": (HandTracking, f"{ns}/hand_tracking", qos.COMMAND)},
                        "playback_rate:=0.0")  # the rows span 55 s
    msgs = peer.wait(lambda: len(peer.got["hands"]) == len(reference) and peer.got["hands"], "hand tracking", proc)
    for msg, result in zip(msgs, reference, strict=True):
        assert conv.time_to_ns(msg.header.stamp) == int(result.tracking_timestamp.total_seconds() * 1e6) * 1000
        assert msg.header.frame_id == "aria_device"
        expected = {side: hand for side, hand in (("left", result.left_hand), ("right", result.right_hand))
                    if hand is not None}
        assert [h.side for h in msg.hands] == list(expected)
        for hand in msg.hands:
            ref = expected[hand.side]
            assert hand.confidence == pytest.approx(ref.confidence, abs=1e-6)
            np.testing.assert_allclose([[q.x, q.y, q.z] for q in hand.landmarks],
                                       np.array(ref.landmark_positions_device), atol=1e-6)
            np.testing.assert_allclose(conv.pose_to_matrix(hand.wrist_pose), ref.transform_device_wrist.to_matrix(),
                                       atol=1e-6)
            palm = ref.wrist_and_palm_normal_device.palm_normal_device
            np.testing.assert_allclose([hand.palm_normal.x, hand.palm_normal.y, hand.palm_normal.z], palm, atol=1e-6)
    assert sum(len(m.hands) for m in msgs) == 6, "3 left and 3 right hands are seen in this file"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    run = subprocess.run(["humanego", "run", "humanego_sim", "generate_demos", "--task", "push_box", "--num", "1",
                          "--out", str(out), "--size", "128", "128", "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return out / "demo_0000"


def test_synthetic_recording_replays_consistent_with_its_ground_truth(synthetic, processes, probe):
    recording = Recording.open(synthetic)
    gt = recording.gt(masks=False)
    peer, proc = replay(processes, probe, synthetic, "rec_sim",
                        lambda ns: {"tf": (TFMessage, "/tf", qos.TF),
                                    "hands": (HandTracking, f"{ns}/hand_tracking", qos.COMMAND)},
                        "playback_rate:=2.0", "exit_when_done:=true")
    peer.wait(lambda: proc.poll() is not None, "the end of the replay")  # spinning all along
    assert proc.returncode == 0, proc.stderr.read()
    for _ in range(20):  # drain what is still queued after the node exited
        peer.executor.spin_once(timeout_sec=0.05)
    frame_index = {int(t): i for i, t in enumerate(gt["t_ns"])}
    poses = device_poses(peer)
    assert len(poses) > 0.9 * recording.num_frames  # reliable TF: only a slow probe loses some
    for stamp, T in poses.items():  # interpolated between the 200 Hz samples of the CSV (printed to 1e-6 m)
        np.testing.assert_allclose(T, gt["T_world_device"][frame_index[stamp]], atol=1e-4)

    # The optical frame hangs off the device frame where the simulator put the camera.
    static = {t.child_frame_id: conv.transform_to_matrix(t.transform) for m in peer.got["tf_static"]
              for t in m.transforms}
    T_device_rgb = geometry.invert(gt["T_world_device"][0]) @ gt["T_world_rgb"][0]
    np.testing.assert_allclose(static["aria_rgb_optical"], T_device_rgb, atol=1e-5)

    # Hand landmarks, taken to the world with the replayed device pose, are the simulated hand (3 mm noise).
    errors = []
    for msg in peer.got["hands"]:
        i = nearest_index(gt["t_ns"], conv.time_to_ns(msg.header.stamp), tolerance_ns=1000)  # MPS rows are in us
        for hand in msg.hands:
            assert hand.side == "right"
            points = np.array([[q.x, q.y, q.z] for q in hand.landmarks])
            world = points @ gt["T_world_device"][i][:3, :3].T + gt["T_world_device"][i][:3, 3]
            errors.append(np.linalg.norm(world - gt["landmarks_world"][i], axis=1))
    errors = np.concatenate(errors)
    assert errors.size > 0 and np.median(errors) < 0.008 and errors.max() < 0.03
    images = peer.got["image"]
    assert images and all(conv.time_to_ns(m.header.stamp) in frame_index for m in images)
