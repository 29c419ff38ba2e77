"""The camera topic contract every source node publishes (DESIGN.md section 3).

``camera/image_raw`` (rgb8, or mono8 for grey cameras), ``camera/camera_info`` and optionally
``camera/depth/image_raw`` (16UC1 in millimetres, or 32FC1 in metres, per REP 118), all with sensor-data
QoS, stamped with the time of the observation and framed in the camera's optical frame (z forward, x
right, y down).
"""

from __future__ import annotations

import threading

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from humanego_ros import conversions as conv
from humanego_ros import qos

# After our publishers see their subscribers, the subscribers' side of DDS discovery may still be finishing
# (with Fast DDS's LARGE_DATA transport the data connection opens later still); best-effort samples sent
# before then are lost. Measured here: up to about a second.
DISCOVERY_SETTLE_S = 2.0

DEPTH_ENCODINGS = {np.dtype(np.uint16): "16UC1", np.dtype(np.float32): "32FC1"}


class CameraTopics:
    """Publishers of one camera (``<namespace>/image_raw``, ``camera_info``, ``depth/image_raw``)."""

    def __init__(self, node: Node, frame_id: str, depth: bool = False, namespace: str = "camera"):
        self.frame_id = frame_id
        self.pub_image = node.create_publisher(Image, f"{namespace}/image_raw", qos.SENSOR)
        self.pub_info = node.create_publisher(CameraInfo, f"{namespace}/camera_info", qos.SENSOR)
        self.pub_depth = node.create_publisher(Image, f"{namespace}/depth/image_raw", qos.SENSOR) if depth else None
        self.published = 0

    @property
    def publishers(self) -> list:
        return [pub for pub in (self.pub_image, self.pub_info, self.pub_depth) if pub is not None]

    def wait_for_subscribers(self, count: int, stop: threading.Event) -> None:
        """Block until every topic has ``count`` subscribers (and discovery has settled), or ``stop`` is set."""
        while not stop.is_set() and min(pub.get_subscription_count() for pub in self.publishers) < count:
            stop.wait(0.02)
        stop.wait(DISCOVERY_SETTLE_S)

    def publish(self, stamp_ns: int, image: np.ndarray, info: CameraInfo, depth: np.ndarray | None = None) -> None:
        """One frame: ``image`` (H, W, 3) RGB or (H, W) grey, uint8; ``info`` describes it (its header is set
        here); ``depth`` aligned to ``image``, uint16 millimetres or float32 metres."""
        header = conv.make_header(stamp_ns, self.frame_id)
        encoding = "mono8" if image.ndim == 2 else "rgb8"
        self.pub_image.publish(conv.numpy_to_image(image, encoding, stamp_ns, self.frame_id))
        if depth is not None and self.pub_depth is not None:
            encoding = DEPTH_ENCODINGS.get(depth.dtype)
            if encoding is None:
                raise ValueError(f"depth must be uint16 (mm) or float32 (m), got {depth.dtype}")
            self.pub_depth.publish(conv.numpy_to_image(depth, encoding, stamp_ns, self.frame_id))
        info.header = header
        self.pub_info.publish(info)
        self.published += 1
