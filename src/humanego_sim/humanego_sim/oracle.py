"""Scripted robot controller from ground truth: proves every task is solvable by the simulated arm.

It is also the baseline the learned policies are compared with. Three parts, as in LeRobot's split of
policy / robot I/O / rollout:

- :class:`ArmKinematics`: forward kinematics and damped-least-squares IK of the ``ee`` body on the
  MuJoCo model (its own MjData, so solving never disturbs the simulation);
- :class:`OracleController`: observation (time, joint positions, gripper opening, object poses) ->
  joint and gripper targets. It plans Cartesian min-jerk segments (gripper pointing down, yaw aligned
  with the object) from the state it observes at the start of each segment, so a grasp that slipped or
  a push that fell short is retried from where the object really is;
- :func:`run_episode`: the rollout loop on a :class:`~humanego_sim.world.World` (set targets, step
  physics, record what happened).

``main`` is ``humanego run humanego_sim oracle``: episodes over many seeds with a success summary.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from humanego_sim.tasks import Task, load_task, object_height, support_height
from humanego_sim.world import RobotInfo, World, has_ancestor

# Gripper pointing down with zero yaw: ee x along world x, ee z along world -z (fingers open along ee y).
R_DOWN = np.diag([1.0, -1.0, -1.0])


def rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def down_rotation(yaw: float) -> np.ndarray:
    return rot_z(yaw) @ R_DOWN


def closest_symmetric_yaw(yaw: float, reference: float, period: float) -> float:
    """The angle equal to ``yaw`` modulo ``period`` that is closest to ``reference``."""
    return reference + (yaw - reference + period / 2) % period - period / 2


def rotation_error(R_target: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) rotating R onto R_target."""
    E = R_target @ R.T
    angle = math.acos(max(-1.0, min(1.0, (np.trace(E) - 1) / 2)))
    axis = np.array([E[2, 1] - E[1, 2], E[0, 2] - E[2, 0], E[1, 0] - E[0, 1]])
    s = math.sin(angle)
    if s < 1e-6:
        if angle < 1e-6:
            return 0.5 * axis
        # Half a turn: the axis is the eigenvector of E with eigenvalue 1.
        w, v = np.linalg.eigh((E + E.T) / 2)
        return math.pi * v[:, np.argmax(w)]
    return angle / (2 * s) * axis


