"""`humanego run humanego_drivers aria_source` on the real Aria recording, in its own process, received over
real DDS by this one: every frame, with its device timestamp, size and a CameraInfo that projects like
projectaria-tools' linear calibration; pause/step; bad files exit with the file named."""

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from projectaria_tools.core import calibration, data_provider
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import SetBool, Trigger
from tf2_msgs.msg import TFMessage

from humanego_ros import conversions as conv
from humanego_ros import qos

VRS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aria" / "recording.vrs"
pytestmark = pytest.mark.skipif(not VRS.is_file(), reason=f"real Aria sample data not found at {VRS}")


def start(processes, ns, *params):
    """The node, paused: the test resumes it once its subscriptions are connected."""
    args = ["humanego", "run", "humanego_drivers", "aria_source", "--ros-args", "-r", f"__ns:={ns}",
            "-p", f"vrs:={VRS}", "-p", "start_paused:=true"]
    for param in params:
        args += ["-p", param]
    return processes.start(args)


def subscriptions(ns, *streams):
    subs = {"tf_static": (TFMessage, "/tf_static", qos.TF_STATIC)}
    for name in streams:
        subs[name] = (Image, f"{ns}/{name}/image_raw", qos.SENSOR)
        subs[f"{name}_info"] = (CameraInfo, f"{ns}/{name}/camera_info", qos.SENSOR)
    return subs


@pytest.fixture(scope="module")
def recording():
    provider = data_provider.create_vrs_data_provider(str(VRS))
    stamps = {}
    for label in ("camera-rgb", "camera-slam-left", "camera-slam-right"):
        stream = provider.get_stream_id_from_label(label)
        stamps[label] = [provider.get_image_data_by_index(stream, i)[1].capture_timestamp_ns
                         for i in range(provider.get_num_data(stream))]
    return provider.get_device_calibration(), stamps


def test_every_frame_of_the_real_recording_arrives_rectified_with_device_stamps(processes, probe, recording):
    device, stamps = recording
    ns = f"/aria_{os.getpid()}"
    proc = start(processes, ns, "slam:=true", "width:=480", "height:=480")
    peer = probe("aria_probe", subscriptions(ns, "camera", "slam_left", "slam_right"))
    got = peer.got
    peer.wait_connected(proc)
    pause = peer.node.create_client(SetBool, f"{ns}/aria_source/pause")
    assert peer.call(pause, SetBool.Request(data=False), proc).success
    peer.wait(lambda: len(got["camera"]) == 8 and len(got["slam_left"]) == 4 and len(got["slam_right"]) == 4,
              "8 RGB and 4 + 4 SLAM frames", proc)
    assert [conv.time_to_ns(m.header.stamp) for m in got["camera"]] == stamps["camera-rgb"]
    assert [conv.time_to_ns(m.header.stamp) for m in got["slam_left"]] == stamps["camera-slam-left"]
    image = got["camera"][0]
    assert (image.width, image.height, image.encoding, image.header.frame_id) == (480, 480, "rgb8", "aria_rgb_optical")
    assert conv.image_to_numpy(image).std() > 10, "the frame is blank"
    slam = got["slam_left"][0]
    assert (slam.width, slam.height, slam.encoding) == (640, 480, "mono8")

    # CameraInfo projects like projectaria's linear calibration of the same focal length and pose.
    info = peer.wait(lambda: got["camera_info"], "camera_info", proc)[-1]
    rgb = device.get_camera_calib("camera-rgb")
    K = np.reshape(info.k, (3, 3))
    linear = calibration.get_linear_camera_calibration(480, 480, K[0, 0], "camera-rgb",
                                                       rgb.get_transform_device_camera())
    assert (info.width, info.height, info.distortion_model, list(info.d)) == (480, 480, "plumb_bob", [])
    points = np.random.default_rng(0).uniform([-0.4, -0.4, 0.8], [0.4, 0.4, 2.0], (10, 3))
    P = np.reshape(info.p, (3, 4))
    for X in points:
        uv = P @ np.append(X, 1.0)
        np.testing.assert_allclose(uv[:2] / uv[2], linear.project(X), atol=1e-6)
        ray = np.linalg.solve(K, np.append(uv[:2] / uv[2], 1.0))
        np.testing.assert_allclose(ray / ray[2], linear.unproject(linear.project(X)) / linear.unproject(
            linear.project(X))[2], atol=1e-9)
    assert K[0, 0] == pytest.approx(rgb.get_projection_params()[0] * 480 / 1408)

    # The optical frames hang off the device frame with the factory extrinsics.
    static = peer.wait(lambda: {t.child_frame_id: t for m in got["tf_static"] for t in m.transforms}
                       if len(got["tf_static"]) else None, "tf_static", proc)
    assert static["aria_rgb_optical"].header.frame_id == "aria_device"
    np.testing.assert_allclose(conv.transform_to_matrix(static["aria_rgb_optical"].transform),
                               rgb.get_transform_device_camera().to_matrix(), atol=1e-9)
    assert {"aria_slam_left_optical", "aria_slam_right_optical"} <= set(static)


