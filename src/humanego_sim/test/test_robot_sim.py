"""RobotSim: trajectory tracking, command validation and episode resets on real MuJoCo physics."""

import math

import numpy as np
import pytest

from humanego_sim.robot_sim import CommandRejected, RobotSim, TrajectoryPoint
from humanego_sim.tasks import load_task
from humanego_sim.world import World


@pytest.fixture(scope="module")
def sim():
    s = RobotSim(load_task("serve_bread"), "panda", seed=0)
    yield s
    s.close()


@pytest.fixture
def fresh(sim):
    sim.reset(0)
    return sim


def run_for(sim: RobotSim, seconds: float) -> None:
    sim.step(round(seconds / sim.timestep))


def arm(sim: RobotSim) -> np.ndarray:
    return sim.snapshot().positions[:len(sim.robot.arm_joints)]


def test_linear_interpolation_between_points(fresh):
    sim = fresh
    names = sim.robot.arm_joints
    home = arm(sim)
    goal = home + np.array([0.3, 0.2, -0.2, 0.3, 0.2, -0.3, 0.4])
    sim.set_trajectory(names, [TrajectoryPoint(1.0, goal)])
    # Halfway, the commanded targets are halfway (linear into a point without velocities).
    run_for(sim, 0.5)
    np.testing.assert_allclose(sim._current_targets(), home + 0.5 * (goal - home), atol=1e-9)
    run_for(sim, 1.5)
    # The servos hold the last point: the arm really got there.
    np.testing.assert_allclose(arm(sim), goal, atol=5e-3)
    assert sim.stats.trajectories == 1


def test_cubic_interpolation_matches_hermite(fresh):
    sim = fresh
    names = sim.robot.arm_joints[:2]
    q0 = arm(sim)[:2]
    points = [TrajectoryPoint(0.5, q0 + [0.2, 0.1], [0.4, 0.0]), TrajectoryPoint(1.0, q0 + [0.4, 0.1], [0.0, 0.0])]
    sim.set_trajectory(names, points)
    run_for(sim, 0.75)
    # Hermite on [0.5, 1.0] at s = 0.5 with h = 0.5: (p0 + p1)/2 + h (v0 - v1)/8.
    expected = q0 + [0.3, 0.1] + 0.5 * np.array([0.4, 0.0]) / 8
    np.testing.assert_allclose(sim._current_targets()[:2], expected, atol=1e-6)
    # Joints the trajectory does not name keep their targets.
    np.testing.assert_allclose(sim._current_targets()[2:], sim.world.home_configuration()[2:], atol=1e-12)


def test_targets_clamped_to_joint_limits(fresh):
    sim = fresh
    clamped_before = sim.stats.clamped
    limits = sim.robot.arm_limits
    sim.set_trajectory(["joint4"], [TrajectoryPoint(0.5, [1.0])])  # joint4 of a Panda is always negative
    run_for(sim, 1.5)
    assert sim.stats.clamped == clamped_before + 1
    j4 = sim.robot.arm_joints.index("joint4")
    assert sim._current_targets()[j4] == limits[j4, 1]
    assert arm(sim)[j4] <= limits[j4, 1] + 5e-3


@pytest.mark.parametrize("names, points, reason", [
    (["joint1", "elbow_joint"], [TrajectoryPoint(1.0, [0.0, 0.0])], "unknown_joint"),
    (["joint1", "joint1"], [TrajectoryPoint(1.0, [0.0, 0.0])], "duplicate_joint"),
    (["joint1"], [TrajectoryPoint(1.0, [0.0, 0.0])], "size_mismatch"),
    (["joint1"], [TrajectoryPoint(1.0, [0.0], [0.0, 1.0])], "size_mismatch"),
    (["joint1"], [TrajectoryPoint(1.0, [math.nan])], "non_finite"),
    (["joint1"], [TrajectoryPoint(0.5, [0.1]), TrajectoryPoint(1.0, [math.inf])], "non_finite"),
    (["joint1"], [TrajectoryPoint(1.0, [0.1], [math.nan])], "non_finite"),
    (["joint1"], [TrajectoryPoint(math.nan, [0.1])], "non_finite"),
    (["joint1"], [TrajectoryPoint(1.0, [0.1]), TrajectoryPoint(1.0, [0.2])], "bad_times"),
    (["joint1"], [TrajectoryPoint(-0.5, [0.1])], "bad_times"),
])
def test_bad_trajectories_are_rejected_and_never_reach_the_servos(fresh, names, points, reason):
    sim = fresh
    before = sim.stats.rejected[reason]
    ctrl_before = sim.data.ctrl.copy()
    with pytest.raises(CommandRejected) as info:
        sim.set_trajectory(names, points)
    assert info.value.reason == reason
    assert sim.stats.rejected[reason] == before + 1
    run_for(sim, 0.1)
    assert np.all(np.isfinite(sim.data.ctrl))
    np.testing.assert_array_equal(sim.data.ctrl, ctrl_before)


def test_trajectory_in_the_past_is_rejected(fresh):
    sim = fresh
    run_for(sim, 1.0)
    with pytest.raises(CommandRejected, match="in_the_past"):
        sim.set_trajectory(["joint1"], [TrajectoryPoint(0.2, [0.3])], start_time=0.1)


