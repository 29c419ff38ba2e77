"""humanego_perception.hand_state on hand-computed cases built in memory, the real MPS sample, and a generated
serve_bread demo against the simulator's ground truth."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation, Slerp

from humanego_core import geometry
from humanego_core.config import ConfigError, from_dict
from humanego_core.hand import hand_frame
from humanego_drivers import mps
from humanego_perception.hand_state import (
    REASONS,
    HandStateConfig,
    choose_side,
    estimate_hand_states,
    grasp_f1,
)
from humanego_perception.phases import PhaseConfig, segment_manipulation
from humanego_sim.aria_recording import Recording
from humanego_sim.generate_demos import generate

MPS_SAMPLE = Path("/work/shared/data/aria/mps_sample")
FRAME_NS = 33_333_000  # 30 Hz, whole microseconds like MPS rows
RNG = np.random.default_rng(7)

# A hand in its own coordinates whose HumanEgo frame is known by hand: THUMB_INTERMEDIATE (6) and
# INDEX_PROXIMAL (8) on the x axis, their midpoint (0, 0, 0) straight above the WRIST (5) along y,
# so the axes are the identity; origin = midpoint of THUMB_FINGERTIP (0) and INDEX_FINGERTIP (1).
LOCAL = RNG.uniform(-0.08, 0.08, (21, 3))
LOCAL[6], LOCAL[8], LOCAL[5] = (-0.03, 0.0, 0.0), (0.03, 0.0, 0.0), (0.0, -0.08, 0.0)
LOCAL[0], LOCAL[1] = (-0.01, 0.09, 0.0), (0.03, 0.09, 0.02)
LOCAL_HAND_ORIGIN = np.array([0.01, 0.09, 0.01])
LOCAL_PINCH = math.hypot(0.04, 0.02)
T_LOCAL_WRIST = geometry.make_transform(Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix(),
                                        [0.0, -0.08, 0.0])


def tracking(t_ns, landmarks_device, confidence, T_device_wrist=None, side="right") -> mps.HandTracking:
    """In-memory MPS hand tracking: ``side`` as given, the other hand never seen (as MPS writes it)."""
    t_ns = np.asarray(t_ns, np.int64)
    n = t_ns.size
    other = "left" if side == "right" else "right"
    wrist = geometry.identity((n,)) if T_device_wrist is None else T_device_wrist
    return mps.HandTracking(
        path=Path("<memory>"), schema="v1", t_ns=t_ns,
        confidence={side: np.asarray(confidence, float), other: -np.ones(n)},
        T_device_wrist={side: wrist, other: geometry.identity((n,))},
        landmarks={side: np.asarray(landmarks_device, float), other: np.zeros((n, 21, 3))},
        palm_normal=None, wrist_normal=None)


def trajectory(t_ns, T_world_device) -> mps.Trajectory:
    t_ns = np.asarray(t_ns, np.int64)
    return mps.Trajectory(path=Path("<memory>"), t_ns=t_ns, T_world_device=np.asarray(T_world_device, float),
                          quality=np.ones(t_ns.size))


def still_device(t_ns) -> mps.Trajectory:
    return trajectory([t_ns[0] - 10**9, t_ns[-1] + 10**9], geometry.identity((2,)))


def rows(n, start_ns=10**9):
    return start_ns + FRAME_NS * np.arange(n, dtype=np.int64)


def config(**changes) -> HandStateConfig:
    return dataclasses.replace(HandStateConfig(), **changes)


def assert_clean(states, n):
    """Shapes of the contract, no NaN/inf anywhere, identity/zeros where invalid, rigid poses where valid."""
    for name in ("T_world_hand", "T_world_wrist", "landmarks_world", "landmarks_device", "pinch_distance_m", "grasp"):
        array = getattr(states, name)
        assert array.shape[0] == n and np.all(np.isfinite(array)), name
    bad = ~states.valid
    np.testing.assert_array_equal(states.T_world_hand[bad], geometry.identity((int(bad.sum()),)))
    np.testing.assert_array_equal(states.T_world_wrist[bad], geometry.identity((int(bad.sum()),)))
    assert not np.any(states.landmarks_world[bad]) and not np.any(states.landmarks_device[bad])
    assert not np.any(states.grasp[bad]) and not np.any(states.pinch_distance_m[bad])
    assert not np.any(states.filled & bad)
    assert set(states.reason[bad]) <= set(REASONS) and set(states.reason[states.valid]) <= {""}
    if states.valid.any():
        geometry.check_transform(states.T_world_hand[states.valid], "T_world_hand")
        geometry.check_transform(states.T_world_wrist[states.valid], "T_world_wrist")


# ----- hand frame and frames of reference -----
def test_hand_frame_of_a_hand_still_in_the_world_seen_from_a_moving_head():
    # Device: constant-rate yaw and constant velocity, sampled at 10 Hz; between samples the trajectory's
    # SLERP + linear interpolation is then exact, so the reference is the closed form.
    omega, v = 0.9, np.array([0.2, -0.1, 0.05])
    R0 = Rotation.from_euler("xyz", [80, 5, -30], degrees=True)

    def T_world_device(t_s):
        R = Rotation.from_rotvec(np.outer(t_s, [0, 0, omega])) * R0
        return geometry.make_transform(R.as_matrix(), np.array([0.1, 0.2, 1.5]) + np.outer(t_s, v))

    t0 = 5 * 10**9
    traj_t = t0 + np.arange(0, 12) * 100_000_000
    traj = trajectory(traj_t, T_world_device((traj_t - t0) * 1e-9))
    T_world_local = geometry.make_transform(Rotation.from_euler("zyx", [40, -25, 70], degrees=True).as_matrix(),
                                            [0.5, -0.2, 0.9])
    landmarks_world = geometry.transform_points(T_world_local, LOCAL)
    row_t = t0 + 20_000_000 + FRAME_NS * np.arange(30)
    T_wd_rows = T_world_device((row_t - t0) * 1e-9)
    landmarks_device = geometry.transform_points(geometry.invert(T_wd_rows), landmarks_world)
    T_device_wrist = geometry.invert(T_wd_rows) @ T_world_local @ T_LOCAL_WRIST
    hands = tracking(row_t, landmarks_device, np.full(30, 0.95), T_device_wrist)
    frame_t = row_t[:-1] + 7_000_000  # RGB frames 7 ms after the hand-tracking rows

    states = estimate_hand_states(hands, traj, frame_t, "right", HandStateConfig())

    assert_clean(states, frame_t.size)
    assert states.valid.all() and not states.filled.any() and states.side == "right"
    expected = T_world_local @ geometry.make_transform(np.eye(3), LOCAL_HAND_ORIGIN)
    np.testing.assert_allclose(states.T_world_hand, np.broadcast_to(expected, (frame_t.size, 4, 4)), atol=1e-9)
    np.testing.assert_allclose(states.T_world_wrist, np.broadcast_to(T_world_local @ T_LOCAL_WRIST,
                                                                     (frame_t.size, 4, 4)), atol=1e-9)
    np.testing.assert_allclose(states.landmarks_world, np.broadcast_to(landmarks_world, (frame_t.size, 21, 3)),
                               atol=1e-9)
    # Device-frame landmarks at the RGB frame's own time (the head moved since the row).
    expected_device = geometry.transform_points(geometry.invert(T_world_device((frame_t - t0) * 1e-9)),
                                                landmarks_world)
    np.testing.assert_allclose(states.landmarks_device, expected_device, atol=1e-9)
    np.testing.assert_allclose(states.pinch_distance_m, LOCAL_PINCH, atol=1e-12)
    np.testing.assert_array_equal(states.t_ns, frame_t)
    assert states.counts() == {"valid": frame_t.size, **dict.fromkeys(REASONS, 0)}


# ----- gaps -----
def moving_hand(n, omega_deg_s, velocity):
    """Landmarks whose hand frame is [Rz..(omega t), p0 + v t]: the hand rotates about its frame's origin."""
    local = LOCAL - LOCAL_HAND_ORIGIN
    t_s = np.arange(n) * FRAME_NS * 1e-9
    axis = np.array([0.3, -0.5, 0.81]) / np.linalg.norm([0.3, -0.5, 0.81])
    R = Rotation.from_rotvec(np.outer(t_s, np.radians(omega_deg_s) * axis))
    p = np.array([0.4, 0.1, 0.8]) + np.outer(t_s, velocity)
    T_world_hand = geometry.make_transform(R.as_matrix(), p)
    return geometry.transform_points(T_world_hand, local), T_world_hand


