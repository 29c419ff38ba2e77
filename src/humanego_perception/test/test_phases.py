"""humanego_perception.phases on hand states with hand-computed windows (the simulator demo is checked in
test_hand_state.py, which generates it)."""

import dataclasses

import numpy as np
import pytest

from humanego_core import geometry
from humanego_perception.hand_state import HandStates
from humanego_perception.phases import PHASES, PhaseConfig, grasp_intervals, segment_manipulation

FPS = 30.0
REST = np.array([0.1, -0.2, 0.85])
OBJECT = np.array([0.4, 0.0, 0.85])  # 0.36 m from REST


def states(grasp, positions, valid=None) -> HandStates:
    n = len(grasp)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    T = geometry.identity((n,))
    T[:, :3, 3] = positions
    T[~valid] = np.eye(4)
    return HandStates(side="right", t_ns=np.arange(n, dtype=np.int64) * 33_333_333, valid=valid,
                      reason=np.where(valid, "", "not_tracked"), T_world_hand=T, T_world_wrist=T.copy(),
                      landmarks_world=np.zeros((n, 21, 3)), landmarks_device=np.zeros((n, 21, 3)),
                      pinch_distance_m=np.zeros(n), grasp=np.where(valid, np.asarray(grasp, float), 0.0),
                      filled=np.zeros(n, bool))


def reach_and_carry(n=300, rest_until=50, arrive=100, grasp=(100, 200)):
    """Rest until ``rest_until``, a straight reach to the object by ``arrive``, a grasp, then the hand stays."""
    s = np.clip((np.arange(n) - rest_until) / (arrive - rest_until), 0.0, 1.0)
    positions = REST + s[:, None] * (OBJECT - REST)
    held = np.zeros(n)
    held[grasp[0]:grasp[1]] = 1.0
    return held, positions


def test_window_from_reach_onset_to_after_release_with_phases_and_done_labels():
    held, positions = reach_and_carry()
    seg = segment_manipulation(states(held, positions), FPS, PhaseConfig(pre_grasp_s=3.0, rest_radius_m=0.015,
                                                                          post_release_s=1.0,
                                                                          finished_after_release_s=0.5))
    # The hand leaves the 1.5 cm rest ball at frame 53 (0.36 m over 50 frames: 7.2 mm per frame), so frame 52
    # is the last at rest; the window ends 30 frames after the release at 200.
    assert (seg.start, seg.stop, seg.reason) == (52, 230, "")
    assert seg.grasp_intervals == [(100, 200)]
    expected = np.array(["before"] * 52 + ["approach"] * 48 + ["grasp"] * 100 + ["release"] * 30 + ["after"] * 70)
    np.testing.assert_array_equal(seg.phase, expected)
    assert set(seg.phase) <= set(PHASES)
    np.testing.assert_array_equal(np.flatnonzero(seg.is_finished), np.arange(215, 300))

    # Without rest trimming the window starts pre_grasp_s (90 frames) before the grasp.
    assert segment_manipulation(states(held, positions), FPS, PhaseConfig(rest_radius_m=0.0)).start == 10
    # A hand already moving pre_grasp_s before the grasp (frame 70): only the frames still within rest_radius_m
    # of where it was are trimmed (7.2 mm per frame: 2 frames).
    assert segment_manipulation(states(held, positions), FPS, PhaseConfig(pre_grasp_s=1.0)).start == 72
    # A grasp at the very start and one still held at the end.
    early, _ = reach_and_carry(grasp=(0, 40))
    assert segment_manipulation(states(early, positions), FPS, PhaseConfig()).start == 0
    late, _ = reach_and_carry(grasp=(100, 300))
    seg = segment_manipulation(states(late, positions), FPS, PhaseConfig())
    assert seg.stop == 300 and not seg.is_finished.any() and seg.phase[-1] == "grasp"


def test_pause_before_the_grasp_is_kept():
    held, positions = reach_and_carry()
    positions[80:100] = positions[80]  # the hand hovers above the object for 20 frames before grasping
    positions[100:] = positions[80]
    seg = segment_manipulation(states(held, positions), FPS, PhaseConfig())
    assert seg.start < 60


def test_grasps_bridge_lost_hand_frames_and_short_grasps_are_ignored():
    n = 330
    held, positions = reach_and_carry(n)
    valid = np.ones(n, bool)
    valid[150:156] = False           # the hand lost mid-carry: still one grasp
    held[150:156] = 0.0
    held[230:240] = 1.0              # a second, 10-frame (0.33 s) grasp
    held[270:275] = 1.0              # a 5-frame blip (0.17 s): ignored
    hand = states(held, positions, valid)
    assert grasp_intervals(hand, FPS, 0.3) == [(100, 200), (230, 240)]
    assert grasp_intervals(hand, FPS, 0.0) == [(100, 200), (230, 240), (270, 275)]
    seg = segment_manipulation(hand, FPS, PhaseConfig(min_grasp_s=0.3))
    assert seg.grasp_intervals == [(100, 200), (230, 240)]
    assert seg.stop == 270
    assert set(seg.phase[150:156]) == {"grasp"} and set(seg.phase[200:230]) == {"approach"}
    assert set(seg.phase[240:270]) == {"release"} and set(seg.phase[270:]) == {"after"}
    assert seg.is_finished[255] and not seg.is_finished[254]


def test_no_grasp_keeps_nothing_and_says_why():
    n = 120
    _, positions = reach_and_carry(n, rest_until=20, arrive=60)
    for hand, reason in ((states(np.zeros(n), positions), "no grasp found"),
                         (states(np.r_[np.zeros(60), np.ones(5), np.zeros(55)], positions), "no grasp found"),
                         (states(np.ones(n), positions, np.zeros(n, bool)), "no valid hand frames")):
        seg = segment_manipulation(hand, FPS, PhaseConfig())
        assert seg.reason == reason
        assert seg.start == seg.stop == 0 and seg.grasp_intervals == []
        assert set(seg.phase) == {"before"} and not seg.is_finished.any()
    with pytest.raises(ValueError, match="fps must be positive"):
        segment_manipulation(states(np.zeros(n), positions), 0.0, PhaseConfig())


def test_durations_scale_with_fps():
    held, positions = reach_and_carry(600, rest_until=100, arrive=200, grasp=(200, 400))
    config = dataclasses.replace(PhaseConfig(), rest_radius_m=0.0)
    seg = segment_manipulation(states(held, positions), 60.0, config)
    assert (seg.start, seg.stop) == (200 - 180, 400 + 60)
    assert np.flatnonzero(seg.is_finished)[0] == 430
