"""The safe trajectory controller (``humanego run humanego_control trajectory_controller``).

Wires :class:`humanego_control.trajectory.TrajectoryExecutor` to ROS: joint chunks in, a safe command per
control tick out, from its own timer thread at ``control_rate_hz`` (wall clock; the chunk timing follows ROS
time, under ``use_sim_time`` a smoothed estimate of the simulator's stepped ``/clock``). Limits: joint
positions (narrowed by ``position_margin_rad``) and velocities (times ``velocity_scale``) from the URDF via
:class:`~humanego_core.kinematics.RobotKinematics`, accelerations, step and workspace box from parameters.

Subscribes  joint_chunk (trajectory_msgs/JointTrajectory, reliable): from ik_retarget, arm joints + gripper joint
            joint_states (sensor_msgs/JointState; best effort depth 10, so reliable publishers match too)
            estop (std_msgs/Bool): true = decelerate and hold (latched until false)
            heartbeat (std_msgs/Header): watched when heartbeat_timeout_s > 0
            /clock (rosgraph_msgs/Clock) under use_sim_time
Publishes   output sim: joint_trajectory (trajectory_msgs/JointTrajectory: one point one control period ahead,
            header.stamp zero = from now; what sim_robot follows) + gripper_command (std_msgs/Float64, opening
            per finger in m, when it changes)
            output ros2_control: <controller_name>/joint_trajectory (the same trajectories, for a
            joint_trajectory_controller) + <gripper_command_topic> (std_msgs/Float64MultiArray, a
            forward_command_controller's input) when that parameter is not empty
            viz/executed_path (nav_msgs/Path): the measured ee positions, base frame
            /diagnostics: state (following / holding: reason / waiting), chunks accepted/rejected by reason, steps
            dropped, holds by reason, safety interventions by kind (ticks), heartbeats received (when required),
            control period jitter and observation -> command latency percentiles
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections import deque

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64, Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from humanego_control.trajectory import MODES, ChunkRejected, ClockFollower, ExecutorConfig, make_executor
from humanego_core.kinematics import ROBOTS, KinematicsError, RobotKinematics
from humanego_core.timeutil import NS_PER_S
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.diagnostics import OK, WARN, DiagnosticsReporter
from humanego_ros.parameters import ParamSpec, declare_parameters
from humanego_ros.runner import run_node

OUTPUTS = ("sim", "ros2_control")
JOINT_STATES = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
JITTER_WINDOW = 2000  # control ticks the jitter percentiles are taken over
REPORT_EVERY = 10     # ticks between diagnostics value updates (state changes are published at once)
PATH_MIN_STEP_M = 0.001  # executed path: a new pose when the ee moved at least this far ...
PATH_PERIOD_S = 0.1      # ... published at most this often (a long Path costs milliseconds to serialise)
LOG_PERIOD_S = 5.0    # repeated warnings of one kind are logged at most this often


def parameters() -> list[ParamSpec]:
    d = ExecutorConfig()
    return [
        ParamSpec("robot", "panda", "Robot whose shipped URDF (urdf/<robot>.urdf) gives joints and limits unless "
                  "'urdf' is given.", choices=ROBOTS),
        ParamSpec("urdf", "", "Robot description; empty = the shipped one of 'robot'."),
        ParamSpec("base_frame", "base_link", "The URDF's root link: joint chunks must be stamped with it, the "
                  "workspace box and executed path are in it."),
        ParamSpec("output", "sim", "Where commands go: sim = joint_trajectory + gripper_command of sim_robot; "
                  "ros2_control = <controller_name>/joint_trajectory (+ gripper_command_topic).", choices=OUTPUTS),
        ParamSpec("controller_name", "joint_trajectory_controller", "ros2_control joint_trajectory_controller "
                  "whose <name>/joint_trajectory topic gets the commands (output ros2_control)."),
        ParamSpec("gripper_command_topic", "gripper_controller/commands", "std_msgs/Float64MultiArray topic of the "
                  "gripper's forward_command_controller (output ros2_control); empty = the gripper is not commanded."),
        ParamSpec("mode", d.mode, "Chunk execution: ACT's temporal ensembling of overlapping chunks, or "
                  "receding-horizon replanning (the newest chunk).", choices=MODES),
        ParamSpec("ensemble_decay", d.ensemble_decay, "ACT's k: weight exp(-k i) of the i-th oldest chunk.",
                  minimum=0.0, maximum=10.0),
        ParamSpec("control_rate_hz", 100.0, "Command rate.", minimum=100.0, maximum=1000.0),
        ParamSpec("velocity_scale", 0.5, "Joint velocity limits = URDF limits times this.", minimum=0.01, maximum=1.0),
        ParamSpec("acceleration_limit", 4.0, "Joint acceleration limit (rad/s^2, every joint).",
                  minimum=0.01, maximum=100.0),
        ParamSpec("stop_deceleration", 8.0, "Deceleration of a hold (e-stop, watchdogs), rad/s^2 per joint.",
                  minimum=0.01, maximum=200.0),
        ParamSpec("max_step_rad", 0.05, "Largest change of any joint's command between two ticks.",
                  minimum=1e-4, maximum=1.0),
        ParamSpec("position_margin_rad", 0.02, "Commands stay this far inside the URDF position limits.",
                  minimum=0.0, maximum=0.5),
        ParamSpec("workspace_frames", ["ee", "flange"], "URDF frames whose origins must stay in the workspace box."),
        ParamSpec("workspace_min", [-0.3, -0.75, 0.01], "Workspace box minimum x, y, z (m, base frame); z = 0 is "
                  "the table top in the simulated world."),
        ParamSpec("workspace_max", [0.95, 0.75, 1.2], "Workspace box maximum x, y, z (m, base frame)."),
        ParamSpec("chunk_timeout_s", d.chunk_timeout_s, "No chunk for this long: decelerate and hold.",
                  minimum=0.01, maximum=60.0),
        ParamSpec("joint_state_timeout_s", d.joint_state_timeout_s, "No joint state for this long: decelerate and "
                  "hold.", minimum=0.01, maximum=10.0),
        ParamSpec("heartbeat_timeout_s", d.heartbeat_timeout_s, "No heartbeat for this long: decelerate and hold; "
                  "0 = heartbeats are not required.", minimum=0.0, maximum=60.0),
        ParamSpec("max_tracking_error_rad", d.max_tracking_error_rad, "Command this far from the measured joints: "
                  "hold and restart from them.", minimum=0.01, maximum=3.0),
        ParamSpec("max_future_stamp_s", d.max_future_s, "Chunks stamped further ahead of now are rejected (nodes on "
                  "different clocks).", minimum=0.0, maximum=60.0),
        ParamSpec("executed_path_length", 1000, "Poses kept in viz/executed_path.", minimum=2, maximum=100000),
    ]


def duration(seconds: float) -> Duration:
    ns = round(seconds * NS_PER_S)
    return Duration(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


class TrajectoryControllerNode(Node):
    def __init__(self):
        super().__init__("trajectory_controller")
        p = self.params = declare_parameters(self, parameters())
        self.kin = RobotKinematics.load(p["urdf"] or p["robot"])
        if p["base_frame"] != self.kin.base_frame:
            raise ValueError(f"base_frame {p['base_frame']!r} is not the root link of {self.kin.urdf_path} "
                             f"({self.kin.base_frame!r})")
        for name in ("workspace_min", "workspace_max"):
            if len(p[name]) != 3:
                raise ValueError(f"parameter '{name}' needs 3 values (x, y, z), got {list(p[name])}")
        self.period_s = 1.0 / p["control_rate_hz"]
        self.trajectory = make_executor(self.kin, p)
        self._lock = threading.Lock()  # the executor: fed by callbacks, ticked by the control thread
        self.rejected_joint_states = 0
        self.periods_s: deque[float] = deque(maxlen=JITTER_WINDOW)
        self.overruns = 0
        self.commands_sent = 0
        self.heartbeats = 0
        self._logged: dict[str, float] = {}
        self.path = Path(header=Header(frame_id=p["base_frame"]))
        self._path_kin = RobotKinematics(self.kin.urdf_path)  # the executor thread's own pinocchio data
        self._path_published = -PATH_PERIOD_S

        if p["output"] == "sim":
            self.pub_command = self.create_publisher(JointTrajectory, "joint_trajectory", qos.COMMAND)
            self.pub_gripper = self.create_publisher(Float64, "gripper_command", qos.COMMAND)
        else:
            self.pub_command = self.create_publisher(JointTrajectory, f"{p['controller_name']}/joint_trajectory",
                                                     qos.COMMAND)
            topic = p["gripper_command_topic"]
            self.pub_gripper = self.create_publisher(Float64MultiArray, topic, qos.COMMAND) if topic else None
        self.pub_path = self.create_publisher(Path, "viz/executed_path", qos.COMMAND)
        self.diagnostics = DiagnosticsReporter(self, "trajectory controller")
        self.create_subscription(JointState, "joint_states", self.on_joint_state, JOINT_STATES)
        self.create_subscription(JointTrajectory, "joint_chunk", self.on_chunk, qos.COMMAND)
        self.create_subscription(Bool, "estop", self.on_estop, qos.COMMAND)
        self.create_subscription(Header, "heartbeat", self.on_heartbeat, qos.COMMAND)
        self.clock_follower = None
        if self.get_parameter("use_sim_time").value:
            self.clock_follower = ClockFollower()
            self.create_subscription(Clock, "/clock", self.on_clock, qos.CLOCK)
        self._report()

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._control_loop, name="control", daemon=True)
        self._thread.start()
        heartbeat = (f"heartbeat required within {p['heartbeat_timeout_s']} s" if p["heartbeat_timeout_s"] > 0
                     else "heartbeat not required")
        self.get_logger().info(
            f"{p['mode']} of joint_chunk at {p['control_rate_hz']:.0f} Hz to {self.pub_command.topic_name} "
            f"({self.kin.urdf_path.name}: {', '.join(self.kin.arm_joint_names)}; velocity {p['velocity_scale']} x URDF,"
            f" acceleration {p['acceleration_limit']} rad/s^2, workspace {list(p['workspace_min'])} .. "
            f"{list(p['workspace_max'])} for {', '.join(p['workspace_frames'])}); {heartbeat}")

    # ----- time -----
    def _now_s(self, mono_s: float) -> float | None:
        """ROS time (s) for the chunk timing; None under use_sim_time until /clock has been seen."""
        if self.clock_follower is None:
            return self.get_clock().now().nanoseconds / NS_PER_S
        with self._lock:
            return self.clock_follower.now(mono_s)

    def on_clock(self, msg: Clock) -> None:
        with self._lock:
            jumped = self.clock_follower.observe(time.monotonic(), conv.time_to_ns(msg.clock) / NS_PER_S)
            if jumped:
                self.trajectory.clear_chunks()
        if jumped:
            self.get_logger().warn("/clock went back (simulator restarted?): chunks dropped")

    # ----- inputs -----
    def on_joint_state(self, msg: JointState) -> None:
        try:
            q = self.kin.arm_positions(list(msg.name), list(msg.position))
        except KinematicsError as exc:
            self.rejected_joint_states += 1
            self._log_now_and_then("joint_states", self.get_logger().error,
                                   f"joint_states rejected ({self.rejected_joint_states} so far): {exc}")
            return
        with self._lock:
            self.trajectory.on_joint_state(q, time.monotonic())
        self._extend_path(q, msg.header.stamp)

    def on_chunk(self, msg: JointTrajectory) -> None:
        mono = time.monotonic()
        now = self._now_s(mono)
        if now is None:
            self._log_now_and_then("no_clock", self.get_logger().warn, "joint_chunk ignored: no /clock yet")
            return
        times = [p.time_from_start.sec + p.time_from_start.nanosec / NS_PER_S for p in msg.points]
        try:
            with self._lock:
                self.trajectory.add_chunk(list(msg.joint_names), times, [list(p.positions) for p in msg.points],
                                        conv.time_to_ns(msg.header.stamp) / NS_PER_S, msg.header.frame_id, now, mono)
        except ChunkRejected as exc:
            self._log_now_and_then(exc.reason, self.get_logger().warn, f"joint_chunk rejected: {exc}")

    def on_estop(self, msg: Bool) -> None:
        with self._lock:
            changed = msg.data != self.trajectory.estop
            self.trajectory.on_estop(msg.data)
        if changed:  # an e-stop button may repeat its state at a fixed rate
            self.get_logger().warn("e-stop: decelerating and holding" if msg.data else "e-stop released")

    def on_heartbeat(self, msg: Header) -> None:
        with self._lock:
            self.trajectory.on_heartbeat(time.monotonic())
            self.heartbeats += 1

    # ----- control thread -----
    def _control_loop(self) -> None:
        try:
            due = time.monotonic()
            last = None
            ticks = 0
            while not self._stop.is_set():
                due += self.period_s
                delay = due - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -self.period_s:  # fell behind by whole periods: skip them rather than burst
                    missed = int(-delay // self.period_s)
                    self.overruns += missed
                    due += missed * self.period_s
                mono = time.monotonic()
                changed = False
                if last is not None:
                    self.periods_s.append(mono - last)
                last = mono
                now = self._now_s(mono)
                if now is not None:
                    with self._lock:
                        state = self.trajectory.state
                        command = self.trajectory.tick(now, mono)
                        changed = self.trajectory.state != state
                    if command is not None:
                        self._send(command)
                ticks += 1
                if changed or ticks % REPORT_EVERY == 0:
                    self._report()
        except Exception:
            # After Ctrl-C the context dies before the node and publishing fails: that is the normal end.
            if self.context.ok():
                self.get_logger().fatal(f"control loop failed, shutting down:\n{traceback.format_exc()}")
                os.kill(os.getpid(), signal.SIGINT)

    def _send(self, command) -> None:
        point = JointTrajectoryPoint(positions=command.position.tolist(), velocities=command.velocity.tolist(),
                                     time_from_start=duration(self.period_s))
        # header.stamp zero: start on receipt (JTC and sim_robot), so the clocks of the two sides never matter.
        self.pub_command.publish(JointTrajectory(joint_names=self.kin.arm_joint_names, points=[point]))
        self.commands_sent += 1
        if command.gripper is not None and self.pub_gripper is not None:
            opening = float(command.gripper)
            self.pub_gripper.publish(Float64(data=opening) if self.params["output"] == "sim"
                                     else Float64MultiArray(data=[opening]))

    # ----- outputs -----
    def _extend_path(self, q: np.ndarray, stamp) -> None:
        p = self._path_kin.fk(q)[:3, 3]
        poses = self.path.poses
        if poses:
            last = poses[-1].pose.position
            if np.linalg.norm(p - [last.x, last.y, last.z]) < PATH_MIN_STEP_M:
                return
        pose = PoseStamped(header=Header(stamp=stamp, frame_id=self.params["base_frame"]))
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in p)
        pose.pose.orientation.w = 1.0
        poses.append(pose)
        del poses[:-self.params["executed_path_length"]]
        self.path.header.stamp = stamp
        now = time.monotonic()
        if now - self._path_published >= PATH_PERIOD_S:
            self._path_published = now
            self.pub_path.publish(self.path)

    def _report(self) -> None:
        with self._lock:
            state = self.trajectory.state
            values = {"state": state, "mode": self.params["mode"], **self.trajectory.counters()}
            latencies = np.asarray(self.trajectory.latencies_s) * 1e3
            heartbeats = self.heartbeats
        values.update(commands_sent=self.commands_sent, rejected_joint_states=self.rejected_joint_states,
                      overruns=self.overruns)
        if self.params["heartbeat_timeout_s"] > 0:
            values["heartbeats_received"] = heartbeats
        periods = np.asarray(self.periods_s)
        if periods.size:
            jitter = np.abs(periods - self.period_s) * 1e3
            j50, j99 = np.percentile(jitter, [50, 99])
            values.update(period_jitter_p50_ms=f"{j50:.3f}", period_jitter_p99_ms=f"{j99:.3f}",
                          period_max_ms=f"{periods.max() * 1e3:.2f}")
        if latencies.size:
            l50, l99 = np.percentile(latencies, [50, 99])
            values.update(command_latency_p50_ms=f"{l50:.1f}", command_latency_p99_ms=f"{l99:.1f}")
        holding = state.startswith("holding")
        self.diagnostics.set(WARN if holding else OK, state, **values)

    def _log_now_and_then(self, key: str, log, text: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_PERIOD_S) >= LOG_PERIOD_S:
            self._logged[key] = now
            log(text)

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=5)
        return super().destroy_node()


def main(args=None):
    # The control thread must get the GIL back within a fraction of its period while the executor thread handles
    # joint states and /clock at hundreds of messages a second (the default switch interval is 5 ms).
    sys.setswitchinterval(0.0005)
    sys.exit(run_node(TrajectoryControllerNode, args))