@pytest.mark.parametrize("omega_deg_s", [0.0, 90.0])
def test_short_gap_is_filled_exactly_for_a_linear_motion_and_a_long_one_stays_invalid(omega_deg_s):
    n = 90
    landmarks, T_world_hand = moving_hand(n, omega_deg_s, [0.3, -0.2, 0.1])
    confidence = np.full(n, 0.9)
    confidence[20:23] = -1.0          # 3 missing rows: 0.133 s between the valid rows around them
    confidence[40:50] = -1.0          # 10 missing rows: 0.367 s
    t = rows(n)
    states = estimate_hand_states(tracking(t, landmarks, confidence), still_device(t), t, "right",
                                  config(smoothing_s=0.0, max_gap_s=0.2))

    assert_clean(states, n)
    np.testing.assert_array_equal(np.flatnonzero(states.filled), [20, 21, 22])
    np.testing.assert_array_equal(np.flatnonzero(~states.valid), np.arange(40, 50))
    assert set(states.reason[40:50]) == {"gap_too_long"}
    np.testing.assert_allclose(states.T_world_hand[states.valid], T_world_hand[states.valid], atol=1e-9)
    if omega_deg_s == 0.0:  # landmarks interpolate linearly: exact for a translation
        np.testing.assert_allclose(states.landmarks_world[20:23], landmarks[20:23], atol=1e-12)
    else:  # ... and within the chord of a 12-degree turn otherwise
        error = np.linalg.norm(states.landmarks_world[20:23] - landmarks[20:23], axis=-1)
        assert 0 < error.max() < 0.15 * np.radians(12) ** 2
    assert states.counts() == {"valid": n - 10, "not_tracked": 0, "low_confidence": 0, "gap_too_long": 10,
                               "no_trajectory": 0}

    longer = estimate_hand_states(tracking(t, landmarks, confidence), still_device(t), t, "right",
                                  config(smoothing_s=0.0, max_gap_s=0.4))
    assert longer.valid.all() and longer.filled.sum() == 13


