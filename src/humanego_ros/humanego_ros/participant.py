"""Leaving the ROS graph without hanging on it.

A process that talks to the graph from a context of its own (a test's probe, the episode runner's probe, the
recorder) deletes its DDS participant when it is done. Fast DDS now and then never returns from that deletion
(a deadlock in its transport teardown; a clean-clone CI run sat in one for over an hour). :func:`leave_graph`
does the teardown in a helper thread and gives up waiting after a while, so the caller goes on and can say what
was left behind instead of hanging.
"""

from __future__ import annotations

import threading

import rclpy
from rclpy.context import Context
from rclpy.node import Node

TEARDOWN_TIMEOUT_S = 20.0

_stuck: list[threading.Thread] = []


def leave_graph(node: Node, context: Context, timeout_s: float = TEARDOWN_TIMEOUT_S) -> bool:
    """Destroy ``node`` and shut ``context`` down; False if that did not finish within ``timeout_s`` (the
    teardown thread is left running, and counted by :func:`stuck_teardowns`). An error of the teardown is
    raised here."""
    errors: list[BaseException] = []

    def teardown() -> None:
        try:
            node.destroy_node()
            rclpy.try_shutdown(context=context)
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=teardown, name=f"leave_graph {node.get_name()}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        _stuck.append(thread)
        return False
    if errors:
        raise errors[0]
    return True


def stuck_teardowns() -> int:
    """How many :func:`leave_graph` teardowns of this process have not returned (yet)."""
    return sum(thread.is_alive() for thread in _stuck)
