"""A node's health on ``/diagnostics`` (diagnostic_msgs/DiagnosticArray), as ROS hardware drivers report it.

The node sets its current status whenever something changes (connected, lost the device, retrying in
4 s, ...); the reporter republishes the latest status at a fixed period, so a monitor (rqt_robot_monitor,
the aggregator, a test) sees both the changes and that the node is alive.
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from humanego_ros import qos

OK, WARN, ERROR, STALE = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


class DiagnosticsReporter:
    """Publishes one :class:`DiagnosticStatus` named ``<node name>: <name>`` on ``/diagnostics``."""

    def __init__(self, node: Node, name: str, hardware_id: str = "", period_s: float = 1.0):
        self.node = node
        self.name = f"{node.get_name()}: {name}"
        self.hardware_id = hardware_id
        self._status = (STALE, "starting", {})
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", qos.COMMAND)
        self._timer = node.create_timer(period_s, self.publish)

    def set(self, level: bytes, message: str, publish_now: bool = True, **values) -> None:
        """New status; ``values`` become key/value pairs (counters, rates, the serial number, ...)."""
        changed = (level, message) != self._status[:2]
        self._status = (level, message, values)
        if publish_now and changed:
            self.publish()

    @property
    def level(self) -> bytes:
        return self._status[0]

    def publish(self) -> None:
        level, message, values = self._status
        status = DiagnosticStatus(level=level, name=self.name, message=message, hardware_id=self.hardware_id,
                                  values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])
        self._pub.publish(DiagnosticArray(header=self._header(), status=[status]))

    def _header(self):
        msg = DiagnosticArray().header
        msg.stamp = self.node.get_clock().now().to_msg()
        return msg
