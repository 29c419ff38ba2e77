"""tf2_ros' TransformListener for machines without tf2_ros (the PyPI ROS wheels have none).

:class:`TfListener` subscribes ``/tf`` and ``/tf_static`` with tf2_ros' QoS and fills a
:class:`humanego_core.transform_tree.TransformTree`, which answers lookups (see there for the semantics
and errors). A transform that cannot enter the tree (NaN, a second parent for a frame, a cycle, /tf and
/tf_static disagreeing) is skipped, counted in ``rejected`` and logged once per edge, never raised into
the executor: one bad publisher must not take the listening node down.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
from rclpy.node import Node
from tf2_msgs.msg import TFMessage

from humanego_core import geometry
from humanego_core.transform_tree import DEFAULT_BUFFER_DURATION_NS, TransformLookupError, TransformTree
from humanego_ros import conversions as conv
from humanego_ros import qos

LOOKUP_POLL_S = 0.005  # how often a lookup with a timeout tries again


class TfListener:
    def __init__(self, node: Node, buffer_duration_ns: int = DEFAULT_BUFFER_DURATION_NS):
        self.node = node
        self.tree = TransformTree(buffer_duration_ns)
        self.rejected: Counter = Counter()  # (parent, child) -> transforms refused
        self.received = 0
        node.create_subscription(TFMessage, "/tf", lambda msg: self._on_message(msg, static=False), qos.TF)
        node.create_subscription(TFMessage, "/tf_static", lambda msg: self._on_message(msg, static=True),
                                 qos.TF_STATIC)

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None,
               timeout_s: float = 0.0) -> np.ndarray:
        """``T_target_source`` at ``stamp_ns`` (None: latest common time); raises TransformLookupError.

        ``timeout_s`` > 0 (as tf2's lookup_transform timeout): keep trying that long for the transform to arrive
        (a busy machine delivers /tf late). Only from a thread other than the one spinning the node: the
        subscriptions must run meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.tree.lookup(target_frame, source_frame, stamp_ns)
            except TransformLookupError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(LOOKUP_POLL_S)

    def _on_message(self, msg: TFMessage, static: bool) -> None:
        edges, refused = [], []
        for t, T in zip(msg.transforms, self._matrices(msg.transforms), strict=True):
            if isinstance(T, ValueError):
                refused.append((t.header.frame_id, t.child_frame_id, T))
            else:
                edges.append((t.header.frame_id, t.child_frame_id, T, conv.time_to_ns(t.header.stamp)))
        not_added = self.tree.set_many(edges, static)
        self.received += len(edges) - len(not_added)
        refused += [(*edges[i][:2], exc) for i, exc in not_added]
        for parent, child, exc in refused:
            self.rejected[parent, child] += 1
            if self.rejected[parent, child] == 1:
                self.node.get_logger().error(f"{'/tf_static' if static else '/tf'} transform {parent} -> {child} "
                                             f"ignored (further ones of this edge are counted silently): {exc}")

    @staticmethod
    def _matrices(transforms) -> list:
        """T_parent_child of each TransformStamped, converted as one batch (a TF message carries one per moving
        link, at the robot's state rate), or the ValueError of the one that cannot be converted."""
        if not transforms:
            return []
        translations = [(t.transform.translation.x, t.transform.translation.y, t.transform.translation.z)
                        for t in transforms]
        quaternions = [(t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w)
                       for t in transforms]
        try:
            return list(geometry.transform_from_pos_quat(translations, quaternions))
        except ValueError:
            out = []
            for t in transforms:
                try:
                    out.append(conv.transform_to_matrix(t.transform))
                except ValueError as exc:
                    out.append(exc)
            return out
