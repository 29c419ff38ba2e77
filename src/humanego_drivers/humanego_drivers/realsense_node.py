"""An Intel RealSense camera as a ROS 2 camera source (``humanego run humanego_drivers realsense_source``).

Wires :class:`humanego_drivers.realsense.RealSenseCamera` to ROS: a live device (``serial``, or the first
one found) or a ``.db3`` recording (``recording``). Frames are grabbed in their own thread.

Publishes   camera/image_raw (rgb8), camera/camera_info, camera/depth/image_raw (16UC1, millimetres, aligned to
            the colour camera; when ``depth``), sensor-data QoS, frame ``frame_id``
            /diagnostics: OK "streaming" with the frame count and rate; ERROR "<why>; retrying in X s" while a
            device is missing or lost; OK "end of recording" when a playback has finished
Stamps      live: the ROS time at which the frame was received (librealsense's device timestamp, usually in its
            host-synchronised ``global_time`` domain, is not used for stamps). Recording: the recorded device
            timestamp of the colour frame (whatever domain it was recorded in; ``global_time`` is Unix time);
            with ``loop``, each repetition is shifted by the recording's length plus one frame, so stamps keep
            increasing.
CameraInfo  the colour intrinsics; Brown-Conrady coefficients as plumb_bob [k1, k2, p1, p2, k3] when not all zero,
            otherwise rectified (empty D).

A device that is absent at start or disappears (no frame within ``frame_timeout_s``) is reported on
/diagnostics and retried with exponential back-off (``retry_initial_s`` doubling up to ``retry_max_s``); the
node never exits for it. A recording that cannot be read (missing, not a RealSense .db3, corrupt) is a start-up
error (exit code 2).

Exercised without hardware: file playback through the node and the "no device" retry loop. Not exercised:
live streaming from a camera and a camera unplugged while streaming.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback

from rclpy.node import Node

from humanego_core.timeutil import Backoff
from humanego_drivers.camera_topics import CameraTopics
from humanego_drivers.realsense import RealSenseCamera, RealSenseError, RealSenseFrame
from humanego_ros import conversions as conv
from humanego_ros.diagnostics import ERROR, OK, DiagnosticsReporter
from humanego_ros.parameters import ParameterError, ParamSpec, declare_parameters
from humanego_ros.runner import run_node

STATUS_PERIOD_S = 1.0


def parameters() -> list[ParamSpec]:
    return [
        ParamSpec("serial", "", "Serial number of the live device; empty = the first one found.", read_only=True),
        ParamSpec("recording", "", "RealSense recording (.db3) to play instead of a live device; empty = live.",
                  read_only=True),
        ParamSpec("real_time", True, "Recording only: play at the recorded pace (frames may be dropped if we fall "
                  "behind); false = as fast as frames are taken, none dropped (deterministic).", read_only=True),
        ParamSpec("loop", False, "Recording only: start over at the end instead of stopping.", read_only=True),
        ParamSpec("wait_for_subscribers", 0, "Recording only: start playing once every camera topic (image_raw, "
                  "camera_info, and depth/image_raw when depth is on) has this many subscribers, so that no frame "
                  "is sent to nobody (offline processing, tests).", minimum=0, maximum=100, read_only=True),
        ParamSpec("width", 640, "Live only: colour and depth image width (px).", minimum=16, maximum=3840,
                  read_only=True),
        ParamSpec("height", 480, "Live only: colour and depth image height (px).", minimum=16, maximum=2160,
                  read_only=True),
        ParamSpec("fps", 30, "Live only: frame rate (Hz); width x height at fps must be a mode of the camera.",
                  minimum=1, maximum=300, read_only=True),
        ParamSpec("depth", True, "Publish depth aligned to the colour image on camera/depth/image_raw.",
                  read_only=True),
        ParamSpec("frame_id", "camera_optical_frame", "Frame of the images (the colour camera's optical frame).",
                  read_only=True),
        ParamSpec("frame_timeout_s", 5.0, "No frame for this long means the device is lost.", minimum=0.1,
                  maximum=120.0, read_only=True),
        ParamSpec("retry_initial_s", 1.0, "First delay before reopening a missing or lost device (s); doubles at "
                  "each failure.", minimum=0.01, maximum=600.0, read_only=True),
        ParamSpec("retry_max_s", 10.0, "Longest delay between attempts to reopen the device (s).", minimum=0.01,
                  maximum=3600.0, read_only=True),
    ]


class RealSenseSourceNode(Node):
    def __init__(self):
        super().__init__("realsense_source")
        specs = parameters()
        p = self.params = declare_parameters(self, [spec for spec in specs if spec.name != "serial"])
        p["serial"] = self._declare_serial(next(spec for spec in specs if spec.name == "serial"))
        if p["retry_max_s"] < p["retry_initial_s"]:
            raise ParameterError(f"retry_max_s ({p['retry_max_s']}) must be >= retry_initial_s "
                                 f"({p['retry_initial_s']})")
        self.playback = bool(p["recording"])
        self.camera = RealSenseCamera(serial=p["serial"], recording=p["recording"] or None, width=p["width"],
                                      height=p["height"], fps=p["fps"], depth=p["depth"], real_time=p["real_time"],
                                      timeout_s=p["frame_timeout_s"])
        if self.playback:
            try:  # a recording that cannot be read is a configuration error: fail at start
                self.camera.open()
            except RealSenseError as exc:
                raise ValueError(str(exc)) from None
        self.topics = CameraTopics(self, p["frame_id"], depth=p["depth"])
        self.diagnostics = DiagnosticsReporter(self, "camera", hardware_id=p["recording"] or p["serial"] or "realsense")
        self.backoff = Backoff(p["retry_initial_s"], p["retry_max_s"])
        self.published = 0
        self._info = None
        self._loop_offset_ns = 0  # added to recorded stamps, grows at each repetition of a looped recording
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="realsense", daemon=True)
        self._thread.start()
        what = f"recording {p['recording']} ({'real time' if p['real_time'] else 'as fast as possible'})" \
            if self.playback else f"live device {p['serial'] or '(first found)'} {p['width']}x{p['height']} " \
            f"at {p['fps']} Hz"
        self.get_logger().info(f"RealSense source: {what}, depth {'on' if p['depth'] else 'off'}")

    def _declare_serial(self, spec: ParamSpec) -> str:
        # RealSense serial numbers are digits, which `-p serial:=123` makes an integer: accept both (a number
        # that lost leading zeros still matches, see RealSenseCamera).
        descriptor = spec.descriptor()
        descriptor.dynamic_typing = True
        value = self.declare_parameter(spec.name, spec.default, descriptor).value
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ParameterError(f"parameter 'serial' of node '{self.get_name()}' must be a string, got {value!r}")
        return str(value)

    # ----- grab thread -----
    def _run(self) -> None:
        try:
            if self.playback and self.params["wait_for_subscribers"]:
                self.diagnostics.set(OK, "waiting for subscribers before playing")
                self.topics.wait_for_subscribers(self.params["wait_for_subscribers"], self._stop)
            while not self._stop.is_set():
                if not self._stream():
                    return
        except Exception:
            if self.context.ok() and not self._stop.is_set():
                self.get_logger().fatal(f"grab thread failed:\n{traceback.format_exc()}")
                self.diagnostics.set(ERROR, f"grab thread failed: {traceback.format_exc(limit=1).strip()}")
        finally:
            self.camera.close()

    def _stream(self) -> bool:
        """Open (if needed) and stream until the device is lost or the recording ends; False = stop for good."""
        p = self.params
        source = self.camera.source
        try:
            if not self.camera.is_open:
                self.camera.open()
            self._info = None
            if self.backoff.failures or not self._loop_offset_ns:  # not at each repetition of a loop
                self.get_logger().info(f"streaming from {source} ({self.camera.device_name or 'unnamed device'})")
            self.backoff.reset()
            offset_ns = self._loop_offset_ns
            first = last = None
            period_ns = count = 0
            t_first = 0.0
            rate_count, rate_t0 = 0, time.monotonic()
            self.diagnostics.set(OK, "streaming", frames=self.published, rate_hz=0.0, source=source)
            while not self._stop.is_set():
                frame = self.camera.read()
                if frame is None:
                    break
                if first is None:
                    first, t_first = frame.timestamp_ns, time.monotonic()
                elif period_ns == 0:
                    period_ns = frame.timestamp_ns - first
                last = frame.timestamp_ns
                stamp = frame.timestamp_ns + offset_ns if self.playback else self.get_clock().now().nanoseconds
                self._publish(stamp, frame)
                count += 1
                rate_count += 1
                elapsed = time.monotonic() - rate_t0
                if elapsed >= STATUS_PERIOD_S:
                    self.diagnostics.set(OK, "streaming", publish_now=False, frames=self.published,
                                         rate_hz=round(rate_count / elapsed, 2), source=source)
                    rate_count, rate_t0 = 0, time.monotonic()
        except RuntimeError as exc:  # RealSenseError, or pyrealsense2's own when a device goes mid-frame
            self.camera.close()
            delay = self.backoff.next_delay()
            message = f"{exc}; retrying in {delay:g} s"
            self.diagnostics.set(ERROR, message, frames=self.published, source=source, failures=self.backoff.failures,
                                 retry_in_s=delay)
            self.get_logger().error(message, throttle_duration_sec=30.0)
            self._stop.wait(delay)
            return True
        if self._stop.is_set():
            return False
        # End of the recording.
        self.camera.close()
        if p["loop"] and first is not None:
            self._loop_offset_ns = offset_ns + (last - first) + max(period_ns, 1)
            return True
        message = f"end of recording, {self.published} frames published"
        rate = (count - 1) / (time.monotonic() - t_first) if count > 1 else 0.0
        self.diagnostics.set(OK, message, frames=self.published, rate_hz=round(rate, 2), source=source)
        self.get_logger().info(message)
        return False

    def _publish(self, stamp_ns: int, frame: RealSenseFrame) -> None:
        if self._info is None:
            cam = frame.camera
            if frame.distortion:
                self._info = conv.make_camera_info(frame.K, cam.width, cam.height, stamp_ns, self.topics.frame_id,
                                                   distortion=frame.distortion,
                                                   distortion_model=frame.distortion_model)
            else:
                self._info = conv.camera_info_from_model(cam, stamp_ns, self.topics.frame_id)
        self.topics.publish(stamp_ns, frame.rgb, self._info, frame.depth if self.params["depth"] else None)
        self.published += 1

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=10)
        return super().destroy_node()


def main(args=None):
    sys.exit(run_node(RealSenseSourceNode, args))
