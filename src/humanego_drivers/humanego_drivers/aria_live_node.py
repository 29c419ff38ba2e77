"""Project Aria glasses streaming live as a camera source (``aria_live``; recordings: :mod:`aria_node`).

``humanego run humanego_drivers aria_live`` streams from the glasses with projectaria-client-sdk, rectified
and published like a replayed recording (device-time stamps unless ``stamp:=now``), with ``/diagnostics``;
when the glasses cannot be reached, or streaming stops, it retries with back-off instead of exiting. Without
the SDK installed it exits at start with a message saying how to install it. The live path is written
against the SDK's documented API but has not been run against real glasses on this project's machines.
"""

from __future__ import annotations

import queue
import sys
import threading
import time

from rclpy.node import Node
from tf2_msgs.msg import TFMessage

from humanego_core.timeutil import Backoff
from humanego_drivers.aria import STREAMS, AriaError, AriaLiveStream
from humanego_drivers.aria_node import SLAM_PARAMETER
from humanego_drivers.replay_node import CameraOutput, check_output_parameters, output_parameters
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.diagnostics import ERROR, OK, WARN, DiagnosticsReporter
from humanego_ros.parameters import ParameterError, ParamSpec, declare_parameters
from humanego_ros.runner import StartupError, run_node

# Live frames older than this when taken from the queue mean the consumer fell behind: reported.
STALE_AFTER_S = 2.0


def parameters() -> list[ParamSpec]:
    """Everything aria_live declares: the glasses' stream, and how its images are published."""
    return output_parameters() + [
        SLAM_PARAMETER,
        ParamSpec("interface", "usb", "Live streaming interface.", choices=("usb", "wifi")),
        ParamSpec("profile", "profile18", "Aria streaming profile (see 'aria streaming start --help')."),
        ParamSpec("device_ip", "", "IP address of the glasses (Wi-Fi); empty = the one connected by USB."),
        ParamSpec("retry_initial_s", 1.0, "First delay before reconnecting to lost glasses (s).", minimum=0.01,
                  maximum=60.0),
        ParamSpec("retry_max_s", 10.0, "Longest delay between reconnection attempts (s).", minimum=0.01,
                  maximum=600.0),
    ]


class AriaLiveNode(Node):
    def __init__(self):
        super().__init__("aria_live")
        p = self.params = declare_parameters(self, parameters())
        check_output_parameters(p)
        if p["retry_initial_s"] > p["retry_max_s"]:
            raise ParameterError("parameter 'retry_initial_s' must not exceed 'retry_max_s'")
        try:
            self.stream = AriaLiveStream(p["interface"], p["profile"], p["device_ip"], slam=p["slam"])
        except AriaError as exc:
            raise StartupError(str(exc)) from None
        self.diagnostics = DiagnosticsReporter(self, "aria glasses", p["device_ip"] or p["interface"])
        self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC)
        self.outputs: dict[str, CameraOutput] = {}
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aria_live", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        p = self.params
        backoff = Backoff(p["retry_initial_s"], p["retry_max_s"])
        while not self._stop.is_set():
            try:
                self.stream.connect()
            except AriaError as exc:
                delay = backoff.next_delay()
                self.diagnostics.set(ERROR, f"{exc}; retrying in {delay:.1f} s", attempts=backoff.failures)
                self.get_logger().warn(f"{exc}; retrying in {delay:.1f} s")
                self._stop.wait(delay)
                continue
            backoff.reset()
            self.diagnostics.set(OK, "streaming", profile=p["profile"])
            self._stream_until_lost()
            self.stream.close()

    def _stream_until_lost(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                frame = self.stream.frames.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() - last > STALE_AFTER_S:
                    self.diagnostics.set(WARN, f"no frame for {time.monotonic() - last:.1f} s: reconnecting")
                    return
                continue
            last = time.monotonic()
            output = self._output(frame.label, frame.image)
            stamp = frame.t_ns if self.params["stamp"] == "device" else self.get_clock().now().nanoseconds
            output.publish(stamp, output.process(frame.image))
            self.published += 1
            self.diagnostics.set(OK, "streaming", publish_now=False, frames=self.published,
                                 dropped=self.stream.dropped)

    def _output(self, label: str, image) -> CameraOutput:
        """The output of a camera, made at its first frame (streaming profiles decide the image size)."""
        if label not in self.outputs:
            name, frame_id = STREAMS[label]
            camera = self.stream.camera_model(label, image.shape[1], image.shape[0])
            self.outputs[label] = CameraOutput(self, name, frame_id, camera, self.params, main=label == "camera-rgb")
            self.pub_tf_static.publish(TFMessage(transforms=[
                conv.matrix_to_transform_stamped(out.camera.T_device_camera, self.params["device_frame"],
                                                 out.frame_id, 0) for out in self.outputs.values()]))
        return self.outputs[label]

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=10)
        self.stream.close()
        return super().destroy_node()


def main(args=None):
    sys.exit(run_node(AriaLiveNode, args))
