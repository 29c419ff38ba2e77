"""The simulated robot arm with its ego camera, as a ROS 2 node (``humanego run humanego_sim sim_robot``).

Wires :class:`humanego_sim.robot_sim.RobotSim` to ROS. Physics runs in its own thread, in real time
scaled by ``real_time_factor`` (0 = as fast as possible); every message is stamped with the sim time of
the state it derives from (from 0 at start, continuing across resets), which is also published on
``/clock`` (``publish_clock``) so other nodes run with ``use_sim_time:=true``, as with Gazebo.
Images are rendered only while somebody subscribes to them.

Subscribes  joint_trajectory (trajectory_msgs/JointTrajectory, reliable): arm joints by URDF name, a
            subset allowed; header.stamp zero = start now, otherwise the sim time of time_from_start 0;
            one point with time_from_start 0 = a position target applied at once; an empty trajectory
            stops the arm where it is. Bad commands (unknown joints, NaN/inf, ...) are rejected whole.
            gripper_command (std_msgs/Float64, reliable): target opening per finger (m), 0 = closed
Publishes   joint_states (sensor_msgs/JointState, reliable): arm + finger joints
            camera/image_raw (rgb8), camera/depth/image_raw (32FC1, metres along the optical axis),
            camera/camera_info (sensor data QoS), frame camera_optical_frame
            /tf (moving links, at tf_rate_hz), /tf_static (world->base_link, fixed links,
            world->camera_link->camera_optical_frame)
            task_state (humanego_interfaces/TaskState, reliable), /clock (when publish_clock)
Service     reset (humanego_interfaces/srv/ResetEpisode): new placement from the seed, robot at home
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback

import mujoco
import numpy as np
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, Header
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory

from humanego_interfaces.msg import TaskState
from humanego_interfaces.srv import ResetEpisode
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.parameters import ParamSpec, declare_parameters
from humanego_ros.runner import run_node
from humanego_sim.robot_sim import CAMERA_OPTICAL_FRAME, WORLD_FRAME, CommandRejected, RobotSim, TrajectoryPoint
from humanego_sim.tasks import available_tasks, load_task
from humanego_sim.world import load_world_config

# Behind real time by more than this, pacing restarts from now instead of racing to catch up.
MAX_LAG_S = 0.5


def parameters() -> list[ParamSpec]:
    camera = load_world_config().ego_camera
    return [
        ParamSpec("robot", "panda", "Robot arm to simulate (urdf/<robot>.urdf).", choices=("panda", "ur5e")),
        ParamSpec("task", "serve_bread", "Task scene (config/tasks/<task>.yaml).", choices=tuple(available_tasks())),
        ParamSpec("seed", 0, "Placement seed of the first episode; the reset service takes new ones.",
                  minimum=0, maximum=2**62),
        ParamSpec("real_time_factor", 1.0, "Sim seconds per wall-clock second; 0 runs as fast as possible.",
                  minimum=0.0, maximum=1000.0),
        ParamSpec("publish_clock", True, "Publish /clock with the sim time, which stamps every message (run the "
                  "other nodes with use_sim_time:=true)."),
        ParamSpec("joint_state_rate_hz", 100.0, "Rate of joint_states (and /clock), in sim time.",
                  minimum=1.0, maximum=500.0),
        ParamSpec("tf_rate_hz", 30.0, "Rate of the moving links' /tf, in sim time, with a joint state's stamp (at "
                  "most joint_state_rate_hz). For RViz and recordings: the graph's nodes take the arm from "
                  "joint_states, yet every TF listener decodes every /tf message, a dozen links each.",
                  minimum=1.0, maximum=500.0),
        ParamSpec("task_state_rate_hz", 10.0, "Rate of task_state, in sim time.", minimum=0.1, maximum=500.0),
        ParamSpec("camera_rate_hz", 30.0, "Rate of the ego camera images, in sim time; 0 disables the camera.",
                  minimum=0.0, maximum=240.0),
        ParamSpec("camera_width", camera.width, "Ego camera image width (px).", minimum=16, maximum=2048),
        ParamSpec("camera_height", camera.height, "Ego camera image height (px).", minimum=16, maximum=2048),
        ParamSpec("depth", True, "Also publish camera/depth/image_raw."),
        ParamSpec("camera_multisampling", 0, "Anti-aliasing samples per pixel of the camera images; 4 gives "
                  "smoother edges at about twice the render time on a CPU (then 30 Hz rgb + depth at 320x240 no "
                  "longer keeps up with real time on 2 cores).", minimum=0, maximum=16),
    ]


class Periodic:
    """A periodic publication, on its own schedule (publications land on physics chunk boundaries; rescheduling
    from "now" would lower the rate), never scheduled in the past."""

    def __init__(self, rate_hz: float):
        self.period_ns = round(1e9 / rate_hz)
        self.next_ns = 0

    def due(self, now_ns: int) -> bool:
        """Whether the publication is due at ``now_ns``; if so, the next one is scheduled."""
        if now_ns < self.next_ns:
            return False
        self.next_ns += self.period_ns
        if self.next_ns <= now_ns:
            self.next_ns = now_ns + self.period_ns
        return True


def transform_stamped(T: np.ndarray, parent: str, child: str, stamp) -> TransformStamped:
    """TransformStamped of a rigid T_parent_child. MuJoCo's C conversion, because at 100 Hz times a dozen links
    the generic (validating, scipy-based) conversion costs a noticeable share of a core."""
    q = np.empty(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(T[:3, :3]).ravel())
    t = T[:3, 3]
    return TransformStamped(header=Header(stamp=stamp, frame_id=parent), child_frame_id=child,
                            transform=Transform(translation=Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
                                                rotation=Quaternion(x=float(q[1]), y=float(q[2]), z=float(q[3]),
                                                                    w=float(q[0]))))


class SimRobotNode(Node):
    def __init__(self):
        super().__init__("sim_robot")
        p = self.params = declare_parameters(self, parameters())
        self.sim = RobotSim(load_task(p["task"]), p["robot"], seed=p["seed"], multisampling=p["camera_multisampling"])
        self.task = self.sim.world.task
        self._lock = threading.Lock()  # the sim is stepped by the physics thread, commanded by callbacks

        self.pub_joints = self.create_publisher(JointState, "joint_states", qos.COMMAND)
        self.pub_tf = self.create_publisher(TFMessage, "/tf", qos.TF)
        self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC)
        self.pub_task = self.create_publisher(TaskState, "task_state", qos.COMMAND)
        self.pub_clock = self.create_publisher(Clock, "/clock", qos.CLOCK) if p["publish_clock"] else None
        self.camera = p["camera_rate_hz"] > 0
        self.pub_depth = None
        if self.camera:
            self.pub_image = self.create_publisher(Image, "camera/image_raw", qos.SENSOR)
            self.pub_info = self.create_publisher(CameraInfo, "camera/camera_info", qos.SENSOR)
            self.pub_depth = self.create_publisher(Image, "camera/depth/image_raw", qos.SENSOR) if p["depth"] else None
        self.create_subscription(JointTrajectory, "joint_trajectory", self.on_trajectory, qos.COMMAND)
        self.create_subscription(Float64, "gripper_command", self.on_gripper, qos.COMMAND)
        self.create_service(ResetEpisode, "reset", self.on_reset)

        with self._lock:
            static = self.sim.static_transforms()
            stamp = self.sim.stamp_ns()
        self.pub_tf_static.publish(TFMessage(transforms=[
            conv.matrix_to_transform_stamped(T, parent, child, stamp) for parent, child, T in static]))

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._physics_loop, name="physics", daemon=True)
        self._thread.start()
        pace = "as fast as possible" if p["real_time_factor"] == 0 else f"real-time factor {p['real_time_factor']}"
        camera = f"{p['camera_width']}x{p['camera_height']} at {p['camera_rate_hz']} Hz" if self.camera else "off"
        self.get_logger().info(f"{p['robot']} on task {p['task']} (seed {p['seed']}), {pace}, camera {camera}")

    # ----- commands -----
    def on_trajectory(self, msg: JointTrajectory) -> None:
        points = [TrajectoryPoint(p.time_from_start.sec + p.time_from_start.nanosec * 1e-9, list(p.positions),
                                  list(p.velocities) or None) for p in msg.points]
        stamp_ns = conv.time_to_ns(msg.header.stamp)
        try:
            with self._lock:
                start = None if stamp_ns == 0 else self.sim.episode_time(stamp_ns)
                self.sim.set_trajectory(list(msg.joint_names), points, start)
        except CommandRejected as exc:
            self.get_logger().warn(f"joint_trajectory rejected ({self.sim.stats.rejected[exc.reason]} so far "
                                   f"for this reason): {exc}")

    def on_gripper(self, msg: Float64) -> None:
        try:
            with self._lock:
                self.sim.set_gripper(msg.data)
        except CommandRejected as exc:
            self.get_logger().warn(f"gripper_command rejected: {exc}")

    def on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response) -> ResetEpisode.Response:
        try:
            with self._lock:
                placements = self.sim.reset(request.seed)
        except ValueError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success = True
        response.message = f"seed {request.seed}: " + ", ".join(
            f"{name} at ({pl.x:.3f}, {pl.y:.3f}) yaw {pl.yaw:.2f}" for name, pl in placements.items())
        self.get_logger().info(f"reset, {response.message}")
        return response

    # ----- physics thread -----
    def _physics_loop(self) -> None:
        p = self.params
        period_ns = round(1e9 / p["joint_state_rate_hz"])
        steps = max(1, round(period_ns * 1e-9 / self.sim.timestep))
        camera = Periodic(p["camera_rate_hz"]) if self.camera else None
        task_state = Periodic(p["task_state_rate_hz"])
        tf = Periodic(p["tf_rate_hz"])
        rtf = p["real_time_factor"]
        anchor_wall, anchor_sim = time.monotonic(), self.sim.stamp_ns()
        try:
            while not self._stop.is_set():
                with self._lock:
                    self.sim.step(steps)
                    snap = self.sim.snapshot()
                    links = self.sim.link_transforms() if tf.due(snap.stamp_ns) else None
                    frames = None
                    if camera is not None and camera.due(snap.stamp_ns):
                        frames = tuple(self.sim.render(p["camera_width"], p["camera_height"], kind)
                                       if self._wanted(pub) else None
                                       for kind, pub in (("rgb", self.pub_image), ("depth", self.pub_depth)))
                self._publish_state(snap, links)
                if frames is not None:
                    self._publish_camera(snap.stamp_ns, *frames)
                if task_state.due(snap.stamp_ns):
                    self._publish_task_state(snap)
                if rtf > 0:
                    ahead = (snap.stamp_ns - anchor_sim) * 1e-9 / rtf - (time.monotonic() - anchor_wall)
                    if ahead > 0:
                        self._stop.wait(ahead)
                    elif ahead < -MAX_LAG_S:
                        anchor_wall, anchor_sim = time.monotonic(), snap.stamp_ns
        except Exception:
            # After Ctrl-C the context dies before the node and publishing fails: that is the normal end.
            # Otherwise stop the whole node, as Ctrl-C would, rather than leave it up without a simulation.
            if self.context.ok():
                self.get_logger().fatal(f"physics thread failed, shutting down:\n{traceback.format_exc()}")
                os.kill(os.getpid(), signal.SIGINT)
        finally:
            self.sim.close()  # the renderer belongs to this thread's GL context

    def _publish_state(self, snap, links: list[tuple[str, str, np.ndarray]] | None) -> None:
        """Joint states and /clock; the links' /tf when ``links`` is given."""
        stamp = conv.ns_to_time(snap.stamp_ns)
        if self.pub_clock is not None:
            self.pub_clock.publish(Clock(clock=stamp))
        msg = JointState(name=snap.joint_names, position=snap.positions.tolist(), velocity=snap.velocities.tolist())
        msg.header.stamp = stamp
        self.pub_joints.publish(msg)
        if links is not None:
            self.pub_tf.publish(TFMessage(transforms=[transform_stamped(T, parent, child, stamp)
                                                      for parent, child, T in links]))

    @staticmethod
    def _wanted(publisher) -> bool:
        # Rendering is most of the node's cost: only for images somebody listens to (like image_transport).
        return publisher is not None and publisher.get_subscription_count() > 0

    def _publish_camera(self, stamp_ns: int, rgb, depth) -> None:
        w, h = self.params["camera_width"], self.params["camera_height"]
        self.pub_info.publish(conv.make_camera_info(self.sim.camera_matrix(w, h), w, h, stamp_ns, CAMERA_OPTICAL_FRAME))
        if rgb is not None:
            self.pub_image.publish(conv.numpy_to_image(rgb, "rgb8", stamp_ns, CAMERA_OPTICAL_FRAME))
        if depth is not None:
            self.pub_depth.publish(conv.numpy_to_image(depth, "32FC1", stamp_ns, CAMERA_OPTICAL_FRAME))

    def _publish_task_state(self, snap) -> None:
        names = list(snap.object_poses)
        self.pub_task.publish(TaskState(
            header=conv.make_header(snap.stamp_ns, WORLD_FRAME), task=self.task.name,
            instruction=self.task.instruction, seed=snap.seed, elapsed=snap.elapsed, success=snap.success.success,
            goal_distance=snap.success.xy_distance, object_names=names,
            object_poses=[conv.matrix_to_pose(snap.object_poses[n]) for n in names]))

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=10)
        return super().destroy_node()


def main(args=None):
    sys.exit(run_node(SimRobotNode, args))