# ----------------------------------------------------------------------------------------------------
class ArmKinematics:
    """FK and damped-least-squares IK of the ``ee`` body of the world's robot, on a private MjData."""

    def __init__(self, model: mujoco.MjModel, robot: RobotInfo, rest: np.ndarray, body: str = "ee",
                 damping: float = 0.02, max_iterations: int = 60, tolerance: float = 1e-4,
                 nullspace_gain: float = 0.2):
        self.model = model
        self.robot = robot
        self.data = mujoco.MjData(model)
        self.body = model.body(body).id
        self.rest = np.asarray(rest, float)
        self.damping = damping
        self.max_iterations = max_iterations
        self.tolerance = tolerance
        self.nullspace_gain = nullspace_gain
        self.lower, self.upper = robot.arm_limits[:, 0], robot.arm_limits[:, 1]
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def _update(self, q: np.ndarray) -> None:
        self.data.qpos[self.robot.arm_qpos] = q
        mujoco.mj_kinematics(self.model, self.data)

    def fk(self, q: np.ndarray) -> np.ndarray:
        self._update(q)
        T = np.eye(4)
        T[:3, :3] = self.data.xmat[self.body].reshape(3, 3)
        T[:3, 3] = self.data.xpos[self.body]
        return T

    def solve(self, position: np.ndarray, rotation: np.ndarray, seed: np.ndarray,
              rest: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Joint positions within limits reaching the pose from ``seed``, the null space pulled towards ``rest``
        (default: the rest posture given at construction); returns (q, pose error).

        The error is position (m) plus 0.1 m per radian of orientation error, so a caller can tell an
        unreachable target from a reached one.
        """
        q = np.clip(np.asarray(seed, float), self.lower, self.upper)
        n = len(q)
        lam2 = self.damping ** 2
        err_norm = math.inf
        for _ in range(self.max_iterations):
            self._update(q)
            e = np.r_[position - self.data.xpos[self.body],
                      rotation_error(rotation, self.data.xmat[self.body].reshape(3, 3))]
            err_norm = float(np.linalg.norm(e[:3]) + 0.1 * np.linalg.norm(e[3:]))
            if err_norm < self.tolerance:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacBody(self.model, self.data, self._jacp, self._jacr, self.body)
            J = np.vstack([self._jacp, self._jacr])[:, self.robot.arm_dof]
            JJt = J @ J.T + lam2 * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, e)
            # Redundant arms drift in the null space; pull them gently towards the rest posture.
            # The exact projector (undamped pseudo-inverse) so that this never disturbs the pose.
            if n > 6:
                dq += (np.eye(n) - np.linalg.pinv(J) @ J) @ (self.nullspace_gain * ((self.rest if rest is None
                                                                                     else rest) - q))
            step = np.max(np.abs(dq))
            if step > 0.2:  # keep each iteration in the linear region
                dq *= 0.2 / step
            q = np.clip(q + dq, self.lower, self.upper)
        return q, err_norm


@dataclass(frozen=True)
class GripperGeometry:
    """Where the gripper's geoms are relative to the ``ee`` frame (z = pointing direction), gripper open.

    Measured on the model so one controller fits every robot description.
    """

    tip_offset: float          # how far the finger tips reach beyond ee along ee z (m)
    palm_clearance: float      # distance from ee back to the nearest non-finger geom along ee z (m)
    finger_half_width: float   # half-extent of the fingers along ee x, the push direction (m)

    @staticmethod
    def measure(kin: ArmKinematics, q: np.ndarray, opening: float) -> GripperGeometry:
        m, d = kin.model, kin.data
        d.qpos[kin.robot.finger_qpos] = opening
        T_ee = kin.fk(q)
        R_ee, p_ee = T_ee[:3, :3], T_ee[:3, 3]
        finger_bodies = {m.jnt_bodyid[m.joint(j).id] for j in kin.robot.finger_joints}
        flange = m.body("flange").id
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
        fingers, others = [], []
        for g in range(m.ngeom):
            body = m.geom_bodyid[g]
            if not has_ancestor(m, body, flange):
                continue
            centre, half = m.geom_aabb[g, :3], m.geom_aabb[g, 3:]
            world = (d.geom_xmat[g].reshape(3, 3) @ (centre + corners * half).T).T + d.geom_xpos[g]
            (fingers if body in finger_bodies else others).append((world - p_ee) @ R_ee)
        fingers, others = np.vstack(fingers), np.vstack(others)
        return GripperGeometry(tip_offset=float(fingers[:, 2].max()), palm_clearance=float(-others[:, 2].max()),
                               finger_half_width=float(np.abs(fingers[:, 0]).max()))




# ----------------------------------------------------------------------------------------------------
@dataclass
class Observation:
    """What the oracle sees: sim time, the robot's joints and gripper, every object's world pose."""

    time: float
    arm_q: np.ndarray
    gripper: float
    objects: dict[str, np.ndarray]


@dataclass
class Action:
    arm_q: np.ndarray
    gripper: float


@dataclass(frozen=True)
class Waypoint:
    position: np.ndarray
    yaw: float
    tilted: np.ndarray | None = None  # the ee's rotation while it is not pointing straight down (from home)

    def rotation(self) -> np.ndarray:
        return down_rotation(self.yaw) if self.tilted is None else self.tilted


def min_jerk(s: float) -> float:
    s = min(max(s, 0.0), 1.0)
    return s ** 3 * (10 - 15 * s + 6 * s * s)


@dataclass
class Segment:
    """A min-jerk Cartesian move of the ee (straight line, yaw interpolated; from a tilted start, the rotation
    slerped to pointing down) with a gripper target."""

    start: Waypoint
    end: Waypoint
    gripper: float
    duration: float
    t0: float = 0.0
    label: str = ""

    def at(self, t: float) -> Waypoint:
        s = min_jerk((t - self.t0) / self.duration)
        position = self.start.position + s * (self.end.position - self.start.position)
        yaw = self.start.yaw + s * (self.end.yaw - self.start.yaw)
        if self.start.tilted is None and self.end.tilted is None:
            return Waypoint(position, yaw)
        ends = Rotation.from_matrix(np.stack([self.start.rotation(), self.end.rotation()]))
        return Waypoint(position, yaw, Slerp([0.0, 1.0], ends)(s).as_matrix())

    def finished(self, t: float) -> bool:
        return t >= self.t0 + self.duration


@dataclass
class OracleConfig:
    speed: float = 0.35             # free-space Cartesian speed limit (m/s)
    slow_speed: float = 0.12        # near objects: descend, lift off, place (m/s)
    push_speed: float = 0.15        # while pushing (m/s)
    yaw_rate: float = 2.5           # rad/s
    min_duration: float = 0.25      # shortest move (s)
    grip_seconds: float = 0.6       # time given to the gripper to close or open (s)
    settle_seconds: float = 0.15    # pause before closing, so the arm has caught up with its target (s)
    tip_clearance: float = 0.008    # finger tips at least this high above the table (m)
    palm_margin: float = 0.006      # palm at least this far above a grasped object's top (m)
    near_distance: float = 0.03     # the last part of a descent, done at slow speed (m)
    approach_height: float = 0.08   # pre-grasp / pre-place height of the tips above the object (m)
    lift_height: float = 0.10       # how high a grasped object is lifted off its support (m)
    release_height: float = 0.008   # the object's bottom this far above its support when released (m)
    push_tip_height: float = 0.012  # finger tips at least this high above the table while pushing (m)
    push_clearance: float = 0.025   # gap between fingers and box before a push (m)
    push_approach_height: float = 0.03  # tips above the box top when moving between pushes (m)
    push_tolerance: float = 0.02    # pushing stops this close to the goal centre (m)
    max_attempts: int = 3           # grasps or pushes tried before giving up
    ik_tolerance: float = 0.005     # IK error (m, + 0.1 m/rad) beyond which a target counts as unreachable
    limit_margin: float = 0.3       # the down-pointing start keeps every joint this far inside its limits (rad)


class OracleController:
    """Scripted controller from ground truth: observation -> joint and gripper targets.

    Each task kind is a plan written as a generator: it yields one :class:`Segment` at a time and gets
    back the observation at the end of it, so every segment is planned from where things really are.
    """

    def __init__(self, task: Task, kinematics: ArmKinematics, table_height: float, home: np.ndarray,
                 config: OracleConfig | None = None):
        self.task = task
        self.kin = kinematics
        self.table = table_height
        self.home = np.asarray(home, float)
        self.config = config or OracleConfig()
        robot = kinematics.robot
        self.open, self.closed = robot.finger_range[1], robot.finger_range[0]
        self._end = self._waypoint_at(self.home)
        self.home_yaw = self._end.yaw
        # The posture the arm's null space is pulled towards: pointing down at home's place. From a tilted home the
        # pull towards home itself would fight every down-pointing target.
        self.ready, _ = kinematics.solve(self._end.position, down_rotation(self.home_yaw), self.home)
        self.gripper_geometry = GripperGeometry.measure(kinematics, self.home, self.open)
        self.done = False
        self.failure = ""
        self.phase = ""
        self._plan: Generator[Segment, Observation, None] | None = None
        self._segment: Segment | None = None
        self._q = self.home.copy()
        self._end_gripper = self.open

    def _down_yaw(self, q: np.ndarray, T: np.ndarray) -> float:
        """The yaw nearest the ee's (``T`` = fk(``q``)) that IK reaches from ``q`` with the gripper pointing
        straight down at the same place, every joint ``limit_margin`` inside its limits. A parallel gripper is the
        same turned half a turn, so yaws count modulo pi; a tilted gripper (a home set like a demonstrator's hand)
        may need joint 7 past its limit to point down at its own yaw, or right at it, where the next move fails."""
        yaw = math.atan2(T[1, 0], T[0, 0])
        margin = self.config.limit_margin
        for turn in sorted(np.arange(-math.pi / 2, math.pi / 2, math.pi / 36), key=abs):
            for half_turns in (0, 1):
                candidate = closest_symmetric_yaw(yaw + turn + half_turns * math.pi, 0.0, 2 * math.pi)
                solution, error = self.kin.solve(T[:3, 3], down_rotation(candidate), q)
                if (error <= self.config.ik_tolerance and np.all(solution >= self.kin.lower + margin)
                        and np.all(solution <= self.kin.upper - margin)):
                    return candidate
        return yaw

    def _waypoint_at(self, q: np.ndarray) -> Waypoint:
        """Where the ee is at ``q``: tilted unless it points straight down (within a degree)."""
        T = self.kin.fk(q)
        yaw = self._down_yaw(q, T)
        down = np.linalg.norm(rotation_error(down_rotation(yaw), T[:3, :3])) < math.radians(1.0)
        return Waypoint(T[:3, 3].copy(), yaw, None if down else T[:3, :3].copy())

    @classmethod
    def for_world(cls, world: World, config: OracleConfig | None = None) -> OracleController:
        home = world.home_configuration()
        return cls(world.task, ArmKinematics(world.model, world.robot, home), world.config.table.height, home,
                   config)

    # ----- policy interface -----
    def reset(self, obs: Observation) -> None:
        self.done, self.failure, self.phase = False, "", ""
        self._q = np.asarray(obs.arm_q, float).copy()
        # Where the last planned segment ends: the next one starts there, so targets never jump.
        self._end = self._waypoint_at(self._q)
        self._end_gripper = float(obs.gripper)
        self._plan = self._plan_from(obs)
        self._segment = None
        self._advance(obs, lambda: next(self._plan))

    def act(self, obs: Observation) -> Action:
        if self._plan is None:
            raise RuntimeError("call reset() before act()")
        while self._segment is not None and self._segment.finished(obs.time):
            self._advance(obs, lambda: self._plan.send(obs))
        target = self._segment.at(obs.time) if self._segment is not None else self._end
        q, error = self.kin.solve(target.position, target.rotation(), self._q, self.ready)
        if error > self.config.ik_tolerance:
            # Out of reach (or at a joint limit): stop where the arm is rather than chase a wrong solution.
            self.failure = (f"IK cannot reach {np.round(target.position, 3).tolist()} yaw {target.yaw:.2f} in phase "
                            f"'{self.phase}' (error {error:.3f})")
            self._segment, self.done = None, True
            self._end = Waypoint(self.kin.fk(self._q)[:3, 3], target.yaw)
        else:
            self._q = q
        return Action(self._q.copy(), self._segment.gripper if self._segment is not None else self._end_gripper)

    def _advance(self, obs: Observation, step: Callable[[], Segment]) -> None:
        try:
            segment = step()
        except StopIteration:
            self._segment = None
            self.done = True
            return
        segment.t0 = obs.time
        self.phase = segment.label
        self._segment = segment
        self._end, self._end_gripper = segment.end, segment.gripper

    def _plan_from(self, obs: Observation) -> Generator[Segment, Observation, None]:
        if self._end.tilted is not None:
            # A tilted start (home): the gripper first turns to point down where it is, at the yaw IK reaches.
            obs = yield self._move(self._end.position, label="point down")
        yield from (self._pick_place if self.task.kind == "pick_place" else self._push)(obs)

    # ----- segment builders -----
    def _move(self, position, yaw: float | None = None, speed: float | None = None, gripper: float | None = None,
              label: str = "") -> Segment:
        c = self.config
        start = self._end
        end = Waypoint(np.asarray(position, float), start.yaw if yaw is None else yaw)
        # A min-jerk profile peaks at 1.875x its mean speed: size the duration so the peak obeys the limit.
        duration = max(c.min_duration,
                       1.875 * float(np.linalg.norm(end.position - start.position)) / (speed or c.speed),
                       1.875 * abs(end.yaw - start.yaw) / c.yaw_rate,
                       1.875 * float(np.linalg.norm(rotation_error(end.rotation(), start.rotation()))) / c.yaw_rate)
        return Segment(start, end, self._end_gripper if gripper is None else gripper, duration, label=label)

    def _hold(self, seconds: float, gripper: float | None = None, label: str = "") -> Segment:
        segment = self._move(self._end.position, gripper=gripper, label=label)
        segment.duration = seconds
        return segment

    def _down(self, target, label: str, gripper: float | None = None):
        """Sub-plan: fast to just above ``target``, then slowly down onto it; returns the last observation."""
        c = self.config
        yield self._move(np.asarray(target) + [0, 0, c.near_distance], gripper=gripper, label=label)
        return (yield self._move(target, speed=c.slow_speed, label=label))

    def _ee_height_for_tips(self, tip_z: float) -> float:
        return tip_z + self.gripper_geometry.tip_offset

    # ----- plans -----
    def _pick_place(self, obs: Observation):
        c, t = self.config, self.task
        spec = t.objects[t.manipulated]
        height = object_height(spec)
        g = self.gripper_geometry
        # Deep enough for a firm grip, with the palm above the object and the tips above the table.
        depth = min(height - c.tip_clearance, g.tip_offset + g.palm_clearance - c.palm_margin)
        for attempt in range(c.max_attempts):
            T_obj = obs.objects[t.manipulated]
            yaw = self.home_yaw  # round objects: any yaw grips them
            if spec.shape == "box":
                # Fingers (along ee y) close across the box's narrower side; a box is symmetric under half a
                # turn, a square one under a quarter turn: take the grasp closest to the wrist's home.
                across = math.atan2(T_obj[1, 0], T_obj[0, 0]) + (math.pi / 2 if spec.size[0] < spec.size[1] else 0)
                period = math.pi / 2 if math.isclose(spec.size[0], spec.size[1]) else math.pi
                yaw = closest_symmetric_yaw(across, self.home_yaw, period)
            top = T_obj[2, 3] + height
            grasp = np.r_[T_obj[:2, 3], self._ee_height_for_tips(max(top - depth, self.table + c.tip_clearance))]
            above = grasp + [0, 0, depth + c.approach_height]
            start = self._end.position
            if start[2] < above[2]:
                obs = yield self._move(np.r_[start[:2], above[2]], gripper=self.open, label="rise")
            obs = yield self._move(above, yaw, gripper=self.open, label="approach")
            obs = yield from self._down(grasp, "descend")
            obs = yield self._hold(c.settle_seconds, label="settle")
            obs = yield self._hold(c.grip_seconds, gripper=self.closed, label="close")
            support = obs.objects[t.manipulated][2, 3]
            obs = yield self._move(grasp + [0, 0, c.lift_height], speed=c.slow_speed, label="lift")
            lifted = obs.objects[t.manipulated][2, 3] - support
            if lifted > 0.5 * c.lift_height:
                break
            self.failure = f"grasp attempt {attempt + 1} did not lift the object ({lifted * 100:.1f} cm)"
            obs = yield self._hold(c.grip_seconds, gripper=self.open, label="reopen")
        else:
            return
        self.failure = ""
        # Place from where the object sits in the hand now (grasps are never perfectly centred).
        ee = self._end.position
        measured_ee = self.kin.fk(obs.arm_q)[:3, 3]
        T_obj = obs.objects[t.manipulated]
        offset_xy = T_obj[:2, 3] - measured_ee[:2]
        bottom_below_ee = measured_ee[2] - T_obj[2, 3]
        T_goal = obs.objects[t.goal]
        goal_top = T_goal[2, 3] + object_height(t.objects[t.goal])
        surface = T_goal[2, 3] + support_height(t.objects[t.goal])
        place = np.r_[T_goal[:2, 3] - offset_xy, surface + c.release_height + bottom_below_ee]
        carry_z = max(ee[2], goal_top + c.approach_height + bottom_below_ee)
        obs = yield self._move(np.r_[ee[:2], carry_z], label="raise")
        obs = yield self._move(np.r_[place[:2], carry_z], label="carry")
        obs = yield from self._down(place, "lower")
        obs = yield self._hold(c.grip_seconds, gripper=self.open, label="release")
        yield self._move(place + [0, 0, max(c.lift_height, goal_top - surface + depth + 0.03)], speed=c.slow_speed,
                         label="retreat")

    def _push(self, obs: Observation):
        c, t = self.config, self.task
        g = self.gripper_geometry
        spec = t.objects[t.manipulated]
        half = np.array(spec.size[:2]) / 2
        top = self.table + object_height(spec)
        # Only the closed fingers may touch the box, as low as they can: a palm riding on the box's top edge
        # drags and tips it. So the tips go low unless that would bring the palm down to the box's top.
        tips = max(self.table + c.push_tip_height, top + c.palm_margin - g.tip_offset - g.palm_clearance)
        ee_z = self._ee_height_for_tips(tips)
        # Low between pushes: the start of a push can be near the base, where a high wrist is out of reach.
        travel_z = self._ee_height_for_tips(top + c.push_approach_height)
        for _ in range(c.max_attempts):
            T_box, goal = obs.objects[t.manipulated], obs.objects[t.goal][:3, 3]
            delta = goal[:2] - T_box[:2, 3]
            distance = float(np.linalg.norm(delta))
            if distance <= c.push_tolerance:
                break
            d = delta / distance
            heading = math.atan2(d[1], d[0])
            box_yaw = math.atan2(T_box[1, 0], T_box[0, 0])
            # Half-extent of the box along the push direction.
            extent = half[0] * abs(math.cos(heading - box_yaw)) + half[1] * abs(math.sin(heading - box_yaw))
            yaw = closest_symmetric_yaw(heading, self.home_yaw, math.pi)
            start_xy = T_box[:2, 3] - d * (extent + g.finger_half_width + c.push_clearance)
            end_xy = goal[:2] - d * (extent + g.finger_half_width)
            here = self._end.position
            if here[2] < travel_z:
                obs = yield self._move(np.r_[here[:2], travel_z], gripper=self.closed, label="rise")
            obs = yield self._move(np.r_[start_xy, travel_z], yaw, gripper=self.closed, label="approach")
            obs = yield from self._down(np.r_[start_xy, ee_z], "descend")
            obs = yield self._move(np.r_[end_xy, ee_z], speed=c.push_speed, label="push")
            obs = yield self._move(np.r_[end_xy - d * c.push_clearance, ee_z], speed=c.slow_speed, label="back off")
        here = self._end.position
        yield self._move(np.r_[here[:2], travel_z], label="retreat")


# ----------------------------------------------------------------------------------------------------
def observe(world: World) -> Observation:
    return Observation(time=float(world.data.time), arm_q=world.arm_positions(), gripper=world.gripper_opening(),
                       objects={name: world.object_pose(name) for name in world.task.objects})


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    seconds: float          # sim time until the task was done (or the time limit)
    reason: str             # why it failed; empty on success
    max_lift: float         # highest the manipulated object's base rose above the table (m)
    goal_distance: float    # final horizontal distance of the object from the goal centre (m)


def run_episode(world: World, controller: OracleController, seed: int, control_dt: float = 0.02,
                settle_seconds: float = 1.0, on_step: Callable[[World], None] | None = None) -> EpisodeResult:
    """Reset the world with ``seed`` and let the controller act until it is done and the object rests.

    The episode succeeds when the world's success predicate holds after the controller finished; it
    fails when the task's time limit passes, or when the object is not at the goal ``settle_seconds``
    after the controller finished.
    """
    task = world.task
    world.reset(seed)
    substeps = max(1, round(control_dt / world.model.opt.timestep))
    obs = observe(world)
    controller.reset(obs)
    table = world.config.table.height
    max_lift, finished_at = 0.0, None
    while obs.time < task.episode_seconds:
        action = controller.act(obs)
        world.set_arm_targets(action.arm_q)
        world.set_gripper_target(action.gripper)
        world.step(substeps)
        if on_step is not None:
            on_step(world)
        obs = observe(world)
        max_lift = max(max_lift, float(obs.objects[task.manipulated][2, 3] - table))
        if controller.done:
            finished_at = obs.time if finished_at is None else finished_at
            check = world.check_success()
            if check.success:
                return EpisodeResult(seed, True, obs.time, "", max_lift, check.xy_distance)
            if obs.time - finished_at > settle_seconds:
                break
    check = world.check_success()
    if controller.failure:
        reason = controller.failure
    elif finished_at is None:
        reason = f"time limit {task.episode_seconds:.0f} s reached in phase '{controller.phase}'"
    else:
        reason = (f"not at the goal: {check.xy_distance * 100:.1f} cm from its centre, "
                  f"{check.height_above_goal * 100:.1f} cm above its surface, moving {check.speed:.2f} m/s")
    return EpisodeResult(seed, False, obs.time, reason, max_lift, check.xy_distance)


# ----------------------------------------------------------------------------------------------------
def evaluate(task_name: str, robot: str, seeds: list[int], video: str | None = None, video_fps: float = 15.0,
             progress: bool = True) -> dict:
    """Run the oracle on every seed; returns the summary (also what ``--json`` writes)."""
    from tqdm import tqdm

    world = World(load_task(task_name), robot=robot)
    controller = OracleController.for_world(world)
    writer, on_step = None, None
    if video:
        import imageio.v2 as imageio

        cam = world.config.ego_camera
        writer = imageio.get_writer(video, fps=video_fps, macro_block_size=1)
        period = 1.0 / video_fps
        next_frame = [0.0]

        def on_step(w: World) -> None:
            if w.data.time >= next_frame[0]:
                writer.append_data(w.render("ego_camera", cam.width, cam.height))
                next_frame[0] += period

    results = []
    try:
        bar = tqdm(seeds, desc=f"{task_name}/{robot}", unit="episode", disable=not progress, file=sys.stderr)
        for seed in bar:
            if video:
                next_frame[0] = 0.0
            results.append(run_episode(world, controller, seed, on_step=on_step))
            bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
    finally:
        if writer is not None:
            writer.close()
        world.close()
    ok = [r for r in results if r.success]
    return {"task": task_name, "robot": robot, "episodes": len(results), "successes": len(ok),
            "success_rate": len(ok) / max(1, len(results)),
            "mean_episode_seconds": float(np.mean([r.seconds for r in ok])) if ok else math.nan,
            "results": [asdict(r) for r in results]}


def format_summary(summary: dict) -> str:
    lines = [f"oracle {summary['task']} / {summary['robot']}: {summary['successes']}/{summary['episodes']} "
             f"succeeded ({100 * summary['success_rate']:.1f} %), mean episode {summary['mean_episode_seconds']:.1f} s "
             f"(sim time)"]
    for r in summary["results"]:
        if not r["success"]:
            lines.append(f"  seed {r['seed']}: {r['reason']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="humanego run humanego_sim oracle",
        description="Run the scripted ground-truth controller on the simulated robot over many seeds and report "
                    "its success rate: the proof that a task is solvable by the robot, and the baseline for policies.")
    parser.add_argument("--task", default="serve_bread", help="task name (config/tasks/<task>.yaml)")
    parser.add_argument("--robot", default="panda", choices=["panda", "ur5e"], help="robot arm")
    parser.add_argument("--seeds", type=int, default=50,
                        help="number of episodes (seeds first-seed, first-seed+1, ...)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument("--video", help="write the ego camera of every episode to this video file (e.g. out.mp4)")
    parser.add_argument("--json", help="write the summary with every episode's result to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    summary = evaluate(args.task, args.robot, list(range(args.first_seed, args.first_seed + args.seeds)),
                       video=args.video, progress=not args.quiet)
    print(format_summary(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0
