"""The robot camera made to look like the human training images (``humanego run humanego_perception clean_view``).

Wires :class:`humanego_perception.robot_view.RobotCleanView` to ROS: per camera image, the robot's pixels
are computed from the URDF at the joint state measured nearest to the image's stamp and the camera pose
from TF, inpainted away, and the virtual gripper is drawn at the end effector with the measured opening.

Subscribes  camera/image_raw (rgb8 or bgr8), camera/camera_info (sensor data QoS): a rectified pinhole (or
            fisheye624) camera whose frame_id is the camera's optical frame in TF
            joint_states (sensor_msgs/JointState; best effort, so reliable publishers match too)
            /tf, /tf_static: T_camera_base at the image's stamp (humanego_ros.tf_listener)
Publishes   camera/image_clean (rgb8), camera/arm_mask (mono8, 255 = robot): the header of the input image
            /diagnostics: frames processed, dropped by reason, processing latency p50/p99

An image waits until a joint state at or after its stamp has arrived (so the nearest one is known) or the
next image arrives; then it is processed with the nearest joint state if that lies within
``max_joint_state_age_s`` of it, and dropped (counted by reason) otherwise, as it is without camera_info or
without a transform: stale data never produces a wrong mask.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque

import cv2
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState

from humanego_core.ament_index import resource_path
from humanego_core.timeutil import seconds_to_ns
from humanego_core.transform_tree import TransformLookupError
from humanego_perception.robot_view import JointStateBuffer, RobotCleanView, StaleJointStateError
from humanego_perception.views import load_views_config
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.diagnostics import OK, WARN, DiagnosticsReporter
from humanego_ros.parameters import ParamSpec, declare_parameters
from humanego_ros.runner import run_node
from humanego_ros.tf_listener import TfListener

LATENCY_WINDOW = 300  # frames the latency percentiles are taken over


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
        ParamSpec("max_joint_state_age_s", 0.05, "Largest time between an image and the joint state it is masked "
                  "with; images without one as close are dropped.", minimum=0.0, maximum=1.0),
    ]


class CleanViewNode(Node):
    def __init__(self):
        super().__init__("clean_view")
        p = self.params = declare_parameters(self, parameters())
        urdf = p["urdf"] or resource_path("urdf", f"{p['robot']}.urdf")
        self.view = RobotCleanView.from_config(urdf, load_views_config(p["views_config"] or None), p["padding_px"],
                                               p["ee_frame"])
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

        self.pub_clean = self.create_publisher(Image, "camera/image_clean", qos.SENSOR)
        self.pub_mask = self.create_publisher(Image, "camera/arm_mask", qos.SENSOR)
        self.diagnostics = DiagnosticsReporter(self, "clean view")
        self.create_subscription(CameraInfo, "camera/camera_info", self.on_camera_info, qos.SENSOR)
        self.create_subscription(JointState, "joint_states", self.on_joint_state, qos.SENSOR)
        self.create_subscription(Image, "camera/image_raw", self.on_image, qos.SENSOR)
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
        if self.pending and self.joints.newest_ns >= conv.time_to_ns(self.pending[0][0].header.stamp):
            self._decide(*self.pending.popleft())

    def on_image(self, msg: Image) -> None:
        # A newer image settles any older one with the joint states there are.
        while self.pending:
            self._decide(*self.pending.popleft())
        newest = self.joints.newest_ns
        if newest is not None and newest >= conv.time_to_ns(msg.header.stamp):
            self._decide(msg, time.monotonic())
        else:
            self.pending.append((msg, time.monotonic()))

    def _reject_input(self, topic: str, exc: Exception) -> None:
        self.rejected_inputs[topic] += 1
        self.get_logger().error(f"{topic} rejected ({self.rejected_inputs[topic]} so far): {exc}",
                                throttle_duration_sec=5.0)

    # ----- one frame -----
    def _decide(self, msg: Image, received: float) -> None:
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
        try:
            image = self._rgb(msg)
            clean, mask = self.view.process(image, self.camera, T_camera_base, q)
        except ValueError as exc:  # a bad image, or joint states lacking the robot's joints
            return self._drop("bad_input", str(exc))
        self.pub_clean.publish(conv.numpy_to_image(clean, "rgb8", stamp, msg.header.frame_id))
        self.pub_mask.publish(conv.numpy_to_image(mask.astype(np.uint8) * 255, "mono8", stamp, msg.header.frame_id))
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
        self.dropped[reason] += 1
        self.get_logger().warn(f"frame dropped ({reason}, {self.dropped[reason]} so far): {detail}",
                               throttle_duration_sec=5.0)
        self._report(WARN, f"dropping frames: {reason}")

    def _report(self, level, message: str) -> None:
        values = {"frames_processed": self.processed, "frames_dropped": sum(self.dropped.values())}
        values.update({f"dropped_{reason}": n for reason, n in sorted(self.dropped.items())})
        values.update({f"rejected_{topic}": n for topic, n in sorted(self.rejected_inputs.items())})
        if self.latencies:
            p50, p99 = np.percentile(np.asarray(self.latencies) * 1e3, [50, 99])
            values.update(latency_p50_ms=f"{p50:.2f}", latency_p99_ms=f"{p99:.2f}")
        self.diagnostics.set(level, message, **values)


def main(args=None):
    sys.exit(run_node(CleanViewNode, args))
