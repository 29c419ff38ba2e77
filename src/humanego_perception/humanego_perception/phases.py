"""Manipulation-phase segmentation of a human recording from its per-frame hand states.

The policy learns from the manipulation itself: approach -> grasp -> transport -> release. Idle time
before it teaches the robot to stand still at the start (zero-state actions), so the kept window
starts where the hand sets off towards the first grasp; after the final release it keeps
``post_release_s``, whose frames from ``finished_after_release_s`` on carry ``is_finished`` (the done
label the policy learns to predict).

- **Grasp intervals**: runs of ``grasp >= 0.5`` over the *valid* frames, so a grasp on both sides of
  frames without a hand is one grasp (the hand was lost, not the object); intervals shorter than
  ``min_grasp_s`` are ignored.
- **Start**: ``pre_grasp_s`` before the first grasp at the most; from there, frames until the hand has
  moved ``rest_radius_m`` away from where it was are the end of an idle stretch and trimmed (a hand
  still at its resting place has not begun the task; a pause just before grasping is far from the
  resting place, so it stays in).
- **Stop**: ``post_release_s`` after the final release (exclusive), or the end of the recording.
- **Phases** per frame: ``before`` / ``after`` outside the window; inside it ``grasp`` in a grasp
  interval, ``release`` after the final one, ``approach`` before a grasp.

Invalid hand frames inside the window stay invalid in :class:`HandStates`: the caller drops and counts
them. Durations are converted to frames at ``fps``. The window is defined by grasps: a recording without
one (including a push, where the hand never closes on the object) keeps nothing, reason "no grasp found".

Measured on 14 generated serve_bread demos (``benchmarks/hand_state.py``): the window holds every frame
the ground truth marks grasped and none of its 446 idle frames; it starts shortly after the hand sets
off (0.1-0.25 s: the first 1.5 cm of the reach) and keeps 2171 of 2887 frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humanego_core.config import option
from humanego_perception.hand_state import HandStates

PHASES = ("before", "approach", "grasp", "release", "after")


@dataclass
class PhaseConfig:
    pre_grasp_s: float = option(3.0, help="keep at most this much before the first grasp (s); idle time at its "
                                          "start is trimmed (rest_radius_m)", minimum=0.0)
    rest_radius_m: float = option(0.015, help="the window starts when the hand has moved this far from where it "
                                              "was pre_grasp_s before the first grasp; 0 = keep all of "
                                              "pre_grasp_s", minimum=0.0)
    post_release_s: float = option(1.0, help="keep this much after the final release (s)", minimum=0.0)
    min_grasp_s: float = option(0.3, help="grasps shorter than this (s) are ignored", minimum=0.0)
    finished_after_release_s: float = option(0.5, help="frames at least this long after the final release are "
                                                       "is_finished (the task is done)", minimum=0.0)


@dataclass
class Segmentation:
    start: int                   # first frame of the kept window
    stop: int                    # one past its last frame (start == stop: nothing kept)
    phase: np.ndarray            # (F,) str, one of PHASES
    is_finished: np.ndarray      # (F,) bool
    grasp_intervals: list[tuple[int, int]]  # (start, stop) frame indices, stop exclusive
    reason: str                  # "" or why nothing is kept


def grasp_intervals(hand: HandStates, fps: float, min_grasp_s: float) -> list[tuple[int, int]]:
    """(start, stop) of each grasp over the valid frames (bridging invalid ones), at least ``min_grasp_s`` long."""
    frames = np.flatnonzero(hand.valid)
    held = hand.grasp[frames] >= 0.5
    edges = np.flatnonzero(np.diff(held.astype(np.int8))) + 1
    starts, stops = np.r_[0, edges], np.r_[edges, held.size]
    min_frames = min_grasp_s * fps
    return [(int(frames[a]), int(frames[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)
            if b > a and held[a] and frames[b - 1] + 1 - frames[a] >= min_frames]


def _window_start(hand: HandStates, first_grasp: int, fps: float, config: PhaseConfig) -> int:
    earliest = max(0, first_grasp - int(round(config.pre_grasp_s * fps)))
    frames = earliest + np.flatnonzero(hand.valid[earliest:first_grasp])
    if config.rest_radius_m <= 0 or frames.size == 0:
        return earliest
    position = hand.T_world_hand[frames, :3, 3]
    moved = np.linalg.norm(position - position[0], axis=-1) >= config.rest_radius_m
    if not np.any(moved):
        return earliest
    # The last frame at rest: the first observation of the hand setting off.
    return int(frames[max(int(np.argmax(moved)) - 1, 0)])


def segment_manipulation(hand: HandStates, fps: float, config: PhaseConfig) -> Segmentation:
    """The manipulation window, per-frame phases and done labels of one hand's states (module docstring)."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n = hand.valid.size
    intervals = grasp_intervals(hand, fps, config.min_grasp_s)
    if not intervals:
        return Segmentation(start=0, stop=0, phase=np.full(n, "before"), is_finished=np.zeros(n, bool),
                            grasp_intervals=[],
                            reason="no grasp found" if np.any(hand.valid) else "no valid hand frames")
    release = intervals[-1][1]
    start = _window_start(hand, intervals[0][0], fps, config)
    stop = min(n, release + int(round(config.post_release_s * fps)))

    phase = np.full(n, "approach", dtype="<U8")
    phase[:start] = "before"
    phase[stop:] = "after"
    for a, b in intervals:
        phase[a:b] = "grasp"
    phase[release:stop] = "release"
    is_finished = np.zeros(n, bool)
    # Still holding at the end of the recording: release == n, nothing is finished.
    is_finished[min(n, release + int(round(config.finished_after_release_s * fps))):] = True
    return Segmentation(start=start, stop=stop, phase=phase, is_finished=is_finished, grasp_intervals=intervals,
                        reason="")
