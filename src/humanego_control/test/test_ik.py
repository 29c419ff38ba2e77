"""Damped-least-squares IK: a planar arm against its closed-form solution, FK/IK round trips on the shipped arms,
joint limits, unreachable targets clamped to the nearest reachable pose and flagged, chunks warm-started."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_control.ik import IKConfig, InverseKinematics
from humanego_core.kinematics import RobotKinematics

L1, L2, L3 = 0.4, 0.3, 0.1


def planar_urdf(path, q2_limits=(-2.8, 2.8)):
    """Three revolute joints about z in the xy-plane (links L1, L2, L3 along x) and a finger: a 3-DoF planar arm."""
    def revolute(name, parent, child, x, lo=-3.0, hi=3.0):
        return (f'<joint name="{name}" type="revolute"><parent link="{parent}"/><child link="{child}"/>'
                f'<origin xyz="{x} 0 0"/><axis xyz="0 0 1"/>'
                f'<limit lower="{lo}" upper="{hi}" velocity="2" effort="10"/></joint>')
    links = "".join(f'<link name="{n}"/>' for n in ("base_link", "link1", "link2", "link3", "ee", "finger"))
    path.write_text(
        f'<robot name="planar">{links}{revolute("j1", "base_link", "link1", 0)}'
        f'{revolute("j2", "link1", "link2", L1, *q2_limits)}{revolute("j3", "link2", "link3", L2)}'
        f'<joint name="ee_joint" type="fixed"><parent link="link3"/><child link="ee"/><origin xyz="{L3} 0 0"/></joint>'
        '<joint name="finger_joint" type="prismatic"><parent link="link3"/><child link="finger"/><axis xyz="0 1 0"/>'
        '<limit lower="0" upper="0.04" velocity="0.1" effort="10"/></joint></robot>')
    return path


def planar_pose(x, y, phi):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", phi).as_matrix()
    T[:2, 3] = x, y
    return T


def planar_fk(q):
    a1, a2, a3 = q[0], q[0] + q[1], q[0] + q[1] + q[2]
    return planar_pose(L1 * math.cos(a1) + L2 * math.cos(a2) + L3 * math.cos(a3),
                       L1 * math.sin(a1) + L2 * math.sin(a2) + L3 * math.sin(a3), a3)


def planar_ik(x, y, phi, elbow_sign):
    """The closed-form solution with the elbow on the side of ``elbow_sign``."""
    wx, wy = x - L3 * math.cos(phi), y - L3 * math.sin(phi)
    c2 = (wx * wx + wy * wy - L1 * L1 - L2 * L2) / (2 * L1 * L2)
    q2 = elbow_sign * math.acos(c2)
    q1 = math.atan2(wy, wx) - math.atan2(L2 * math.sin(q2), L1 + L2 * math.cos(q2))
    q3 = phi - q1 - q2
    return np.array([q1, q2, (q3 + math.pi) % (2 * math.pi) - math.pi])


@pytest.fixture
def planar(tmp_path):
    return RobotKinematics.load(planar_urdf(tmp_path / "planar.urdf"))


def test_planar_arm_matches_the_closed_form_on_the_seeds_branch(planar):
    ik = InverseKinematics(planar, IKConfig(smoothness=0.0))  # pure least squares: the exact solution
    rng = np.random.default_rng(0)
    for _ in range(30):
        q_true = np.array([rng.uniform(-2, 2), rng.uniform(0.3, 2.3) * rng.choice([-1, 1]), rng.uniform(-2, 2)])
        T = planar_fk(q_true)
        np.testing.assert_allclose(planar.fk(q_true), T, atol=1e-12)
        expected = planar_ik(T[0, 3], T[1, 3], q_true.sum(), np.sign(q_true[1]))
        np.testing.assert_allclose(expected, q_true, atol=1e-9)  # the reference itself
        seed = q_true + rng.uniform(-0.25, 0.25, 3)
        solution = ik.solve(T, seed)
        assert solution.reached
        np.testing.assert_allclose(solution.q, q_true, atol=1e-7)
        assert solution.position_error_m < 1e-6 and solution.rotation_error_rad < 1e-6


def test_a_limit_excluding_one_elbow_gives_the_other(tmp_path):
    kin = RobotKinematics.load(planar_urdf(tmp_path / "elbow.urdf", q2_limits=(0.2, 2.8)))
    ik = InverseKinematics(kin, IKConfig(smoothness=0.0))
    target = planar_fk([0.3, 1.2, -0.4])
    mirrored = planar_ik(target[0, 3], target[1, 3], 1.1, -1.0)  # the elbow-down solution: q2 < 0, forbidden
    solution = ik.solve(target, mirrored)
    assert solution.reached
    assert np.all(solution.q >= kin.lower) and np.all(solution.q <= kin.upper)
    np.testing.assert_allclose(solution.q, [0.3, 1.2, -0.4], atol=1e-7)


def test_an_out_of_reach_target_is_clamped_to_the_stretched_arm_and_flagged(planar):
    ik = InverseKinematics(planar)
    direction = 0.7
    target = planar_pose(1.5 * math.cos(direction), 1.5 * math.sin(direction), direction)
    solution = ik.solve(target, np.array([0.5, 0.4, -0.2]))
    assert not solution.reached
    reach = L1 + L2 + L3
    # The nearest reachable pose: the arm stretched towards the target, pointing along it.
    np.testing.assert_allclose(solution.T_reached[:2, 3], [reach * math.cos(direction), reach * math.sin(direction)],
                               atol=2e-3)
    np.testing.assert_allclose(solution.T_reached, planar.fk(solution.q), atol=1e-12)
    assert solution.position_error_m == pytest.approx(1.5 - reach, abs=2e-3)
    assert solution.rotation_error_rad < 0.01


def test_a_target_needing_a_joint_past_its_limit_is_flagged_within_limits(tmp_path):
    kin = RobotKinematics.load(planar_urdf(tmp_path / "elbow.urdf", q2_limits=(0.6, 2.8)))
    ik = InverseKinematics(kin)
    solution = ik.solve(planar_fk([0.2, 0.1, 0.0]), np.array([0.2, 0.6, 0.0]))  # needs |q2| = 0.1 < 0.6
    assert not solution.reached
    assert np.all(solution.q >= kin.lower - 1e-12) and np.all(solution.q <= kin.upper + 1e-12)
    assert solution.q[1] == pytest.approx(0.6)


@pytest.mark.parametrize("robot", ["panda", "ur5e"])
def test_fk_ik_round_trips_on_random_reachable_poses(robot):
    kin = RobotKinematics.load(robot)
    ik = InverseKinematics(kin)
    rng = np.random.default_rng(2)
    errors = []
    for _ in range(60):
        q_true = rng.uniform(kin.lower, kin.upper)
        seed = np.clip(q_true + rng.normal(0, 0.1, kin.n), kin.lower, kin.upper)
        solution = ik.solve(kin.fk(q_true), seed)
        assert np.all(solution.q >= kin.lower) and np.all(solution.q <= kin.upper)
        np.testing.assert_allclose(solution.T_reached, kin.fk(solution.q), atol=1e-12)
        if solution.reached:
            errors.append((solution.position_error_m, solution.rotation_error_rad))
        else:  # a flag is only raised for a real miss
            assert solution.position_error_m > 0.005 or solution.rotation_error_rad > math.radians(3)
    assert len(errors) >= 58
    # HOP's smoothness term trades a little accuracy where the arm is near a singularity (smallest singular
    # value of J ~0.003 for the worst of these): a fraction of a millimetre there, micrometres elsewhere.
    errors = np.array(errors)
    assert np.median(errors[:, 0]) < 1e-5 and np.median(errors[:, 1]) < 1e-4
    assert errors[:, 0].max() < 5e-4 and errors[:, 1].max() < 2e-3


def test_far_targets_stuck_from_the_seed_are_reached_along_the_path_without_other_seeds():
    """From the Panda's home, a direct descent to some far poses stops at a joint limit; solve() then walks
    interpolated poses from the seed's own pose (no extra seeds given), and reaches them."""
    kin = RobotKinematics.load("panda")
    ik = InverseKinematics(kin)
    home = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
    rng = np.random.default_rng(0)
    stuck = reached = 0
    for _ in range(150):
        T = kin.fk(rng.uniform(kin.lower, kin.upper))
        q, _, e, _ = ik._descend(T, home, home)
        if np.linalg.norm(e[:3]) > 0.005 or np.linalg.norm(e[3:]) > math.radians(3):
            stuck += 1
            solution = ik.solve(T, home, home)
            reached += solution.reached
            if solution.reached:
                np.testing.assert_allclose(kin.fk(solution.q), T, atol=2e-3)
    assert stuck >= 5 and reached >= 3, (stuck, reached)


