#!/usr/bin/env python3
"""Trajectory controller: cost of a control tick, control period jitter and command latency over DDS.

    python benchmarks/controller.py [--ticks 3000] [--seconds 10] [--modes temporal_ensembling receding_horizon]
                                    [--skip-node]

Prints two tables (nothing is asserted):

1. per tick, in this process: TrajectoryExecutor.tick (ensembling or newest chunk, safety filter with the
   workspace check on ee and flange of the panda) and add_chunk (validation, C2 spline to 100 Hz), fed a
   50-step 30 Hz chunk every 100 ms as ik_retarget sends them; p50/p99 ms;
2. the node: ``sim_robot`` (panda, real time, no camera) and ``trajectory_controller`` (100 Hz, use_sim_time)
   each in its own process, driven from here for --seconds per mode: a constant chunk every 100 ms, its posture
   switching between two (joint 1 +-0.1 rad) every 2 s. Figures:
   - control period jitter, |period - 10 ms| of the node's control thread (its /diagnostics), p50/p99, the
     longest period and the ticks skipped (overruns); and the spacing of the commands as received here;
   - command latency: publishing the first chunk of a new posture -> receiving the first command that moves
     towards it (chunk stamped one step early, so its first point is due at once; switches where the arm was
     still moving are not counted): DDS both ways, the wait for the next tick and the tick itself; p50/p99;
   - the node's own observation-stamp -> first-command figure (command_latency_p50/p99_ms on /diagnostics).
     Here the stamp is the latest joint state's stamp minus one step, so it is the above minus transport plus
     the joint state's age; in the robot graph it is the end-to-end latency camera -> command.

The machine's load average is printed: on a shared 2-core machine the figures vary with it.
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

import numpy as np

HOME = np.array([0.0, -0.3, 0.0, -2.5, 0.0, 2.2, 0.785398])
DT = 1.0 / 30.0   # chunk step (the policy's)
STEPS = 50
CHUNK_PERIOD_S = 0.1
SWITCH_PERIOD_S = 2.0  # the ensemble of 1.7 s chunks has settled on a posture by then
SWING_RAD = 0.1
START_TIMEOUT_S = 60.0
MODES = ("temporal_ensembling", "receding_horizon")

_children: list[subprocess.Popen] = []


def percentiles_ms(seconds) -> tuple[float, float]:
    a = np.asarray(seconds) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


# ----- 1. per tick -----
def per_tick(args) -> None:
    from humanego_control.trajectory import make_executor
    from humanego_control.trajectory_controller_node import parameters
    from humanego_core.kinematics import RobotKinematics
    from humanego_ros.parameters import shipped_parameters

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    kin = RobotKinematics.load("panda")
    names = [*kin.arm_joint_names, kin.gripper_joint_name]
    times = [(k + 1) * DT for k in range(STEPS)]
    print(f"\n1. per tick, one core, panda, a {STEPS}-step chunk every {CHUNK_PERIOD_S * 1e3:.0f} ms, {args.ticks} "
          "ticks at 100 Hz")
    print(f"   {'mode':>20s} | {'tick p50 ms':>11s} | {'p99 ms':>7s} | {'add_chunk p50 ms':>16s} | {'p99 ms':>7s}")
    for mode in args.modes:
        # The shipped limits; no watchdog may hold the arm while only the executor's own cost is measured.
        shipped = shipped_parameters("trajectory_controller", parameters())
        ex = make_executor(kin, shipped | {"mode": mode, "chunk_timeout_s": 1e6, "heartbeat_timeout_s": 0.0})
        now = 1000.0
        ex.on_joint_state(HOME, 0.0)
        tick_s, add_s = [], []
        for i in range(args.ticks):
            now += 0.01
            ex.on_joint_state(ex.safety.position if ex.safety.started else HOME, now)
            if i % round(CHUNK_PERIOD_S / 0.01) == 0:
                wave = 0.3 * np.sin(now + np.array(times))[:, None] * np.array([1, 1, 0, 1, 0, 0, 1])
                rows = np.column_stack([HOME + wave, np.full(STEPS, 0.04)]).tolist()
                t = time.perf_counter()
                ex.add_chunk(names, times, rows, now, "base_link", now, now)
                add_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            ex.tick(now, now)
            tick_s.append(time.perf_counter() - t)
        (t50, t99), (a50, a99) = percentiles_ms(tick_s), percentiles_ms(add_s)
        print(f"   {mode:>20s} | {t50:11.3f} | {t99:7.3f} | {a50:16.3f} | {a99:7.3f}")
    os.sched_setaffinity(0, set(range(os.cpu_count())))


# ----- 2. the node -----
class Probe:
    """The benchmark's node: plays policy + IK (joint_chunk) and listens to commands and /diagnostics."""

    def __init__(self, ns: str):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        from humanego_ros import qos

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("controller_benchmark", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.joint_state = None
        self.commands: list[tuple[float, np.ndarray]] = []  # (receipt, joint 1 position)
        self.status: dict[str, str] = {}
        self.node.create_subscription(JointState, f"{ns}/joint_states", self._on_joints,
                                      QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.node.create_subscription(JointTrajectory, f"{ns}/joint_trajectory", self._on_command, qos.COMMAND)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos.COMMAND)
        self.chunks = self.node.create_publisher(JointTrajectory, f"{ns}/joint_chunk", qos.COMMAND)

    def _on_joints(self, msg) -> None:
        self.joint_state = msg

    def _on_command(self, msg) -> None:
        self.commands.append((time.monotonic(), np.array(msg.points[0].positions)))

    def _on_diagnostics(self, msg) -> None:
        for s in msg.status:
            if s.name.startswith("trajectory_controller"):
                self.status = {"message": s.message, **{kv.key: kv.value for kv in s.values}}

    def send(self, posture: np.ndarray) -> float:
        """A constant chunk at ``posture``, stamped one step before the latest joint state (first point due now);
        returns the publication time."""
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        points = []
        for k in range(STEPS):
            ns = round((k + 1) * DT * 1e9)
            points.append(JointTrajectoryPoint(positions=[*posture.tolist(), 0.04],
                                               time_from_start=Duration(sec=ns // 10**9, nanosec=ns % 10**9)))
        msg = JointTrajectory(joint_names=[f"joint{i}" for i in range(1, 8)] + ["finger_joint1"], points=points)
        stamp = self.joint_state.header.stamp.sec * 10**9 + self.joint_state.header.stamp.nanosec - round(DT * 1e9)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
        msg.header.frame_id = "base_link"
        self.chunks.publish(msg)
        return time.monotonic()

    def spin_until(self, condition, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            for proc in _children:
                if proc.poll() is not None:
                    raise SystemExit(f"{proc.args[3]} exited ({proc.returncode}) while waiting for {what}:\n"
                                     f"{node_log(proc)}")
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.005)

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)


def start(argv: list[str]) -> subprocess.Popen:
    # the node's log goes to a file, not a pipe nobody reads while measuring (a full pipe would stall it)
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True)
    proc.log = log
    _children.append(proc)
    return proc


def node_log(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def stop_children() -> None:
    for proc in _children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    for proc in _children:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        proc.log.close()
    _children.clear()


def run_mode(args, mode: str) -> None:
    ns = f"/controller_benchmark_{os.getpid()}"
    start(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-r", f"__ns:={ns}", "-p", "robot:=panda",
           "-p", "real_time_factor:=1.0", "-p", "camera_rate_hz:=0.0"])
    start(["humanego", "run", "humanego_control", "trajectory_controller", "--ros-args", "-r", f"__ns:={ns}",
           "-p", "robot:=panda", "-p", "use_sim_time:=true", "-p", f"mode:={mode}", "-p", "heartbeat_timeout_s:=0.0"])
    probe = Probe(ns)
    postures = [HOME + [SWING_RAD, 0, 0, 0, 0, 0, 0], HOME - [SWING_RAD, 0, 0, 0, 0, 0, 0]]
    try:
        probe.spin_until(lambda: probe.joint_state is not None and probe.chunks.get_subscription_count() > 0
                         and probe.status, "the graph")
        latencies, switch, index = [], None, 0
        start_s = time.monotonic()
        next_chunk = next_switch = start_s
        measure_from = start_s + args.warmup
        while time.monotonic() < measure_from + args.seconds:
            now = time.monotonic()
            if now >= next_switch:
                index = 1 - index
                next_switch += SWITCH_PERIOD_S
                before = len(probe.commands)
                sent = probe.send(postures[index])
                recent = [q[0] for _, q in probe.commands[-5:]]
                resting = len(recent) == 5 and np.ptp(recent) < 1e-9
                # the reaction: a command with joint 1 beyond the resting position, towards the new posture
                switch = (sent, before, recent[-1], np.sign(postures[index][0] - postures[1 - index][0])) \
                    if resting else None
                next_chunk = now + CHUNK_PERIOD_S
            elif now >= next_chunk:
                probe.send(postures[index])
                next_chunk += CHUNK_PERIOD_S
            probe.executor.spin_once(timeout_sec=0.001)
            if switch is not None:
                sent, before, last, direction = switch
                moved = next((t for t, q in probe.commands[before:] if direction * (q[0] - last) > 1e-6), None)
                if moved is not None:
                    if sent >= measure_from:
                        latencies.append(moved - sent)
                    switch = None
        probe.spin_until(lambda: "period_jitter_p50_ms" in probe.status, "the node's jitter figures")
        status = dict(probe.status)
        received = np.array([t for t, _ in probe.commands if t >= measure_from])
    finally:
        probe.close()
        stop_children()
    spacing = np.abs(np.diff(received) - 0.01) if received.size > 1 else np.zeros(1)
    s50, s99 = percentiles_ms(spacing)
    l50, l99 = percentiles_ms(latencies) if latencies else (float("nan"), float("nan"))
    node_figures = [status.get(key, "?") for key in ("period_jitter_p50_ms", "period_jitter_p99_ms", "period_max_ms",
                                                      "overruns", "command_latency_p50_ms", "command_latency_p99_ms")]
    print(f"   {mode:>20s} | {node_figures[0]:>10s} | {node_figures[1]:>7s} | {node_figures[2]:>7s} | "
          f"{node_figures[3]:>8s} | {s50:9.2f} | {s99:7.2f} | {len(latencies):4d} | {l50:7.1f} | {l99:7.1f} | "
          f"{node_figures[4]:>7s} | {node_figures[5]:>7s}")
    interventions = {k: v for k, v in status.items() if k.startswith(("limited_", "hold_", "rejected_"))}
    print(f"   {'':>20s}   state: {status.get('message')}; counters: {interventions}")


def node(args) -> None:
    print(f"\n2. sim_robot (panda, real time, no camera) -> trajectory_controller (100 Hz), each its own process; "
          f"{args.seconds:.0f} s per mode after {args.warmup:.0f} s warm-up; load average before: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"   {'':>20s} | {'node: period jitter (ms)':^28s} | {'commands here':^19s} | "
          f"{'chunk -> command (ms)':^21s} | {'node: obs->cmd (ms)':^17s}")
    print(f"   {'mode':>20s} | {'p50':>10s} | {'p99':>7s} | {'max':>7s} | {'overruns':>8s} | {'|gap-10|50':>9s} | "
          f"{'p99':>7s} | {'n':>4s} | {'p50':>7s} | {'p99':>7s} | {'p50':>7s} | {'p99':>7s}")
    for mode in args.modes:
        run_mode(args, mode)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=3000, help="control ticks timed per mode (table 1)")
    parser.add_argument("--seconds", type=float, default=20.0, help="node measurement window per mode (s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="node warm-up before measuring (s)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="chunk execution modes")
    parser.add_argument("--skip-node", action="store_true", help="library figures only (no ROS processes)")
    args = parser.parse_args()

    # A private domain: the nodes started here neither see nor disturb anyone else's.
    os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"trajectory controller: python benchmarks/controller.py {' '.join(sys.argv[1:])}")
    print(f"machine: {platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0))} usable), Python {platform.python_version()}; "
          f"RMW {os.environ.get('RMW_IMPLEMENTATION', '?')}, ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}")
    try:
        per_tick(args)
        if not args.skip_node:
            node(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_children()
    return 0


if __name__ == "__main__":
    sys.exit(main())
