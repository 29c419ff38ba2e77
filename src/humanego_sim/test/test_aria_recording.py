"""Synthetic Aria/MPS recordings: written by RecordingWriter, read back by projectaria_tools' own readers
and by Recording (humanego_drivers' recording folder and MPS readers plus the synthetic files)."""

import csv
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import geometry
from humanego_sim import aria_recording as ar
from humanego_sim.aria_recording import HandObservation, Recording, RecordingError, RecordingWriter

mps = pytest.importorskip("projectaria_tools.core.mps")
calibration = pytest.importorskip("projectaria_tools.core.calibration")

WS = Path(os.environ.get("HUMANEGO_WS", Path(__file__).resolve().parents[3]))
CALIBRATION_JSON = WS / "config" / "sim" / "aria_device_calibration.json"
ARIA_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "aria"
REAL_TRAJECTORY = ARIA_DATA / "mps_sample" / "trajectory" / "closed_loop_trajectory.csv"
REAL_HANDS = ARIA_DATA / "mps_sample" / "hand_tracking" / "hand_tracking_results_v2.csv"

SIZE, FPS, FRAMES = 128, 30.0, 6
T0_NS = 5_000_000_123  # not a whole microsecond: the CSVs floor to microseconds
FRAME_NS = np.array([T0_NS + round(i * 1e9 / FPS) for i in range(FRAMES)], dtype=np.int64)
TRAJ_NS = T0_NS - 20_000_000 + np.arange(0, 260) * 1_000_000  # 1 kHz, spans the frames
RADIUS, OMEGA, YAW_RATE, ROLL_RATE = 0.3, 2.0, 0.8, -0.5
METADATA = {"task": "serve_bread", "instruction": "Pick up the bread and put it on the plate.", "seed": 7}


def device_pose(t_ns):
    """Analytic head motion: a circle in xy, a slow climb, yaw and roll at constant rates."""
    t = (np.atleast_1d(t_ns) - T0_NS) * 1e-9
    pos = np.stack([RADIUS * np.cos(OMEGA * t), RADIUS * np.sin(OMEGA * t), 1.5 + 0.05 * t], -1)
    yaw = Rotation.from_rotvec(np.outer(YAW_RATE * t, [0, 0, 1]))
    roll = Rotation.from_rotvec(np.outer(ROLL_RATE * t, [1, 0, 0]))
    R = yaw * roll * Rotation.from_rotvec([0, 0.3, 0])
    return geometry.make_transform(R.as_matrix(), pos)


def device_velocity(t_ns):
    """Exact linear and angular velocity of :func:`device_pose` in the device frame."""
    t = (np.asarray(t_ns) - T0_NS) * 1e-9
    v_world = np.stack([-RADIUS * OMEGA * np.sin(OMEGA * t), RADIUS * OMEGA * np.cos(OMEGA * t),
                        np.full_like(t, 0.05)], -1)
    # R = Rz(a t) Rx(b t) R0: world-frame rate a ez + b Rz(a t) ex.
    w_world = np.stack([ROLL_RATE * np.cos(YAW_RATE * t), ROLL_RATE * np.sin(YAW_RATE * t),
                        np.full_like(t, YAW_RATE)], -1)
    R = device_pose(t_ns)[..., :3, :3]
    return np.einsum("nji,nj->ni", R, v_world), np.einsum("nji,nj->ni", R, w_world)


def hand(frame: int, side: str) -> HandObservation | None:
    if side == "left" and frame % 3 == 1:
        return None  # the left hand leaves the view every third frame
    rng = np.random.default_rng([frame, side == "left"])
    R = Rotation.random(random_state=frame + 10 * (side == "left")).as_matrix()
    landmarks = rng.uniform([-0.3, -0.3, 0.1], [0.3, 0.3, 0.6], (21, 3))
    return HandObservation(landmarks=landmarks, T_device_wrist=geometry.make_transform(R, landmarks[5]),
                           palm_normal=R[:, 2], wrist_normal=-R[:, 1], confidence=0.5 + 0.05 * frame)


def image(frame: int) -> np.ndarray:
    u, v = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    return np.stack([u * 2, v * 2, np.full_like(u, 40 * frame)], -1).astype(np.uint8)


def labels(frame: int) -> np.ndarray:
    out = np.zeros((SIZE, SIZE), np.uint8)
    out[10 + frame:40, 20:60] = 3
    out[70:100, 30 + frame:90] = 5
    return out