def test_start_time_and_dropped_past_points(fresh):
    sim = fresh
    run_for(sim, 0.5)
    j1 = arm(sim)[0]
    # Started 0.4 s ago: the first point (at 0.1 + 0.2 s) is past and dropped, the arm heads to the second.
    sim.set_trajectory(["joint1"], [TrajectoryPoint(0.2, [5.0]), TrajectoryPoint(1.0, [0.4])], start_time=0.1)
    run_for(sim, 0.3)  # now 0.8 = halfway from 0.5 to 1.1
    assert sim._current_targets()[0] == pytest.approx(j1 + 0.5 * (0.4 - j1), abs=1e-3)


def test_point_at_time_zero_is_a_direct_position_target(fresh):
    sim = fresh
    target = arm(sim)[:2] + [0.2, -0.1]
    sim.set_trajectory(["joint1", "joint2"], [TrajectoryPoint(0.0, target)])
    np.testing.assert_allclose(sim._current_targets()[:2], target)
    run_for(sim, 1.0)
    np.testing.assert_allclose(arm(sim)[:2], target, atol=5e-3)


def test_empty_trajectory_holds_current_target(fresh):
    sim = fresh
    sim.set_trajectory(["joint1"], [TrajectoryPoint(1.0, [0.6])])
    run_for(sim, 0.5)
    held = sim._current_targets()
    sim.set_trajectory(["joint1"], [])
    run_for(sim, 0.5)
    np.testing.assert_allclose(sim._current_targets(), held)


def test_gripper_command_and_rejection(fresh):
    sim = fresh
    with pytest.raises(CommandRejected):
        sim.set_gripper(math.nan)
    assert math.isfinite(sim.data.ctrl[sim.robot.gripper_actuator])
    sim.set_gripper(0.01)
    run_for(sim, 1.0)
    assert sim.snapshot().positions[-2] == pytest.approx(0.01, abs=1e-3)
    sim.set_gripper(1.0)  # beyond the range: clamped to fully open
    run_for(sim, 1.0)
    assert sim.snapshot().positions[-1] == pytest.approx(sim.robot.finger_range[1], abs=1e-3)


def test_reset_is_deterministic_per_seed_and_the_clock_never_goes_back(sim):
    sim.reset(3)
    run_for(sim, 0.3)
    a = sim.snapshot()
    sim.reset(4)
    b = sim.snapshot()
    run_for(sim, 0.3)
    sim.reset(3)
    run_for(sim, 0.3)
    c = sim.snapshot()
    assert b.stamp_ns > a.stamp_ns and c.stamp_ns > b.stamp_ns
    assert b.elapsed == 0.0 and c.elapsed == pytest.approx(0.3)
    for name in a.object_poses:
        np.testing.assert_array_equal(a.object_poses[name], c.object_poses[name])
    assert not np.allclose(a.object_poses["bread"], b.object_poses["bread"])
    with pytest.raises(ValueError):
        sim.reset(-1)


def test_snapshot_frames(fresh):
    sim = fresh
    snap = sim.snapshot()
    assert snap.joint_names == sim.robot.arm_joints + sim.robot.finger_joints
    moving = {child: parent for parent, child, _ in sim.link_transforms()}
    static = {child: parent for parent, child, _ in sim.static_transforms()}
    assert static["base_link"] == "world" and moving["link1"] == "link0" and static["ee"] == "hand"
    assert static["camera_optical_frame"] == "camera_link" and static["camera_link"] == "world"
    # Chaining the published transforms from world to ee gives the ee's world pose.
    parents = {**moving, **static}
    transforms = {child: T for _, child, T in sim.link_transforms() + sim.static_transforms()}
    frame, T = "ee", np.eye(4)
    while frame != "world":
        T = transforms[frame] @ T
        frame = parents[frame]
    np.testing.assert_allclose(T, sim.world.body_pose("ee"), atol=1e-9)
    # The optical frame looks along +z, with y down (REP 103): the table is in front, below the camera.
    T_world_optical = transforms["camera_link"] @ transforms["camera_optical_frame"]
    np.testing.assert_allclose(T_world_optical, sim.world.camera_pose("ego_camera"), atol=1e-9)
    assert T_world_optical[2, 2] < 0 and T_world_optical[2, 1] < 0


@pytest.mark.parametrize("task", ["serve_bread", "push_box"])
@pytest.mark.parametrize("robot", ["panda", "ur5e"])
def test_the_robot_world_keeps_every_part_of_the_scene_the_human_world_has(task, robot):
    """Policies trained on the human recordings' images see the robot's camera: a scene geom, texture or
    material the robot's URDF import dropped (table legs, push target, floor checker) is a domain gap."""
    human, with_robot = World(load_task(task)), World(load_task(task), robot=robot)
    scene_bodies = {human.model.body(b).name for b in range(human.model.nbody)}

    def scene(model):
        """(size, rgba, textured) of every geom on a body the human world has too: not the robot's."""
        return sorted((tuple(np.round(model.geom_size[i], 6)), tuple(np.round(model.geom_rgba[i], 6)),
                       bool(model.geom_matid[i] >= 0))
                      for i in range(model.ngeom) if model.body(model.geom_bodyid[i]).name in scene_bodies)

    try:
        assert scene(with_robot.model) == scene(human.model)
        assert with_robot.model.ntex == human.model.ntex
    finally:
        human.close()
        with_robot.close()