def test_reasons_confidence_filter_and_no_extrapolation():
    n = 60
    landmarks, _ = moving_hand(n, 0.0, [0.1, 0.0, 0.0])
    confidence = np.full(n, 0.9)
    confidence[:5] = 0.3             # leading low confidence: nothing before them to fill from
    confidence[30:32] = 0.3          # a short dip: filled
    confidence[55:] = -1.0           # the hand leaves the view
    t = rows(n)
    # Two frames past the last row (no row within max_time_offset_s), one past the trajectory's end.
    frame_t = np.r_[t, t[-1] + 3 * FRAME_NS, t[-1] + 4 * FRAME_NS, t[-1] + 3 * 10**9]
    traj = trajectory([t[0] - 10**9, t[-1] + 2 * 10**9], geometry.identity((2,)))
    states = estimate_hand_states(tracking(t, landmarks, confidence), traj, frame_t, "right", HandStateConfig())

    assert_clean(states, frame_t.size)
    expected = np.full(frame_t.size, "", dtype=object)
    expected[:5] = "low_confidence"
    expected[55:62] = "not_tracked"
    expected[62] = "no_trajectory"
    np.testing.assert_array_equal(states.reason, expected.astype(str))
    np.testing.assert_array_equal(np.flatnonzero(states.filled), [30, 31])
    assert states.counts() == {"valid": 50, "not_tracked": 7, "low_confidence": 5, "gap_too_long": 0,
                               "no_trajectory": 1}

    lenient = estimate_hand_states(tracking(t, landmarks, confidence), traj, frame_t, "right",
                                   config(min_confidence=0.2))
    assert lenient.valid[:55].all() and not lenient.filled.any()


