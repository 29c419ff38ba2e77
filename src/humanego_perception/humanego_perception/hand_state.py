"""Per-frame hand state of a human recording: the HumanEgo hand pose in the world and a grasp flag.

Input: MPS hand tracking (21 landmarks and the wrist pose in the device frame, a confidence per hand and
row) and the MPS closed-loop trajectory (``T_world_device``); output: one :class:`HandStates` row per
RGB frame time. Offline preprocessing; no ROS.

Steps (all vectorised over frames):

1. **Rows.** A hand-tracking row counts when the hand is seen with confidence >= ``min_confidence``,
   its landmarks define a hand frame and the trajectory covers its time. Its landmarks and wrist go to
   the world with ``T_world_device`` at the row's own time (the head moves; the hand is what is smooth
   in the world), and its hand frame is :func:`humanego_core.hand.hand_frame` (DESIGN.md section 5).
2. **Frames.** A frame is *tracked* when a valid row lies within ``max_time_offset_s``. Its state is
   interpolated between the valid rows before and after it when they are at most ``max_gap_s`` apart
   (SLERP + linear on the hand and wrist poses, linear on the landmarks), else it is the nearest row.
   A frame with no valid row that near is *filled* the same way when the valid rows around it are at
   most ``max_gap_s`` apart (``filled`` True); when they are further apart it is invalid with reason
   ``gap_too_long``. Frames before the first or after the last valid row are never extrapolated: they
   keep the reason of the nearest row (``not_tracked`` when there is none within ``max_time_offset_s``
   or the hand is not seen, ``low_confidence``); a frame the trajectory does not cover is
   ``no_trajectory`` and never filled (it has no device pose).
3. **Smoothing.** A centred Gaussian in time (standard deviation ``smoothing_s``) over each run of
   consecutive valid frames, never across an invalid frame: landmarks and positions are averaged,
   rotations by the normalised weighted mean of their hemisphere-aligned quaternions (scipy's chordal
   L2 mean ``Rotation.mean`` to third order in the spread of rotations a few frames apart).
4. **Grasp** (HumanEgo: thumb-index tip distance under a threshold, box-filtered, flicker-suppressed).
   The pinch distance of the smoothed landmarks is box-filtered over ``grasp_box_frames`` within each
   valid run, then thresholded with hysteresis: a grasp starts when the filtered distance closes to
   ``grasp_close_m`` or below and ends above ``grasp_open_m``. Unlike HumanEgo, a pinch under
   ``grasp_min_m`` is *empty* (fingertips nearly touching: no object between them): no grasp, and an
   empty pinch must open above ``grasp_open_m`` before it can grasp again (a hand opening from rest
   passes through the grasp band holding nothing); ``grasp_min_m: 0`` is HumanEgo's rule with
   hysteresis. Then releases and grasps shorter than ``min_grasp_change_frames`` are removed, in that
   order (a short release inside a grasp is filled first, so it cannot split the grasp into two short
   ones that would then vanish).

Why these grasp defaults (``python benchmarks/hand_state.py``: 14 generated serve_bread demos, seeds 0-13,
2887 frames; thumb-index tip distance of the MPS-style landmarks in the files, noise 3 mm per coordinate,
split by the simulator's ground truth):

===================  ===========================================================================
frames               pinch distance (m): min / 5 % / median / 95 % / max
===================  ===========================================================================
grasped (960)        0.051 / 0.058 / 0.065 / 0.073 / 0.078
not grasped (1927)   0.019 / 0.027 / 0.076 / 0.104 / 0.114, two modes:
- idle (446)         0.020 / 0.024 / 0.030 / 0.038 / 0.041  (relaxed hand at rest)
- descend (244)      0.086 / 0.090 / 0.098 / 0.107 / 0.114  (hand opened before grasping)
===================  ===========================================================================

The demonstrator opens its pinch to at most 0.11 m (0.09-0.11 m before a grasp), so HumanEgo's 0.105 m
marks every frame of these demos as grasped (F1 0.50); and its relaxed hand rests at 0.03 m, closer than
any grasp, which a single upper threshold also calls a grasp. The defaults put ``grasp_close_m`` /
``grasp_open_m`` (0.078 / 0.082) between the grasped and the opened hand, ``grasp_min_m`` (0.045) between
the resting hand and the narrowest simulated grasp (put_in_bowl's 4.5 cm cube: 0.06 m), and
``min_grasp_change_frames`` (10) removes the pinch passing through the grasp band while the hand closes
back to rest (0.17-0.32 s). Measured with them: grasp F1 0.973 pooled, 0.959-0.983 per demo (the misses
are the 2-4 frames at each release where the ground truth has let go before the fingers open); put_in_bowl
0.943-0.966. Real hands open wider before grasping and relax differently: for real recordings check the
report's pinch distances; ``grasp_close_m: 0.105, grasp_open_m: 0.105, grasp_min_m: 0`` is HumanEgo's
rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from humanego_core import geometry
from humanego_core.config import ConfigError, option
from humanego_core.hand import hand_frame, pinch_distance
from humanego_drivers.mps import HANDS, HandTracking, Trajectory

REASONS = ("not_tracked", "low_confidence", "gap_too_long", "no_trajectory")
# Gaussian weights beyond this many standard deviations are negligible (< 1.2 %).
_GAUSSIAN_TRUNCATE = 3.0


@dataclass
class HandStateConfig:
    min_confidence: float = option(0.5, help="MPS hand-tracking confidence below which a hand counts as not "
                                             "tracked (MPS reports 0.9-1.0 for clearly seen hands)",
                                   minimum=0.0, maximum=1.0)
    max_gap_s: float = option(0.2, help="gaps in the tracking up to this long (time between the valid rows "
                                        "around them) are filled by interpolation; longer ones stay invalid",
                              minimum=0.0)
    smoothing_s: float = option(0.05, help="standard deviation of the centred Gaussian (s) smoothing landmarks "
                                           "and poses over time within runs of valid frames; 0 = off",
                                minimum=0.0, maximum=1.0)
    grasp_close_m: float = option(0.078, help="filtered thumb-index tip distance at or below which a grasp "
                                             "starts (HumanEgo: 0.105)", minimum=0.0)
    grasp_open_m: float = option(0.082, help="filtered thumb-index tip distance above which a grasp ends "
                                             "(hysteresis; >= grasp_close_m)", minimum=0.0)
    grasp_min_m: float = option(0.045, help="a pinch closer than this is empty (no object between the "
                                            "fingertips): no grasp; 0 = off (HumanEgo)", minimum=0.0)
    grasp_box_frames: int = option(5, help="width (frames) of the box filter on the pinch distance before "
                                           "thresholding; 1 = off", minimum=1, maximum=301)
    min_grasp_change_frames: int = option(10, help="flicker suppression: grasps and releases lasting fewer "
                                                   "frames are removed; 1 = off", minimum=1, maximum=1000)
    max_time_offset_s: float = option(0.02, help="an RGB frame with no valid hand-tracking row within this "
                                                 "(s) is not tracked (it may still be gap-filled)",
                                      minimum=0.0, maximum=1.0)

    def __post_init__(self):
        if self.grasp_open_m < self.grasp_close_m:
            raise ConfigError("hand state config", "grasp_open_m", f"must be >= grasp_close_m ({self.grasp_close_m}) "
                              f"for hysteresis, got {self.grasp_open_m}")
        if self.grasp_min_m > self.grasp_close_m:
            raise ConfigError("hand state config", "grasp_min_m", f"must be <= grasp_close_m ({self.grasp_close_m}), "
                              f"got {self.grasp_min_m}")


@dataclass
class HandStates:
    """One hand's state per RGB frame; invalid frames hold identity poses and zeros, never NaN."""

    side: str
    t_ns: np.ndarray             # (F,) int64 RGB frame device times
    valid: np.ndarray            # (F,) bool
    reason: np.ndarray           # (F,) str: "" if valid, else one of REASONS
    T_world_hand: np.ndarray     # (F, 4, 4) HumanEgo hand frame (DESIGN.md section 5)
    T_world_wrist: np.ndarray    # (F, 4, 4) MPS wrist frame
    landmarks_world: np.ndarray  # (F, 21, 3)
    landmarks_device: np.ndarray  # (F, 21, 3) in the device frame at the frame's time
    pinch_distance_m: np.ndarray  # (F,) thumb-index tip distance of the smoothed landmarks
    grasp: np.ndarray            # (F,) float 0.0 / 1.0
    filled: np.ndarray           # (F,) bool: gap-filled (valid, interpolated over missing tracking)

    def counts(self) -> dict[str, int]:
        """Frames per outcome: ``valid`` and each of :data:`REASONS` (zeros included)."""
        return {"valid": int(np.sum(self.valid)), **{r: int(np.sum(self.reason == r)) for r in REASONS}}


