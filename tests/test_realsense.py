"""The RealSense source with the real pyrealsense2 and real recordings, without a camera.

The recordings are written by pyrealsense2 itself (a ``software_device`` recorded by ``rs.recorder``, see
``humanego_drivers.realsense.write_db3``) and played back by it: nothing of librealsense is mocked. Live streaming
cannot be exercised here (no camera); the live "no device" path is, through the node's retry loop.
"""

import os
import subprocess
import time

import numpy as np
import pyrealsense2 as rs
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image

from humanego_core.camera_models import LINEAR, CameraModel
from humanego_drivers.realsense import FramePairer, RealSenseCamera, RealSenseError, write_db3
from humanego_ros import conversions as conv
from humanego_ros import qos

W, H, N = 64, 48, 10
# Values exactly representable in float32 (librealsense stores intrinsics as float).
CAMERA = CameraModel(LINEAR, [50.5, 51.25, 31.5, 23.75], W, H)
DISTORTION = (0.125, -0.0625, 0.001953125, -0.0009765625, 0.03125)
# Unix-epoch device times (global_time domain), 33.333 ms apart, microsecond multiples.
STAMPS = [1_700_000_000_123_456_000 + i * 33_333_000 for i in range(N)]
NO_DEVICE = len(rs.context().query_devices()) == 0


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    rng = np.random.default_rng(7)
    rgb = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(N)]
    depth = [rng.integers(0, 65536, (H, W), dtype=np.uint16) for _ in range(N)]
    for i in range(N):  # distinct content even by a glance at one pixel
        rgb[i][0, 0] = (i, 2 * i, 3 * i)
        depth[i][0, 0] = 1000 + i
    path = write_db3(tmp_path_factory.mktemp("rs") / "synthetic.db3", rgb, depth, STAMPS, camera=CAMERA,
                     distortion=DISTORTION, domain="global_time")
    return path, rgb, depth


# ----- library -------------------------------------------------------------------------------------------
def test_playback_is_frame_exact(recording):
    path, rgb, depth = recording
    with RealSenseCamera(recording=path, real_time=False) as camera:
        frames = list(camera)
        assert camera.finished and camera.read() is None
    assert [f.frame_number for f in frames] == list(range(1, N + 1))
    assert [f.timestamp_ns for f in frames] == STAMPS
    for f, expected_rgb, expected_depth in zip(frames, rgb, depth, strict=True):
        assert f.rgb.dtype == np.uint8 and f.rgb.shape == (H, W, 3)
        np.testing.assert_array_equal(f.rgb, expected_rgb)
        assert f.depth.dtype == np.uint16
        np.testing.assert_array_equal(f.depth, expected_depth)
        assert f.timestamp_domain == "global_time"
        np.testing.assert_array_equal(f.camera.params, CAMERA.params)
        assert (f.camera.width, f.camera.height, f.camera.model) == (W, H, LINEAR)
        assert f.distortion == DISTORTION and f.distortion_model == "plumb_bob"


def test_playback_is_repeatable(recording):
    path, rgb, _ = recording
    for _ in range(3):
        with RealSenseCamera(recording=path, real_time=False, depth=False) as camera:
            frames = list(camera)
        assert [f.frame_number for f in frames] == list(range(1, N + 1))
        assert all(f.depth is None for f in frames)
        np.testing.assert_array_equal(frames[-1].rgb, rgb[-1])