def test_smoothing_is_a_gaussian_within_runs_and_never_crosses_a_gap():
    n = 100
    t = rows(n)
    still = geometry.transform_points(geometry.make_transform(np.eye(3), [0.5, 0.0, 0.9]), LOCAL)
    moved = still + [0.2, 0.1, 0.0]
    landmarks = np.where(np.arange(n)[:, None, None] < 48, still, moved) + RNG.normal(0, 0.003, (n, 21, 3))
    confidence = np.full(n, 0.9)
    confidence[45:51] = -1.0  # a gap longer than max_gap_s but within the kernel's reach separates two places
    sigma_s = 0.1
    states = estimate_hand_states(tracking(t, landmarks, confidence), still_device(t), t, "right",
                                  config(smoothing_s=sigma_s))

    assert_clean(states, n)
    # Reference: scipy's Gaussian filter (truncated at 3 sigma: 9 frames) on each run, compared where the kernel
    # lies inside the run, and at the run's ends the same kernel renormalised over what is there.
    sigma_frames = sigma_s / (FRAME_NS * 1e-9)
    radius = int(3 * sigma_frames + 0.5)
    assert set(states.reason[45:51]) == {"gap_too_long"} and radius > 51 - 44
    for a, b in ((0, 45), (51, 100)):
        reference = gaussian_filter1d(landmarks[a:b], sigma_frames, axis=0, truncate=3.0)
        np.testing.assert_allclose(states.landmarks_world[a + radius:b - radius], reference[radius:-radius],
                                   atol=1e-9)
        offsets = np.arange(-radius, radius + 1)
        weights = np.exp(-0.5 * (offsets / sigma_frames) ** 2)
        for i in (a, b - 1):
            inside = (i + offsets >= a) & (i + offsets < b)
            expected = np.tensordot(weights[inside], landmarks[i + offsets[inside]], axes=1) / weights[inside].sum()
            np.testing.assert_allclose(states.landmarks_world[i], expected, atol=1e-12)
        # Rotations: scipy's weighted mean rotation (Markley's chordal L2 mean) of the raw hand frames; the two means
        # differ to third order in the raw frames' scatter (several degrees here, 3 mm landmark noise).
        for i in (a, (a + b) // 2, b - 1):
            inside = (i + offsets >= a) & (i + offsets < b)
            raw = Rotation.from_matrix(hand_frame(landmarks[i + offsets[inside]])[:, :3, :3])
            mean = raw.mean(weights=weights[inside]).as_matrix()
            assert np.degrees(geometry.geodesic_angle(states.T_world_hand[i, :3, :3], mean)) < 0.05


# ----- grasp -----
def pinch_signal(frames_per_stage, distances):
    return np.concatenate([np.full(k, d) for k, d in zip(frames_per_stage, distances, strict=True)])


def hand_with_pinch(distance):
    """Landmarks of a still hand whose thumb tip sits ``distance`` from the index tip, with 3 mm noise."""
    n = distance.size
    L = np.broadcast_to(LOCAL, (n, 21, 3)).copy()
    direction = (LOCAL[0] - LOCAL[1]) / np.linalg.norm(LOCAL[0] - LOCAL[1])
    L[:, 0] = LOCAL[1] + distance[:, None] * direction
    return L + RNG.normal(0, 0.003, L.shape)


def grasp_runs(grasp):
    g = np.r_[0, (grasp >= 0.5).astype(int), 0]
    edges = np.flatnonzero(np.diff(g))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def test_grasp_hysteresis_box_filter_and_flicker_suppression():
    # rest (empty pinch) -> slowly opening (19 frames through the grasp band) -> open -> grasp with a one-frame
    # spike open -> open with a 3-frame dip -> grasp -> open -> rest
    distance = np.concatenate([np.full(40, 0.03), np.linspace(0.03, 0.10, 40), pinch_signal(
        [20, 60, 30, 40, 30, 30], [0.10, 0.065, 0.10, 0.065, 0.10, 0.03])])
    distance[130] = 0.10          # flicker inside the first grasp
    distance[175:178] = 0.065     # a 3-frame close inside the open stretch
    t = rows(distance.size)
    states = estimate_hand_states(tracking(t, hand_with_pinch(distance), np.full(t.size, 0.9)), still_device(t), t,
                                  "right", HandStateConfig())

    assert_clean(states, t.size)
    runs = grasp_runs(states.grasp)
    # Grasps where the pinch closed onto 0.065 m, within the box filter's reach of the step edges. The empty pinch
    # at rest (0.03 m) is no grasp, nor is the hand opening from it through the grasp band, nor the quick close
    # back to rest at the end (a few frames in the band: flicker).
    assert len(runs) == 2, runs
    for (a, b), (start, stop) in zip(runs, [(100, 160), (190, 230)], strict=True):
        assert abs(a - start) <= 2 and abs(b - stop) <= 2, runs
    np.testing.assert_allclose(np.median(states.pinch_distance_m[105:155]), 0.065, atol=0.003)

    # HumanEgo's single threshold (0.105 m, no empty pinch): everything but the noisy open hand is a grasp.
    humanego = estimate_hand_states(tracking(t, hand_with_pinch(distance), np.full(t.size, 0.9)), still_device(t), t,
                                    "right", config(grasp_close_m=0.105, grasp_open_m=0.105, grasp_min_m=0.0))
    assert humanego.grasp[:40].all() and humanego.grasp[-25:].all()
    # Flicker suppression off: the spike and the dip show up.
    flickering = estimate_hand_states(tracking(t, hand_with_pinch(distance), np.full(t.size, 0.9)), still_device(t),
                                      t, "right", config(grasp_box_frames=1, min_grasp_change_frames=1))
    assert len(grasp_runs(flickering.grasp)) >= 4


def test_grasp_f1():
    assert grasp_f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert grasp_f1([0.9, 0.6, 0.1], [1.0, 1.0, 0.0]) == 1.0
    assert grasp_f1([0, 0], [0, 0]) == 1.0
    assert grasp_f1([1, 0], [0, 0]) == 0.0


# ----- side, configuration, bad input -----
def test_choose_side_prefers_the_hand_seen_most_then_the_more_confident_then_right():
    n = 20
    t = rows(n)
    landmarks = np.broadcast_to(LOCAL, (n, 21, 3))

    def both(left_conf, right_conf):
        confidence = {"left": np.asarray(left_conf, float), "right": np.asarray(right_conf, float)}
        return mps.HandTracking(path=Path("<memory>"), schema="v1", t_ns=t, confidence=confidence,
                                T_device_wrist={s: geometry.identity((n,)) for s in mps.HANDS},
                                landmarks={s: landmarks for s in mps.HANDS}, palm_normal=None, wrist_normal=None)

    cfg = HandStateConfig()
    seen_more = np.r_[np.full(15, 0.9), -np.ones(5)]
    assert choose_side(both(seen_more, np.r_[np.full(10, 0.99), -np.ones(10)]), t, cfg) == "left"
    assert choose_side(both(np.full(n, 0.3), seen_more), t, cfg) == "right"  # left below min_confidence
    assert choose_side(both(np.full(n, 0.95), np.full(n, 0.9)), t, cfg) == "left"
    assert choose_side(both(np.full(n, 0.9), np.full(n, 0.9)), t, cfg) == "right"
    assert choose_side(both(-np.ones(n), -np.ones(n)), t, cfg) == "right"
    # Frames far from every row count for neither hand.
    assert choose_side(both(np.full(n, 0.9), seen_more), t, cfg) == "left"
    assert choose_side(both(np.full(n, 0.9), seen_more), t + 10**9, cfg) == "right"


def test_config_schema_and_bad_input():
    assert from_dict(HandStateConfig, {"grasp_close_m": 0.1, "grasp_open_m": 0.11}).grasp_open_m == 0.11
    with pytest.raises(ConfigError, match="grasp_open_m.*must be >= grasp_close_m"):
        from_dict(HandStateConfig, {"grasp_close_m": 0.1, "grasp_open_m": 0.09})
    with pytest.raises(ConfigError, match="grasp_min_m"):
        HandStateConfig(grasp_min_m=0.09)
    with pytest.raises(ConfigError, match="did you mean 'max_gap_s'"):
        from_dict(HandStateConfig, {"max_gap": 0.1})
    t = rows(5)
    hands = tracking(t, np.broadcast_to(LOCAL, (5, 21, 3)), np.full(5, 0.9))
    with pytest.raises(ValueError, match="side must be one of"):
        estimate_hand_states(hands, still_device(t), t, "middle", HandStateConfig())
    with pytest.raises(ValueError, match="frame 2 .* is not after frame 1"):
        estimate_hand_states(hands, still_device(t), t[[0, 2, 1, 3]], "right", HandStateConfig())
    with pytest.raises(ValueError, match="1-D integer array"):
        estimate_hand_states(hands, still_device(t), t * 1e-9, "right", HandStateConfig())
    with pytest.raises(ValueError, match="frame_t_ns is empty"):
        choose_side(hands, t[:0], HandStateConfig())


def test_degenerate_landmarks_count_as_not_tracked():
    n = 30
    t = rows(n)
    landmarks = np.broadcast_to(LOCAL, (n, 21, 3)).copy()
    landmarks[25:] = 0.0  # seen with confidence but all at one point: no hand frame
    states = estimate_hand_states(tracking(t, landmarks, np.full(n, 0.9)), still_device(t), t, "right",
                                  HandStateConfig())
    assert_clean(states, n)
    assert states.valid[:25].all() and set(states.reason[25:]) == {"not_tracked"}


# ----- real MPS sample -----
@pytest.mark.skipif(not MPS_SAMPLE.is_dir(), reason=f"real MPS sample {MPS_SAMPLE} not available")
def test_real_mps_sample():
    files = mps.find_mps_files(MPS_SAMPLE)
    hands = mps.read_hand_tracking(files.hand_tracking_path)
    traj = mps.read_closed_loop_trajectory(files.trajectory_path)
    frame_t = hands.t_ns.copy()  # the sample has no RGB frames of its own: one frame per row
    cfg = HandStateConfig()
    # 3 rows each; the left hand's confidences sum higher (2.998 against 2.997).
    assert choose_side(hands, frame_t, cfg) == "left"

    # The sample's trajectory belongs to another recording (no common time): every frame lacks a device pose.
    states = estimate_hand_states(hands, traj, frame_t, "right", cfg)
    assert_clean(states, frame_t.size)
    assert states.counts()["no_trajectory"] == frame_t.size

    # The real trajectory moved in time to start just before the sample's last 6 rows, to place real landmarks in
    # a real world frame. Rows are 200 ms apart; the right hand is seen at rows 1, 2 and 4.
    moved = trajectory(traj.t_ns - traj.t_ns[0] + hands.t_ns[2] - 10**6, traj.T_world_device)
    states = estimate_hand_states(hands, moved, frame_t, "right", cfg)
    assert_clean(states, frame_t.size)
    np.testing.assert_array_equal(states.reason, ["no_trajectory", "no_trajectory", "", "gap_too_long", "",
                                                  "not_tracked", "not_tracked", "not_tracked"])
    # Reference: the hand frame of the file's landmarks, put in the world with scipy's Slerp of the raw poses.
    seconds = (moved.t_ns - moved.t_ns[0]) * 1e-9
    slerp = Slerp(seconds, Rotation.from_matrix(moved.T_world_device[:, :3, :3]))
    for i in (2, 4):
        s = (frame_t[i] - moved.t_ns[0]) * 1e-9
        T_wd = geometry.make_transform(slerp([s]).as_matrix()[0],
                                       [np.interp(s, seconds, moved.T_world_device[:, k, 3]) for k in range(3)])
        L = hands.landmarks["right"][i]
        np.testing.assert_allclose(states.landmarks_device[i], L, atol=1e-9)
        np.testing.assert_allclose(states.landmarks_world[i], geometry.transform_points(T_wd, L), atol=1e-9)
        x = L[8] - L[6]
        x /= np.linalg.norm(x)
        y = 0.5 * (L[6] + L[8]) - L[5]
        y -= (y @ x) * x
        y /= np.linalg.norm(y)
        T_device_hand = geometry.make_transform(np.column_stack([x, y, np.cross(x, y)]), 0.5 * (L[0] + L[1]))
        np.testing.assert_allclose(states.T_world_hand[i], T_wd @ T_device_hand, atol=1e-9)
        np.testing.assert_allclose(states.T_world_wrist[i], T_wd @ hands.T_device_wrist["right"][i], atol=1e-9)
        assert states.pinch_distance_m[i] == pytest.approx(np.linalg.norm(L[0] - L[1]), abs=1e-12)


# ----- simulator ground truth -----
@pytest.fixture(scope="module")
def serve_bread(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve_bread")
    results = generate("serve_bread", 1, out, seed=3, width=128, height=128, progress=False)
    assert results[0].success
    return Recording.open(out / results[0].name)


def test_sim_demo_against_ground_truth(serve_bread):
    rec = serve_bread
    gt = rec.gt(masks=False)
    cfg = HandStateConfig()
    assert choose_side(rec.hand_tracking, rec.frame_timestamps_ns, cfg) == "right"
    states = estimate_hand_states(rec.hand_tracking, rec.trajectory, rec.frame_timestamps_ns, "right", cfg)
    assert_clean(states, rec.num_frames)
    np.testing.assert_array_equal(states.valid, gt["hand_visible"])
    v = states.valid
    position_mm = 1e3 * np.linalg.norm(states.T_world_hand[v, :3, 3] - gt["T_world_hand"][v, :3, 3], axis=-1)
    rotation_deg = np.degrees(geometry.geodesic_angle(states.T_world_hand[v, :3, :3], gt["T_world_hand"][v, :3, :3]))
    # Measured on 14 demos (benchmarks/hand_state.py): position median 1.8 mm, p90 3.4 mm; rotation median
    # 2.5 deg, p90 4.5 deg; grasp F1 0.959-0.98 per demo (this one: 0.976).
    assert np.median(position_mm) < 3.0 and np.percentile(position_mm, 90) < 6.0
    assert np.median(rotation_deg) < 4.0 and np.percentile(rotation_deg, 90) < 7.5
    assert grasp_f1(states.grasp[v], gt["grasped"][v]) >= 0.95
    landmark_mm = 1e3 * np.linalg.norm(states.landmarks_world[v] - gt["landmarks_world"][v], axis=-1)
    assert np.median(landmark_mm) < 3.5  # MPS-style noise in the file: 3 mm per coordinate, 5.2 mm in 3-D

    seg = segment_manipulation(states, rec.fps, PhaseConfig())
    assert seg.reason == "" and len(seg.grasp_intervals) == 1
    window = np.zeros(rec.num_frames, bool)
    window[seg.start:seg.stop] = True
    assert window[gt["grasped"]].all()
    idle = gt["phase"] == "idle"
    assert np.sum(idle & window) <= 0.1 * np.sum(idle)
    assert seg.is_finished[seg.start:seg.stop].any() and not seg.is_finished[gt["grasped"]].any()