def gt(frame: int) -> dict:
    T_obj = geometry.make_transform(np.eye(3), [0.4 + 0.01 * frame, 0.1, 0.75])
    return {"object_labels": labels(frame), "arm_mask": labels(frame) == 5, "T_world_bread": T_obj,
            "grasped": np.bool_(frame > 2), "phase": np.array("reach" if frame < 3 else "transport")}


def new_writer(root: Path, width=SIZE, height=SIZE, metadata=METADATA) -> RecordingWriter:
    return RecordingWriter(root, width=width, height=height, fps=FPS, metadata=metadata,
                           calibration_json=CALIBRATION_JSON)


def write(root: Path, frames=FRAMES) -> None:
    with new_writer(root) as writer:
        for i in range(frames):
            writer.add_frame(int(FRAME_NS[i]), image(i), {"left": hand(i, "left"), "right": hand(i, "right")}, gt(i))
        writer.set_trajectory(TRAJ_NS, device_pose(TRAJ_NS))
        writer.finish({"success": True, "seed": 7, "placements": {"bread": [0.4, 0.1, 0.0]}})


@pytest.fixture(scope="module")
def recording_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recordings") / "demo_0000"
    write(root)
    return root


@pytest.fixture
def copy(recording_dir, tmp_path) -> Path:
    """A scratch copy to break."""
    return Path(shutil.copytree(recording_dir, tmp_path / "demo"))


def first_line(path: Path) -> str:
    with open(path) as f:
        return f.readline().strip()


def test_layout(recording_dir):
    for name in (ar.METADATA, ar.CALIBRATION, ar.VIDEO, ar.FRAME_TIMESTAMPS, ar.TRAJECTORY, ar.HAND_TRACKING,
                 ar.HAND_SUMMARY, ar.GT_FRAMES, ar.GT_MANIFEST, ar.GT_EPISODE):
        assert (recording_dir / name).is_file(), name
    assert len(list((recording_dir / ar.GT_MASKS / "object_labels").glob("*.png"))) == FRAMES
    assert not recording_dir.with_name("demo_0000.incomplete").exists()


@pytest.mark.skipif(not REAL_TRAJECTORY.is_file(), reason=f"real MPS sample not found at {ARIA_DATA}")
def test_headers_are_those_of_real_mps_files(recording_dir):
    assert first_line(recording_dir / ar.TRAJECTORY) == first_line(REAL_TRAJECTORY)
    assert first_line(recording_dir / ar.HAND_TRACKING) == first_line(REAL_HANDS)


def test_trajectory_read_by_projectaria(recording_dir):
    poses = mps.read_closed_loop_trajectory(str(recording_dir / ar.TRAJECTORY))
    assert len(poses) == len(TRAJ_NS)
    expected_T = device_pose(TRAJ_NS)
    v, w = device_velocity(TRAJ_NS)
    uids = {p.graph_uid for p in poses}
    assert len(uids) == 1 and len(next(iter(uids))) == 36
    for i, p in enumerate(poses):
        assert p.tracking_timestamp // timedelta(microseconds=1) == TRAJ_NS[i] // 1000
        np.testing.assert_allclose(p.transform_world_device.to_matrix(), expected_T[i], atol=2e-6)
        np.testing.assert_allclose(p.gravity_world, [0.0, 0.0, -9.81])
        assert p.quality_score == 1.0
        if 0 < i < len(poses) - 1:  # central differences inside, one-sided at the ends
            np.testing.assert_allclose(p.device_linear_velocity_device, v[i], atol=2e-6)
            np.testing.assert_allclose(p.angular_velocity_device, w[i], atol=2e-6)
    np.testing.assert_allclose(poses[0].device_linear_velocity_device, v[0], atol=2e-3)
    np.testing.assert_allclose(poses[-1].angular_velocity_device, w[-1], atol=2e-3)


@pytest.mark.skipif(not REAL_TRAJECTORY.is_file(), reason=f"real MPS sample not found at {ARIA_DATA}")
def test_velocity_convention_matches_real_mps():
    """Finite differences of real MPS poses, in the device frame, agree with MPS's own velocity columns."""
    poses = mps.read_closed_loop_trajectory(str(REAL_TRAJECTORY))[:3000]
    t = np.array([round(p.tracking_timestamp.total_seconds() * 1e6) * 1000 for p in poses])
    T = np.stack([p.transform_world_device.to_matrix() for p in poses])
    v, w = ar.device_velocities(t, T)
    v_mps = np.stack([p.device_linear_velocity_device for p in poses])
    w_mps = np.stack([p.angular_velocity_device for p in poses])
    for ours, theirs in ((v, v_mps), (w, w_mps)):
        error = np.median(np.linalg.norm(ours - theirs, axis=1))
        in_world = np.median(np.linalg.norm(np.einsum("nij,nj->ni", T[:, :3, :3], ours) - theirs, axis=1))
        magnitude = np.median(np.linalg.norm(theirs, axis=1))
        assert error < 0.05 * magnitude < in_world, (error, magnitude, in_world)


