#!/usr/bin/env python3
"""Robot graph bring-up and recording: how long the graph takes to start and stop, and whether `humanego record`
keeps every message.

    python benchmarks/bringup.py [--bundle DIR] [--repeats 3] [--seconds 10]

Prints two tables (nothing is asserted):

1. bring-up (``humanego_bringup.launcher.RobotGraph``, the default sim graph): seconds from ``start()`` until
   every node is in the ROS graph, until the first ``camera/image_clean`` and, with a policy bundle (``--bundle``,
   else the shipped ``models/serve_bread_flow`` when it exists; without one the graph runs without
   state_estimator and policy), until the first ``joint_trajectory`` command to the simulator; then the
   seconds ``stop()`` takes (SIGINT to every node and the wait for their exits). Median over --repeats runs;
2. recording: ``sim_robot`` (320x240 camera at 30 Hz, joint states at 100 Hz) and ``humanego record`` for
   --seconds, then the bag read back: messages and MB per topic, and the share of the published messages that
   the bag holds, from the stamps (joint_states / camera: count / ((last - first) / period + 1); the camera is
   best-effort, joint states reliable).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image
from trajectory_msgs.msg import JointTrajectory

from humanego_bringup.launcher import RobotGraph
from humanego_bringup.robot_graph import launch_args, selected_specs
from humanego_core.ament_index import resource_path
from humanego_ros import qos

TIMEOUT_S = 120.0


class Watcher:
    """Subscriptions of the benchmark's own ROS context, and waits on the graph."""

    def __init__(self, ns: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bringup_benchmark", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.first: dict[str, float] = {}
        for key, msg_type, topic, profile in (("clean", Image, f"{ns}/camera/image_clean", qos.SENSOR),
                                              ("command", JointTrajectory, f"{ns}/joint_trajectory", qos.COMMAND)):
            self.node.create_subscription(msg_type, topic, lambda _, key=key: self.first.setdefault(
                key, time.monotonic()), profile)

    def until(self, condition, what, graph: RobotGraph) -> float:
        """Spin until ``condition()``; ``what()`` says what is awaited (for the timeout message)."""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if condition():
                return time.monotonic()
            if graph.poll() is not None:
                raise RuntimeError(f"the graph stopped while waiting for {what()}: {graph.message}")
            self.executor.spin_once(timeout_sec=0.02)
        raise RuntimeError(f"timed out waiting for {what()}")

    def names(self) -> set[str]:
        return {f"{ns.rstrip('/')}/{name}" for name, ns in self.node.get_node_names_and_namespaces()}

    def close(self):
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def one_bring_up(values: dict[str, str], nodes: list[str], ns: str, with_policy: bool) -> tuple[float, ...]:
    """Seconds from start to: every node up, first clean image, first command (nan without a policy); and stop."""
    watcher = Watcher(ns)
    with open(os.devnull, "w") as devnull:
        graph = RobotGraph({**values, "namespace": ns}, only=nodes, output=devnull)
        try:
            t0 = time.monotonic()
            graph.start()
            expected = {f"{ns}/{n}" for n in nodes}
            t_nodes = watcher.until(lambda: expected <= watcher.names(),
                                    lambda: f"nodes {sorted(expected - watcher.names())}", graph)
            t_clean = watcher.until(lambda: "clean" in watcher.first, lambda: "image_clean", graph)
            t_command = watcher.until(lambda: "command" in watcher.first, lambda: "a command", graph) \
                if with_policy else np.nan
            t_stop = time.monotonic()
            graph.stop()
            return t_nodes - t0, t_clean - t0, t_command - t0, time.monotonic() - t_stop
        finally:
            graph.stop()
            watcher.close()


def bring_up(bundle: Path | None, repeats: int) -> None:
    values = {"bundle": str(bundle)} if bundle else {}
    nodes = [s.name for s in selected_specs(launch_args(values))]
    if bundle is None:
        nodes = [n for n in nodes if n not in ("state_estimator", "policy")]
    print(f"\n1. bring-up of {', '.join(nodes)}" + (f" (bundle {bundle})" if bundle else " (no policy bundle)"))
    rows = [one_bring_up(values, nodes, f"/bench_{os.getpid()}_{i}", bundle is not None) for i in range(repeats)]
    med = np.nanmedian(np.array(rows, dtype=float), axis=0)
    print(f"   {'all nodes up':>14} {'first clean':>12} {'first command':>14} {'stop':>8}   (s, median of {repeats})")
    print(f"   {med[0]:14.1f} {med[1]:12.1f} {med[2]:14.1f} {med[3]:8.1f}")


def recording(seconds: float) -> None:
    ns = f"/rec_bench_{os.getpid()}"
    print(f"\n2. humanego record of sim_robot for {seconds:g} s (320x240 rgb at 30 Hz, joint states 100 Hz)")
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "bag"
        sim = subprocess.Popen(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-r", f"__ns:={ns}",
                                "-p", "depth:=false"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        try:
            out = subprocess.run(["humanego", "record", "--output", str(bag), "--namespace", ns, "--duration",
                                  str(seconds)], capture_output=True, text=True, timeout=seconds + TIMEOUT_S)
        finally:
            os.killpg(sim.pid, signal.SIGINT)
            sim.wait(timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"humanego record failed: {out.stderr}")
        with AnyReader([bag]) as reader:
            stamps, sizes = {}, {}
            for connection, _, raw in reader.messages():
                sizes[connection.topic] = sizes.get(connection.topic, 0) + len(raw)
                if connection.topic.endswith(("/joint_states", "/camera/image_raw")):
                    msg = reader.deserialize(raw, connection.msgtype)
                    stamps.setdefault(connection.topic, []).append(msg.header.stamp.sec + msg.header.stamp.nanosec
                                                                   * 1e-9)
            counts = {c.topic: c.msgcount for c in reader.connections}
        print(f"   {'topic':<34} {'messages':>9} {'MB':>7} {'kept':>7}")
        for topic, count in counts.items():
            kept = ""
            if topic in stamps:
                period = 0.01 if topic.endswith("joint_states") else 1 / 30
                s = np.array(stamps[topic])
                kept = f"{100 * len(s) / (round((s.max() - s.min()) / period) + 1):6.1f}%"
            print(f"   {topic:<34} {count:9d} {sizes.get(topic, 0) / 1e6:7.1f} {kept:>7}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="policy bundle (default: the shipped flow bundle if present)")
    parser.add_argument("--repeats", type=int, default=3, help="bring-up runs (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="recording length (default 10)")
    args = parser.parse_args()
    shipped = resource_path("models") / "serve_bread_flow"
    bundle = args.bundle or (shipped if (shipped / "bundle.json").is_file() else None)
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    bring_up(bundle, args.repeats)
    recording(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
