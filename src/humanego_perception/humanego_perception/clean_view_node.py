"""The robot camera made to look like the human training images (``humanego run humanego_perception clean_view``).

Wires :class:`humanego_perception.robot_view.RobotCleanView` to ROS: per camera image, the robot's pixels
are computed from the URDF at the joint state measured nearest to the image's stamp and the camera pose
from TF, inpainted away, and the virtual gripper is drawn at the end effector with the measured opening.

Subscribes  camera/image_raw (rgb8 or bgr8), camera/camera_info (sensor data QoS): a rectified pinhole (or
            fisheye624) camera whose frame_id is the camera's optical frame in TF
            joint_states (sensor_msgs/JointState; best effort depth 100, so reliable publishers match too)
            /tf, /tf_static: T_camera_base at the image's stamp (humanego_ros.tf_listener)
Publishes   camera/image_clean (rgb8), camera/arm_mask (mono8, 255 = robot): the header of the input image
            /diagnostics: frames processed, dropped by reason, processing latency p50/p99

An image waits until a joint state at or after its stamp has arrived (so the nearest one is known; older
waiting images are then dropped as superseded, the freshest frame wins) or until MAX_PENDING newer images
wait behind it. Then it is processed with the nearest joint state if that lies within
``max_joint_state_age_s`` of it, and dropped (counted by reason) otherwise, as it is without camera_info or
without a transform: stale data never produces a wrong mask. The image work runs in its own thread, so the
executor keeps taking joint states and TF meanwhile; a frame ready while the previous one is still being
processed waits in a single slot, and a newer one replaces it (dropped as ``busy``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState

from humanego_core.ament_index import resource_path
from humanego_core.timeutil import seconds_to_ns
from humanego_core.transform_tree import TransformLookupError
from humanego_perception.robot_view import (
    ONLINE_INPAINT_SCALE,
    JointStateBuffer,
    RobotCleanView,
    StaleJointStateError,
)
from humanego_perception.views import load_views_config
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.diagnostics import OK, WARN, DiagnosticsReporter
from humanego_ros.parameters import ParamSpec, declare_parameters
from humanego_ros.runner import run_node
from humanego_ros.tf_listener import TfListener

LATENCY_WINDOW = 300  # frames the latency percentiles are taken over
MAX_PENDING = 3  # images waiting for their joint state; the oldest is decided when one more arrives
LOG_PERIOD_S = 5.0  # repeated warnings of one kind are logged at most this often (rclpy's own throttling costs
                    # milliseconds per call even when it logs nothing)
# Joint states come at up to hundreds of Hz while a frame is being processed: keep enough of them to find the
# one of each image. Best effort, so that reliable publishers match too.
JOINT_STATES = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)


def parameters() -> list[ParamSpec]:
    return [
        ParamSpec("robot", "panda", "Robot whose shipped URDF (urdf/<robot>.urdf) is used unless 'urdf' is given.",
                  choices=("panda", "ur5e")),
        ParamSpec("urdf", "", "Robot description with primitive visual geometry; empty = the shipped one of 'robot'."),
        ParamSpec("views_config", "", "Views configuration (inpainting, virtual gripper); empty = config/views.yaml."),
        ParamSpec("base_frame", "base_link", "TF frame of the URDF's root link."),
        ParamSpec("ee_frame", "ee", "URDF frame of the end effector (tool centre point), where the virtual gripper "
                  "is drawn."),
        ParamSpec("padding_px", 3, "Dilation of the robot mask (px), covering calibration and timing errors.",
                  minimum=0, maximum=50),
        ParamSpec("inpaint_scale", ONLINE_INPAINT_SCALE, "The views configuration's inpaint.scale for this node: "
                  "image scale the arm is inpainted at (its fill is smooth; the cost grows with the masked area); "
                  "1 = full resolution.", minimum=0.1, maximum=1.0),
        ParamSpec("max_joint_state_age_s", 0.05, "Largest time between an image and the joint state it is masked "
                  "with; images without one as close are dropped.", minimum=0.0, maximum=1.0),
    ]


class CleanViewNode(Node):
    def __init__(self):
        super().__init__("clean_view")
        p = self.params = declare_parameters(self, parameters())
        urdf = p["urdf"] or resource_path("urdf", f"{p['robot']}.urdf")
        self.view = RobotCleanView.from_config(urdf, load_views_config(p["views_config"] or None), p["padding_px"],
                                               p["ee_frame"], p["inpaint_scale"])
        self.max_age_ns = seconds_to_ns(p["max_joint_state_age_s"])
        self.tf = TfListener(self)
        self.joints = JointStateBuffer()
        self.camera = None
        self.camera_frame = ""
        self.pending: deque[tuple[Image, float]] = deque()
        self.processed = 0
        self.dropped: Counter = Counter()
        self.rejected_inputs: Counter = Counter()
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._stats_lock = threading.Lock()  # the counters above: updated by the executor and the worker
        self._slot = threading.Condition()
        self._job = None  # the next frame for the worker
        self._stop = False
        self._logged: dict[str, float] = {}  # key -> time of its last log line

        self.pub_clean = self.create_publisher(Image, "camera/image_clean", qos.SENSOR)
        self.pub_mask = self.create_publisher(Image, "camera/arm_mask", qos.SENSOR)
        self.diagnostics = DiagnosticsReporter(self, "clean view")
        self.create_subscription(CameraInfo, "camera/camera_info", self.on_camera_info, qos.SENSOR)
        self.create_subscription(JointState, "joint_states", self.on_joint_state, JOINT_STATES)
        self.create_subscription(Image, "camera/image_raw", self.on_image, qos.SENSOR)
        self._worker = threading.Thread(target=self._work, name="clean_view", daemon=True)
        self._worker.start()
        self.get_logger().info(f"masking {urdf} (base {p['base_frame']}, gripper at {p['ee_frame']}), padding "
                               f"{p['padding_px']} px, joint states up to {p['max_joint_state_age_s']} s from images")

    # ----- inputs -----
    def on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.camera = conv.camera_model_from_info(msg)
            self.camera_frame = msg.header.frame_id
        except ValueError as exc:
            self._reject_input("camera_info", exc)

    def on_joint_state(self, msg: JointState) -> None:
        try:
            self.joints.add(conv.time_to_ns(msg.header.stamp), msg.name, msg.position)
        except ValueError as exc:
            self._reject_input("joint_states", exc)
            return
        self._settle()

    def on_image(self, msg: Image) -> None:
        self.pending.append((msg, time.monotonic()))
        if len(self.pending) > MAX_PENDING:  # joint states are late or missing: decide with what there is
            self._decide(*self.pending.popleft())
        self._settle()

    def _settle(self) -> None:
        """Process the newest pending image that a joint state at or after its stamp has arrived for (its
        nearest joint state is then known); older pending images are dropped, superseded by it."""
        newest = self.joints.newest_ns
        if newest is None:
            return
        ready = [i for i, (msg, _) in enumerate(self.pending) if conv.time_to_ns(msg.header.stamp) <= newest]
        if not ready:
            return
        for _ in range(ready[-1]):
            self.pending.popleft()
            self._drop("superseded", "a newer image was ready first")
        self._decide(*self.pending.popleft())

    def _reject_input(self, topic: str, exc: Exception) -> None:
        with self._stats_lock:
            self.rejected_inputs[topic] += 1
            count = self.rejected_inputs[topic]
        self._log_now_and_then(topic, self.get_logger().error, f"{topic} rejected ({count} so far): {exc}")

    # ----- one frame -----
    def _decide(self, msg: Image, received: float) -> None:
        """Executor thread: the frame's camera, joint state and transform, or the reason to drop it."""
        stamp = conv.time_to_ns(msg.header.stamp)
        if self.camera is None:
            return self._drop("no_camera_info", "no valid camera_info received yet")
        if (msg.width, msg.height) != (self.camera.width, self.camera.height):
            return self._drop("camera_info_mismatch", f"image {msg.width}x{msg.height}, camera_info "
                              f"{self.camera.width}x{self.camera.height}")
        try:
            q, _ = self.joints.nearest(stamp, self.max_age_ns)
        except StaleJointStateError as exc:
            return self._drop("stale_joint_state", str(exc))
        try:
            T_camera_base = self.tf.lookup(self.camera_frame, self.params["base_frame"], stamp)
        except TransformLookupError as exc:
            return self._drop("no_transform", str(exc))
        with self._slot:
            replaced = self._job is not None
            self._job = (msg, received, self.camera, T_camera_base, q)
            self._slot.notify()
        if replaced:
            self._drop("busy", "the previous frame was still being processed when a newer one was ready")

    def _work(self) -> None:
        """Worker thread: mask, inpaint, draw and publish the frames handed over by :meth:`_decide`."""
        try:
            while True:
                with self._slot:
                    while self._job is None and not self._stop:
                        self._slot.wait()
                    if self._stop:
                        return
                    job, self._job = self._job, None
                self._process(*job)
        except Exception:
            # After Ctrl-C the context dies before the node and publishing fails: that is the normal end.
            if self.context.ok():
                self.get_logger().fatal(f"processing failed, shutting down:\n{traceback.format_exc()}")
                os.kill(os.getpid(), signal.SIGINT)

    def _process(self, msg: Image, received: float, camera, T_camera_base, q) -> None:
        try:
            clean, mask = self.view.process(self._rgb(msg), camera, T_camera_base, q)
        except ValueError as exc:  # a bad image, or joint states lacking the robot's joints
            return self._drop("bad_input", str(exc))
        stamp = conv.time_to_ns(msg.header.stamp)
        self.pub_clean.publish(conv.numpy_to_image(clean, "rgb8", stamp, msg.header.frame_id))
        self.pub_mask.publish(conv.numpy_to_image(mask.astype(np.uint8) * 255, "mono8", stamp, msg.header.frame_id))
        with self._stats_lock:
            self.processed += 1
            self.latencies.append(time.monotonic() - received)
        self._report(OK, "processing frames")

    @staticmethod
    def _rgb(msg: Image) -> np.ndarray:
        if msg.encoding not in ("rgb8", "bgr8"):
            raise ValueError(f"image encoding {msg.encoding!r}; clean_view takes rgb8 or bgr8")
        image = conv.image_to_numpy(msg)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if msg.encoding == "bgr8" else image

    def _drop(self, reason: str, detail: str) -> None:
        with self._stats_lock:
            self.dropped[reason] += 1
            count = self.dropped[reason]
        self._log_now_and_then(reason, self.get_logger().warn, f"frame dropped ({reason}, {count} so far): {detail}")
        self._report(WARN, f"dropping frames: {reason}")

    def _log_now_and_then(self, key: str, log, text: str) -> None:
        now = time.monotonic()
        with self._stats_lock:
            due = now - self._logged.get(key, -LOG_PERIOD_S) >= LOG_PERIOD_S
            if due:
                self._logged[key] = now
        if due:
            log(text)

    def _report(self, level, message: str) -> None:
        with self._stats_lock:
            values = {"frames_processed": self.processed, "frames_dropped": sum(self.dropped.values())}
            values.update({f"dropped_{reason}": n for reason, n in sorted(self.dropped.items())})
            values.update({f"rejected_{topic}": n for topic, n in sorted(self.rejected_inputs.items())})
            latencies = np.asarray(self.latencies) * 1e3
            if latencies.size:
                p50, p99 = np.percentile(latencies, [50, 99])
                values.update(latency_p50_ms=f"{p50:.2f}", latency_p99_ms=f"{p99:.2f}")
            self.diagnostics.set(level, message, **values)

    def destroy_node(self):
        with self._slot:
            self._stop = True
            self._slot.notify()
        self._worker.join(timeout=10)
        return super().destroy_node()


def main(args=None):
    # The worker thread's Python parts hold the GIL for up to the switch interval (default 5 ms) each time the
    # executor thread wants it back; at hundreds of joint state and TF messages a second that starves the
    # executor and the joint states fall behind the images.
    sys.setswitchinterval(0.0005)
    sys.exit(run_node(CleanViewNode, args))
