"""The simulated robot's stepping core (no rclpy): what ``sim_robot_node`` wraps.

Holds a :class:`~humanego_sim.world.World` with a robot, steps its physics at the model's timestep,
tracks joint trajectories the way ros2_control's joint trajectory controller does (points at
``start + time_from_start``, cubic between points that carry velocities, linear otherwise, the last
point held), takes gripper commands, resets episodes by seed, and produces :class:`Snapshot` s of
everything the node publishes. Whether it runs in real time is the caller's business.

Commands are validated before anything reaches the servos: unknown or repeated joint names,
mismatched sizes, non-increasing times and NaN/inf are rejected as a whole (and counted by reason);
positions outside the joint limits are clamped (and counted).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import mujoco
import numpy as np

from humanego_sim.tasks import SuccessCheck, Task
from humanego_sim.world import World, WorldConfig

# REP 103: camera_link is x forward, y left, z up; its optical frame is z forward, x right, y down.
R_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
EGO_CAMERA = "ego_camera"
CAMERA_LINK, CAMERA_OPTICAL_FRAME = "camera_link", "camera_optical_frame"
WORLD_FRAME = "world"


class CommandRejected(ValueError):
    """A command that must not reach the servos; ``reason`` is the short key it is counted under."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class TrajectoryPoint:
    time_from_start: float                 # s
    positions: np.ndarray                  # one per trajectory joint (rad)
    velocities: np.ndarray | None = None   # rad/s, or None: linear interpolation into this point


