"""leave_graph: a real node and context are torn down; a teardown that does not return is left behind and
counted instead of blocking the caller; a teardown's error reaches the caller."""

import threading

import pytest
import rclpy
from rclpy.node import Node
from std_msgs.msg import String

from humanego_ros.participant import leave_graph, stuck_teardowns


class SlowTeardownNode(Node):
    """A real node whose destruction first waits for ``release`` (a teardown that hangs until told)."""

    def __init__(self, context, release: threading.Event):
        super().__init__("slow_teardown", context=context)
        self.release = release

    def destroy_node(self):
        self.release.wait(30)
        super().destroy_node()


class FailingTeardownNode(Node):
    def destroy_node(self):
        super().destroy_node()
        raise RuntimeError("teardown failed")


def started_context() -> rclpy.Context:
    context = rclpy.Context()
    rclpy.init(context=context)
    return context


def test_a_node_and_its_context_are_torn_down():
    context = started_context()
    node = rclpy.create_node("leave_graph_test", context=context)
    node.create_publisher(String, "leave_graph_test", 1)
    assert leave_graph(node, context)
    assert not context.ok()
    assert stuck_teardowns() == 0


def test_a_teardown_that_does_not_return_is_left_behind_and_counted():
    context = started_context()
    release = threading.Event()
    node = SlowTeardownNode(context, release)
    before = stuck_teardowns()
    assert leave_graph(node, context, timeout_s=0.2) is False
    assert context.ok()  # the shutdown has not happened yet: the teardown is still in destroy_node
    assert stuck_teardowns() == before + 1
    release.set()
    for thread in threading.enumerate():
        if thread.name == "leave_graph slow_teardown":
            thread.join(10)
    assert stuck_teardowns() == before
    assert not context.ok()


def test_an_error_of_the_teardown_is_raised_to_the_caller():
    context = started_context()
    node = FailingTeardownNode("failing_teardown", context=context)
    with pytest.raises(RuntimeError, match="teardown failed"):
        leave_graph(node, context)
    rclpy.try_shutdown(context=context)