def test_paused_replay_advances_one_frame_per_step_then_plays_on(processes, probe):
    ns = f"/aria_step_{os.getpid()}"
    proc = start(processes, ns, "start_paused:=true", "width:=128", "height:=128", "stamp:=now")
    peer = probe("aria_step_probe", subscriptions(ns, "camera"))
    step = peer.node.create_client(Trigger, f"{ns}/aria_source/step")
    pause = peer.node.create_client(SetBool, f"{ns}/aria_source/pause")
    got = peer.got["camera"]
    peer.wait_connected(proc)
    for n in (1, 2):
        assert peer.call(step, Trigger.Request(), proc).success
        peer.wait(lambda n=n: len(got) == n, f"frame {n}", proc)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # a negative check: nothing more arrives while paused
        peer.executor.spin_once(timeout_sec=0.05)
    assert len(got) == 2
    assert peer.call(pause, SetBool.Request(data=False), proc).success
    peer.wait(lambda: len(got) == 8, "the remaining frames", proc)
    assert not peer.call(step, Trigger.Request(), proc).success, "step is refused while playing"
    stamps = [conv.time_to_ns(m.header.stamp) for m in got]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time_ns()) < 60e9, "stamp:=now is ROS time"


def run(*params, timeout=60):
    args = ["humanego", "run", "humanego_drivers", "aria_source", "--ros-args"]
    for param in params:
        args += ["-p", param]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_bad_recordings_exit_at_start_naming_the_file(tmp_path):
    notes = tmp_path / "notes.vrs"
    notes.write_text("not a recording\n" * 20)
    cut = tmp_path / "cut.vrs"
    cut.write_bytes(VRS.read_bytes()[:2_000_000])
    mps = VRS.parent / "mps_sample"
    for params, expected in [((f"vrs:={tmp_path / 'missing.vrs'}",), "missing.vrs: no such file"),
                             ((f"vrs:={notes}",), "notes.vrs: not an Aria .vrs recording"),
                             ((f"vrs:={cut}",), "cut.vrs: the file is truncated"),
                             ((f"vrs:={VRS}", f"mps:={mps}"), "no overlap at all"),
                             ((), "parameter 'vrs' of node 'aria_source' is empty"),
                             ((f"vrs:={VRS}", "rectify:=false", "rotate_cw90:=true"), "'rotate_cw90' needs")]:
        out = run(*params)
        assert out.returncode == 2 and "cannot start" in out.stderr and expected in out.stderr, (params, out.stderr)
    out = run(f"vrs:={cut}", "allow_truncated:=true", "exit_when_done:=true", "playback_rate:=0.0")
    assert out.returncode == 0 and "replay finished: 4 camera frames" in out.stderr, out.stderr


def test_live_streaming_without_the_sdk_says_how_to_install_it():
    out = subprocess.run(["humanego", "run", "humanego_drivers", "aria_live"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "projectaria-client-sdk" in out.stderr and "pip install" in out.stderr