@dataclass
class _ActiveTrajectory:
    joints: np.ndarray          # arm indices the trajectory drives
    times: np.ndarray           # absolute sim times (s) of the knots; knot 0 is the state at receipt
    positions: np.ndarray       # (K, J)
    velocities: np.ndarray | None  # (K, J) when every point carries velocities

    def sample(self, t: float) -> np.ndarray:
        times = self.times
        if t >= times[-1]:
            return self.positions[-1]
        i = int(np.searchsorted(times, t, side="right")) - 1
        i = max(i, 0)
        h = times[i + 1] - times[i]
        s = (t - times[i]) / h
        p0, p1 = self.positions[i], self.positions[i + 1]
        if self.velocities is None:
            return p0 + s * (p1 - p0)
        v0, v1 = self.velocities[i] * h, self.velocities[i + 1] * h
        s2, s3 = s * s, s * s * s
        return ((2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * v0 + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * v1)


@dataclass
class Snapshot:
    """The simulated robot's state at one instant, in the frames the node publishes."""

    stamp_ns: int                       # sim clock: monotonic over resets
    elapsed: float                      # s since the episode's reset
    seed: int
    joint_names: list[str]
    positions: np.ndarray
    velocities: np.ndarray
    object_poses: dict[str, np.ndarray]                  # world poses of each object's base centre
    success: SuccessCheck


@dataclass
class RobotSimStats:
    trajectories: int = 0
    gripper_commands: int = 0
    clamped: int = 0
    rejected: Counter = field(default_factory=Counter)


class RobotSim:
    """A World with a robot, driven by joint trajectories and gripper commands."""

    def __init__(self, task: Task, robot: str, config: WorldConfig | None = None, seed: int = 0,
                 multisampling: int | None = None):
        """``multisampling``: anti-aliasing samples of rendered images (None keeps the world's); each costs
        render time on a CPU renderer."""
        self.world = World(task, config, robot=robot)
        self.robot = self.world.robot
        self.model, self.data = self.world.model, self.world.data
        if multisampling is not None:
            self.model.vis.quality.offsamples = multisampling
        self.timestep = float(self.model.opt.timestep)
        self.stats = RobotSimStats()
        self.joint_names = self.robot.arm_joints + self.robot.finger_joints
        self._joint_index = {name: i for i, name in enumerate(self.robot.arm_joints)}
        self._moving, self._fixed = self._link_tree()
        self._clock_base_ns = 0
        self._episodes = 0
        self.seed = seed
        self.reset(seed)

    # ----- episode -----
    def reset(self, seed: int) -> dict:
        """New episode: objects placed from ``seed``, robot at home, trajectory cleared; returns placements.

        The sim clock keeps running across resets (ROS time never goes back); ``elapsed`` restarts.
        """
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if self._episodes:  # one step after the previous episode's last state, so no stamp repeats
            self._clock_base_ns = self.stamp_ns() + round(self.timestep * 1e9)
        self._episodes += 1
        placements = self.world.reset(seed)
        self.seed = seed
        self._targets = self.world.home_configuration()
        self._trajectory: _ActiveTrajectory | None = None
        return placements

    # ----- time -----
    @property
    def elapsed(self) -> float:
        return float(self.data.time)

    def stamp_ns(self) -> int:
        return self._clock_base_ns + round(self.data.time * 1e9)

    def episode_time(self, stamp_ns: int) -> float:
        """The episode time (s since reset) of a sim clock stamp."""
        return (stamp_ns - self._clock_base_ns) * 1e-9

    # ----- commands -----
    def set_trajectory(self, joint_names: list[str], points: list[TrajectoryPoint],
                       start_time: float | None = None) -> None:
        """Follow a trajectory: point k is reached at ``start_time + time_from_start`` (sim seconds since
        this episode's reset; None = now). Joints the trajectory does not name hold their targets;
        an empty trajectory stops the arm where it is commanded now. Raises CommandRejected."""
        try:
            trajectory = self._validate(joint_names, points, start_time)
        except CommandRejected as exc:
            self.stats.rejected[exc.reason] += 1
            raise
        self.stats.trajectories += 1
        self._targets = self._current_targets()
        self._trajectory = trajectory

    def _validate(self, joint_names, points, start_time) -> _ActiveTrajectory | None:
        now = self.elapsed
        unknown = [n for n in joint_names if n not in self._joint_index]
        if unknown:
            raise CommandRejected("unknown_joint", f"{', '.join(unknown)} not among the arm joints "
                                  f"{', '.join(self.robot.arm_joints)}")
        if len(set(joint_names)) != len(joint_names):
            raise CommandRejected("duplicate_joint", f"joint names repeat: {list(joint_names)}")
        if not points:
            return None
        if start_time is not None and not math.isfinite(start_time):
            raise CommandRejected("non_finite", "start time is NaN or inf")
        n = len(joint_names)
        times = np.array([p.time_from_start for p in points], float)
        positions, velocities = [], []
        for k, p in enumerate(points):
            q = np.asarray(p.positions, float)
            if q.shape != (n,):
                raise CommandRejected("size_mismatch", f"point {k} has {q.size} positions for {n} joints")
            v = None if p.velocities is None or len(p.velocities) == 0 else np.asarray(p.velocities, float)
            if v is not None and v.shape != (n,):
                raise CommandRejected("size_mismatch", f"point {k} has {v.size} velocities for {n} joints")
            if not (np.all(np.isfinite(q)) and (v is None or np.all(np.isfinite(v))) and math.isfinite(times[k])):
                raise CommandRejected("non_finite", f"point {k} contains NaN or inf")
            positions.append(q)
            velocities.append(v)
        if times[0] < 0 or np.any(np.diff(times) <= 0):
            raise CommandRejected("bad_times", f"time_from_start must be >= 0 and strictly increasing, got "
                                  f"{times.round(4).tolist()}")
        joints = np.array([self._joint_index[name] for name in joint_names], int)
        limits = self.robot.arm_limits[joints]
        clamped = np.clip(positions, limits[:, 0], limits[:, 1])
        self.stats.clamped += int(np.any(clamped != np.asarray(positions)))
        absolute = (now if start_time is None else start_time) + times
        if absolute[-1] < now:
            raise CommandRejected("in_the_past", f"the trajectory ended {now - absolute[-1]:.3f} s ago")
        if absolute[-1] == now:  # a position target for right now (time_from_start 0): the servos get it as is
            return _ActiveTrajectory(joints, np.array([now]), clamped[-1:], None)
        # Points already past are dropped; the arm goes from where it is commanded now to the next one.
        future = absolute > now
        current = self._current_targets()[joints]
        knots_t = np.r_[now, absolute[future]]
        knots_q = np.vstack([current, clamped[future]])
        knots_v = None
        if all(v is not None for v in velocities):
            # Continue with the commanded velocity, so replacing a trajectory mid-motion does not jerk.
            knots_v = np.vstack([self._current_velocity()[joints], np.asarray(velocities)[future]])
        return _ActiveTrajectory(joints, knots_t, knots_q, knots_v)

    def set_gripper(self, opening: float) -> None:
        """Target finger travel per finger (m), clamped to the gripper's range; NaN/inf raise CommandRejected."""
        if not math.isfinite(opening):
            self.stats.rejected["non_finite"] += 1
            raise CommandRejected("non_finite", f"gripper opening {opening}")
        lo, hi = self.robot.finger_range
        self.stats.clamped += int(not lo <= opening <= hi)
        self.stats.gripper_commands += 1
        self.world.set_gripper_target(opening)

    def _current_targets(self) -> np.ndarray:
        targets = self._targets.copy()
        if self._trajectory is not None:
            targets[self._trajectory.joints] = self._trajectory.sample(self.elapsed)
        return targets

    def _current_velocity(self) -> np.ndarray:
        velocity = np.zeros(len(self._targets))
        if self._trajectory is not None:
            t, h, trajectory = self.elapsed, 1e-4, self._trajectory
            velocity[trajectory.joints] = (trajectory.sample(t + h) - trajectory.sample(t - h)) / (2 * h)
        return velocity

    # ----- physics -----
    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps, updating the servo targets from the trajectory at every step."""
        for _ in range(n):
            if self._trajectory is not None:
                self.world.set_arm_targets(self._current_targets())
            else:
                self.world.set_arm_targets(self._targets)
            mujoco.mj_step(self.model, self.data)
        # mj_step leaves body poses at the state before its last integration: bring them up to the new
        # joint positions, so snapshots, TF and images all show the same instant.
        mujoco.mj_kinematics(self.model, self.data)

    # ----- state -----
    def snapshot(self) -> Snapshot:
        r = self.robot
        qpos = np.r_[self.data.qpos[r.arm_qpos], self.data.qpos[r.finger_qpos]]
        finger_dof = [self.model.joint(j).dofadr[0] for j in r.finger_joints]
        qvel = np.r_[self.data.qvel[r.arm_dof], self.data.qvel[finger_dof]]
        objects = {name: self.world.object_pose(name) for name in self.world.task.objects}
        return Snapshot(self.stamp_ns(), self.elapsed, self.seed, list(self.joint_names), qpos, qvel, objects,
                        self.world.check_success())

    def link_transforms(self) -> list[tuple[str, str, np.ndarray]]:
        """(parent, child, T_parent_child) of the robot's moving links now (not in :meth:`snapshot`: TF wants
        them at a lower rate than the joint states)."""
        return [(parent, child, self._relative(i, j)) for parent, child, i, j in self._moving]

    def static_transforms(self) -> list[tuple[str, str, np.ndarray]]:
        """Transforms that never change: the robot's mount and fixed links, and the ego camera frames."""
        T_world_optical = self.world.camera_pose(EGO_CAMERA)
        T_link_optical = np.eye(4)
        T_link_optical[:3, :3] = R_LINK_OPTICAL
        T_world_link = T_world_optical @ np.linalg.inv(T_link_optical)
        fixed = [(parent, child, self._relative(i, j)) for parent, child, i, j in self._fixed]
        return fixed + [(WORLD_FRAME, CAMERA_LINK, T_world_link), (CAMERA_LINK, CAMERA_OPTICAL_FRAME, T_link_optical)]

    def camera_matrix(self, width: int, height: int) -> np.ndarray:
        return self.world.camera_matrix(EGO_CAMERA, width, height)

    def render(self, width: int, height: int, kind: str = "rgb") -> np.ndarray:
        return self.world.render(EGO_CAMERA, width, height, kind)

    def close(self) -> None:
        self.world.close()

    # ----- TF tree -----
    def _link_tree(self) -> tuple[list[tuple[str, str, int, int]], list[tuple[str, str, int, int]]]:
        """(parent, child, parent body, child body) of the robot's links, split into moving (with a joint)
        and fixed; body 0 is the world."""
        m = self.model
        moving, fixed = [], []
        for name in self.robot.link_bodies:
            body = m.body(name).id
            parent = int(m.body_parentid[body])
            link = (WORLD_FRAME if parent == 0 else m.body(parent).name, name, parent, body)
            (moving if m.body_jntnum[body] > 0 else fixed).append(link)
        return moving, fixed

    def _relative(self, parent: int, child: int) -> np.ndarray:
        """T_parent_child from the bodies' world poses (straight from MjData: this runs at the TF rate)."""
        R_parent, p_parent = self.data.xmat[parent].reshape(3, 3), self.data.xpos[parent]
        T = np.eye(4)
        T[:3, :3] = R_parent.T @ self.data.xmat[child].reshape(3, 3)
        T[:3, 3] = R_parent.T @ (self.data.xpos[child] - p_parent)
        return T
