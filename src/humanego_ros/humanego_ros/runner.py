"""The ``main`` of every HumanEgo node: init, spin, clean shutdown, readable start-up errors."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from humanego_ros.parameters import ParameterError


class StartupError(RuntimeError):
    """The node cannot start for a reason the user can fix (a missing optional package, ...)."""


def run_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Create the node with ``make_node`` and spin it until Ctrl-C or shutdown; return an exit code.

    A node that cannot start because of its configuration (ParameterError, ValueError,
    FileNotFoundError, StartupError) prints one line naming the problem and exits with 2, not a traceback.
    Errors raised by rclpy while a signal is shutting the context down count as a clean exit.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ParameterError, ValueError, FileNotFoundError, StartupError) as exc:
        if node is None:
            print(f"[ERROR] cannot start: {exc}", file=sys.stderr)
            return 2
        raise
    except Exception:
        # A signal shuts the context down while spin is inside rclpy; what that raises (RCLError "wait set
        # context not valid", pybind11 conversion errors) is the shutdown itself, not a failure of the node.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
