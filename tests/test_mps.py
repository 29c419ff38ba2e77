"""humanego_drivers.mps against real MPS outputs, with projectaria_tools' readers and scipy as references,
and against broken copies of them."""

import csv
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from projectaria_tools.core import mps as aria_mps
from scipy.spatial.transform import Rotation, Slerp

from humanego_drivers import mps

SAMPLE = Path("/work/shared/data/aria/mps_sample")
TRAJECTORY = SAMPLE / "trajectory" / "closed_loop_trajectory.csv"
HANDS_V1 = SAMPLE / "hand_tracking" / "hand_tracking_results_v1.csv"
HANDS_V2 = SAMPLE / "hand_tracking" / "hand_tracking_results_v2.csv"
WRIST_AND_PALM = (SAMPLE / "hand_tracking" / "wrist_and_palm_poses.csv",
                  SAMPLE / "hand_tracking" / "wrist_and_palm_poses_v2.csv")

pytestmark = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"real MPS sample {SAMPLE} not available")


def us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("".join(",".join(r) + "\n" for r in [header, *rows]))
    return path


@pytest.fixture(scope="module")
def trajectory() -> mps.Trajectory:
    return mps.read_closed_loop_trajectory(TRAJECTORY)


@pytest.fixture(scope="module")
def aria_trajectory() -> list:
    return aria_mps.read_closed_loop_trajectory(str(TRAJECTORY))


@pytest.fixture
def small_trajectory(tmp_path) -> tuple[Path, list[str], list[list[str]]]:
    """The first 40 poses of the real trajectory, written to tmp: (path, header, rows) to modify."""
    header, rows = read_rows(TRAJECTORY)
    rows = rows[:40]
    return write_rows(tmp_path / "closed_loop_trajectory.csv", header, rows), header, rows


