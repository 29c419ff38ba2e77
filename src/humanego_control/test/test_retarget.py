"""Retargeting: gripper poses through the configured alignment to ee targets, IK along the chunk, grasp to the
finger joint, joint speeds; the gripper outline drawn for RViz."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_control.ik import IKSolution
from humanego_control.retarget import Retargeter, first_due_step, gripper_outline
from humanego_core.hand import pinch_in_hand
from humanego_core.kinematics import RobotKinematics
from humanego_perception.views import load_views_config
from humanego_sim.human import FINGER_RADIUS, hand_landmarks


@pytest.fixture(scope="module")
def panda():
    return RobotKinematics.load("panda")


@pytest.fixture(scope="module")
def alignment():
    return load_views_config().gripper.T_ee_gripper


def test_the_shipped_alignment_puts_the_fingers_on_the_pinch_of_a_grasping_hand(panda, alignment):
    """views.yaml's alignment was measured on tracked (noisy) hands; the synthetic demonstrator's hand model
    holding the bread (humanego_sim.human: a tip distance of the bread's width plus the finger pads) is the
    reference: its pinch frame's squeeze axis is the fingers' motion (ee -y: views.yaml swaps the fingers, which
    grasp the same), its y the approach (ee z)."""
    R_hand_pinch = pinch_in_hand(hand_landmarks(0.05 + 2 * FINGER_RADIUS - 0.002))[:3, :3]
    q = np.array([0.2, -0.3, 0.1, -2.1, 0.1, 1.9, 0.6])
    T_base_ee = panda.fk(q)
    T_base_hand = T_base_ee @ alignment
    pinch = T_base_hand[:3, :3] @ R_hand_pinch
    assert np.degrees(np.arccos(pinch[:, 0] @ -T_base_ee[:3, 1])) < 10.0
    assert np.degrees(np.arccos(pinch[:, 1] @ T_base_ee[:3, 2])) < 10.0
    np.testing.assert_allclose(T_base_hand[:3, 3], T_base_ee[:3, 3], atol=1e-12)
    left = panda.frame_transform(q, "leftfinger", 0.03)[:3, 3]
    right = panda.frame_transform(q, "rightfinger", 0.03)[:3, 3]
    # The fingers move apart along the ee's y.
    assert abs(np.dot(left - right, T_base_ee[:3, 1])) == pytest.approx(0.06, abs=1e-9)


def test_a_chunk_follows_the_fingers_swapped_pose_when_the_arm_reaches_it_with_less_motion(panda, alignment):
    """The ee turned half a turn about its approach axis grasps the same: a target asking the last joint to
    turn by 170 degrees (past its limit from here) is taken turned, 10 degrees of wrist motion away."""
    q0 = np.array([0.0, -0.4, 0.0, -2.3, 0.0, 1.9, 0.8])
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_rotvec([0, 0, np.radians(170)]).as_matrix()
    T_base_gripper = np.stack([panda.fk(q0) @ turn @ alignment] * 3)
    symmetric = Retargeter(panda, alignment, symmetric_gripper=True).retarget(T_base_gripper, np.zeros(3), q0, 1 / 30)
    assert symmetric.ik.reached.all()
    assert np.abs(symmetric.q - q0).max() < np.radians(12)  # shared by the wrist joints
    as_is = Retargeter(panda, alignment).retarget(T_base_gripper, np.zeros(3), q0, 1 / 30)
    assert np.abs(as_is.q - q0).max() > 1.0 or not as_is.ik.reached.all()


def ik_result(panda, position_error_m: float, rotation_error_deg: float, reached: bool) -> IKSolution:
    q = np.zeros(panda.n)
    return IKSolution(q=q, T_reached=panda.fk(q), position_error_m=position_error_m,
                      rotation_error_rad=np.radians(rotation_error_deg), reached=reached, iterations=1)


@pytest.mark.parametrize("off_deg, kept_miss_m, turned", [
    (5.0, 0.01, False),    # following the pose as is, missed by 1 cm (a wrist at its limit): stays with it
    (5.0, 0.05, True),     # ... missed by more than reseed_position_m (2 cm): the reached turned pose
    (175.0, 0.01, True),   # following the turned pose: stays with it though the other is reached
    (90.0, 0.01, True),    # following neither (from home, say): the reached one
])
def test_a_chunk_keeps_the_pose_the_arm_follows_while_the_ik_gets_near_it(panda, alignment, off_deg, kept_miss_m,
                                                                          turned):
    """Swapping to the fingers-swapped pose is half a turn of the wrist: while the arm's ee is within 45 degrees
    of one of the two, it is kept unless the IK misses it by more than its reseed thresholds."""
    q0 = np.array([0.0, -0.4, 0.0, -2.3, 0.0, 1.9, 0.8])
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_rotvec([0, 0, np.radians(off_deg)]).as_matrix()
    T_target = panda.fk(q0) @ turn
    follows_turned = off_deg > 90.0
    kept = ik_result(panda, kept_miss_m, 2.0, reached=False)
    other = ik_result(panda, 0.0, 0.0, reached=True)
    as_is, turned_step = (other, kept) if follows_turned else (kept, other)
    retargeter = Retargeter(panda, alignment, symmetric_gripper=True)
    assert retargeter._prefer_turned(turned_step, as_is, T_target, q0) == turned


def test_gripper_poses_of_a_joint_path_retarget_back_to_it(panda, alignment):
    retargeter = Retargeter(panda, alignment)
    rng = np.random.default_rng(0)
    q0 = np.array([0.0, -0.4, 0.0, -2.3, 0.0, 1.9, 0.8])
    path = q0 + np.cumsum(rng.normal(0, 0.01, (30, 7)), axis=0)
    T_base_gripper = np.stack([panda.fk(q) @ alignment for q in path])
    grasp = np.linspace(0, 1, 30)
    out = retargeter.retarget(T_base_gripper, grasp, q0, dt=1 / 30)
    assert out.ik.reached.all()
    np.testing.assert_allclose(out.T_base_gripper, T_base_gripper, atol=1e-4)
    for q, T_ee in zip(out.q, out.T_base_ee, strict=True):
        np.testing.assert_allclose(panda.fk(q), T_ee, atol=1e-12)
    np.testing.assert_array_equal(out.gripper_opening, np.where(grasp >= 0.5, 0.0, 0.04))
    assert out.q.shape == (30, 7) and out.speed_ratio.shape == (30,)


def test_speed_ratio_is_the_fastest_joint_against_its_limit(alignment):
    ur5e = RobotKinematics.load("ur5e")  # not redundant: the one nearby solution is known
    retargeter = Retargeter(ur5e, alignment)
    q0 = np.array([0.3, -1.2, 1.5, -1.9, -1.6, 0.2])
    q1 = q0 + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.1])  # the last wrist joint turns 0.1 rad
    out = retargeter.retarget((ur5e.fk(q1) @ alignment)[None], [0.0], q0, dt=0.01)
    assert out.ik.reached.all()
    np.testing.assert_allclose(out.q[0], q1, atol=1e-5)
    assert out.speed_ratio[0] == pytest.approx(0.1 / (0.01 * np.pi), rel=1e-3)


def test_gripper_outline_of_an_identity_pose_by_hand():
    segments = gripper_outline(np.eye(4)[None], [0.03], finger_length_m=0.05, stem_length_m=0.07)
    expected = [[[-0.03, 0, 0], [-0.03, -0.05, 0]], [[0.03, 0, 0], [0.03, -0.05, 0]],
                [[-0.03, -0.05, 0], [0.03, -0.05, 0]], [[0, -0.05, 0], [0, -0.12, 0]]]
    np.testing.assert_allclose(segments, expected, atol=1e-15)
    moved = np.eye(4)
    moved[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    moved[:3, 3] = [1, 2, 3]
    np.testing.assert_allclose(gripper_outline(moved[None], [0.03], 0.05, 0.07)[0],
                               [[1, 2 - 0.03, 3], [1 + 0.05, 2 - 0.03, 3]], atol=1e-15)


def test_bad_chunks_raise(panda, alignment):
    retargeter = Retargeter(panda, alignment)
    q0 = np.array([0.0, -0.4, 0.0, -2.3, 0.0, 1.9, 0.8])
    T = (panda.fk(q0) @ alignment)[None]
    with pytest.raises(ValueError, match="grasp contains NaN"):
        retargeter.retarget(T, [np.nan], q0, dt=0.1)
    with pytest.raises(ValueError, match="dt must be positive"):
        retargeter.retarget(T, [0.0], q0, dt=0.0)
    with pytest.raises(ValueError, match=r"grasp \(H,\)"):
        retargeter.retarget(T, [0.0, 1.0], q0, dt=0.1)
    with pytest.raises(ValueError, match="H >= 1"):
        retargeter.retarget(T[:0], [], q0, dt=0.1)
    bad = T.copy()
    bad[0, 0, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        retargeter.retarget(bad, [0.0], q0, dt=0.1)
    with pytest.raises(ValueError, match="grasp_threshold"):
        Retargeter(panda, alignment, grasp_threshold=0.0)


@pytest.mark.parametrize("age_s, first", [(-0.01, 0), (0.0, 0), (0.1, 2), (0.1 + 1e-6, 3), (0.5, 14)])
def test_first_due_step_skips_the_steps_due_before_now(age_s, first):
    """Step k of a chunk is due (k + 1) dt after its stamp; at 30 Hz step 2 is due at 0.1 s, still to come then."""
    assert first_due_step(age_s, 1 / 30) == first
