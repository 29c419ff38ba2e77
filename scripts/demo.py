"""`make demo` at this stage of the project: what exists, run for real, and measured.

The full main job (simulated arm + ego camera + shipped policy, success rate, per-stage latency,
bag and video) needs the sim, camera, perception, policy and robot-side packages that are not
built yet. Until then this starts a real node of the workspace in its own process with
`humanego run`, listens to it over DDS, and prints delivery rate and latency percentiles.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

import numpy as np
import rclpy
from std_msgs.msg import Header

from humanego_ros import qos
from humanego_ros.conversions import time_to_ns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to listen (default 5)")
    parser.add_argument("--rate", type=float, default=100.0, help="heartbeat rate in Hz (default 100)")
    args = parser.parse_args()

    print("HumanEgo demo: the full sim-robot demo arrives with the robot-side packages; running what exists.")
    node_proc = subprocess.Popen(
        ["humanego", "run", "humanego_control", "heartbeat", "--ros-args", "-p", f"rate_hz:={args.rate:.1f}",
         "-p", "source:=demo"], start_new_session=True)
    rclpy.init()
    node = rclpy.create_node("demo_probe")
    latencies_ms, arrivals = [], []

    def on_beat(msg: Header):
        arrivals.append(time.monotonic())
        latencies_ms.append((node.get_clock().now().nanoseconds - time_to_ns(msg.stamp)) / 1e6)

    node.create_subscription(Header, "heartbeat", on_beat, qos.COMMAND)
    try:
        t0 = time.monotonic()
        while not arrivals and time.monotonic() - t0 < 60 and node_proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.1)
        if not arrivals:
            print("ERROR: no message from the heartbeat node within 60 s", file=sys.stderr)
            return 1
        print(f"discovery + first message: {time.monotonic() - t0:.2f} s; listening {args.seconds:.0f} s ...")
        latencies_ms.clear()
        arrivals.clear()
        t_end = time.monotonic() + args.seconds
        while time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        os.killpg(node_proc.pid, signal.SIGINT)
        node_proc.wait(timeout=10)
        node.destroy_node()
        rclpy.try_shutdown()

    lat = np.array(latencies_ms)
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    print(f"heartbeat node -> probe (2 processes, {os.environ.get('RMW_IMPLEMENTATION')}, "
          f"FASTDDS_BUILTIN_TRANSPORTS={os.environ.get('FASTDDS_BUILTIN_TRANSPORTS')}):")
    print(f"  messages {lat.size}, rate {rate:.1f} Hz (asked {args.rate:.1f})")
    print(f"  latency p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms, "
          f"max {lat.max():.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