def _check_inputs(frame_t_ns, side: str) -> np.ndarray:
    if side not in HANDS:
        raise ValueError(f"side must be one of {HANDS}, got {side!r}")
    t = np.asarray(frame_t_ns)
    if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"frame_t_ns must be a 1-D integer array of device times (ns), got {t.dtype} {t.shape}")
    if t.size == 0:
        raise ValueError("frame_t_ns is empty: a recording without RGB frames has no hand states")
    if np.any(np.diff(t) <= 0):
        k = int(np.argmax(np.diff(t) <= 0)) + 1
        raise ValueError(f"frame_t_ns must strictly increase: frame {k} ({t[k]} ns) is not after frame {k - 1} "
                         f"({t[k - 1]} ns)")
    return t.astype(np.int64)


def _nearest_row(row_t: np.ndarray, t: np.ndarray, max_offset_ns: int) -> np.ndarray:
    """Index of the row nearest to each time, -1 where none lies within ``max_offset_ns``."""
    if row_t.size == 0:
        return np.full(t.shape, -1)
    right = np.clip(np.searchsorted(row_t, t), 0, row_t.size - 1)
    left = np.clip(right - 1, 0, row_t.size - 1)
    nearest = np.where(np.abs(row_t[left] - t) <= np.abs(row_t[right] - t), left, right)
    return np.where(np.abs(row_t[nearest] - t) <= max_offset_ns, nearest, -1)


