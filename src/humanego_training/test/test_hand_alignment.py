"""``humanego_training hand_alignment`` on synthetic recordings: the alignment it prints puts the robot's
fingers on the demonstrator's pinch (the simulator's ground truth), within the tracking noise."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_training.hand_alignment import R_EE_PINCH, R_EE_PINCH_SWAPPED, main


def printed_matrix(text: str) -> np.ndarray:
    rows = [line.strip()[3:-1] for line in text.splitlines() if line.strip().startswith("- [")]
    return np.array([[float(v) for v in row.split(",")] for row in rows])


@pytest.mark.parametrize("swap", [False, True])
def test_the_printed_alignment_matches_the_ground_truth_pinch(demos_dir, capsys, swap):
    assert main(["--recordings", str(demos_dir)] + (["--swap-fingers"] if swap else [])) == 0
    out = capsys.readouterr().out
    assert "grasping frames of 2 recording(s)" in out and "config/views.yaml:" in out
    T_ee_hand = printed_matrix(out)
    assert T_ee_hand.shape == (4, 4)
    np.testing.assert_allclose(T_ee_hand[:3, :3] @ T_ee_hand[:3, :3].T, np.eye(3), atol=1e-6)  # views.yaml's check
    np.testing.assert_allclose(T_ee_hand[:3, 3], 0.0)
    # Ground truth: the pinch frame in the hand frame while the simulated hand holds the object.
    truth = []
    for demo in sorted(demos_dir.glob("demo_*")):
        gt = np.load(demo / "gt" / "frames.npz")
        grasped = gt["grasped"]
        truth.append(np.linalg.inv(gt["T_world_hand"][grasped])[:, :3, :3] @ gt["T_world_pinch"][grasped][:, :3, :3])
    R_hand_pinch = Rotation.from_matrix(np.concatenate(truth)).mean().as_matrix()
    R_ee_pinch = T_ee_hand[:3, :3] @ R_hand_pinch
    error = np.degrees(Rotation.from_matrix(R_ee_pinch @ (R_EE_PINCH_SWAPPED if swap else R_EE_PINCH).T).magnitude())
    assert error < 12.0, error


def test_no_recordings_is_an_error(tmp_path, capsys):
    assert main(["--recordings", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err