# ----- real data, against projectaria_tools and scipy -----
def test_trajectory_equals_projectaria(trajectory, aria_trajectory):
    assert len(trajectory.t_ns) == len(aria_trajectory) == 11517
    assert trajectory.t_ns.dtype == np.int64
    np.testing.assert_array_equal(trajectory.t_ns, [us(p.tracking_timestamp) * 1000 for p in aria_trajectory])
    expected = np.stack([p.transform_world_device.to_matrix() for p in aria_trajectory])
    np.testing.assert_allclose(trajectory.T_world_device, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(trajectory.quality, [p.quality_score for p in aria_trajectory])
    assert trajectory.time_range_ns == (int(trajectory.t_ns[0]), int(trajectory.t_ns[-1]))
    assert trajectory.path == TRAJECTORY
    assert not trajectory.t_ns.flags.writeable


def test_trajectory_at_samples_and_midpoints(trajectory):
    t, T = trajectory.t_ns, trajectory.T_world_device
    idx = np.r_[0:len(t):97, len(t) - 1]
    np.testing.assert_allclose(trajectory.at(t[idx]), T[idx], rtol=0, atol=1e-12)
    # Midpoints (and other fractions) against scipy's Slerp and numpy's interp on the raw samples.
    frac = np.linspace(0.1, 0.9, len(idx) - 1)
    query = t[idx[:-1]] + (frac * (t[idx[:-1] + 1] - t[idx[:-1]])).astype(np.int64)
    query = np.r_[query, (t[:-1] + t[1:]) // 2]
    seconds = (t - t[0]) * 1e-9
    q_seconds = (query - t[0]) * 1e-9
    R_ref = Slerp(seconds, Rotation.from_matrix(T[:, :3, :3]))(q_seconds).as_matrix()
    p_ref = np.stack([np.interp(q_seconds, seconds, T[:, k, 3]) for k in range(3)], -1)
    out = trajectory.at(query)
    np.testing.assert_allclose(out[:, :3, :3], R_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out[:, :3, 3], p_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out[:, 3], np.broadcast_to([0, 0, 0, 1], (len(query), 4)))


def test_trajectory_at_shapes_slack_and_outside(trajectory):
    first, last = trajectory.time_range_ns
    assert trajectory.at(first).shape == (4, 4)
    grid = np.array([[first, last], [first + 5_000_000, last - 5_000_000]])
    assert trajectory.at(grid).shape == (2, 2, 4, 4)
    # The CSV has microseconds: 1 us of slack at both ends, clamped to the end poses.
    np.testing.assert_allclose(trajectory.at(first - 1000), trajectory.T_world_device[0], atol=1e-12)
    np.testing.assert_allclose(trajectory.at(last + 1000), trajectory.T_world_device[-1], atol=1e-12)
    np.testing.assert_array_equal(trajectory.contains([first - 1000, first - 1001, last + 1000, last + 1001]),
                                  [True, False, True, False])
    with pytest.raises(mps.MpsError) as e:
        trajectory.at([first, last + 2_000_000_000])
    msg = str(e.value)
    assert str(TRAJECTORY) in msg
    assert f"{(last + 2_000_000_000) * 1e-9:.6f}" in msg  # requested
    assert f"{first * 1e-9:.6f}..{last * 1e-9:.6f} s" in msg  # available
    with pytest.raises(mps.MpsError):
        trajectory.at(first - 1001)


@pytest.mark.parametrize("path", [HANDS_V1, HANDS_V2], ids=["v1", "v2"])
def test_hand_tracking_equals_projectaria(path):
    hands = mps.read_hand_tracking(path)
    reference = aria_mps.hand_tracking.read_hand_tracking_results(str(path))
    v2 = path == HANDS_V2
    assert hands.schema == ("v2" if v2 else "v1")
    assert hands.path == path
    assert len(hands.t_ns) == len(reference) == 8
    np.testing.assert_array_equal(hands.t_ns, [us(r.tracking_timestamp) * 1000 for r in reference])
    assert hands.time_range_ns == (int(hands.t_ns[0]), int(hands.t_ns[-1]))
    if not v2:
        assert hands.palm_normal is None and hands.wrist_normal is None
    seen_any = 0
    for side in mps.HANDS:
        one_sides = [getattr(r, f"{side}_hand") for r in reference]
        np.testing.assert_array_equal(hands.seen(side), [h is not None for h in one_sides])
        assert hands.landmarks[side].shape == (8, 21, 3)
        assert hands.T_device_wrist[side].shape == (8, 4, 4)
        for i, h in enumerate(one_sides):
            if h is None:
                assert hands.confidence[side][i] == -1
                # Not seen: still a rigid transform (documented), never NaN.
                R = hands.T_device_wrist[side][i, :3, :3]
                np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
                continue
            seen_any += 1
            assert hands.confidence[side][i] == pytest.approx(h.confidence, abs=1e-7)
            np.testing.assert_allclose(hands.T_device_wrist[side][i], h.transform_device_wrist.to_matrix(),
                                       rtol=0, atol=1e-12)
            np.testing.assert_allclose(hands.landmarks[side][i], np.array(h.landmark_positions_device),
                                       rtol=0, atol=1e-12)
            if v2:
                normals = h.wrist_and_palm_normal_device
                np.testing.assert_allclose(hands.palm_normal[side][i], normals.palm_normal_device, atol=1e-12)
                np.testing.assert_allclose(hands.wrist_normal[side][i], normals.wrist_normal_device, atol=1e-12)
            else:
                assert h.wrist_and_palm_normal_device is None
    assert seen_any == 6  # left in rows 0-2, right in rows 1, 2, 4
    with pytest.raises(ValueError, match="side"):
        hands.seen("middle")


def test_hand_tracking_v1_and_v2_agree():
    v1, v2 = mps.read_hand_tracking(HANDS_V1), mps.read_hand_tracking(HANDS_V2)
    np.testing.assert_array_equal(v1.t_ns, v2.t_ns)
    for side in mps.HANDS:
        np.testing.assert_array_equal(v1.landmarks[side], v2.landmarks[side])
        np.testing.assert_array_equal(v1.T_device_wrist[side], v2.T_device_wrist[side])
        assert v2.palm_normal[side].shape == v2.wrist_normal[side].shape == (8, 3)


# ----- folders -----
def test_find_mps_files_real_sample():
    folder = mps.find_mps_files(SAMPLE)
    assert folder.root == SAMPLE
    assert folder.trajectory_path == TRAJECTORY
    assert folder.hand_tracking_path == HANDS_V2  # no plain hand_tracking_results.csv: v2 preferred over v1


def test_find_mps_files_slam_layout(tmp_path):
    (tmp_path / "slam").mkdir()
    (tmp_path / "hand_tracking").mkdir()
    shutil.copy(TRAJECTORY, tmp_path / "slam" / "closed_loop_trajectory.csv")
    for name in ("hand_tracking_results.csv", "hand_tracking_results_v1.csv"):
        shutil.copy(HANDS_V1, tmp_path / "hand_tracking" / name)
    folder = mps.find_mps_files(str(tmp_path))
    assert folder.trajectory_path == tmp_path / "slam" / "closed_loop_trajectory.csv"
    assert folder.hand_tracking_path == tmp_path / "hand_tracking" / "hand_tracking_results.csv"
    assert mps.read_closed_loop_trajectory(folder.trajectory_path).t_ns.shape == (11517,)
    # Trajectory only is fine; slam/ wins over trajectory/.
    shutil.rmtree(tmp_path / "hand_tracking")
    (tmp_path / "trajectory").mkdir()
    shutil.copy(TRAJECTORY, tmp_path / "trajectory" / "closed_loop_trajectory.csv")
    folder = mps.find_mps_files(tmp_path)
    assert folder.trajectory_path == tmp_path / "slam" / "closed_loop_trajectory.csv"
    assert folder.hand_tracking_path is None


def test_find_mps_files_errors(tmp_path):
    with pytest.raises(mps.MpsError, match="does not exist") as e:
        mps.find_mps_files(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)
    with pytest.raises(mps.MpsError) as e:
        mps.find_mps_files(tmp_path)
    for looked in ("slam/closed_loop_trajectory.csv", "trajectory/closed_loop_trajectory.csv",
                   "hand_tracking/hand_tracking_results.csv"):
        assert str(tmp_path / looked) in str(e.value)
    with pytest.raises(mps.MpsError, match="not a folder"):
        mps.find_mps_files(TRAJECTORY)


# ----- general CSVs -----
def test_column_order_and_extra_columns_do_not_matter(tmp_path, small_trajectory):
    path, header, rows = small_trajectory
    order = np.random.default_rng(0).permutation(len(header))
    shuffled = write_rows(tmp_path / "shuffled.csv", [header[i] for i in order] + ["some_future_column"],
                          [[r[i] for i in order] + ["x"] for r in rows])
    a, b = mps.read_closed_loop_trajectory(path), mps.read_closed_loop_trajectory(shuffled)
    np.testing.assert_array_equal(a.t_ns, b.t_ns)
    np.testing.assert_array_equal(a.T_world_device, b.T_world_device)
    np.testing.assert_array_equal(a.quality, b.quality)
    # Only the required columns.
    keep = [header.index(c) for c in mps.TRAJECTORY_COLUMNS]
    minimal = write_rows(tmp_path / "minimal.csv", list(mps.TRAJECTORY_COLUMNS), [[r[i] for i in keep] for r in rows])
    np.testing.assert_array_equal(mps.read_closed_loop_trajectory(minimal).T_world_device, a.T_world_device)
    # A trailing blank line is not a truncated row.
    path.write_text(path.read_text() + "\n")
    assert mps.read_closed_loop_trajectory(path).t_ns.shape == (40,)


def test_near_unit_quaternion_is_normalised(tmp_path, small_trajectory):
    path, header, rows = small_trajectory
    ref = mps.read_closed_loop_trajectory(path)
    qcols = [header.index(c) for c in mps.TRAJECTORY_QUATERNION_COLUMNS]
    for i in qcols:
        rows[3][i] = repr(float(rows[3][i]) * 1.0005)
    out = mps.read_closed_loop_trajectory(write_rows(path, header, rows))
    np.testing.assert_allclose(out.T_world_device, ref.T_world_device, atol=1e-12)


# ----- bad input -----
def expect_error(read, path, *fragments):
    with pytest.raises(mps.MpsError) as e:
        read(path)
    msg = str(e.value)
    assert str(path) in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_missing_and_empty(tmp_path):
    for read in (mps.read_closed_loop_trajectory, mps.read_hand_tracking):
        expect_error(read, tmp_path / "absent.csv", "missing")
        expect_error(read, tmp_path, "folder")
        expect_error(read, write_rows(tmp_path / "empty.csv", [], []), "empty")
        (tmp_path / "blank.csv").write_text("\n\n")
        expect_error(read, tmp_path / "blank.csv", "empty")
    header, _ = read_rows(TRAJECTORY)
    expect_error(mps.read_closed_loop_trajectory, write_rows(tmp_path / "header.csv", header, []), "no data rows")


@pytest.mark.parametrize("column", mps.TRAJECTORY_COLUMNS)
def test_trajectory_missing_column(tmp_path, small_trajectory, column):
    path, header, rows = small_trajectory
    i = header.index(column)
    write_rows(path, header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows])
    expect_error(mps.read_closed_loop_trajectory, path, "missing column", column)


def test_trajectory_truncated_last_line(tmp_path, small_trajectory):
    path, header, rows = small_trajectory
    text = path.read_text()
    path.write_text(text[: text.rstrip("\n").rfind(",") - 3])  # cut inside the last row
    expect_error(mps.read_closed_loop_trajectory, path, "line 41", "truncated file?")


@pytest.mark.parametrize("value, fragment", [("abc", "'abc' is not a number"), ("", "'' is not a number"),
                                             ("nan", "NaN or inf"), ("inf", "NaN or inf")])
def test_trajectory_bad_values(tmp_path, small_trajectory, value, fragment):
    path, header, rows = small_trajectory
    rows[9][header.index("ty_world_device")] = value
    expect_error(mps.read_closed_loop_trajectory, write_rows(path, header, rows), "ty_world_device", "line 11",
                 fragment)


def test_trajectory_bad_timestamps(tmp_path, small_trajectory):
    path, header, rows = small_trajectory
    i = header.index("tracking_timestamp_us")
    original = rows[20][i]
    rows[20][i] = "149202610.5"
    expect_error(mps.read_closed_loop_trajectory, write_rows(path, header, rows), "tracking_timestamp_us",
                 "line 22", "not an integer")
    rows[20][i] = rows[18][i]  # decreasing
    expect_error(mps.read_closed_loop_trajectory, write_rows(path, header, rows), "line 22", "strictly increase")
    rows[20][i] = rows[19][i]  # repeated
    expect_error(mps.read_closed_loop_trajectory, write_rows(path, header, rows), "line 22", "strictly increase")
    rows[20][i] = original
    assert mps.read_closed_loop_trajectory(write_rows(path, header, rows)).t_ns.shape == (40,)


def test_trajectory_non_unit_quaternion(tmp_path, small_trajectory):
    path, header, rows = small_trajectory
    rows[5][header.index("qw_world_device")] = "3.0"
    expect_error(mps.read_closed_loop_trajectory, write_rows(path, header, rows), "line 7", "quaternion",
                 "qw_world_device", "norm")


def test_open_loop_trajectory_is_refused():
    expect_error(mps.read_closed_loop_trajectory, SAMPLE / "trajectory" / "open_loop_trajectory.csv", "open-loop")


@pytest.mark.parametrize("path", WRIST_AND_PALM, ids=["v1", "v2"])
def test_wrist_and_palm_poses_is_refused(path):
    msg = expect_error(mps.read_hand_tracking, path, "wrist/palm-only", "no landmarks",
                       "hand_tracking_results.csv", "re-run MPS hand tracking")
    assert "wrist orientation" in msg


def test_hand_tracking_missing_columns(tmp_path):
    header, rows = read_rows(HANDS_V2)
    for column in ("tx_right_landmark_20_device", "qw_left_device_wrist", "left_tracking_confidence",
                   "nz_right_wrist_device"):  # the last: a v2 file missing one normal column
        i = header.index(column)
        path = write_rows(tmp_path / "hands.csv", header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows])
        expect_error(mps.read_hand_tracking, path, "missing column", column)


