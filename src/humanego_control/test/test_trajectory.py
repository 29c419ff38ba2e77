"""The trajectory executor and its chunk handling, driven tick by tick with explicit clocks (no ROS)."""

import math

import numpy as np
import pytest

from humanego_control.trajectory import (
    ChunkRejected,
    ClockFollower,
    ExecutorConfig,
    TrajectoryExecutor,
    parse_joint_chunk,
    resample,
)
from humanego_control.trajectory_controller_node import parameters
from humanego_core.ament_index import resource_path
from humanego_core.safety import JointLimits, SafetyFilter
from humanego_ros.parameters import parameter_file_problems

ARM = ["a", "b"]
GRIPPER = "finger"
H = 0.01
DT = 0.1  # chunk step


def executor(velocity=10.0, acceleration=1e3, **config) -> TrajectoryExecutor:
    limits = JointLimits.make([-2.0, -2.0], [2.0, 2.0], velocity, acceleration, 1.0)
    return TrajectoryExecutor(ExecutorConfig(**config), SafetyFilter(limits, H, 50.0), ARM, GRIPPER, (0.0, 0.04),
                              "base_link")


def chunk_fields(values, gripper=None, names=ARM):
    """JointTrajectory fields of a chunk: point k at (k + 1) * DT, as ik_retarget sends them."""
    values = np.asarray(values, float)
    rows = values if gripper is None else np.column_stack([values, gripper])
    names = names if gripper is None else [*names, GRIPPER]
    return names, [DT * (k + 1) for k in range(len(values))], rows.tolist()


class Clock:
    """ROS time and monotonic time of a test, advanced tick by tick (optionally with joint states)."""

    def __init__(self, ex: TrajectoryExecutor, now=100.0):
        self.ex, self.now, self.mono = ex, now, 0.0

    def ticks(self, n, joint_states=True, feedback=True):
        commands = []
        for _ in range(n):
            self.now += H
            self.mono += H
            if joint_states:  # the arm where it was commanded: a perfect servo
                q = self.ex.safety.position if feedback and self.ex.safety.started else self.ex.measured
                self.ex.on_joint_state(q, self.mono)
            commands.append(self.ex.tick(self.now, self.mono))
        return commands

    def add(self, values, gripper=None, stamp=None, **kw):
        names, times, rows = chunk_fields(values, gripper)
        return self.ex.add_chunk(names, times, rows, self.now if stamp is None else stamp, kw.get("frame", "base_link"),
                                 self.now, self.mono)


def test_parse_reorders_joints_and_keeps_the_gripper_optional():
    chunk = parse_joint_chunk(["b", GRIPPER, "a"], [0.1, 0.2], [[1.0, 0.02, 2.0], [3.0, 0.03, 4.0]], 5.0, "base_link",
                              arm_joints=ARM, gripper_joint=GRIPPER, base_frame="base_link")
    np.testing.assert_allclose(chunk.arm, [[2.0, 1.0], [4.0, 3.0]])
    np.testing.assert_allclose(chunk.gripper, [0.02, 0.03])
    assert (chunk.stamp_s, chunk.start_s, chunk.dt_s, chunk.end_s) == pytest.approx((5.0, 5.1, 0.1, 5.2))
    arm_only = parse_joint_chunk(ARM, [0.1, 0.2], [[0, 0], [1, 1]], 5.0, "base_link", arm_joints=ARM,
                                 gripper_joint=GRIPPER, base_frame="base_link")
    assert arm_only.gripper is None


