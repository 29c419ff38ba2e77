"""The calibrated camera pose as static TF (``humanego run humanego_bringup camera_extrinsics``).

Reads ``config/camera_extrinsics.yaml`` (written by ``humanego run humanego_control hand_eye``; format and
checks in :mod:`humanego_control.hand_eye`) and publishes its T_parent_child once on ``/tf_static``
(transient local, so late joiners get it), like ``tf2_ros static_transform_publisher`` but from the
validated calibration file, on machines with or without a ROS 2 install. The launch graph starts it when
``sim:=false`` (the simulator publishes its own camera pose). A missing or invalid file is a start-up error
(exit code 2) naming the file and key.
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from tf2_msgs.msg import TFMessage

from humanego_control.hand_eye import load_camera_extrinsics
from humanego_core.ament_index import resource_path
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.parameters import ParamSpec, declare_parameters
from humanego_ros.runner import run_node


def parameters() -> list[ParamSpec]:
    return [
        ParamSpec("file", "", "Calibration file (parent_frame, child_frame, translation, rotation); "
                  "empty = the installed config/camera_extrinsics.yaml.", read_only=True),
    ]


class CameraExtrinsicsNode(Node):
    def __init__(self):
        super().__init__("camera_extrinsics")
        p = declare_parameters(self, parameters())
        path = p["file"] or resource_path("config", "camera_extrinsics.yaml")
        # ConfigError (a ValueError): run_node reports it and exits with 2.
        extrinsics, T_parent_child = load_camera_extrinsics(path)
        stamp_ns = self.get_clock().now().nanoseconds
        self.publisher = self.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC)
        self.publisher.publish(TFMessage(transforms=[conv.matrix_to_transform_stamped(
            T_parent_child, extrinsics.parent_frame, extrinsics.child_frame, stamp_ns)]))
        t, q = extrinsics.translation, extrinsics.rotation_xyzw
        self.get_logger().info(f"{extrinsics.parent_frame} -> {extrinsics.child_frame} from {path}: "
                               f"t = [{t[0]:.4f}, {t[1]:.4f}, {t[2]:.4f}] m, q = [{q[0]:.4f}, {q[1]:.4f}, "
                               f"{q[2]:.4f}, {q[3]:.4f}] (xyzw)")


def main(args=None):
    sys.exit(run_node(CameraExtrinsicsNode, args))
