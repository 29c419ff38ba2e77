"""Action chunks to joint trajectories (``humanego run humanego_control ik_retarget``).

Wires :class:`humanego_control.retarget.Retargeter` to ROS. Per chunk: its poses (the human hand / virtual
gripper frame, in ``header.frame_id``) are brought into the base frame through TF at the chunk's stamp, mapped
to ee targets by the alignment of ``config/views.yaml`` (``gripper.ee_to_gripper``), solved by damped least
squares along the chunk from the latest joint state, and published as one trajectory: ``horizon_steps`` steps
from the first one not yet due (a late chunk's steps already in the past are skipped and counted as
``steps_past_due``; the controller would drop them). Solving runs on its own
thread on the newest chunk: a chunk still waiting when a newer one arrives is skipped (``chunks_superseded``)
rather than queued, so a slow solve never delays the next chunk. Steps the arm cannot
reach are replaced by the nearest reachable pose and flagged; a chunk that cannot be used is rejected whole
and counted by reason, never passed on in part.

Subscribes  action_chunk (humanego_interfaces/ActionChunk, reliable)
            joint_states (sensor_msgs/JointState; best effort depth 10, so reliable publishers match too)
            /tf, /tf_static: T_base_<chunk frame> at the chunk's stamp (humanego_ros.tf_listener)
Publishes   joint_chunk (trajectory_msgs/JointTrajectory, reliable): the arm joints + the gripper joint (the
            URDF finger joint, position = opening per finger in m); header.stamp = the chunk's observation
            stamp, frame_id = base frame; step k of the chunk at time_from_start (k + 1) * dt
            viz/predicted_path (nav_msgs/Path): the ee poses the trajectory reaches, base frame
            viz/markers (visualization_msgs/MarkerArray): the gripper along the chunk (green: reached, red:
            clamped), and the targets that were out of reach (red spheres)
            /diagnostics: chunks in/out/superseded, rejections by reason, IK residuals, flagged steps, solve time

Rejection reasons: ``invalid`` (NaN/inf, sizes, dt), ``wrong_arm`` (the configured arm is not in the chunk, or
several arms and none configured), ``wrong_frame`` (empty, or not in ``allowed_frames``), ``no_transform``
(the frame unknown to TF, or TF lost at the chunk's stamp), ``no_joint_state`` / ``stale_joint_state``
(no warm start within ``max_joint_state_age_s`` of the chunk's stamp), ``out_of_order`` (older than the last
chunk published), ``in_the_past`` (fewer than 2 steps still to come).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter, deque

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Path
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from humanego_control.ik import IKConfig
from humanego_control.retarget import RetargetedChunk, Retargeter, first_due_step, gripper_outline
from humanego_core.kinematics import ROBOTS, KinematicsError, RobotKinematics
from humanego_core.timeutil import NS_PER_S, seconds_to_ns
from humanego_core.transform_tree import TransformLookupError
from humanego_interfaces.msg import ActionChunk
from humanego_perception.views import load_views_config
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.diagnostics import OK, WARN, DiagnosticsReporter
from humanego_ros.latest_worker import LatestWorker
from humanego_ros.parameters import ParamSpec, declare_parameters, option_specs, options_from
from humanego_ros.runner import run_node
from humanego_ros.tf_listener import TfListener

SOLVE_WINDOW = 200  # chunks the solve-time percentiles are taken over
JOINT_STATES = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
REACHED = ColorRGBA(r=0.1, g=0.8, b=0.2, a=1.0)
CLAMPED = ColorRGBA(r=0.9, g=0.1, b=0.1, a=1.0)


def parameters() -> list[ParamSpec]:
    return [
        ParamSpec("robot", "panda", "Robot whose shipped URDF (urdf/<robot>.urdf) is used unless 'urdf' is given.",
                  choices=ROBOTS),
        ParamSpec("urdf", "", "Robot description; empty = the shipped one of 'robot'."),
        ParamSpec("views_config", "", "Views configuration holding the hand/gripper alignment gripper.ee_to_gripper; "
                  "empty = config/views.yaml."),
        ParamSpec("base_frame", "base_link", "TF frame of the URDF's root link; trajectories and paths are in it."),
        ParamSpec("arm", "", "Arm of the chunk to execute (ActionChunk.arms); empty = the chunk's only arm."),
        ParamSpec("allowed_frames", "", "Comma-separated frames a chunk may be expressed in; empty = any frame TF "
                  "connects to the base frame."),
        ParamSpec("horizon_steps", 0, "Retarget only N steps of each chunk, from the first not yet due (0 = all): "
                  "the controller acts on a chunk until the next one arrives, and IK time grows with N.", minimum=0,
                  maximum=10000),
        ParamSpec("transform_timeout_s", 0.2, "How long a chunk waits for the transform of its frame at its stamp "
                  "(a busy machine delivers /tf late) before it is rejected.", minimum=0.0, maximum=5.0),
        ParamSpec("max_joint_state_age_s", 0.5, "Largest time the warm-start joint state may lie before a chunk's "
                  "stamp.", minimum=0.0, maximum=10.0),
        ParamSpec("grasp_threshold", 0.5, "Grasp value from which the gripper is commanded closed.",
                  minimum=0.01, maximum=1.0),
        ParamSpec("symmetric_gripper", False, "The gripper grasps the same turned by 180 degrees about its approach "
                  "axis (a parallel gripper): each chunk may take the turned pose, keeping the one the arm follows "
                  "(humanego_control.retarget). Off: the chunk's poses as they are, no half turns of the wrist."),
    ] + option_specs(IKConfig, "IK: ")


class RejectedChunk(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class IkRetargetNode(Node):
    def __init__(self):
        super().__init__("ik_retarget")
        p = self.params = declare_parameters(self, parameters())
        self.kin = RobotKinematics.load(p["urdf"] or p["robot"])
        self.base_frame = p["base_frame"]
        if self.base_frame != self.kin.base_frame:
            raise ValueError(f"base_frame {self.base_frame!r} is not the root link of {self.kin.urdf_path} "
                             f"({self.kin.base_frame!r})")
        gripper = load_views_config(p["views_config"] or None).gripper
        self.gripper_drawing = (gripper.finger_length_m, gripper.stem_length_m)
        self.retargeter = Retargeter(self.kin, gripper.T_ee_gripper, options_from(IKConfig, p), p["grasp_threshold"],
                                     p["symmetric_gripper"])
        self.allowed_frames = {f.strip() for f in p["allowed_frames"].split(",") if f.strip()}
        self.max_age_ns = seconds_to_ns(p["max_joint_state_age_s"])
        self.joint_names = [*self.kin.arm_joint_names, self.kin.gripper_joint_name]

        self.tf = TfListener(self)
        self.q_measured: np.ndarray | None = None
        self.q_stamp_ns = 0
        self.last_stamp_ns = -1
        self.received = 0
        self.superseded = 0
        self.published = 0
        self.steps_flagged = 0
        self.steps_past_due = 0
        self.steps_too_fast = 0
        self.rejected: Counter = Counter()
        self.rejected_joint_states = 0
        self.solve_ms: deque[float] = deque(maxlen=SOLVE_WINDOW)
        self.last_residuals = {}

        self.pub_chunk = self.create_publisher(JointTrajectory, "joint_chunk", qos.COMMAND)
        self.pub_path = self.create_publisher(Path, "viz/predicted_path", qos.COMMAND)
        self.pub_markers = self.create_publisher(MarkerArray, "viz/markers", qos.COMMAND)
        self.diagnostics = DiagnosticsReporter(self, "ik retarget")
        self.create_subscription(JointState, "joint_states", self.on_joint_state, JOINT_STATES)
        self.solver = LatestWorker(self.retarget_chunk, self._solver_failed, name="ik_retarget solver")
        self.create_subscription(ActionChunk, "action_chunk", self.on_chunk, qos.COMMAND)
        self._report(OK, "waiting for chunks")
        self.get_logger().info(f"retargeting to {self.kin.urdf_path} (arm joints {', '.join(self.kin.arm_joint_names)}"
                               f", gripper {self.kin.gripper_joint_name}) in {self.base_frame}")

    def on_joint_state(self, msg: JointState) -> None:
        try:
            self.q_measured = self.kin.arm_positions(list(msg.name), list(msg.position))
            self.q_stamp_ns = conv.time_to_ns(msg.header.stamp)
        except KinematicsError as exc:
            self.rejected_joint_states += 1
            if self.rejected_joint_states == 1:
                self.get_logger().error(f"joint_states rejected (further ones counted on /diagnostics): {exc}")

    def on_chunk(self, msg: ActionChunk) -> None:
        self.received += 1
        if self.solver.submit(msg):
            self.superseded += 1

    def _solver_failed(self, exc: BaseException) -> None:
        # After Ctrl-C the context dies before the node and publishing fails: that is the normal end.
        if self.context.ok():
            self.get_logger().fatal(f"retargeting failed, shutting down: {exc!r}")
            os.kill(os.getpid(), signal.SIGINT)

    def destroy_node(self):
        self.solver.stop()
        return super().destroy_node()

    def retarget_chunk(self, msg: ActionChunk) -> None:
        started = time.perf_counter()
        try:
            T_base_gripper, grasp, stamp_ns = self._targets(msg)
            first = self._first_due_step(stamp_ns, msg.dt, len(grasp))
            steps = self.params["horizon_steps"] or len(grasp)
            T_base_gripper, grasp = T_base_gripper[first:first + steps], grasp[first:first + steps]
            q_start = self._warm_start(stamp_ns)
            try:
                out = self.retargeter.retarget(T_base_gripper, grasp, q_start, msg.dt)
            except ValueError as exc:  # a pose that TF made non-rigid, or the like
                raise RejectedChunk("invalid", str(exc)) from None
        except RejectedChunk as exc:
            self.rejected[exc.reason] += 1
            self.get_logger().warn(f"chunk rejected ({exc.reason}, {self.rejected[exc.reason]} so far): {exc}")
            self._report(WARN, f"rejecting chunks: {exc.reason}")
            return
        self.solve_ms.append((time.perf_counter() - started) * 1e3)
        self.last_stamp_ns = stamp_ns
        self.steps_past_due += first
        self.pub_chunk.publish(self._trajectory(out, msg.header.stamp, msg.dt, first))
        self.pub_path.publish(self._path(out, stamp_ns, msg.dt, first))
        self.pub_markers.publish(self._markers(out, T_base_gripper, msg.header.stamp))
        self.published += 1
        flagged = int(out.ik.flagged.sum())
        self.steps_flagged += flagged
        self.steps_too_fast += int((out.speed_ratio > 1.0).sum())
        self.last_residuals = {
            "last_position_residual_max_mm": f"{out.ik.position_error_m.max() * 1e3:.3f}",
            "last_rotation_residual_max_deg": f"{np.degrees(out.ik.rotation_error_rad.max()):.3f}",
            "last_steps_flagged": flagged, "last_speed_ratio_max": f"{out.speed_ratio.max():.2f}"}
        self._report(WARN if flagged else OK, f"clamped {flagged} unreachable steps" if flagged else "retargeting")

    def _targets(self, msg: ActionChunk) -> tuple[np.ndarray, np.ndarray, int]:
        """(T_base_gripper (H, 4, 4), grasp (H,), stamp) of the configured arm, or RejectedChunk."""
        try:
            poses, grasp = conv.msg_to_chunk(msg)
        except ValueError as exc:
            raise RejectedChunk("invalid", str(exc)) from None
        arm = self.params["arm"]
        if arm:
            if arm not in msg.arms:
                raise RejectedChunk("wrong_arm", f"arm {arm!r} is not in the chunk's arms {list(msg.arms)}")
            index = list(msg.arms).index(arm)
        elif len(msg.arms) == 1:
            index = 0
        else:
            raise RejectedChunk("wrong_arm", f"the chunk has arms {list(msg.arms)}; set the 'arm' parameter")
        frame = msg.header.frame_id
        if not frame or (self.allowed_frames and frame not in self.allowed_frames):
            raise RejectedChunk("wrong_frame", f"chunk frame {frame!r}; allowed: "
                                f"{', '.join(sorted(self.allowed_frames)) or 'any frame TF connects to the base'}")
        stamp_ns = conv.time_to_ns(msg.header.stamp)
        if stamp_ns <= self.last_stamp_ns:
            raise RejectedChunk("out_of_order", f"stamp {stamp_ns} ns is not after the last chunk's "
                                f"{self.last_stamp_ns} ns")
        try:
            T_base_frame = self.tf.lookup(self.base_frame, frame, stamp_ns, self.params["transform_timeout_s"])
        except TransformLookupError as exc:
            raise RejectedChunk("no_transform", str(exc)) from None
        return T_base_frame @ poses[:, index], grasp[:, index], stamp_ns

    def _first_due_step(self, stamp_ns: int, dt: float, count: int) -> int:
        """The chunk's first step not yet due now (step k is due at stamp + (k + 1) dt). The steps before it are
        not solved: the controller would drop them, and a late chunk's horizon would be spent on them."""
        age_s = (self.get_clock().now().nanoseconds - stamp_ns) / NS_PER_S
        first = first_due_step(age_s, dt)
        if count - first < 2:
            raise RejectedChunk("in_the_past", f"{age_s:.3f} s old: fewer than 2 of its {count} steps are still "
                                "to come")
        return first

    def _warm_start(self, stamp_ns: int) -> np.ndarray:
        if self.q_measured is None:
            raise RejectedChunk("no_joint_state", "no joint state received yet")
        if stamp_ns - self.q_stamp_ns > self.max_age_ns:
            age_s = (stamp_ns - self.q_stamp_ns) / NS_PER_S
            raise RejectedChunk("stale_joint_state", f"the latest joint state is {age_s:.3f} s older than the chunk "
                                f"(max_joint_state_age_s {self.params['max_joint_state_age_s']})")
        return self.q_measured

    def _trajectory(self, out: RetargetedChunk, stamp, dt: float, first: int) -> JointTrajectory:
        points = []
        for k, (q, opening) in enumerate(zip(out.q, out.gripper_opening, strict=True), start=first):
            points.append(JointTrajectoryPoint(positions=[*q.tolist(), float(opening)],
                                               time_from_start=duration((k + 1) * dt)))
        msg = JointTrajectory(joint_names=self.joint_names, points=points)
        msg.header.stamp = stamp
        msg.header.frame_id = self.base_frame
        return msg

    def _path(self, out: RetargetedChunk, stamp_ns: int, dt: float, first: int) -> Path:
        poses = [PoseStamped(header=conv.make_header(stamp_ns + seconds_to_ns((k + 1) * dt), self.base_frame),
                             pose=conv.matrix_to_pose(T)) for k, T in enumerate(out.T_base_ee, start=first)]
        return Path(header=conv.make_header(stamp_ns, self.base_frame), poses=poses)

    def _markers(self, out: RetargetedChunk, T_base_target, stamp) -> MarkerArray:
        segments = gripper_outline(out.T_base_gripper, out.gripper_opening, *self.gripper_drawing)
        colours = np.repeat(out.ik.reached, 8)  # 4 segments x 2 ends per step
        gripper = Marker(ns="ik_retarget/gripper", id=0, type=Marker.LINE_LIST, action=Marker.ADD,
                         points=[point(p) for p in segments.reshape(-1, 3)],
                         colors=[REACHED if ok else CLAMPED for ok in colours])
        gripper.scale.x = 0.003
        missed = T_base_target[out.ik.flagged][:, :3, 3]
        targets = Marker(ns="ik_retarget/unreachable_targets", id=0, type=Marker.SPHERE_LIST,
                         action=Marker.ADD if len(missed) else Marker.DELETE,
                         points=[point(p) for p in missed], color=CLAMPED)
        targets.scale.x = targets.scale.y = targets.scale.z = 0.015
        for marker in (gripper, targets):
            marker.header.stamp = stamp
            marker.header.frame_id = self.base_frame
            marker.pose.orientation.w = 1.0
        return MarkerArray(markers=[gripper, targets])

    def _report(self, level, message: str) -> None:
        values = {"chunks_received": self.received, "chunks_superseded": self.superseded,
                  "chunks_published": self.published,
                  "chunks_rejected": sum(self.rejected.values()), "steps_flagged": self.steps_flagged,
                  "steps_past_due": self.steps_past_due,
                  "steps_faster_than_limits": self.steps_too_fast,
                  "rejected_joint_states": self.rejected_joint_states}
        values.update({f"rejected_{reason}": n for reason, n in sorted(self.rejected.items())})
        values.update(self.last_residuals)
        if self.solve_ms:
            p50, p99 = np.percentile(np.asarray(self.solve_ms), [50, 99])
            values.update(solve_p50_ms=f"{p50:.2f}", solve_p99_ms=f"{p99:.2f}")
        self.diagnostics.set(level, message, **values)


def duration(seconds: float) -> Duration:
    ns = seconds_to_ns(seconds)
    return Duration(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def point(p) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def main(args=None):
    sys.exit(run_node(IkRetargetNode, args))
