"""`humanego_sim generate_demos` end to end: the installed executable writes recordings that
projectaria-tools' own readers load, whose ground truth says they succeed, and which resume."""

import json
import subprocess

import numpy as np
import pytest
from projectaria_tools.core import calibration, mps

from humanego_core import geometry
from humanego_sim.aria_recording import Recording

SIZE = ("160", "160")  # small frames keep the test quick; the layout is the same at any size


def generate(out, *extra, num=2, task="serve_bread"):
    return subprocess.run(["humanego", "run", "humanego_sim", "generate_demos", "--task", task, "--num", str(num),
                           "--out", str(out), "--size", *SIZE, "--no-progress", *extra],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    run = generate(out)
    assert run.returncode == 0, run.stdout + run.stderr
    return out, run


def test_demos_are_aria_mps_recordings_with_consistent_ground_truth(demos):
    out, run = demos
    assert "2 demos (2 generated now, 0 kept)" in run.stdout and "success 2/2" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] == 2 and summary["frames"] > 100 and summary["seconds_per_demo"] > 0
    folder = out / "demo_0000"
    trajectory = mps.read_closed_loop_trajectory(str(folder / "slam" / "closed_loop_trajectory.csv"))
    hands = mps.hand_tracking.read_hand_tracking_results(
        str(folder / "hand_tracking" / "hand_tracking_results.csv"))
    device = calibration.device_calibration_from_json_string(
        (folder / "calibration" / "device_calibration.json").read_text())
    assert device is not None and device.get_camera_calib("camera-rgb") is not None
    rec = Recording.open(folder)
    gt = rec.gt()
    stamps = np.asarray(rec.frame_timestamps_ns)
    assert len(hands) == len(stamps) == rec.num_frames == len(gt["T_world_rgb"])
    # The SLAM trajectory is the ground-truth head motion, at a higher rate than the video.
    assert len(trajectory) > 3 * len(stamps)
    traj_us = np.array([p.tracking_timestamp.total_seconds() * 1e6 for p in trajectory])
    for k in (0, len(stamps) // 2, len(stamps) - 1):
        j = int(np.argmin(np.abs(traj_us - stamps[k] / 1e3)))
        if abs(traj_us[j] - stamps[k] / 1e3) < 1:
            np.testing.assert_allclose(trajectory[j].transform_world_device.to_matrix(), gt["T_world_device"][k],
                                       atol=1e-5)
    # Hand tracking: right-hand landmarks (device frame) agree with the world ground truth within the
    # simulated tracking noise; the left hand is never seen (-1 confidence, no data).
    seen = 0
    for k, result in enumerate(hands):
        assert result.left_hand is None
        if result.right_hand is None:
            assert not gt["hand_visible"][k]
            continue
        seen += 1
        L = geometry.transform_points(gt["T_world_device"][k], np.array(result.right_hand.landmark_positions_device))
        assert np.abs(L - gt["landmarks_world"][k]).max() < 0.02
        np.testing.assert_allclose(gt["T_world_device"][k] @ result.right_hand.transform_device_wrist.to_matrix(),
                                   gt["T_world_wrist"][k], atol=1e-5)
    assert seen > len(hands) // 2
    # The arm is in the image while the hand works, and the object mask is where the object is.
    assert gt["arm_mask"].shape == (len(stamps), int(SIZE[1]), int(SIZE[0]))
    assert gt["arm_mask"].any(axis=(1, 2)).mean() > 0.5
    assert gt["object_labels"].max() >= 1
    assert gt["episode"]["success"]


def test_rerun_keeps_finished_demos_and_redoes_a_partial_one(demos, tmp_path):
    out, _ = demos
    kept = (out / "demo_0000" / "rgb" / "video.mp4").stat().st_mtime_ns
    partial = out / "demo_0002.incomplete"  # what an interrupted run leaves
    (partial / "rgb").mkdir(parents=True)
    (partial / "rgb" / "video.mp4").write_bytes(b"\x00" * 100)
    run = generate(out, num=3)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 demos (1 generated now, 2 kept)" in run.stdout
    assert (out / "demo_0000" / "rgb" / "video.mp4").stat().st_mtime_ns == kept
    assert not partial.exists()
    assert json.loads((out / "demo_0002" / "metadata.json").read_text())["seed"] == 2


def test_bad_input_is_refused_with_what_to_do(demos, tmp_path):
    out, _ = demos
    run = generate(tmp_path / "x", task="serve_toast")
    assert run.returncode == 2 and "unknown task 'serve_toast'" in run.stderr and "push_box" in run.stderr
    run = generate(out, task="push_box")
    assert run.returncode != 0 and "holds task 'serve_bread'" in run.stderr and "another --out" in run.stderr
