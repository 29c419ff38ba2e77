"""Policy actions (gripper poses + grasp) to arm joint trajectories: the robot side of HumanEgo's retargeting.

A policy predicts poses of the human hand frame (DESIGN.md section 5: origin between thumb and index tips,
x closing axis, y approach), which is also the virtual gripper's frame in the images it saw. The robot's
``ee`` frame relates to it by the alignment ``T_ee_gripper`` (HumanEgo's T_align), whose single source is
``config/views.yaml`` ``gripper.ee_to_gripper`` — the same transform the clean view draws the virtual gripper
with, so what the policy saw and what the robot does agree. Here:

    T_base_ee = T_base_gripper @ inv(T_ee_gripper)    (per step)
    q         = IK of T_base_ee along the chunk       (humanego_control.ik, warm-started from the joint state)
    opening   = gripper closed (URDF lower limit of the finger joint) where grasp >= grasp_threshold, open
                (upper limit) elsewhere: a parallel gripper grasps by closing until the object stops it, so
                intermediate openings would only grasp loosely.

A parallel gripper grasps the same with its fingers swapped: with ``symmetric_gripper`` the ee pose turned by
180 degrees about its approach axis (the ee frame's z) is an equally good target. Which of the two a chunk follows is
chosen at its first step. While the arm follows one of them (its ee within ``FOLLOWING_DEG`` of that orientation)
it stays with it, even where the IK only gets near it (a wrist at its limit), unless it misses by more than the
IK's reseed thresholds and the other is reached: swapping is half a turn of the wrist, which near the object knocks
it over, and the chunk after would swap back. Otherwise (from home, say) the one the arm reaches with the smaller
joint change is taken: a human wrist turns through angles that put the arm's last joint at its limit for one of
the two. It is off by default: which of the two suits an arm is better fixed once, in the alignment
(``humanego_training hand_alignment --swap-fingers``; config/views.yaml says how the shipped one was chosen).

Steps the IK cannot reach are clamped to the nearest reachable pose and flagged (see ``ik``). How fast the
joints would have to move between steps (``speed_ratio``: the largest |dq| / (dt v_max) over joints, from the
joint state for the first step) is reported, not limited: limiting is the trajectory controller's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pinocchio as pin

from humanego_control.ik import ChunkSolution, IKConfig, IKSolution, InverseKinematics
from humanego_core import geometry
from humanego_core.kinematics import RobotKinematics


@dataclass(frozen=True)
class RetargetedChunk:
    q: np.ndarray                 # (H, n) arm joint positions
    gripper_opening: np.ndarray   # (H,) per finger (m): the gripper joint's position
    T_base_ee: np.ndarray         # (H, 4, 4) the ee poses the joints reach (targets, or the nearest reachable)
    T_base_gripper: np.ndarray    # (H, 4, 4) the same as gripper poses
    ik: ChunkSolution             # residuals and flags per step
    speed_ratio: np.ndarray       # (H,) largest |dq| / (dt v_max) over the joints; > 1: faster than the limits


# The ee frame turned by 180 degrees about its approach axis z: the fingers swap places.
TURN_ABOUT_APPROACH = np.diag([-1.0, -1.0, 1.0, 1.0])
FOLLOWING_DEG = 45.0  # an ee this close in orientation to one of the two targets is following it


class Retargeter:
    def __init__(self, kinematics: RobotKinematics, T_ee_gripper, ik_config: IKConfig | None = None,
                 grasp_threshold: float = 0.5, symmetric_gripper: bool = False):
        self.kin = kinematics
        self.T_ee_gripper = geometry.check_transform(np.asarray(T_ee_gripper, float), "T_ee_gripper")
        self._T_gripper_ee = geometry.invert(self.T_ee_gripper)
        self.ik = InverseKinematics(kinematics, ik_config)
        if not 0.0 < grasp_threshold <= 1.0:
            raise ValueError(f"grasp_threshold must be in (0, 1], got {grasp_threshold}")
        self.grasp_threshold = grasp_threshold
        self.symmetric_gripper = symmetric_gripper
        self.closed_m, self.open_m = kinematics.gripper_range

    def retarget(self, T_base_gripper, grasp, q_start, dt: float) -> RetargetedChunk:
        """Joint trajectory for gripper poses ``T_base_gripper`` (H, 4, 4) and ``grasp`` (H,) in 0..1, steps
        ``dt`` apart, warm-started from the measured arm joints ``q_start``."""
        T_base_gripper = geometry.check_transform(np.asarray(T_base_gripper, float), "chunk poses")
        grasp = np.asarray(grasp, float)
        if T_base_gripper.ndim != 3 or len(T_base_gripper) == 0 or grasp.shape != T_base_gripper.shape[:1]:
            raise ValueError(f"chunk poses (H, 4, 4) and grasp (H,) with H >= 1 expected, got "
                             f"{T_base_gripper.shape} and {grasp.shape}")
        if not np.all(np.isfinite(grasp)):
            raise ValueError("chunk grasp contains NaN or inf")
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"chunk dt must be positive and finite, got {dt}")
        T_base_ee = T_base_gripper @ self._T_gripper_ee
        first = self.ik.first_step(T_base_ee[0], q_start)
        if self.symmetric_gripper:
            turned = self.ik.first_step(T_base_ee[0] @ TURN_ABOUT_APPROACH, q_start)
            if self._prefer_turned(turned, first, T_base_ee[0], q_start):
                T_base_ee, first = T_base_ee @ TURN_ABOUT_APPROACH, turned
        solution = self.ik.solve_chunk(T_base_ee, q_start, first)
        steps = np.diff(np.vstack([np.clip(q_start, self.kin.lower, self.kin.upper), solution.q]), axis=0)
        speed_ratio = np.max(np.abs(steps) / (dt * self.kin.velocity_limit), axis=1)
        return RetargetedChunk(q=solution.q, gripper_opening=self.gripper_opening(grasp), T_base_ee=solution.T_reached,
                               T_base_gripper=solution.T_reached @ self.T_ee_gripper, ik=solution,
                               speed_ratio=speed_ratio)

    def _prefer_turned(self, turned: IKSolution, as_is: IKSolution, T_target: np.ndarray, q_start) -> bool:
        """Whether the chunk follows the turned first step (see the module docstring)."""
        q_start = np.clip(q_start, self.kin.lower, self.kin.upper)
        R_ee = self.kin.fk(q_start)[:3, :3]
        angle = np.degrees(np.linalg.norm(pin.log3(R_ee.T @ T_target[:3, :3])))
        if min(angle, 180.0 - angle) <= FOLLOWING_DEG:
            follows_turned = angle > 90.0
            kept, other = (turned, as_is) if follows_turned else (as_is, turned)
            return follows_turned != (other.reached and not self.ik.near(kept.position_error_m,
                                                                          kept.rotation_error_rad))
        if as_is.reached != turned.reached:
            return turned.reached
        return float(np.abs(turned.q - q_start).max()) < float(np.abs(as_is.q - q_start).max())

    def gripper_opening(self, grasp) -> np.ndarray:
        """Opening per finger (m) for grasp values in 0..1."""
        return np.where(np.asarray(grasp, float) >= self.grasp_threshold, self.closed_m, self.open_m)


def first_due_step(age_s: float, dt: float) -> int:
    """Index of the first step of a chunk ``age_s`` after its stamp that is not yet due (step k is due at
    stamp + (k + 1) dt): the steps before it are in the past, and retargeting them is wasted."""
    return max(0, math.ceil(age_s / dt - 1.0 - 1e-9))


def gripper_outline(T_base_gripper, opening_per_finger, finger_length_m: float, stem_length_m: float) -> np.ndarray:
    """Line segments (H * 4, 2, 3) drawing a gripper at each pose in the gripper frame's convention: two fingers
    from the tips (y = 0) back along -y, the palm bar joining them, the stem behind it."""
    T = np.asarray(T_base_gripper, float).reshape(-1, 4, 4)
    half = np.asarray(opening_per_finger, float).reshape(-1)  # the fingers are one opening each from the centre
    L, S = finger_length_m, stem_length_m
    segments = np.zeros((len(T), 4, 2, 3))
    for i, side in enumerate((-1.0, 1.0)):
        segments[:, i, 0, 0] = segments[:, i, 1, 0] = side * half
        segments[:, i, 1, 1] = -L
    segments[:, 2, 0] = np.stack([-half, np.full_like(half, -L), np.zeros_like(half)], axis=-1)
    segments[:, 2, 1] = np.stack([half, np.full_like(half, -L), np.zeros_like(half)], axis=-1)
    segments[:, 3, 0, 1], segments[:, 3, 1, 1] = -L, -L - S
    points = np.einsum("hij,hkj->hki", T[:, :3, :3], segments.reshape(len(T), 8, 3)) + T[:, None, :3, 3]
    return points.reshape(len(T) * 4, 2, 3)