def test_hand_tracking_read_by_projectaria(recording_dir):
    results = mps.hand_tracking.read_hand_tracking_results(str(recording_dir / ar.HAND_TRACKING))
    assert len(results) == FRAMES
    for i, r in enumerate(results):
        assert r.tracking_timestamp // timedelta(microseconds=1) == FRAME_NS[i] // 1000
        for side in ("left", "right"):
            expected, got = hand(i, side), getattr(r, f"{side}_hand")
            if expected is None:
                assert got is None, (i, side)
                continue
            assert got.confidence == pytest.approx(expected.confidence, abs=1e-6)
            np.testing.assert_allclose(np.stack(got.landmark_positions_device), expected.landmarks, atol=1e-7)
            np.testing.assert_allclose(got.transform_device_wrist.to_matrix(), expected.T_device_wrist, atol=1e-7)
            normals = got.wrist_and_palm_normal_device
            np.testing.assert_allclose(normals.palm_normal_device, expected.palm_normal, atol=1e-8)
            np.testing.assert_allclose(normals.wrist_normal_device, expected.wrist_normal, atol=1e-8)


def test_missing_hand_row_is_written_as_mps_does(recording_dir):
    with open(recording_dir / ar.HAND_TRACKING, newline="") as f:
        row = list(csv.DictReader(f))[1]
    assert row["left_tracking_confidence"] == "-1"
    assert all(row[f"t{a}_left_landmark_{k}_device"] == "0" for k in range(21) for a in "xyz")
    assert [row[f"{c}_left_device_wrist"] for c in ("tx", "ty", "tz", "qx", "qy", "qz", "qw")] == ["0"] * 6 + ["1"]
    hands = Recording.open(recording_dir).hand_tracking
    assert not hands.seen("left")[1] and hands.seen("left")[0] and hands.seen("right").all()
    np.testing.assert_array_equal(hands.T_device_wrist["left"][1], np.eye(4))


def test_calibration_is_the_shipped_one_rescaled(recording_dir):
    text = (recording_dir / ar.CALIBRATION).read_text()
    assert text == CALIBRATION_JSON.read_text()
    full = calibration.device_calibration_from_json_string(text).get_camera_calib("camera-rgb")
    rec = Recording.open(recording_dir)
    rgb = rec.rgb_calibration()
    assert list(rgb.get_image_size()) == [SIZE, SIZE]
    expected = full.rescale(np.array([SIZE, SIZE]), SIZE / 1408)
    np.testing.assert_array_equal(rgb.get_projection_params(), expected.get_projection_params())
    assert rgb.get_valid_radius() == pytest.approx(707.5 * SIZE / 1408)
    np.testing.assert_array_equal(rec.camera_model().params, expected.get_projection_params())


@pytest.mark.skipif(not (ARIA_DATA / "recording.vrs").is_file(), reason=f"real VRS not found at {ARIA_DATA}")
def test_shipped_calibration_is_the_real_vrs_calibration():
    data_provider = pytest.importorskip("projectaria_tools.core.data_provider")
    vrs = data_provider.create_vrs_data_provider(str(ARIA_DATA / "recording.vrs")).get_device_calibration()
    shipped = calibration.device_calibration_from_json_string(CALIBRATION_JSON.read_text())
    assert shipped.get_camera_labels() == vrs.get_camera_labels()
    ours, theirs = shipped.get_camera_calib("camera-rgb"), vrs.get_camera_calib("camera-rgb")
    np.testing.assert_array_equal(ours.get_projection_params(), theirs.get_projection_params())
    np.testing.assert_allclose(ours.get_transform_device_camera().to_matrix(),
                               theirs.get_transform_device_camera().to_matrix(), atol=1e-15)
    assert list(ours.get_image_size()) == list(theirs.get_image_size()) == [1408, 1408]
    assert ours.get_valid_radius() == theirs.get_valid_radius()
    assert ours.get_max_solid_angle() == theirs.get_max_solid_angle()