@pytest.mark.parametrize("names, times, rows, frame, reason", [
    (ARM, [0.1, 0.2], [[0, 0], [0, 0]], "world", "wrong_frame"),
    (["a", "c"], [0.1, 0.2], [[0, 0], [0, 0]], "base_link", "unknown_joint"),
    (["a", "a"], [0.1, 0.2], [[0, 0], [0, 0]], "base_link", "duplicate_joint"),
    (["a", GRIPPER], [0.1, 0.2], [[0, 0], [0, 0]], "base_link", "missing_joint"),
    (ARM, [0.1], [[0, 0]], "base_link", "too_short"),
    (ARM, [0.1, 0.2], [[0, 0], [0]], "base_link", "size_mismatch"),
    (ARM, [0.1, 0.2], [[0, 0], [math.nan, 0]], "base_link", "non_finite"),
    (ARM, [0.1, math.inf], [[0, 0], [0, 0]], "base_link", "non_finite"),
    (ARM, [0.2, 0.1], [[0, 0], [0, 0]], "base_link", "bad_times"),
    (ARM, [0.1, 0.2, 0.5], [[0, 0], [0, 0], [0, 0]], "base_link", "bad_times"),
])
def test_parse_rejects_bad_chunks_by_reason(names, times, rows, frame, reason):
    with pytest.raises(ChunkRejected) as exc:
        parse_joint_chunk(names, times, rows, 1.0, frame, arm_joints=ARM, gripper_joint=GRIPPER, base_frame="base_link")
    assert exc.value.reason == reason


def test_resample_is_a_cubic_spline_at_the_control_period():
    knots = DT * np.arange(6)
    cubic = np.column_stack([knots**3 - knots, 2 * knots**2])  # not-a-knot splines reproduce cubics exactly
    chunk = parse_joint_chunk(ARM, list(knots + DT), cubic.tolist(), 0.0, "base_link", arm_joints=ARM,
                              gripper_joint=GRIPPER, base_frame="base_link")
    step, arm, gripper = resample(chunk, 0.03)
    assert step == pytest.approx(0.5 / 17) and step <= 0.03 and gripper is None
    t = step * np.arange(len(arm))
    np.testing.assert_allclose(arm, np.column_stack([t**3 - t, 2 * t**2]), atol=1e-12)


def test_a_chunk_is_followed_through_its_points_to_its_last():
    ex = executor(chunk_timeout_s=10.0)
    clock = Clock(ex)
    ex.on_joint_state([0.0, 0.0], clock.mono)
    assert ex.tick(clock.now, clock.mono) is None and ex.state == "waiting for a chunk"
    values = [[0.02 * (k + 1), -0.01 * (k + 1)] for k in range(5)]  # a straight line from the arm's position
    clock.add(values)
    start = clock.now
    commands = clock.ticks(60)
    assert ex.state == "following"
    # Tick i (from 0) runs at start + (i + 1) H and commands the position due at start + (i + 2) H: nothing to
    # send until the first point (start + DT) is due, then each point at its time.
    assert commands[7] is None and commands[8] is not None
    for k, value in enumerate(values):
        np.testing.assert_allclose(commands[round(DT * (k + 1) / H) - 2].position, value, atol=1e-9)
    np.testing.assert_allclose(commands[-1].position, values[-1], atol=1e-12)  # then the last point held
    assert clock.now == pytest.approx(start + 60 * H)
    assert ex.counters() == {"chunks_accepted": 1, "steps_dropped": 0}
    # Observation -> first command using the chunk: the first tick whose due time reaches its first point.
    assert list(ex.latencies_s) == pytest.approx([DT - H])


def test_latency_compensation_drops_the_steps_already_due():
    ex = executor()
    clock = Clock(ex)
    ex.on_joint_state([0.3, 0.0], clock.mono)
    values = [[0.1 * (k + 1), 0.0] for k in range(5)]
    clock.add(values, stamp=clock.now - 0.25)  # points 1 and 2 (due at -0.15 and -0.05 s) are past
    command = clock.ticks(1)[0]
    assert ex.counts["steps_dropped"] == 2
    # The first command goes to where the chunk is now (0.3 at the stamp + 0.25 + 2 ticks), not to its first point.
    assert command.position[0] == pytest.approx(0.1 * (0.25 + 2 * H) / DT, abs=1e-9)
    assert list(ex.latencies_s) == pytest.approx([0.25 + H])
    with pytest.raises(ChunkRejected, match="in_the_past"):
        clock.add(values, stamp=clock.now - 1.0)
    with pytest.raises(ChunkRejected, match="from_the_future"):
        clock.add(values, stamp=clock.now + 2.0)
    with pytest.raises(ChunkRejected, match="wrong_frame"):
        clock.add(values, frame="camera_optical_frame")
    assert {k: v for k, v in ex.counters().items() if k.startswith("rejected")} == {
        "rejected_from_the_future": 1, "rejected_in_the_past": 1, "rejected_wrong_frame": 1}


