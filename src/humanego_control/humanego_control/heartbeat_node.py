"""Operator heartbeat: publishes std_msgs/Header on ``heartbeat`` at a fixed rate.

The trajectory controller moves the arm only while heartbeats arrive; run this node on the
operator's machine so that a crashed operator station, a cut network or a closed terminal stops
the robot. ``header.frame_id`` carries the ``source`` name so that several stations can be told apart.
"""

import sys

from rclpy.node import Node
from std_msgs.msg import Header

from humanego_ros import qos
from humanego_ros.parameters import ParamSpec, declare_parameters
from humanego_ros.runner import run_node


def parameters() -> list[ParamSpec]:
    return [
        ParamSpec("rate_hz", 10.0, "Heartbeat rate in Hz; the controller's timeout must be a few periods.",
                  minimum=0.5, maximum=1000.0),
        ParamSpec("source", "operator", "Name of this station, sent as header.frame_id."),
    ]


class HeartbeatNode(Node):
    def __init__(self):
        super().__init__("heartbeat")
        self.params = declare_parameters(self, parameters())
        self.publisher = self.create_publisher(Header, "heartbeat", qos.COMMAND)
        self.timer = self.create_timer(1.0 / self.params["rate_hz"], self.beat)
        self.get_logger().info(f"heartbeat '{self.params['source']}' at {self.params['rate_hz']} Hz "
                               f"on {self.publisher.topic_name}")

    def beat(self):
        self.publisher.publish(Header(stamp=self.get_clock().now().to_msg(), frame_id=self.params["source"]))


def main(args=None):
    sys.exit(run_node(HeartbeatNode, args))