def test_video_frames_and_timestamps(recording_dir):
    assert imageio_ffmpeg.count_frames_and_secs(str(recording_dir / ar.VIDEO))[0] == FRAMES
    rec = Recording.open(recording_dir)
    np.testing.assert_array_equal(rec.frame_timestamps_ns, FRAME_NS)
    frames = list(rec.read_frames())
    assert len(frames) == rec.num_frames == FRAMES
    for i, frame in enumerate(frames):
        assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8
        assert np.abs(frame.astype(int) - image(i)).mean() < 2.0  # H.264 at crf 17: near lossless
    np.testing.assert_array_equal(rec.read_frame(4), frames[4])
    with pytest.raises(IndexError):
        rec.read_frame(FRAMES)


def test_round_trip_through_recording(recording_dir):
    rec = Recording.open(recording_dir)
    assert {k: rec.metadata[k] for k in METADATA} == METADATA
    assert rec.metadata["synthetic"] is True and rec.metadata["format_version"] == ar.FORMAT_VERSION
    assert (rec.width, rec.height, rec.fps, rec.num_frames) == (SIZE, SIZE, FPS, FRAMES)
    assert len(rec.trajectory.t_ns) == len(TRAJ_NS) and len(rec.hand_tracking.t_ns) == FRAMES
    assert rec.hand_tracking.schema == "v2"
    for i in range(FRAMES):  # humanego_drivers.mps reads what the writer was given
        for side in ("left", "right"):
            expected = hand(i, side)
            assert rec.hand_tracking.seen(side)[i] == (expected is not None)
            if expected is not None:
                np.testing.assert_allclose(rec.hand_tracking.landmarks[side][i], expected.landmarks, atol=1e-7)
                np.testing.assert_allclose(rec.hand_tracking.T_device_wrist[side][i], expected.T_device_wrist,
                                           atol=1e-7)
                np.testing.assert_allclose(rec.hand_tracking.palm_normal[side][i], expected.palm_normal, atol=1e-8)
    t, T = rec.device_poses()
    np.testing.assert_array_equal(t, TRAJ_NS // 1000 * 1000)
    np.testing.assert_allclose(T, device_pose(TRAJ_NS), atol=2e-6)
    np.testing.assert_allclose(rec.device_pose_at(FRAME_NS), device_pose(FRAME_NS), atol=1e-5)
    # The CSV floors to microseconds: up to 1 us past either end is clamped, further out refused.
    np.testing.assert_allclose(rec.device_pose_at([t[0] - 1000, t[-1] + 1000]), T[[0, -1]], atol=1e-12)
    with pytest.raises(ValueError, match=r"closed_loop_trajectory\.csv: 1 requested device time"):
        rec.device_pose_at(t[-1] + 1001)

    g = rec.gt()
    np.testing.assert_array_equal(g["t_ns"], FRAME_NS)
    # Not given by the writer's caller: interpolated from the trajectory, camera through T_device_rgb.
    np.testing.assert_allclose(g["T_world_device"], device_pose(FRAME_NS), atol=1e-6)
    T_device_rgb = rec.rgb_calibration().get_transform_device_camera().to_matrix()
    np.testing.assert_allclose(g["T_world_rgb"], g["T_world_device"] @ T_device_rgb, atol=1e-12)
    for i in range(FRAMES):
        expected = gt(i)
        for key, value in expected.items():
            np.testing.assert_array_equal(g[key][i], value, err_msg=key)
    assert g["object_labels"].dtype == np.uint8 and g["arm_mask"].dtype == bool
    assert g["phase"].tolist() == ["reach"] * 3 + ["transport"] * 3
    assert g["episode"] == {"success": True, "seed": 7, "placements": {"bread": [0.4, 0.1, 0.0]}}
    assert set(rec.gt(masks=False)) == set(g) - {"object_labels", "arm_mask"}
    np.testing.assert_array_equal(rec.gt_mask("arm_mask", 2), gt(2)["arm_mask"])

    summary = rec.hand_summary
    assert summary["total_frames"] == FRAMES and summary["valid_frame_fraction"] == 1.0
    seen = [h.confidence for i in range(FRAMES) for h in (hand(i, "left"), hand(i, "right")) if h is not None]
    assert summary["mean_confidence"] == pytest.approx(np.mean(seen))


def test_given_device_pose_is_kept_and_the_camera_derived(tmp_path):
    T_device_rgb = RecordingWriter.camera_for(SIZE, SIZE, CALIBRATION_JSON).T_device_camera
    exact = device_pose(FRAME_NS[:2])
    with new_writer(tmp_path / "d") as writer:
        np.testing.assert_allclose(writer.T_device_rgb, T_device_rgb)
        np.testing.assert_array_equal(writer.fisheye_params, writer.camera_model().params)
        np.testing.assert_array_equal(writer.fisheye_params, writer.rgb_calibration().get_projection_params())
        for i in range(2):
            writer.add_frame(int(FRAME_NS[i]), image(i), {}, {"T_world_device": exact[i]})
        writer.set_trajectory(TRAJ_NS, device_pose(TRAJ_NS))
        writer.finish({})
    g = Recording.open(tmp_path / "d").gt()
    np.testing.assert_array_equal(g["T_world_device"], exact)
    np.testing.assert_allclose(g["T_world_rgb"], exact @ T_device_rgb, atol=1e-12)


# ----- bad input -----
def test_missing_file_is_named(copy):
    (copy / ar.HAND_TRACKING).unlink()
    with pytest.raises(RecordingError, match=r"hand_tracking_results\.csv: missing"):
        Recording.open(copy)


def test_truncated_csv_is_named(copy):
    path = copy / ar.TRAJECTORY
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # cut inside the last line, as an interrupted copy does
    with pytest.raises(RecordingError, match=r"loop_trajectory\.csv: line 261 has 2\d fields, the header has 28"):
        Recording.open(copy)


def test_missing_column_is_named(copy):
    path = copy / ar.HAND_TRACKING
    lines = [line.split(",") for line in path.read_text().splitlines()]
    drop = lines[0].index("ny_right_palm_device")
    path.write_text("\n".join(",".join(f for k, f in enumerate(line) if k != drop) for line in lines) + "\n")
    with pytest.raises(RecordingError, match=r"hand_tracking_results\.csv: missing column\(s\) ny_right_palm_device"):
        Recording.open(copy)


def test_bad_number_is_named_with_column_and_line(copy):
    path = copy / ar.TRAJECTORY
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[ar.TRAJECTORY_COLUMNS.index("qw_world_device")] = "oops"
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingError, match=r"closed_loop_trajectory\.csv: column qw_world_device, line 4: 'oops'"):
        Recording.open(copy)