@pytest.mark.parametrize("mode, expected", [("temporal_ensembling", (0.5 + 0.5 * 1.5) / 1.5),
                                            ("receding_horizon", 1.5)])
def test_ensembling_weights_the_older_chunk_receding_horizon_takes_the_newer(mode, expected):
    ex = executor(mode=mode, ensemble_decay=math.log(2.0), chunk_timeout_s=10.0)
    clock = Clock(ex)
    ex.on_joint_state([0.5, 0.0], clock.mono)
    clock.add([[0.5, 0.0]] * 10)
    clock.ticks(1)
    clock.add([[1.5, 0.0]] * 10)  # predicted one tick later
    commands = clock.ticks(60)
    assert commands[-1].position[0] == pytest.approx(expected, abs=1e-9)


def test_a_stale_chunk_decelerates_and_holds_until_a_fresh_one_arrives():
    ex = executor(velocity=1.0, acceleration=100.0, chunk_timeout_s=0.3)
    clock = Clock(ex)
    ex.on_joint_state([0.0, 0.0], clock.mono)
    clock.add([[0.1 * k, 0.0] for k in range(20)], stamp=clock.now - DT)  # 1 rad/s for 2 s, from now
    moving = clock.ticks(20)
    assert moving[-1].velocity[0] == pytest.approx(1.0)
    stopping = clock.ticks(30)
    held = [c for c in stopping if c is not None and c.holding == "stale_chunk"]
    assert held and ex.state == "holding: stale_chunk"
    speeds = [c.velocity[0] for c in held]
    assert speeds == sorted(speeds, reverse=True) and speeds[-1] == 0.0  # a ramp down at 50 rad/s^2: 2 ticks ...
    assert len(held) == 2 and stopping[-1] is None                         # ... then nothing more to send
    assert ex.counts["hold_stale_chunk"] == 1
    stop = ex.safety.position.copy()
    clock.add([stop + [0.01 * k, 0.0] for k in range(3)], stamp=clock.now - DT)
    resumed = clock.ticks(25)
    assert resumed[0] is not None and resumed[0].holding is None
    np.testing.assert_allclose(resumed[-1].position, stop + [0.02, 0.0], atol=1e-9)


def test_estop_holds_until_released_and_a_new_chunk_comes():
    ex = executor()
    clock = Clock(ex)
    ex.on_joint_state([0.0, 0.0], clock.mono)
    clock.add([[0.05 * (k + 1), 0.0] for k in range(20)])
    clock.ticks(10)
    ex.on_estop(True)
    stopped = clock.ticks(20)
    assert stopped[0].holding == "estop" and stopped[-1] is None
    where = ex.safety.position.copy()
    clock.add([[0.5, 0.0]] * 5)  # taken, but not followed during the e-stop, nor after it
    assert all(c is None for c in clock.ticks(10)) and ex.state == "holding: estop"
    np.testing.assert_allclose(ex.safety.position, where)
    ex.on_estop(False)
    # Released, the arm waits for new chunks, past the chunk timeout, without a stale-chunk hold.
    assert all(c is None for c in clock.ticks(60)) and ex.state == "waiting for a chunk"
    np.testing.assert_allclose(ex.safety.position, where)
    clock.add([[0.5, 0.0]] * 10)
    assert clock.ticks(20)[-1].position[0] == pytest.approx(0.5)
    assert ex.counts["hold_estop"] == 1 and ex.counts["hold_stale_chunk"] == 0


def test_heartbeat_monitoring():
    ex = executor(heartbeat_timeout_s=0.05)
    clock = Clock(ex)
    ex.on_joint_state([0.0, 0.0], clock.mono)
    clock.add([[0.0, 0.0]] * 20, stamp=clock.now - DT)
    clock.ticks(2)
    assert ex.state == "holding: no_heartbeat"
    ex.on_heartbeat(clock.mono)
    clock.add([[0.0, 0.0]] * 20, stamp=clock.now - DT)
    clock.ticks(3)
    assert ex.state == "following"
    clock.ticks(5)
    assert ex.state == "holding: heartbeat_lost"
    assert ex.counts["hold_no_heartbeat"] == 1 and ex.counts["hold_heartbeat_lost"] == 1