def test_hand_tracking_quaternions(tmp_path):
    header, rows = read_rows(HANDS_V2)
    qcols = [header.index(f"q{a}_right_device_wrist") for a in "xyzw"]
    assert rows[0][header.index("right_tracking_confidence")] == "-1"
    for i in qcols:  # not seen: zeros are fine
        rows[0][i] = "0"
    hands = mps.read_hand_tracking(write_rows(tmp_path / "hands.csv", header, rows))
    assert not hands.seen("right")[0]
    np.testing.assert_array_equal(hands.T_device_wrist["right"][0, :3, :3], np.eye(3))
    for i in qcols:  # seen (row 2 = line 3): zeros are an error
        rows[1][i] = "0"
    expect_error(mps.read_hand_tracking, write_rows(tmp_path / "hands.csv", header, rows), "line 3", "quaternion",
                 "qw_right_device_wrist")


def test_hand_tracking_truncated_and_bad_values(tmp_path):
    header, rows = read_rows(HANDS_V1)
    path = write_rows(tmp_path / "hands.csv", header, rows[:-1] + [rows[-1][:50]])
    expect_error(mps.read_hand_tracking, path, "line 9", "has 50 fields", "truncated file?")
    rows[4][header.index("tz_left_landmark_7_device")] = "nan"
    expect_error(mps.read_hand_tracking, write_rows(path, header, rows), "tz_left_landmark_7_device", "line 6",
                 "NaN")
    rows[4][header.index("tz_left_landmark_7_device")] = "0"
    rows[6][0], rows[7][0] = rows[7][0], rows[6][0]
    expect_error(mps.read_hand_tracking, write_rows(path, header, rows), "tracking_timestamp_us", "line 9")


# ----- time ranges -----
def test_check_overlap():
    frames, traj = (100_000_000_000, 112_000_000_000), (149_202_610_000, 160_719_000_000)
    with pytest.raises(mps.MpsError) as e:
        mps.check_overlap(frames, "recording.vrs camera-rgb", traj, str(TRAJECTORY))
    msg = str(e.value)
    for fragment in ("100.000000..112.000000 s", "149.202610..160.719000 s", "recording.vrs camera-rgb",
                     str(TRAJECTORY), "another recording"):
        assert fragment in msg, msg
    mps.check_overlap((100, 200), "frames", (150, 400), "mps")  # partial overlap
    mps.check_overlap((100, 200), "frames", (200, 400), "mps")  # touching
    mps.check_overlap((100, 200), "frames", (0, 1000), "mps")  # contained
    with pytest.raises(mps.MpsError):
        mps.check_overlap((300, 400), "frames", (100, 299), "mps")
    with pytest.raises(ValueError, match="first <= last"):
        mps.check_overlap((2, 1), "frames", (0, 5), "mps")
