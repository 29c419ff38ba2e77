"""TfListener over real DDS (one process, two nodes): lookups equal the direct composition of what was
published; static transforms reach a late joiner; bad transforms are counted, not raised."""

import math
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

from humanego_core import geometry
from humanego_core.transform_tree import ExtrapolationError, TransformLookupError
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.participant import leave_graph
from humanego_ros.tf_listener import TfListener

TIMEOUT_S = 30.0


@pytest.fixture
def nodes():
    context = rclpy.Context()
    rclpy.init(context=context)
    publisher = rclpy.create_node("tf_publisher", context=context)
    listener = rclpy.create_node("tf_listener", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(publisher)
    executor.add_node(listener)

    def spin_until(condition, what):
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if condition():
                return
            executor.spin_once(timeout_sec=0.05)
        raise AssertionError(f"timed out waiting for {what}")

    yield publisher, listener, spin_until
    executor.shutdown()
    publisher.destroy_node()
    leave_graph(listener, context)


def can_lookup(tf, target, source, stamp=None):
    try:
        tf.lookup(target, source, stamp)
        return True
    except TransformLookupError:
        return False


def test_lookups_through_static_and_dynamic_tf(nodes):
    publisher, listener, spin_until = nodes
    poses = geometry.make_transform(Rotation.random(5, random_state=3).as_matrix(),
                                    np.random.default_rng(3).normal(size=(5, 3)))
    T_world_base, T_world_link, T_link_optical, T_base_tool0, T_base_tool1 = poses
    pub_static = publisher.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC)
    pub_tf = publisher.create_publisher(TFMessage, "/tf", qos.TF)
    # Static transforms published before the listener exists: transient-local QoS delivers them late.
    pub_static.publish(TFMessage(transforms=[
        conv.matrix_to_transform_stamped(T_world_base, "world", "base_link", 0),
        conv.matrix_to_transform_stamped(T_world_link, "world", "camera_link", 0),
        conv.matrix_to_transform_stamped(T_link_optical, "camera_link", "camera_optical_frame", 0)]))
    tf = TfListener(listener)
    spin_until(lambda: can_lookup(tf, "camera_optical_frame", "base_link"), "the static transforms")
    T_camera_base = np.linalg.inv(T_world_link @ T_link_optical) @ T_world_base
    np.testing.assert_allclose(tf.lookup("camera_optical_frame", "base_link"), T_camera_base, atol=1e-12)

    spin_until(lambda: pub_tf.get_subscription_count() > 0, "the /tf subscription")
    pub_tf.publish(TFMessage(transforms=[conv.matrix_to_transform_stamped(T_base_tool0, "base_link", "tool", 1000)]))
    pub_tf.publish(TFMessage(transforms=[conv.matrix_to_transform_stamped(T_base_tool1, "base_link", "tool", 3000)]))
    spin_until(lambda: can_lookup(tf, "camera_optical_frame", "tool", 3000), "the dynamic transforms")
    halfway = geometry.interpolate(T_base_tool0, T_base_tool1, 0.5)
    np.testing.assert_allclose(tf.lookup("camera_optical_frame", "tool", 2000), T_camera_base @ halfway, atol=1e-9)
    np.testing.assert_allclose(tf.lookup("tool", "camera_optical_frame"),
                               np.linalg.inv(T_camera_base @ T_base_tool1), atol=1e-9)
    with pytest.raises(ExtrapolationError, match="after the newest"):
        tf.lookup("camera_optical_frame", "tool", 4000)

    # A NaN transform and a second parent for base_link are refused and counted; the tree keeps working.
    bad = conv.matrix_to_transform_stamped(np.eye(4), "base_link", "gripper", 3000)
    bad.transform.rotation.w = math.nan
    pub_tf.publish(TFMessage(transforms=[bad, conv.matrix_to_transform_stamped(np.eye(4), "map", "base_link", 3000)]))
    spin_until(lambda: sum(tf.rejected.values()) == 2, "the bad transforms to be counted")
    assert set(tf.rejected) == {("base_link", "gripper"), ("map", "base_link")}
    np.testing.assert_allclose(tf.lookup("camera_optical_frame", "base_link"), T_camera_base, atol=1e-12)


def test_a_lookup_with_a_timeout_waits_for_a_late_transform(nodes):
    """From another thread than the spinning one, as the IK node's solver thread asks while /tf arrives."""
    publisher, listener, spin_until = nodes
    pub_tf = publisher.create_publisher(TFMessage, "/tf", qos.TF)
    tf = TfListener(listener)
    spin_until(lambda: pub_tf.get_subscription_count() > 0, "the /tf subscription")
    pub_tf.publish(TFMessage(transforms=[conv.matrix_to_transform_stamped(np.eye(4), "base_link", "tool", 1000)]))
    spin_until(lambda: can_lookup(tf, "base_link", "tool", 1000), "the first transform")
    with pytest.raises(ExtrapolationError, match="after the newest"):
        tf.lookup("base_link", "tool", 2000)  # no timeout: at once
    later = geometry.make_transform(np.eye(3), [0.2, 0.0, 0.0])
    result = {}
    asker = threading.Thread(target=lambda: result.update(T=tf.lookup("base_link", "tool", 2000, timeout_s=20.0)))
    asker.start()
    pub_tf.publish(TFMessage(transforms=[conv.matrix_to_transform_stamped(later, "base_link", "tool", 3000)]))
    spin_until(lambda: not asker.is_alive(), "the waiting lookup")
    np.testing.assert_allclose(result["T"], geometry.interpolate(np.eye(4), later, 0.5), atol=1e-12)
    started = time.monotonic()
    with pytest.raises(ExtrapolationError):
        tf.lookup("base_link", "tool", 9000, timeout_s=0.1)
    assert time.monotonic() - started >= 0.1