def test_stale_joint_states_hold():
    ex = executor(joint_state_timeout_s=0.05)
    clock = Clock(ex)
    ex.on_joint_state([0.0, 0.0], clock.mono)
    clock.add([[0.1 * k, 0.0] for k in range(20)], stamp=clock.now - DT)
    clock.ticks(5)
    assert ex.state == "following"
    clock.ticks(10, joint_states=False)
    assert ex.state == "holding: stale_joint_states" and ex.counts["hold_stale_joint_states"] == 1


def test_a_tracking_error_holds_and_restarts_from_the_measured_joints():
    ex = executor(max_tracking_error_rad=0.1)
    clock = Clock(ex)
    ex.on_joint_state([0.0, 0.0], clock.mono)
    clock.add([[0.1 * (k + 1), 0.0] for k in range(20)])
    clock.ticks(5)
    blocked = [0.0, 0.0]
    ex.on_joint_state(blocked, clock.mono)  # the arm has not moved at all
    commands = clock.ticks(30, feedback=False)
    held = next(c for c in commands if c is not None and c.holding == "tracking_error")
    np.testing.assert_allclose(held.position, blocked)
    np.testing.assert_allclose(held.velocity, 0.0)
    assert ex.counts["hold_tracking_error"] == 1


def test_gripper_targets_are_clamped_and_sent_when_they_change():
    ex = executor(chunk_timeout_s=10.0)
    clock = Clock(ex)
    ex.on_joint_state([0.0, 0.0], clock.mono)
    clock.add([[0.0, 0.0]] * 30, gripper=[0.04] * 10 + [0.0] * 10 + [0.09] * 10)
    sent = [c.gripper for c in clock.ticks(320) if c is not None and c.gripper is not None]
    assert sent[0] == pytest.approx(0.04) and min(sent) == 0.0 and max(sent) == 0.04
    assert len(sent) < 40  # only changes, not every tick
    assert ex.counts["limited_gripper_range"] > 0


def test_safety_interventions_are_counted():
    ex = executor(velocity=0.5)
    clock = Clock(ex)
    ex.on_joint_state([0.0, 0.0], clock.mono)
    clock.add([[1.0 * (k + 1), 5.0] for k in range(10)])  # too fast, and beyond joint b's upper limit
    clock.ticks(50)
    counters = ex.counters()
    assert counters["limited_velocity_limited"] > 0 and counters["limited_position_limited"] > 0
    assert np.all(ex.safety.position <= 2.0)


def test_config_is_validated():
    with pytest.raises(ValueError, match="valid modes: temporal_ensembling, receding_horizon"):
        ExecutorConfig(mode="replay")
    with pytest.raises(ValueError, match="chunk_timeout_s must be > 0"):
        ExecutorConfig(chunk_timeout_s=0.0)
    with pytest.raises(ValueError, match="heartbeat_timeout_s"):
        ExecutorConfig(heartbeat_timeout_s=-1.0)


def test_clock_follower_smooths_a_stepped_clock():
    follower = ClockFollower(window_s=0.5, max_lead_s=0.02)
    assert follower.now(0.0) is None
    rate, estimates, truth = 0.5, [], []
    for i in range(300):  # a simulator at half real time publishing its clock every 10 ms of sim time
        mono = i * 0.02
        follower.observe(mono + 0.0005 * (i % 3), 10.0 + rate * mono)  # receipt jitter
        for sub in (0.003, 0.007, 0.013, 0.017):
            estimates.append(follower.now(mono + sub))
            truth.append(10.0 + rate * (mono + sub))
    errors = np.abs(np.array(estimates) - truth)[100:]
    assert errors.max() < 0.001
    assert np.all(np.diff(estimates) >= 0)
    # A paused simulator: the estimate stops within max_lead of the last value.
    assert follower.now(100.0) == pytest.approx(10.0 + rate * 299 * 0.02 + 0.02)
    # A clock that goes back (a restarted simulator) starts over.
    assert follower.observe(101.0, 1.0)
    assert follower.now(101.0) == pytest.approx(1.0)


def test_the_shipped_parameter_file_names_declared_parameters_with_their_types():
    path = resource_path("config", "trajectory_controller.yaml")
    assert parameter_file_problems(path, "/**/trajectory_controller", parameters()) == []