def _usable_rows(tracking: HandTracking, side: str, min_confidence: float) -> np.ndarray:
    return tracking.seen(side) & (tracking.confidence[side] >= min_confidence)


def choose_side(tracking: HandTracking, frame_t_ns, config: HandStateConfig) -> str:
    """The hand tracked at the most frames (a valid row within ``max_time_offset_s``), ties broken by the
    summed confidence, then "right": the acting hand of a single-arm task."""
    t = _check_inputs(frame_t_ns, "right")
    offset_ns = round(config.max_time_offset_s * 1e9)
    scores = {}
    for side in HANDS:
        usable = np.flatnonzero(_usable_rows(tracking, side, config.min_confidence))
        nearest = _nearest_row(tracking.t_ns[usable], t, offset_ns)
        hit = usable[nearest[nearest >= 0]]
        scores[side] = (hit.size, float(np.sum(tracking.confidence[side][hit])))
    return "left" if scores["left"] > scores["right"] else "right"


def _row_poses(tracking: HandTracking, trajectory: Trajectory, side: str, config: HandStateConfig):
    """Valid rows (indices) and their world landmarks, hand and wrist poses; the row's reason otherwise."""
    n = tracking.t_ns.size
    reason = np.full(n, "", dtype=object)
    seen = tracking.seen(side)
    reason[~seen] = "not_tracked"
    reason[seen & (tracking.confidence[side] < config.min_confidence)] = "low_confidence"
    reason[(reason == "") & ~trajectory.contains(tracking.t_ns)] = "no_trajectory"
    L_device = tracking.landmarks[side]
    # A seen hand whose landmarks define no frame (coincident points) carries no pose.
    candidates = np.flatnonzero(reason == "")
    if candidates.size:
        degenerate = ~_has_hand_frame(L_device[candidates])
        reason[candidates[degenerate]] = "not_tracked"
    rows = np.flatnonzero(reason == "")
    if rows.size == 0:
        return rows, np.zeros((0, 21, 3)), np.zeros((0, 4, 4)), np.zeros((0, 4, 4)), reason
    T_world_device = trajectory.at(tracking.t_ns[rows])
    L_world = geometry.transform_points(T_world_device, L_device[rows])
    return rows, L_world, hand_frame(L_world), T_world_device @ tracking.T_device_wrist[side][rows], reason