@pytest.mark.parametrize("robot", ["panda", "ur5e"])
def test_a_chunk_is_tracked_smoothly_from_the_measured_state(robot):
    kin = RobotKinematics.load(robot)
    ik = InverseKinematics(kin)
    rng = np.random.default_rng(3)
    middle = (kin.lower + kin.upper) / 2
    q_path = np.clip(middle + 0.3 * rng.uniform(-1, 1, kin.n) + np.cumsum(rng.normal(0, 0.01, (50, kin.n)), axis=0),
                     kin.lower, kin.upper)
    targets = np.stack([kin.fk(q) for q in q_path])
    chunk = ik.solve_chunk(targets, q_path[0])
    assert chunk.reached.all()
    assert chunk.position_error_m.max() < 1e-4 and chunk.rotation_error_rad.max() < 1e-3
    source_steps = np.abs(np.diff(q_path, axis=0)).max()
    assert np.abs(np.diff(chunk.q, axis=0)).max() < 2 * source_steps
    assert np.abs(chunk.q[0] - q_path[0]).max() < 2 * source_steps


def test_out_of_reach_steps_in_a_chunk_are_flagged_alone():
    kin = RobotKinematics.load("panda")
    ik = InverseKinematics(kin)
    q0 = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8])
    start = kin.fk(q0)
    targets = np.repeat(start[None], 9, axis=0)
    targets[:, 0, 3] += np.linspace(0.0, 0.16, 9)
    targets[3:6, 0, 3] += 2.0  # three steps two metres away
    chunk = ik.solve_chunk(targets, q0)
    np.testing.assert_array_equal(chunk.flagged, [False] * 3 + [True] * 3 + [False] * 3)
    # Clamped: what is sent is reachable (fk of joints within limits), as far out towards the target as the arm goes.
    for k in range(3, 6):
        np.testing.assert_allclose(chunk.T_reached[k], kin.fk(chunk.q[k]), atol=1e-12)
        assert np.linalg.norm(chunk.T_reached[k][:3, 3]) > 0.85
    assert np.all(chunk.q >= kin.lower) and np.all(chunk.q <= kin.upper)


