"""Real-time factor of the `sim_robot` node as a real process, with and without camera consumers.

    python benchmarks/sim_robot_rtf.py [--seconds 10] [--robot panda] [--task serve_bread]

Starts ``humanego run humanego_sim sim_robot`` per configuration, listens from this process over DDS
and reports sim seconds per wall second (from ``/clock``) and the camera images received per wall
second. Rendering happens only for image topics somebody subscribes to, so "no camera consumer" is the
physics + joint_states/TF/task_state cost alone.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from humanego_ros import conversions as conv
from humanego_ros import qos

CONFIGS = [  # (label, real_time_factor, subscribe to images, width, height, multisampling)
    ("as fast as possible, no camera consumer", 0.0, False, 320, 240, 0),
    ("as fast as possible, rgb+depth 320x240 @30 Hz", 0.0, True, 320, 240, 0),
    ("as fast as possible, rgb+depth 320x240 @30 Hz, 4x AA", 0.0, True, 320, 240, 4),
    ("real time, rgb+depth 320x240 @30 Hz (defaults)", 1.0, True, 320, 240, 0),
    ("real time, rgb+depth 640x480 @30 Hz", 1.0, True, 640, 480, 0),
]


def measure(args, rtf: float, images: bool, width: int, height: int, samples: int) -> tuple[float, float]:
    ns = f"/rtf_bench_{os.getpid()}"
    proc = subprocess.Popen(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-r", f"__ns:={ns}",
                             "-p", f"robot:={args.robot}", "-p", f"task:={args.task}", "-p", "publish_clock:=true",
                             "-p", f"real_time_factor:={rtf}", "-p", f"camera_width:={width}",
                             "-p", f"camera_height:={height}", "-p", f"camera_multisampling:={samples}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("rtf_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        clock, frames = [], []
        node.create_subscription(Clock, "/clock", lambda m: clock.append(conv.time_to_ns(m.clock)), qos.SENSOR)
        if images:
            node.create_subscription(Image, f"{ns}/camera/image_raw", frames.append, qos.SENSOR)
            node.create_subscription(Image, f"{ns}/camera/depth/image_raw", lambda m: None, qos.SENSOR)
        deadline = time.monotonic() + 60
        while not (clock and (frames or not images)):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the node did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
            executor.spin_once(timeout_sec=0.05)
        sim0, n0, wall0 = clock[-1], len(frames), time.monotonic()
        while time.monotonic() - wall0 < args.seconds:
            executor.spin_once(timeout_sec=0.01)
        wall = time.monotonic() - wall0
        return (clock[-1] - sim0) * 1e-9 / wall, (len(frames) - n0) / wall
    finally:
        rclpy.shutdown(context=context)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="wall seconds measured per configuration")
    parser.add_argument("--robot", default="panda", choices=["panda", "ur5e"])
    parser.add_argument("--task", default="serve_bread")
    args = parser.parse_args()
    print(f"sim_robot node, {args.robot} / {args.task}, {os.cpu_count()} CPUs, {args.seconds:.0f} s per row")
    print(f"{'configuration':55s} | {'real-time factor':>16s} | {'rgb images / wall s':>19s}")
    for label, *config in CONFIGS:
        factor, image_rate = measure(args, *config)
        rate = f"{image_rate:19.1f}" if config[1] else f"{'-':>19s}"
        print(f"{label:55s} | {factor:15.2f}x | {rate}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