def test_hand_tracking_out_of_step_with_the_frames_is_named(copy):
    path = copy / ar.HAND_TRACKING
    lines = path.read_text().splitlines()
    lines[2] = str(int(lines[2].split(",")[0]) + 1) + lines[2][lines[2].index(","):]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingError, match=r"hand_tracking_results\.csv: column tracking_timestamp_us must hold"):
        Recording.open(copy)


def test_frame_count_mismatch_and_bad_json_are_named(copy):
    metadata = json.loads((copy / ar.METADATA).read_text())
    (copy / ar.METADATA).write_text(json.dumps({**metadata, "num_frames": 7}))
    with pytest.raises(RecordingError, match=r"frame_timestamps\.csv: 6 frames, metadata\.json says 7"):
        Recording.open(copy)
    (copy / ar.METADATA).write_text(json.dumps({**metadata, "rgb_width": 64, "rgb_height": 64}))
    with pytest.raises(RecordingError, match=r"video\.mp4: frames are 128x128, metadata\.json says 64x64"):
        Recording.open(copy)
    (copy / ar.METADATA).write_text(json.dumps(metadata))
    path = copy / ar.FRAME_TIMESTAMPS
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(RecordingError, match=r"video\.mp4: 6 frames, \S*frame_timestamps\.csv has 5 rows"):
        Recording.open(copy)
    (copy / ar.METADATA).write_text('{"task": ')
    with pytest.raises(RecordingError, match=r"metadata\.json: not valid JSON"):
        Recording.open(copy)
    (copy / ar.METADATA).write_text('{"task": "x"}')
    with pytest.raises(RecordingError, match=r"metadata\.json: missing key\(s\) format, format_version"):
        Recording.open(copy)


def test_headers_other_than_the_writers_are_refused(copy):
    path = copy / ar.TRAJECTORY
    lines = path.read_text().splitlines()
    swapped = [",".join(f[:1] + f[2:3] + f[1:2] + f[3:]) for f in (line.split(",") for line in lines)]
    path.write_text("\n".join(swapped) + "\n")  # a valid MPS file (any column order), not the writer's
    with pytest.raises(RecordingError, match=r"closed_loop_trajectory\.csv: columns are not in the MPS order"):
        Recording.open(copy)
    path.write_text("\n".join([lines[0] + ",extra"] + [line + ",0" for line in lines[1:]]) + "\n")
    with pytest.raises(RecordingError, match=r"closed_loop_trajectory\.csv: unexpected column\(s\) extra"):
        Recording.open(copy)
    dropped = [",".join(f[:-1]) for f in (line.split(",") for line in lines)]  # qw_ecef_device: not read by MPS
    path.write_text("\n".join(dropped) + "\n")
    with pytest.raises(RecordingError, match=r"closed_loop_trajectory\.csv: missing column\(s\) qw_ecef_device"):
        Recording.open(copy)