def test_smoothness_settles_the_null_space_of_a_redundant_arm():
    kin = RobotKinematics.load("panda")
    q0 = np.array([0.1, -0.2, 0.1, -2.0, 0.1, 1.9, 0.7])
    target = kin.fk(q0 + np.array([0.05, 0.03, -0.04, 0.05, 0.02, -0.03, 0.04]))
    # Seeded away from the previous solution: the HOP term pulls the redundant joint back towards q_prev.
    seed = q0 + np.array([0.0, 0.0, 0.4, 0.0, 0.0, 0.0, 0.0])
    loose = InverseKinematics(kin, IKConfig(smoothness=0.0)).solve(target, seed, q_prev=q0)
    smooth = InverseKinematics(kin, IKConfig(smoothness=1e-3, max_iterations=2000)).solve(target, seed, q_prev=q0)
    assert loose.reached and smooth.reached
    assert np.linalg.norm(smooth.q - q0) < np.linalg.norm(loose.q - q0) - 0.1


def test_bad_targets_raise():
    kin = RobotKinematics.load("panda")
    ik = InverseKinematics(kin)
    q = (kin.lower + kin.upper) / 2
    bad = kin.fk(q)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        ik.solve(bad, q)
    with pytest.raises(ValueError, match=r"\(H, 4, 4\)"):
        ik.solve_chunk(np.eye(4), q)
    with pytest.raises(ValueError, match="expected 7 arm joint positions"):
        ik.solve(np.eye(4), q[:6])


def test_a_position_margin_keeps_solutions_inside_the_limits_by_it(tmp_path):
    kin = RobotKinematics.load(planar_urdf(tmp_path / "elbow.urdf", q2_limits=(0.6, 2.8)))
    ik = InverseKinematics(kin, IKConfig(position_margin_rad=0.05))
    solution = ik.solve(planar_fk([0.2, 0.1, 0.0]), np.array([0.2, 0.7, 0.0]))  # needs q2 = 0.1 < 0.6
    assert not solution.reached
    assert solution.q[1] == pytest.approx(0.65)
    reachable = ik.solve(planar_fk([0.2, 1.0, 0.3]), np.array([0.1, 0.8, 0.2]))
    assert reachable.reached and reachable.q[1] == pytest.approx(1.0, abs=1e-4)
