import math

import numpy as np
import pytest

from humanego_core.safety import JointLimits, SafetyFilter, WorkspaceBox, stopping_speed

H = 0.01  # control period (s)


def limits(n=2, velocity=1.0, acceleration=5.0, max_step=0.05, lower=-3.0, upper=3.0) -> JointLimits:
    return JointLimits.make(np.full(n, lower), upper, velocity, acceleration, max_step)


def run(f: SafetyFilter, targets, velocities=None) -> tuple[np.ndarray, np.ndarray]:
    commands = [f.step(t, None if velocities is None else v)
                for t, v in zip(targets, velocities if velocities is not None else [None] * len(targets), strict=True)]
    return np.array([c.position for c in commands]), np.array([c.velocity for c in commands])


def test_limits_and_box_validation():
    with pytest.raises(ValueError, match="below upper"):
        JointLimits.make([0.0, 1.0], [1.0, 1.0], 1.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="velocity limits must be > 0"):
        JointLimits.make([0.0], [1.0], 0.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="finite"):
        JointLimits.make([0.0], [math.inf], 1.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="no range"):
        limits(lower=-0.1, upper=0.1).narrowed(0.1)
    np.testing.assert_allclose(limits().narrowed(0.5).upper, [2.5, 2.5])
    with pytest.raises(ValueError, match="below maximum"):
        WorkspaceBox.make([0, 0, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="frame_points"):
        SafetyFilter(limits(), H, 10.0, workspace=WorkspaceBox.make([0, 0, 0], [1, 1, 1]))


def test_box_violation_is_the_distance_outside():
    box = WorkspaceBox.make([0.0, -1.0, 0.0], [1.0, 1.0, 1.0])
    assert box.violation([[0.5, 0.0, 0.5]]) == 0.0
    assert box.violation([[1.3, 0.0, -0.4], [0.5, 0.5, 0.5]]) == pytest.approx(0.5)  # a 3-4-5 corner
    assert box.violation(np.empty((0, 3))) == 0.0


def test_stopping_speed_is_the_discrete_braking_distance():
    for a, d in ((5.0, 0.3), (2.0, 1e-4), (10.0, 2.0)):
        v = stopping_speed(d, a, H)
        assert v**2 / (2 * a) + v * H / 2 == pytest.approx(d)
        # Braking from v by a*h every tick covers d, up to a*h**2/8 when v is not a whole number of a*h.
        speeds = np.arange(v, 0.0, -a * H)
        assert speeds.sum() * H <= d + a * H**2 / 8
    assert stopping_speed(0.5, 5.0, 1e-9) == pytest.approx(math.sqrt(2 * 5.0 * 0.5))  # continuous limit


def test_a_step_is_reached_time_optimally_within_every_limit():
    f = SafetyFilter(limits(velocity=1.0, acceleration=5.0), H, 10.0)
    f.reset([0.0, 0.0])
    q, v = run(f, [[0.5, 0.0]] * 120)
    np.testing.assert_allclose(q[-1], [0.5, 0.0], atol=1e-12)
    assert q[:, 0].max() <= 0.5 + 1e-4, "overshoot"
    assert np.abs(v).max() <= 1.0 + 1e-12
    assert np.abs(np.diff(v, axis=0, prepend=0)).max() / H <= 5.0 + 1e-9
    # Bang-coast-bang closed form: 0.2 s up to 1 rad/s (0.1 rad), 0.3 s cruising, 0.2 s down = 0.7 s
    # (the discrete profile reaches full acceleration within the first tick: one tick less).
    arrived_s = (int(np.argmax(np.abs(q[:, 0] - 0.5) < 1e-6)) + 1) * H
    assert 0.7 - H - 1e-9 <= arrived_s <= 0.75
    assert f.interventions["velocity_limited"] > 0 and f.interventions["acceleration_limited"] > 0
    assert f.stopped and f.step([0.5, 0.0]).interventions == frozenset()


def test_a_feasible_trajectory_is_followed_exactly_without_interventions():
    f = SafetyFilter(limits(), H, 10.0)
    f.reset([0.0, 0.0])  # the trajectory starts here, at rest
    t = H * np.arange(1, 400)
    targets = np.stack([0.2 * (1 - np.cos(t)), -0.1 * (1 - np.cos(2 * t))], axis=1)
    velocities = np.stack([0.2 * np.sin(t), -0.2 * np.sin(2 * t)], axis=1)
    q, _ = run(f, targets, velocities)
    np.testing.assert_allclose(q, targets, atol=1e-12)
    assert sum(f.interventions.values()) == 0


def test_position_limits_clamp_the_target_and_the_command():
    f = SafetyFilter(limits(lower=-0.5, upper=0.5).narrowed(0.1), H, 10.0)
    f.reset([0.0, 0.0])
    q, _ = run(f, [[2.0, -0.45]] * 150, [[1.0, -1.0]] * 150)
    assert q[:, 0].max() <= 0.4 + 1e-12 and q[:, 1].min() >= -0.4 - 1e-12
    np.testing.assert_allclose(q[-1], [0.4, -0.4], atol=1e-9)
    assert f.interventions["position_limited"] == 150


def test_max_step_caps_each_tick():
    f = SafetyFilter(limits(velocity=100.0, acceleration=1e5, max_step=0.002), H, 10.0)
    f.reset([0.0, 0.0])
    q, _ = run(f, [[0.1, 0.05]] * 10)
    steps = np.abs(np.diff(q, axis=0, prepend=[[0.0, 0.0]]))
    assert steps.max() <= 0.002 + 1e-12
    np.testing.assert_allclose(steps[:, 1] / steps[:, 0], 0.5)  # scaled as a whole: direction kept
    assert f.interventions["step_limited"] == 10


def test_hold_decelerates_linearly_along_the_path_then_holds():
    f = SafetyFilter(limits(velocity=2.0, acceleration=1e3), H, stop_deceleration=[10.0, 10.0])
    f.reset([0.0, 0.0])
    f.step([0.01, -0.005])  # one tick at v = (1, -0.5) rad/s
    np.testing.assert_allclose(f.velocity, [1.0, -0.5])
    start = f.position.copy()
    speeds = [f.hold().velocity for _ in range(12)]
    # Time to stop 1 / 10 = 0.1 s = 10 ticks: v_k = v0 * (1 - k / 10), then zero.
    np.testing.assert_allclose(speeds[:10], [[1.0 * (1 - k / 10), -0.5 * (1 - k / 10)] for k in range(1, 11)],
                               atol=1e-12)
    np.testing.assert_allclose(speeds[10:], 0.0)
    np.testing.assert_allclose(f.position - start, np.array([1.0, -0.5]) * H * 4.5, atol=1e-12)
    assert f.stopped and sum(f.interventions.values()) == 0


def test_non_finite_targets_are_not_followed():
    f = SafetyFilter(limits(velocity=2.0, acceleration=1e3), H, stop_deceleration=50.0)
    f.reset([0.0, 0.0])
    f.step([0.01, 0.01])
    command = f.step([math.nan, 0.0])
    assert np.all(np.isfinite(command.position)) and "non_finite_target" in command.interventions
    np.testing.assert_allclose(command.velocity, [0.5, 0.5])  # decelerating at 50 rad/s^2 from 1 rad/s
    assert "non_finite_target" in f.step([0.0, 0.0], [math.inf, 0.0]).interventions
    assert f.interventions["non_finite_target"] == 2


def cartesian_robot(q):
    """A robot whose frame origin is its joint vector: workspace checks in closed form."""
    return np.asarray(q, float).reshape(1, 3)


def test_workspace_box_stops_the_frame_at_the_boundary():
    box = WorkspaceBox.make([-1.0, -1.0, 0.0], [1.0, 1.0, 1.0])
    f = SafetyFilter(limits(n=3, velocity=0.5, acceleration=5.0), H, 10.0, workspace=box, frame_points=cartesian_robot)
    f.reset([0.0, 0.0, 0.2])
    q, _ = run(f, [[0.3, 0.0, -0.5]] * 200)
    assert q[:, 2].min() >= -1e-9
    assert q[-1, 2] == pytest.approx(0.0, abs=0.5 * H / 2**12)  # the bisection's resolution of one step
    assert f.interventions["workspace_limited"] > 0
    # The step is cut back as a whole: x stopped where z hit the table, it does not slide along the boundary.
    assert q[-1, 0] < 0.3


def test_outside_the_box_the_arm_may_move_back_in_but_not_further_out():
    box = WorkspaceBox.make([-1.0, -1.0, 0.0], [1.0, 1.0, 1.0])
    f = SafetyFilter(limits(n=3), H, 10.0, workspace=box, frame_points=cartesian_robot)
    f.reset([0.0, 0.0, -0.1])
    run(f, [[0.0, 0.0, -0.3]] * 20)
    np.testing.assert_allclose(f.position, [0.0, 0.0, -0.1])
    q, _ = run(f, [[0.0, 0.0, 0.3]] * 200)
    np.testing.assert_allclose(q[-1], [0.0, 0.0, 0.3], atol=1e-9)


def test_commands_need_a_start_and_matching_sizes():
    f = SafetyFilter(limits(), H, 10.0)
    with pytest.raises(RuntimeError, match="reset"):
        f.step([0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        f.reset([0.0, math.nan])
    f.reset([0.0, 0.0])
    with pytest.raises(ValueError, match="2 values"):
        f.step([0.0, 0.0, 0.0])