def _has_hand_frame(landmarks: np.ndarray) -> np.ndarray:
    """(N,) bool: hand_frame succeeds on each (21, 3) landmark set (checked in one batch when possible)."""
    try:
        hand_frame(landmarks)
        return np.ones(len(landmarks), bool)
    except geometry.GeometryError:
        ok = np.zeros(len(landmarks), bool)
        for i, L in enumerate(landmarks):
            try:
                hand_frame(L)
                ok[i] = True
            except geometry.GeometryError:
                pass
        return ok


def _runs(valid: np.ndarray) -> np.ndarray:
    """Run id per frame: consecutive valid frames share one; invalid frames get -1."""
    starts = valid & ~np.r_[False, valid[:-1]]
    return np.where(valid, np.cumsum(starts) - 1, -1)


def _window_offsets(t_s: np.ndarray, half_width_s: float) -> range:
    """Frame offsets covering ``half_width_s`` either side at the typical (median) frame spacing."""
    step = float(np.median(np.diff(t_s))) if t_s.size > 1 else 1.0
    k = int(min(math.ceil(half_width_s / step), t_s.size))
    return range(-k, k + 1)


def _gaussian_weights(t_s: np.ndarray, run: np.ndarray, sigma_s: float):
    """Yield (neighbour index, weight) per frame offset: a Gaussian in time, zero outside the frame's run."""
    n = t_s.size
    idx = np.arange(n)
    for k in _window_offsets(t_s, _GAUSSIAN_TRUNCATE * sigma_s):
        j = np.clip(idx + k, 0, n - 1)
        z = (t_s[j] - t_s) / sigma_s
        same = (run[j] == run) & (run >= 0) & (idx + k == j) & (np.abs(z) <= _GAUSSIAN_TRUNCATE)
        yield j, np.where(same, np.exp(-0.5 * z**2), 0.0)


def _smooth_values(values: np.ndarray, t_s: np.ndarray, run: np.ndarray, sigma_s: float) -> np.ndarray:
    """Gaussian-weighted mean over the first axis (time) within runs; frames outside runs are unchanged."""
    total = np.zeros_like(values)
    weight = np.zeros(len(values))
    for j, w in _gaussian_weights(t_s, run, sigma_s):
        total += w.reshape((-1,) + (1,) * (values.ndim - 1)) * values[j]
        weight += w
    inside = run >= 0
    out = values.copy()
    out[inside] = total[inside] / weight[inside].reshape((-1,) + (1,) * (values.ndim - 1))
    return out


def _smooth_poses(T: np.ndarray, t_s: np.ndarray, run: np.ndarray, sigma_s: float) -> np.ndarray:
    """Gaussian smoothing of poses: positions averaged, rotations as the normalised mean of their quaternions,
    each neighbour's sign flipped into the hemisphere of the frame's own quaternion."""
    position, q = geometry.pos_quat_from_transform(T)
    total = np.zeros_like(q)
    for j, w in _gaussian_weights(t_s, run, sigma_s):
        sign = np.sign(np.sum(q[j] * q, axis=-1))
        total += (w * np.where(sign == 0, 1.0, sign))[:, None] * q[j]
    inside = run >= 0
    q_out = q.copy()
    q_out[inside] = total[inside] / np.linalg.norm(total[inside], axis=-1, keepdims=True)
    return geometry.transform_from_pos_quat(_smooth_values(position, t_s, run, sigma_s), q_out)


