"""The extrinsics check live (``humanego run humanego_control extrinsics_check``): the robot drawn into the camera.

Wires :class:`humanego_control.extrinsics_check.ExtrinsicsOverlay` to ROS: each camera image (at most
``max_rate_hz``) gets the arm's FK skeleton, the base axes and the virtual gripper drawn at the joint state
nearest its stamp, placed with the camera-to-base transform that TF holds (the configured extrinsics: the
sim's, or config/camera_extrinsics.yaml published by bringup). View camera/extrinsics_check in RViz or
rqt_image_view: with a right calibration the drawing lies on the arm.

Subscribes  camera/image_raw (rgb8 or bgr8), camera/camera_info (sensor data QoS; rectified pinhole or fisheye624)
            joint_states (sensor_msgs/JointState; best effort depth 100, so reliable publishers match too)
            /tf, /tf_static: T_camera_base at the image's stamp
Publishes   camera/extrinsics_check (rgb8, the input image's header)
            /diagnostics: images drawn, dropped by reason (no_camera_info, stale_joint_state, no_transform, ...)
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import cv2
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState

from humanego_control.extrinsics_check import ExtrinsicsOverlay
from humanego_core.kinematics import ROBOTS, KinematicsError, RobotKinematics
from humanego_core.timeutil import seconds_to_ns
from humanego_core.transform_tree import TransformLookupError
from humanego_perception.robot_view import JointStateBuffer, StaleJointStateError
from humanego_perception.views import load_views_config
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.diagnostics import OK, WARN, DiagnosticsReporter
from humanego_ros.parameters import ParamSpec, declare_parameters
from humanego_ros.runner import run_node
from humanego_ros.tf_listener import TfListener

JOINT_STATES = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)


def parameters() -> list[ParamSpec]:
    return [
        ParamSpec("robot", "panda", "Robot whose shipped URDF (urdf/<robot>.urdf) is used unless 'urdf' is given.",
                  choices=ROBOTS),
        ParamSpec("urdf", "", "Robot description; empty = the shipped one of 'robot'."),
        ParamSpec("views_config", "", "Views configuration with the virtual gripper; empty = config/views.yaml."),
        ParamSpec("base_frame", "base_link", "TF frame of the URDF's root link."),
        ParamSpec("max_rate_hz", 10.0, "Most images drawn per second (wall clock); the others are skipped.",
                  minimum=0.1, maximum=240.0),
        ParamSpec("max_joint_state_age_s", 0.05, "Largest time between an image and the joint state drawn into it.",
                  minimum=0.0, maximum=1.0),
    ]


class ExtrinsicsCheckNode(Node):
    def __init__(self):
        super().__init__("extrinsics_check")
        p = self.params = declare_parameters(self, parameters())
        self.kin = RobotKinematics.load(p["urdf"] or p["robot"])
        if p["base_frame"] != self.kin.base_frame:
            raise ValueError(f"base_frame {p['base_frame']!r} is not the root link of {self.kin.urdf_path} "
                             f"({self.kin.base_frame!r})")
        self.overlay = ExtrinsicsOverlay(self.kin, load_views_config(p["views_config"] or None).gripper)
        self.period_s = 1.0 / p["max_rate_hz"]
        self.max_age_ns = seconds_to_ns(p["max_joint_state_age_s"])
        self.tf = TfListener(self)
        self.joints = JointStateBuffer()
        self.camera = None
        self.last_drawn = -float("inf")
        self.drawn = 0
        self.dropped: Counter = Counter()
        self.pub = self.create_publisher(Image, "camera/extrinsics_check", qos.SENSOR)
        self.diagnostics = DiagnosticsReporter(self, "extrinsics check")
        self.create_subscription(CameraInfo, "camera/camera_info", self.on_camera_info, qos.SENSOR)
        self.create_subscription(JointState, "joint_states", self.on_joint_state, JOINT_STATES)
        self.create_subscription(Image, "camera/image_raw", self.on_image, qos.SENSOR)

    def on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.camera = conv.camera_model_from_info(msg)
        except ValueError as exc:
            self._drop("bad_camera_info", str(exc))

    def on_joint_state(self, msg: JointState) -> None:
        try:
            self.joints.add(conv.time_to_ns(msg.header.stamp), msg.name, msg.position)
        except ValueError as exc:
            self._drop("bad_joint_state", str(exc))

    def on_image(self, msg: Image) -> None:
        now = time.monotonic()
        if now - self.last_drawn < self.period_s:
            return
        stamp = conv.time_to_ns(msg.header.stamp)
        if self.camera is None:
            return self._drop("no_camera_info", "no valid camera_info yet")
        if msg.encoding not in ("rgb8", "bgr8") or (msg.width, msg.height) != (self.camera.width, self.camera.height):
            return self._drop("bad_image", f"{msg.encoding} {msg.width}x{msg.height}; camera_info "
                              f"{self.camera.width}x{self.camera.height}, rgb8 or bgr8 expected")
        try:
            positions, _ = self.joints.nearest(stamp, self.max_age_ns)
            q = self.kin.arm_positions(list(positions), list(positions.values()))
            T_camera_base = self.tf.lookup(msg.header.frame_id, self.kin.base_frame, stamp)
        except StaleJointStateError as exc:
            return self._drop("stale_joint_state", str(exc))
        except KinematicsError as exc:
            return self._drop("bad_joint_state", str(exc))
        except TransformLookupError as exc:
            return self._drop("no_transform", str(exc))
        image = conv.image_to_numpy(msg)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if msg.encoding == "bgr8" else image
        drawn = self.overlay.draw(rgb, self.camera, T_camera_base, q, positions.get(self.kin.gripper_joint_name, 0.0))
        self.pub.publish(conv.numpy_to_image(drawn, "rgb8", stamp, msg.header.frame_id))
        self.last_drawn = now
        self.drawn += 1
        self._report(OK, "drawing")

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        if self.dropped[reason] == 1:
            self.get_logger().warn(f"image not drawn ({reason}; further ones counted on /diagnostics): {detail}")
        self._report(WARN, f"not drawing: {reason}")

    def _report(self, level, message: str) -> None:
        self.diagnostics.set(level, message, images_drawn=self.drawn,
                             **{f"dropped_{reason}": n for reason, n in sorted(self.dropped.items())})


def main(args=None):
    sys.exit(run_node(ExtrinsicsCheckNode, args))
