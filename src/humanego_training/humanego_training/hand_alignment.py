"""``humanego_training hand_alignment``: the hand-to-gripper alignment (HumanEgo's T_align) measured on recordings.

A policy acts in the hand frame (DESIGN.md section 5, built on the knuckles); a parallel gripper's fingers
belong on the pinch frame (x from the thumb tip to the index tip, the squeeze axis; humanego_core.hand). While
a hand holds a pinch grasp the pinch frame sits still in the hand frame, but not on it: on the synthetic
serve_bread demonstrations it is turned by 43 degrees (the simulator's ground truth; 41 measured from the
tracking). Retargeting with the hand frame taken as the gripper then squeezes the object along an axis tens of
degrees off the one the person squeezed it along, and the object slips or spins out of the fingers.

This command takes each recording's MPS hand tracking, keeps the frames of its grasps (the quarter of the
tracked frames with the smallest thumb-index tip distance, ``--closed-fraction``), computes the pinch frame
in the hand frame at each, and prints their mean rotation with its spread and the ``gripper.ee_to_gripper``
block of ``config/views.yaml`` for a robot whose ee frame has z along the approach and the fingers moving along
y (urdf/panda.urdf, urdf/ur5e.urdf)::

    humanego run humanego_training hand_alignment --recordings build/data/serve_bread [--hand right]

A parallel gripper grasps the same with its fingers swapped, so the squeeze axis may lie along the ee's +y or
-y (``--swap-fingers``): the two alignments differ by half a turn about the approach axis, which the arm makes
with its last joint. Which one leaves that joint room for the demonstrator's wrist turns depends on the robot's
joint range and the task; config/views.yaml says which it uses and why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from humanego_core import hand
from humanego_training.human_recording import HumanRecordingError, find_recordings, open_human_recording

# The pinch frame in the robot's ee frame: pinch x (squeeze) = ee y (finger motion), pinch y (towards the tips)
# = ee z (approach), pinch z = ee x.
R_EE_PINCH = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
# ... with the fingers swapped: the squeeze axis along the ee's -y (half a turn about the approach, ee z).
R_EE_PINCH_SWAPPED = np.diag([-1.0, -1.0, 1.0]) @ R_EE_PINCH


def grasped_landmarks(landmarks: np.ndarray, closed_fraction: float) -> np.ndarray:
    """The landmarks (M, 21, 3) of the ``closed_fraction`` of frames with the smallest pinch distance."""
    distance = hand.pinch_distance(landmarks)
    keep = max(1, int(round(closed_fraction * len(distance))))
    return landmarks[np.argsort(distance, kind="stable")[:keep]]


def measure(landmarks: np.ndarray) -> tuple[Rotation, np.ndarray]:
    """(mean rotation of the pinch frame in the hand frame, each frame's angle from it in degrees)."""
    rotations = Rotation.from_matrix(hand.pinch_in_hand(landmarks)[:, :3, :3])
    mean = rotations.mean()
    return mean, np.degrees((mean.inv() * rotations).magnitude())


def ee_to_gripper(R_hand_pinch: np.ndarray, swap_fingers: bool = False) -> np.ndarray:
    """T_ee_gripper (4, 4) with the gripper frame = the hand frame: ``R_ee_pinch R_hand_pinch^T``, no offset
    (both frames sit between the tips); the pinch's squeeze axis along the ee's y, or -y with ``swap_fingers``."""
    T = np.eye(4)
    T[:3, :3] = (R_EE_PINCH_SWAPPED if swap_fingers else R_EE_PINCH) @ R_hand_pinch.T
    return T


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="humanego_training hand_alignment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", nargs="+", type=Path, required=True,
                        help="recordings, or folders of recordings (Aria VRS + MPS, or recording folders)")
    parser.add_argument("--hand", choices=("left", "right"), default="right", help="the grasping hand")
    parser.add_argument("--closed-fraction", type=float, default=0.25,
                        help="fraction of each recording's tracked frames taken as grasping: those with the "
                             "smallest thumb-index tip distance (default 0.25)")
    parser.add_argument("--swap-fingers", action="store_true",
                        help="put the squeeze axis (thumb tip -> index tip) along the ee's -y instead of +y: the "
                             "same grasp for a parallel gripper, half a turn of the wrist's last joint away")
    args = parser.parse_args(argv)
    if not 0.0 < args.closed_fraction <= 1.0:
        parser.error(f"--closed-fraction must be in (0, 1], got {args.closed_fraction}")
    try:
        paths = [p for root in args.recordings for p in find_recordings(root)]
        grasped = []
        for path in paths:
            tracking = open_human_recording(path).hand_tracking
            seen = tracking.seen(args.hand)
            if seen.any():
                grasped.append(grasped_landmarks(tracking.landmarks[args.hand][seen], args.closed_fraction))
    except (HumanRecordingError, OSError, ValueError) as exc:
        print(f"hand_alignment: {exc}", file=sys.stderr)
        return 2
    if not grasped:
        print(f"hand_alignment: no {args.hand} hand is tracked in {len(paths)} recording(s)", file=sys.stderr)
        return 2
    landmarks = np.concatenate(grasped)
    mean, spread = measure(landmarks)
    angle = np.degrees(mean.magnitude())
    p50, p95 = np.percentile(spread, [50, 95])
    print(f"{len(landmarks)} grasping frames of {len(grasped)} recording(s): the pinch frame is turned "
          f"{angle:.1f} deg in the hand frame (rotation vector {np.round(np.degrees(mean.as_rotvec()), 1).tolist()} "
          f"deg), spread p50 {p50:.1f} / p95 {p95:.1f} deg")
    print("config/views.yaml:\n  ee_to_gripper:")
    for row in ee_to_gripper(mean.as_matrix(), args.swap_fingers):
        print("    - [" + ", ".join(f"{v:.8f}" for v in row) + "]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