def _box_filter(values: np.ndarray, run: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` frames within runs (shorter at run ends); 0 outside runs."""
    n = values.size
    idx = np.arange(n)
    total = np.zeros(n)
    count = np.zeros(n)
    for k in range(-(width // 2), width - width // 2):
        j = np.clip(idx + k, 0, n - 1)
        same = (run[j] == run) & (run >= 0) & (idx + k == j)
        total += np.where(same, values[j], 0.0)
        count += same
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _hysteresis(distance: np.ndarray, run: np.ndarray, config: HandStateConfig) -> np.ndarray:
    """Grasp per frame from the filtered pinch distance, a three-state machine per run of valid frames.

    ``open`` (above ``grasp_close_m``) -> ``grasp`` when the pinch closes into [grasp_min_m, grasp_close_m];
    ``grasp`` -> ``open`` above ``grasp_open_m``, -> ``empty`` under ``grasp_min_m``; ``empty`` (a closed
    pinch) -> ``open`` only above ``grasp_open_m``: a hand opening from rest passes through the grasp band
    holding nothing. A run starts in the state its first distance lies in.
    """
    grasp = np.zeros(distance.size, bool)
    state = ""
    for i, d in enumerate(distance):
        if run[i] < 0:
            continue
        if i == 0 or run[i - 1] != run[i]:
            state = "empty" if d < config.grasp_min_m else "grasp" if d <= config.grasp_close_m else "open"
        elif d < config.grasp_min_m:
            state = "empty"
        elif d > config.grasp_open_m:
            state = "open"
        elif state == "open" and d <= config.grasp_close_m:
            state = "grasp"
        grasp[i] = state == "grasp"
    return grasp


def _segments(values: np.ndarray) -> list[tuple[int, int, bool]]:
    """(start, stop, value) of the runs of equal values of a 1-D bool array."""
    if values.size == 0:
        return []
    edges = np.flatnonzero(np.diff(values.astype(np.int8))) + 1
    starts = np.r_[0, edges]
    stops = np.r_[edges, values.size]
    return [(int(a), int(b), bool(values[a])) for a, b in zip(starts, stops, strict=True)]


def suppress_flicker(grasp: np.ndarray, run: np.ndarray, min_frames: int) -> np.ndarray:
    """Within each run of valid frames: releases shorter than ``min_frames`` between two grasps become grasp,
    then grasps shorter than ``min_frames`` are removed. Frames outside runs (run -1) stay False."""
    out = grasp.copy()
    for r in np.unique(run[run >= 0]):
        frames = np.flatnonzero(run == r)
        values = out[frames]
        pieces = _segments(values)
        for k, (a, b, v) in enumerate(pieces):
            if not v and 0 < k < len(pieces) - 1 and b - a < min_frames:
                values[a:b] = True
        for a, b, v in _segments(values):
            if v and b - a < min_frames:
                values[a:b] = False
        out[frames] = values
    return out


def estimate_hand_states(tracking: HandTracking, trajectory: Trajectory, frame_t_ns, side: str,
                         config: HandStateConfig) -> HandStates:
    """The hand ``side``'s pose, landmarks and grasp at each RGB frame time (see the module docstring)."""
    t = _check_inputs(frame_t_ns, side)
    n = t.size
    offset_ns = round(config.max_time_offset_s * 1e9)
    gap_ns = round(config.max_gap_s * 1e9)
    rows, L_rows, T_hand_rows, T_wrist_rows, row_reason = _row_poses(tracking, trajectory, side, config)
    row_t = tracking.t_ns[rows]

    # The valid rows around each frame (before: t_row <= t, after: t_row >= t) and the time between them.
    after = np.searchsorted(row_t, t, side="left")
    before = np.searchsorted(row_t, t, side="right") - 1
    has_both = (before >= 0) & (after < rows.size)
    b, a = np.where(has_both, before, 0), np.where(has_both, after, 0)
    short_span = has_both & (row_t[a] - row_t[b] <= gap_ns) if rows.size else np.zeros(n, bool)
    nearest = _nearest_row(row_t, t, offset_ns)
    on_trajectory = trajectory.contains(t)

    tracked = (nearest >= 0) & on_trajectory
    filled = ~tracked & short_span & on_trajectory
    valid = tracked | filled
    # Why a frame is invalid, most specific last: the nearest row's own reason (no row: not tracked).
    any_row = _nearest_row(tracking.t_ns, t, offset_ns)
    reason = np.where(any_row >= 0, row_reason[np.maximum(any_row, 0)], "not_tracked").astype(object)
    reason[has_both] = "gap_too_long"
    reason[~on_trajectory] = "no_trajectory"
    reason[valid] = ""

    T_world_hand = geometry.identity((n,))
    T_world_wrist = geometry.identity((n,))
    L_world = np.zeros((n, 21, 3))
    interpolate = valid & short_span
    i = np.flatnonzero(interpolate)
    if i.size:
        lo, hi = b[i], a[i]
        width = (row_t[hi] - row_t[lo]).astype(np.float64)
        alpha = np.where(width > 0, (t[i] - row_t[lo]) / np.where(width > 0, width, 1.0), 0.0)
        T_world_hand[i] = geometry.interpolate(T_hand_rows[lo], T_hand_rows[hi], alpha)
        T_world_wrist[i] = geometry.interpolate(T_wrist_rows[lo], T_wrist_rows[hi], alpha)
        L_world[i] = (1.0 - alpha)[:, None, None] * L_rows[lo] + alpha[:, None, None] * L_rows[hi]
    i = np.flatnonzero(valid & ~short_span)
    T_world_hand[i] = T_hand_rows[nearest[i]]
    T_world_wrist[i] = T_wrist_rows[nearest[i]]
    L_world[i] = L_rows[nearest[i]]

    run = _runs(valid)
    t_s = (t - t[0]) * 1e-9
    if config.smoothing_s > 0 and np.any(valid):
        L_world = _smooth_values(L_world, t_s, run, config.smoothing_s)
        T_world_hand = _smooth_poses(T_world_hand, t_s, run, config.smoothing_s)
        T_world_wrist = _smooth_poses(T_world_wrist, t_s, run, config.smoothing_s)

    L_device = np.zeros((n, 21, 3))
    i = np.flatnonzero(valid)
    if i.size:
        L_device[i] = geometry.transform_points(geometry.invert(trajectory.at(t[i])), L_world[i])
    pinch = np.where(valid, pinch_distance(L_world), 0.0)
    grasp = _hysteresis(_box_filter(pinch, run, config.grasp_box_frames), run, config)
    grasp = suppress_flicker(grasp, run, config.min_grasp_change_frames)
    return HandStates(side=side, t_ns=t, valid=valid, reason=reason.astype(str), T_world_hand=T_world_hand,
                      T_world_wrist=T_world_wrist, landmarks_world=L_world, landmarks_device=L_device,
                      pinch_distance_m=pinch, grasp=grasp.astype(np.float64), filled=filled)


def grasp_f1(predicted, label) -> float:
    """F1 of predicted >= 0.5 against label >= 0.5 (DESIGN.md section 6); 1.0 when both have no positives."""
    p = np.asarray(predicted, dtype=np.float64) >= 0.5
    y = np.asarray(label, dtype=np.float64) >= 0.5
    tp, fp, fn = int(np.sum(p & y)), int(np.sum(p & ~y)), int(np.sum(~p & y))
    return 1.0 if tp + fp + fn == 0 else 2.0 * tp / (2.0 * tp + fp + fn)