def test_broken_video_and_calibration_are_named(copy):
    (copy / ar.VIDEO).write_bytes(b"not a video")
    with pytest.raises(RecordingError, match=r"video\.mp4: not a readable video"):
        Recording.open(copy)
    (copy / ar.CALIBRATION).write_text('{"CameraCalibrations": []}')
    with pytest.raises(RecordingError, match=r"device_calibration\.json: not a device calibration.*DeviceClassInfo"):
        Recording.open(copy)


def test_writer_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="metadata is missing seed"):
        new_writer(tmp_path / "a", metadata={"task": "t", "instruction": "i"})
    with pytest.raises(ValueError, match="metadata 'format' is written by the recording writer"):
        new_writer(tmp_path / "a", metadata={**METADATA, "format": "x"})
    with pytest.raises(Exception, match="aspect ratio"):
        new_writer(tmp_path / "a", width=SIZE, height=SIZE // 2)
    with pytest.raises(ValueError, match="even"):
        new_writer(tmp_path / "a", width=SIZE + 1, height=SIZE + 1)
    assert not list(tmp_path.iterdir())

    writer = new_writer(tmp_path / "b")
    with pytest.raises(ValueError, match=r"rgb must be uint8 \(128, 128, 3\)"):
        writer.add_frame(0, np.zeros((SIZE, SIZE, 3), np.float32), {}, {})
    writer.add_frame(10_000, image(0), {}, gt(0))
    with pytest.raises(ValueError, match="frame 1: t_ns 10000 is not after"):
        writer.add_frame(10_000, image(1), {}, gt(1))
    with pytest.raises(ValueError, match="frame 1: gt keys"):
        writer.add_frame(20_000, image(1), {}, {"grasped": np.bool_(True)})
    with pytest.raises(ValueError, match="frame 1: gt 'T_world_bread' is float32"):
        writer.add_frame(20_000, image(1), {}, {**gt(1), "T_world_bread": np.eye(4, dtype=np.float32)})
    with pytest.raises(ValueError, match="gt key 'episode' is reserved"):
        writer.add_frame(20_000, image(1), {}, {**gt(1), "episode": np.float64(1)})
    with pytest.raises(ValueError, match="hands must be keyed"):
        writer.add_frame(20_000, image(1), {"middle": None}, gt(1))
    with pytest.raises(ValueError, match="set_trajectory was not called"):
        writer.finish({})
    writer.set_trajectory(np.array([20_000, 30_000]), device_pose([20_000, 30_000]))
    with pytest.raises(ValueError, match="the trajectory only"):
        writer.finish({})
    writer.abort()
    assert not list(tmp_path.iterdir())

    with pytest.raises(RuntimeError, match="generator failed"):
        with new_writer(tmp_path / "c") as writer:
            writer.add_frame(0, image(0), {}, {})
            raise RuntimeError("generator failed")
    assert not list(tmp_path.iterdir())


def test_default_calibration_is_the_shipped_file():
    assert ar.default_calibration_path().read_bytes() == CALIBRATION_JSON.read_bytes()


def test_existing_recording_is_never_overwritten(recording_dir):
    with pytest.raises(FileExistsError, match="never overwritten"):
        new_writer(recording_dir)


def test_hand_observation_is_validated():
    good = hand(0, "right")
    with pytest.raises(ValueError, match=r"landmarks must be finite with shape \(21, 3\)"):
        HandObservation(good.landmarks[:20], good.T_device_wrist, good.palm_normal, good.wrist_normal, 0.9)
    with pytest.raises(ValueError, match="palm_normal must be a unit 3-vector"):
        HandObservation(good.landmarks, good.T_device_wrist, 2 * good.palm_normal, good.wrist_normal, 0.9)
    with pytest.raises(ValueError, match=r"confidence of a seen hand must be in \[0, 1\]"):
        HandObservation(good.landmarks, good.T_device_wrist, good.palm_normal, good.wrist_normal, -1.0)
