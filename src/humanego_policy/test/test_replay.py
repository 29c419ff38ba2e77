"""The replay policy's chunks: the recorded hand trajectory sampled at the action steps, interpolated across
dropped frames, held at the end (done), with the last recorded grasp; retimed for a robot: lead-in, speed
cap, the hand still while the grasp changes."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import geometry
from humanego_policy.replay import DemoReplay, ReplayTiming

DT = 0.1


def pose(t: float) -> np.ndarray:
    """The test trajectory: 0.2 m/s along x from (0.3, 0, 0.2), turning about z at 0.5 rad/s."""
    return geometry.make_transform(Rotation.from_rotvec([0, 0, 0.5 * t]).as_matrix(), [0.3 + 0.2 * t, 0.0, 0.2])


def demo(times) -> DemoReplay:
    times = np.asarray(times, dtype=np.float64)
    return DemoReplay(times, np.stack([pose(t) for t in times]), (times >= 0.5).astype(float), times >= 0.8, DT)


def test_chunk_samples_the_trajectory_at_the_action_steps():
    replay = demo(np.arange(11) * DT)  # 0 .. 1 s
    poses, grasp, done = replay.chunk(0.25, 4)
    for k, T in enumerate(poses):
        np.testing.assert_allclose(T, pose(0.25 + (k + 1) * DT), atol=1e-9)
    # Grasp of the last frame at or before each step (0.35, 0.45: open; 0.55, 0.65: closed).
    np.testing.assert_array_equal(grasp, [0, 0, 1, 1])
    assert done == 0.0


def test_dropped_frames_are_interpolated():
    replay = demo([0.0, 0.1, 0.2, 0.6, 0.7])  # frames 0.3 .. 0.5 were dropped by preprocessing
    poses, _, _ = replay.chunk(0.1, 4)
    for k, T in enumerate(poses):  # straight line at constant speed and turn rate: interpolation is exact
        np.testing.assert_allclose(T, pose(0.1 + (k + 1) * DT), atol=1e-9)


def test_after_the_end_the_hand_holds_and_the_task_is_done():
    replay = demo(np.arange(11) * DT)
    poses, grasp, done = replay.chunk(0.9, 5)
    np.testing.assert_allclose(poses[0], pose(1.0), atol=1e-9)
    np.testing.assert_allclose(poses[1:], np.repeat(pose(1.0)[None], 4, axis=0), atol=1e-9)
    assert done == 1.0 and np.all(grasp == 1)  # is_finished from 0.8 s
    assert replay.chunk(5.0, 2)[2] == 1.0
    assert replay.chunk(0.0, 2)[2] == 0.0


def test_a_recording_without_preprocessed_frames_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="preprocess/all_data holds no training_data.json"):
        DemoReplay.load(tmp_path)


def test_retimed_holds_the_first_pose_caps_the_speed_and_stands_still_while_the_grasp_changes():
    recorded = demo(np.arange(11) * DT)  # 0.2 m/s, grasp closing between 0.4 and 0.5 s
    robot = recorded.retimed(ReplayTiming(speed=0.5, max_speed_m_s=0.05, lead_in_s=1.0, settle_s=0.2,
                                          grasp_dwell_s=0.6))
    # 0.02 m per 0.1 s recorded: 0.2 s at half speed, 0.4 s under the 0.05 m/s cap.
    expected = [0.0, 1.0] + [1.0 + 0.4 * k for k in range(1, 5)]  # lead-in, then frames 1..4
    expected += [expected[-1] + 0.2, expected[-1] + 0.8]  # frame 4 again (closed) after settling, then dwelling
    expected += [expected[-1] + 0.4 * k for k in range(1, 7)]  # frames 5..10
    np.testing.assert_allclose(robot.times, expected, atol=1e-12)
    np.testing.assert_array_equal(robot.grasp, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    for T, index in zip(robot.T_world_hand, [0, 0, 1, 2, 3, 4, 4, 4, 5, 6, 7, 8, 9, 10], strict=True):
        np.testing.assert_allclose(T, pose(index * DT), atol=1e-12)
    # Between the repeated frame-4 poses the hand stands still with the gripper closing.
    poses, grasp, _ = robot.chunk(expected[6] + 0.05, 3)
    np.testing.assert_allclose(poses, np.stack([pose(0.4)] * 3), atol=1e-12)
    np.testing.assert_array_equal(grasp, [1, 1, 1])


def test_as_recorded_timing_changes_nothing_and_bad_timing_is_refused():
    recorded = demo(np.arange(11) * DT)
    same = recorded.retimed(ReplayTiming())
    np.testing.assert_allclose(same.times, recorded.times, atol=1e-12)
    np.testing.assert_array_equal(same.grasp, recorded.grasp)
    with pytest.raises(ValueError, match="speed must be positive"):
        ReplayTiming(speed=0.0)
    with pytest.raises(ValueError, match="grasp_dwell_s must be >= 0"):
        ReplayTiming(grasp_dwell_s=float("nan"))


def test_retimed_caps_the_turning_speed():
    recorded = demo(np.arange(11) * DT)  # turning at 0.5 rad/s, moving at 0.2 m/s
    robot = recorded.retimed(ReplayTiming(max_speed_m_s=1.0, max_turn_rad_s=0.25))
    np.testing.assert_allclose(np.diff(robot.times), 0.2, atol=1e-9)  # 0.05 rad per step at 0.25 rad/s


def test_retimed_starts_the_approach_distance_before_the_first_grasp():
    recorded = demo(np.arange(11) * DT)  # 0.02 m per frame; the grasp closes at frame 5 (0.5 s)
    robot = recorded.retimed(ReplayTiming(approach_m=0.05))
    # Frames 3 (0.04 m of path before the grasp) onwards: the first within 0.05 m.
    np.testing.assert_allclose(robot.times, (np.arange(3, 11) - 3) * DT, atol=1e-12)
    for T, index in zip(robot.T_world_hand, range(3, 11), strict=True):
        np.testing.assert_allclose(T, pose(index * DT), atol=1e-12)
    np.testing.assert_array_equal(robot.grasp, recorded.grasp[3:])
    # Longer than the whole reach, or a hand that never grasps: every frame is played.
    assert len(recorded.retimed(ReplayTiming(approach_m=5.0)).times) == 11
    never = DemoReplay(recorded.times, recorded.T_world_hand, np.zeros(11), recorded.finished, DT)
    assert len(never.retimed(ReplayTiming(approach_m=0.05)).times) == 11
    with pytest.raises(ValueError, match="approach_m must be >= 0"):
        ReplayTiming(approach_m=-0.1)


def test_timing_from_the_policy_node_parameters():
    parameters = {"replay_speed": 0.5, "replay_max_speed": 0.3, "replay_max_turn": 0.6, "replay_lead_in_s": 2.0,
                  "replay_settle_s": 0.2, "replay_grasp_dwell_s": 0.6, "replay_approach_m": 0.2, "replay_loop": False}
    assert ReplayTiming.from_parameters(parameters) == ReplayTiming(0.5, 0.3, 0.6, 2.0, 0.2, 0.6, 0.2)