def test_depth_of_another_camera_is_aligned_with_rs_align(tmp_path):
    # Depth at half the colour resolution, same origin and axes: the left half at 1 m, the right at 2 m.
    colour = CameraModel(LINEAR, [60.0, 60.0, 31.5, 23.5], W, H)
    depth_camera = CameraModel(LINEAR, [30.0, 30.0, 15.25, 11.25], W // 2, H // 2)
    depth = np.full((H // 2, W // 2), 1000, np.uint16)
    depth[:, W // 4:] = 2000
    rgb = [np.full((H, W, 3), i, np.uint8) for i in range(3)]
    path = write_db3(tmp_path / "unregistered.db3", rgb, [depth] * 3, camera=colour, depth_camera=depth_camera)
    with RealSenseCamera(recording=path, real_time=False) as camera:
        frames = list(camera)
    assert len(frames) == 3
    aligned = frames[0].depth
    assert aligned.shape == (H, W)
    left, right = aligned[:, : W // 2 - 2], aligned[:, W // 2 + 2:]
    assert set(np.unique(left)) <= {0, 1000} and (left == 1000).mean() > 0.9
    assert set(np.unique(right)) <= {0, 2000} and (right == 2000).mean() > 0.9


def test_bgr_colour_and_depth_units_are_converted(tmp_path):
    rng = np.random.default_rng(1)
    rgb = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(3)]
    depth = [np.full((H, W), 10 * (i + 1), np.uint16) for i in range(3)]  # tenths of a millimetre (as on a D405)
    path = write_db3(tmp_path / "bgr.db3", rgb, depth, bgr=True, depth_units_m=0.0001)
    with RealSenseCamera(recording=path, real_time=False) as camera:
        frames = list(camera)
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.rgb, rgb[i])
        assert np.all(frame.depth == i + 1)  # millimetres
        assert frame.distortion == () and frame.distortion_model == ""


def test_real_time_playback_keeps_the_recorded_pace(tmp_path):
    rgb = [np.full((H, W, 3), i, np.uint8) for i in range(8)]
    path = write_db3(tmp_path / "paced.db3", rgb, fps=30, pace=True)  # recorded over ~233 ms
    start = time.monotonic()
    with RealSenseCamera(recording=path, real_time=True, depth=False) as camera:
        frames = list(camera)
    elapsed = time.monotonic() - start
    assert [f.frame_number for f in frames] == list(range(1, 9))
    assert elapsed >= 0.8 * 7 / 30


def test_unreadable_recordings_raise_naming_the_file(tmp_path):
    garbage = tmp_path / "corrupt.db3"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.txt"
    text.write_text("not a recording\n")
    colour_only = write_db3(tmp_path / "colour_only.db3", [np.zeros((H, W, 3), np.uint8)])
    cases = [(tmp_path / "missing.db3", "does not exist"), (garbage, "cannot read"), (text, "cannot read"),
             (colour_only, "no depth stream")]
    for path, why in cases:
        with pytest.raises(RealSenseError) as err:
            RealSenseCamera(recording=path).open()
        assert str(path) in str(err.value) and why in str(err.value)


@pytest.mark.skipif(not NO_DEVICE, reason="a RealSense device is connected")
def test_live_without_a_device_says_so():
    with pytest.raises(RealSenseError, match=r"no RealSense device connected \(serial 12345678\)"):
        RealSenseCamera(serial="12345678").open()
    with pytest.raises(RealSenseError, match=r"^no RealSense device connected$"):
        RealSenseCamera().open()


def test_pairing_of_streams_arriving_out_of_step():
    pairer = FramePairer(tolerance_ms=16.0)
    pairer.add_color("c1", 100.0)
    assert pairer.pop_ready() == []  # no depth at or after it yet
    pairer.add_depth("d1", 98.0)
    assert pairer.pop_ready() == []  # a nearer one may still come
    pairer.add_color("c2", 133.0)
    pairer.add_depth("d2", 131.0)  # after c1: c1 goes out with the nearer d1
    assert pairer.pop_ready() == [("c1", "d1")]
    pairer.add_depth("d3", 164.0)
    assert pairer.pop_ready() == [("c2", "d2")]
    pairer.add_color("c3", 200.0)  # d3 is 36 ms away, more than the tolerance
    assert pairer.pop_ready(flush=True) == [("c3", None)]


# ----- node ------------------------------------------------------------------------------------------------
# Sensor-data QoS (best effort, volatile) as the node publishes, with a history deep enough for every frame of
# the recording, so that the subscriber itself drops none.
DEEP_SENSOR = QoSProfile(depth=64, reliability=qos.SENSOR.reliability, durability=qos.SENSOR.durability,
                         history=qos.SENSOR.history)


def start_node(processes, name: str, ns: str, *params: str):
    args = ["humanego", "run", "humanego_drivers", "realsense_source", "--ros-args", "-r", f"__node:={name}",
            "-r", f"__ns:={ns}"]
    for param in params:
        args += ["-p", param]
    return processes.start(args)


def test_node_publishes_every_frame_of_a_recording(recording, processes, probe):
    path, rgb, depth = recording
    ns, name = f"/rs_play_{os.getpid()}", f"rs_play_{os.getpid()}"
    peer = probe("realsense_probe", {
        "image": (Image, f"{ns}/camera/image_raw", DEEP_SENSOR),
        "depth": (Image, f"{ns}/camera/depth/image_raw", DEEP_SENSOR),
        "info": (CameraInfo, f"{ns}/camera/camera_info", DEEP_SENSOR),
        "diag": (DiagnosticArray, "/diagnostics", qos.COMMAND)})
    proc = start_node(processes, name, ns, f"recording:={path}", "real_time:=false", "wait_for_subscribers:=1")
    got = peer.got

    def finished():
        return [s for msg in got["diag"] for s in msg.status
                if s.name == f"{name}: camera" and s.message.startswith("end of recording")]

    peer.wait(lambda: all(len(got[k]) >= N for k in ("image", "depth", "info")) and finished(),
              "every frame and the end of the recording", proc)
    assert finished()[-1].message == f"end of recording, {N} frames published"
    assert [len(got[k]) for k in ("image", "depth", "info")] == [N, N, N]
    for i in range(N):
        image, depth_msg, info = got["image"][i], got["depth"][i], got["info"][i]
        for msg in (image, depth_msg, info):
            assert conv.time_to_ns(msg.header.stamp) == STAMPS[i]  # the recorded device time, in order
            assert msg.header.frame_id == "camera_optical_frame"
        assert image.encoding == "rgb8" and depth_msg.encoding == "16UC1"
        np.testing.assert_array_equal(conv.image_to_numpy(image), rgb[i])
        np.testing.assert_array_equal(conv.image_to_numpy(depth_msg), depth[i])
        fx, fy, cx, cy = CAMERA.params
        np.testing.assert_array_equal(info.k, [fx, 0, cx, 0, fy, cy, 0, 0, 1])
        assert (info.width, info.height) == (W, H)
        assert info.distortion_model == "plumb_bob" and tuple(info.d) == DISTORTION
    assert proc.poll() is None  # stays up after the end (diagnostics say it has finished)


def test_node_loops_a_recording_with_increasing_stamps(recording, processes, probe):
    path, rgb, _ = recording
    ns = f"/rs_loop_{os.getpid()}"
    peer = probe("realsense_loop_probe", {"image": (Image, f"{ns}/camera/image_raw", DEEP_SENSOR),
                                          "info": (CameraInfo, f"{ns}/camera/camera_info", DEEP_SENSOR)})
    proc = start_node(processes, f"rs_loop_{os.getpid()}", ns, f"recording:={path}", "real_time:=false",
                      "wait_for_subscribers:=1", "loop:=true", "depth:=false")
    images = peer.got["image"]
    peer.wait(lambda: len(images) >= 2 * N + 1, "the recording played more than twice", proc)
    stamps = [conv.time_to_ns(m.header.stamp) for m in images]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    # Repetition r of frame i is stamped STAMPS[i] + r * (length of the recording + one frame).
    shift = STAMPS[-1] - STAMPS[0] + (STAMPS[1] - STAMPS[0])
    repetitions = set()
    for msg, stamp in zip(images, stamps, strict=True):
        r, rest = divmod(stamp - STAMPS[0], shift)
        i = STAMPS.index(STAMPS[0] + rest)
        np.testing.assert_array_equal(conv.image_to_numpy(msg), rgb[i])
        repetitions.add(r)
    # Discovery may still be settling during the first (fast) repetitions: any three in a row show the loop.
    assert len(repetitions) >= 3 and max(repetitions) - min(repetitions) == len(repetitions) - 1, repetitions


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_node_refuses_an_unreadable_recording(tmp_path, kind):
    path = tmp_path / f"{kind}.db3"
    if kind == "corrupt":
        path.write_bytes(b"SQLite format 2\0" + bytes(range(256)) * 8)
    out = subprocess.run(["humanego", "run", "humanego_drivers", "realsense_source", "--ros-args",
                          "-p", f"recording:={path}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "cannot start" in out.stderr and str(path) in out.stderr


@pytest.mark.skipif(not NO_DEVICE, reason="a RealSense device is connected")
def test_node_without_a_device_reports_and_retries_with_backoff(processes, probe):
    name = f"rs_live_{os.getpid()}"
    peer = probe("realsense_diag_probe", {"diag": (DiagnosticArray, "/diagnostics", qos.COMMAND)})
    # Delays 0.25, 0.5, 1, 2, 4 s, ...: DDS discovery (seconds with the large-data transport) may hide the first
    # ones, the next two seen still show the doubling.
    proc = start_node(processes, name, f"/{name}", "serial:=12345678", "retry_initial_s:=0.25",
                      "retry_max_s:=60.0")

    def delays():
        messages = [s.message for msg in peer.got["diag"] for s in msg.status
                    if s.name == f"{name}: camera" and s.level == DiagnosticStatus.ERROR]
        return sorted({float(m.rsplit("retrying in ", 1)[1].removesuffix(" s")) for m in messages})

    seen = peer.wait(lambda: len(delays()) >= 2 and delays(), "two retries on /diagnostics", proc)
    assert seen[1] == 2 * seen[0]  # back-off doubles
    statuses = [s for msg in peer.got["diag"] for s in msg.status if s.name == f"{name}: camera"]
    assert all(s.level == DiagnosticStatus.ERROR for s in statuses)
    for status in statuses:
        assert status.message.startswith("no RealSense device connected (serial 12345678); retrying in ")
        assert status.hardware_id == "12345678"
    assert proc.poll() is None  # retrying, not exiting
