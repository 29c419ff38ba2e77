"""Safe execution of joint chunks (no rclpy): what ``trajectory_controller_node`` wraps.

A **joint chunk** (``joint_chunk`` from ik_retarget: arm joints + the gripper joint, ``header.stamp`` = the
observation's stamp, point k due at ``stamp + time_from_start_k``, evenly spaced) is validated (wrong frame,
unknown or missing joints, NaN/inf, uneven or non-increasing times, stamps from the future or entirely in the
past are rejected whole and counted by reason), then time-parameterised to the control rate: the arm joints
through a C2 cubic spline (so the velocity the safety filter follows has no steps at the chunk's 30 Hz
knots), the gripper linearly, resampled at (at most) the control period. Points already in the past when the
chunk arrives are dropped (latency compensation, counted as ``steps_dropped``): the chunk is only ever queried
at the current time.

Each control tick the :class:`TrajectoryExecutor` asks the chunks for the position due one period later -
either ACT's temporal ensemble of every chunk covering that time or the newest chunk (receding horizon) -
and passes it with its velocity through the :class:`~humanego_core.safety.SafetyFilter`. When the chunks run
out, the last target is held. Instead of following, it decelerates and holds (see
:data:`HOLD_REASONS`, in priority order) on

- ``estop``: an e-stop message (latched until released; the release also drops the chunks taken during it),
- ``no_heartbeat`` / ``heartbeat_lost``: heartbeat monitoring on and no heartbeat yet / none for too long,
- ``stale_joint_states``: no joint state for too long,
- ``tracking_error``: the measured joints too far from the command (the arm is blocked, or was moved or
  reset by something else); the command restarts from the measured position,
- ``stale_chunk``: no fresh chunk for too long.

Every hold clears the chunks: motion resumes only with chunks received after it ended, from where the arm
stands. A hold is counted once per entry (``hold_<reason>``); chunk rejections per chunk
(``rejected_<reason>``); safety-limit interventions per tick (``limited_<kind>``).

All times are seconds: ``now_s`` on the clock of the chunk stamps (ROS time, the simulator's under
``use_sim_time``) and ``mono_s`` on a monotonic clock for the watchdogs, which measure silence by arrival.

:func:`make_executor` builds the executor and its safety filter from the trajectory_controller node's
parameters (config/trajectory_controller.yaml), for the node and for anything that runs the same control
without ROS (benchmarks).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pinocchio as pin
from scipy.interpolate import CubicSpline

from humanego_core.ensembling import LatestChunk, TemporalEnsembler
from humanego_core.kinematics import KinematicsError, RobotKinematics
from humanego_core.safety import JointLimits, SafetyFilter, WorkspaceBox

MODES = ("temporal_ensembling", "receding_horizon")
HOLD_REASONS = ("estop", "no_heartbeat", "heartbeat_lost", "stale_joint_states", "tracking_error", "stale_chunk")
REJECT_REASONS = ("wrong_frame", "unknown_joint", "duplicate_joint", "missing_joint", "too_short", "size_mismatch",
                  "non_finite", "bad_times", "from_the_future", "in_the_past")
EVEN_SPACING_TOL_S = 1e-6  # time_from_start is integer nanoseconds: spacing varies by rounding only
GRIPPER_RESEND_M = 1e-4    # a gripper target is sent again when it moved by more than this
LATENCY_WINDOW = 500       # chunks the latency percentiles are taken over


class ChunkRejected(ValueError):
    """A joint chunk that must not be executed; ``reason`` (one of REJECT_REASONS) is what it is counted under."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class JointChunk:
    stamp_s: float             # the observation the chunk derives from
    start_s: float             # due time of its first point
    dt_s: float                # spacing of its points
    arm: np.ndarray            # (K, n) arm joint positions (rad), in the controller's joint order
    gripper: np.ndarray | None  # (K,) opening per finger (m), None when the chunk does not command the gripper

    @property
    def end_s(self) -> float:
        return self.start_s + (len(self.arm) - 1) * self.dt_s


def parse_joint_chunk(joint_names: Sequence[str], times_from_start: Sequence[float],
                      positions: Sequence[Sequence[float]], stamp_s: float, frame_id: str, *,
                      arm_joints: Sequence[str], gripper_joint: str, base_frame: str) -> JointChunk:
    """The chunk of a JointTrajectory's fields (times in s), in ``arm_joints`` order; raises ChunkRejected."""
    if frame_id != base_frame:
        raise ChunkRejected("wrong_frame", f"frame_id {frame_id!r}, expected the base frame {base_frame!r}")
    known = set(arm_joints) | {gripper_joint}
    unknown = [n for n in joint_names if n not in known]
    if unknown:
        valid = ", ".join([*arm_joints, gripper_joint])
        raise ChunkRejected("unknown_joint", f"{', '.join(unknown)} not among {valid}")
    if len(set(joint_names)) != len(joint_names):
        raise ChunkRejected("duplicate_joint", f"joint names repeat: {list(joint_names)}")
    missing = [n for n in arm_joints if n not in joint_names]
    if missing:
        raise ChunkRejected("missing_joint", f"no positions for {', '.join(missing)}")
    if len(times_from_start) < 2:
        raise ChunkRejected("too_short", f"{len(times_from_start)} points; a chunk needs at least 2")
    rows = [np.asarray(p, dtype=float) for p in positions]
    if len(rows) != len(times_from_start) or any(r.shape != (len(joint_names),) for r in rows):
        raise ChunkRejected("size_mismatch", f"{len(rows)} points for {len(times_from_start)} times, each needs "
                            f"{len(joint_names)} positions")
    values, times = np.stack(rows), np.asarray(times_from_start, dtype=float)
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(times)) and math.isfinite(stamp_s)):
        raise ChunkRejected("non_finite", "positions, times or stamp contain NaN or inf")
    steps = np.diff(times)
    if times[0] < 0 or np.any(steps <= 0) or np.ptp(steps) > EVEN_SPACING_TOL_S:
        raise ChunkRejected("bad_times", f"time_from_start must be >= 0 and evenly increasing, got "
                            f"{np.round(times[:4], 6).tolist()}...")
    column = {n: i for i, n in enumerate(joint_names)}
    arm = values[:, [column[n] for n in arm_joints]]
    gripper = values[:, column[gripper_joint]] if gripper_joint in column else None
    return JointChunk(float(stamp_s), float(stamp_s + times[0]), float(steps.mean()), arm, gripper)


def resample(chunk: JointChunk, period_s: float) -> tuple[float, np.ndarray, np.ndarray | None]:
    """(step, arm (M, n), gripper (M,) or None) at an even step of at most ``period_s`` over the chunk's span:
    a C2 cubic spline through the arm points (not-a-knot ends), the gripper linear."""
    span = chunk.end_s - chunk.start_s
    count = max(1, math.ceil(span / period_s - 1e-9))
    t = np.linspace(0.0, span, count + 1)
    knots = chunk.dt_s * np.arange(len(chunk.arm))
    arm = CubicSpline(knots, chunk.arm, axis=0)(t)  # two points: a straight line
    gripper = None if chunk.gripper is None else np.interp(t, knots, chunk.gripper)
    return span / count, arm, gripper


@dataclass(frozen=True)
class ExecutorConfig:
    mode: str = "temporal_ensembling"  # or "receding_horizon"
    ensemble_decay: float = 0.01       # ACT's k, per chunk of age
    chunk_timeout_s: float = 0.5       # no chunk for this long -> hold
    joint_state_timeout_s: float = 0.1  # no joint state for this long -> hold
    heartbeat_timeout_s: float = 0.0   # no heartbeat for this long -> hold; 0 = heartbeat not monitored
    max_tracking_error_rad: float = 0.3  # command this far from the measured joints -> hold, restart from them
    max_future_s: float = 0.5          # chunks stamped further ahead of now are rejected (clock mismatch)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        for name in ("ensemble_decay", "chunk_timeout_s", "joint_state_timeout_s", "heartbeat_timeout_s",
                     "max_tracking_error_rad", "max_future_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        for name in ("chunk_timeout_s", "joint_state_timeout_s", "max_tracking_error_rad"):
            if getattr(self, name) == 0:
                raise ValueError(f"{name} must be > 0")


@dataclass(frozen=True)
class Command:
    position: np.ndarray      # arm joints (rad), to be reached one control period from now
    velocity: np.ndarray      # rad/s
    gripper: float | None     # opening per finger (m) to send now, None = nothing new for the gripper
    holding: str | None       # the hold reason, None while following
    interventions: frozenset  # safety limits that shaped this command


class TrajectoryExecutor:
    """Chunks in, one safe command per control tick out; see the module docstring. Not thread-safe."""

    def __init__(self, config: ExecutorConfig, safety: SafetyFilter, arm_joints: Sequence[str], gripper_joint: str,
                 gripper_range: tuple[float, float], base_frame: str):
        self.config = config
        self.safety = safety
        self.arm_joints, self.gripper_joint = list(arm_joints), gripper_joint
        if len(self.arm_joints) != safety.limits.n:
            raise ValueError(f"{len(self.arm_joints)} arm joints but limits for {safety.limits.n}")
        self.gripper_range = gripper_range
        self.base_frame = base_frame
        self.period_s = safety.period_s
        make = (lambda: TemporalEnsembler(config.ensemble_decay)) if config.mode == "temporal_ensembling" \
            else LatestChunk
        self._arm, self._gripper = make(), make()
        self.counts: Counter = Counter()
        self.latencies_s: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.state = "waiting for joint_states"
        self.measured: np.ndarray | None = None
        self._joint_state_mono: float | None = None
        self._heartbeat_mono: float | None = None
        self._chunk_mono: float | None = None   # arrival of the newest chunk
        self._pending: list[tuple[float, float]] = []  # (start, stamp) of chunks not yet commanded
        self._estop = False
        self._holding: str | None = None
        self._following = False
        self._last_target: np.ndarray | None = None
        self._gripper_sent: float | None = None
        self._stop_sent = False

    # ----- inputs -----
    def on_joint_state(self, arm_position, mono_s: float) -> None:
        self.measured = np.array(arm_position, dtype=float)
        self._joint_state_mono = mono_s

    def on_heartbeat(self, mono_s: float) -> None:
        self._heartbeat_mono = mono_s

    def on_estop(self, active: bool) -> None:
        if self._estop and not active:
            # Released: the arm waits for chunks that come from now on. Those taken during the e-stop were made
            # while it held; a stale-chunk hold for the ones it stopped would count an intervention that is none.
            self.clear_chunks()
            self._chunk_mono = None
        self._estop = bool(active)

    @property
    def estop(self) -> bool:
        return self._estop

    def add_chunk(self, joint_names, times_from_start, positions, stamp_s: float, frame_id: str, now_s: float,
                  mono_s: float) -> JointChunk:
        """Validate and take a chunk (JointTrajectory fields); raises ChunkRejected after counting it."""
        try:
            chunk = parse_joint_chunk(joint_names, times_from_start, positions, stamp_s, frame_id,
                                      arm_joints=self.arm_joints, gripper_joint=self.gripper_joint,
                                      base_frame=self.base_frame)
            if chunk.stamp_s > now_s + self.config.max_future_s:
                raise ChunkRejected("from_the_future", f"stamped {chunk.stamp_s - now_s:.3f} s ahead of now: do the "
                                    "nodes share one clock (use_sim_time)?")
            if chunk.end_s < now_s:
                raise ChunkRejected("in_the_past", f"its last point was due {now_s - chunk.end_s:.3f} s ago")
        except ChunkRejected as exc:
            self.counts[f"rejected_{exc.reason}"] += 1
            raise
        self.counts["chunks_accepted"] += 1
        self.counts["steps_dropped"] += int(np.sum(chunk.start_s + chunk.dt_s * np.arange(len(chunk.arm)) < now_s))
        step, arm, gripper = resample(chunk, self.period_s)
        self._arm.add(chunk.start_s, step, arm)
        if gripper is not None:
            self._gripper.add(chunk.start_s, step, gripper[:, None])
        self._chunk_mono = mono_s
        self._pending.append((chunk.start_s, chunk.stamp_s))
        return chunk

    # ----- control tick -----
    def tick(self, now_s: float, mono_s: float) -> Command | None:
        """The command for this tick (to be reached at ``now_s`` + period), or None when there is nothing to send."""
        if self.measured is None:
            self.state = "waiting for joint_states"
            return None
        reason = self._hold_reason(mono_s)
        if reason is not None:
            return self._hold(reason)
        self._holding = None
        due = now_s + self.period_s
        end = self._arm.end_time_s
        if end is not None and due > end:  # the chunks end before the due time: their last point
            due = end
        target = self._arm.query(due)
        if target is not None:
            ahead = self._arm.peek(due + self.period_s)
            velocity = np.zeros_like(target) if ahead is None else (ahead - target) / self.period_s
            self._last_target = target
        elif self._last_target is not None:  # the chunks ran out: hold their last point
            target, velocity = self._last_target, np.zeros_like(self._last_target)
        else:
            self.state = "waiting for a chunk" if not self._pending else "waiting for the chunk's first point"
            return self._stopping()
        if not self._following and self.safety.stopped:
            self.safety.reset(self.measured)  # (re)start from where the arm stands
        self._following = True
        self._stop_sent = False
        self.state = "following"
        command = self.safety.step(target, velocity)
        self._record_latency(due, now_s)
        return Command(command.position, command.velocity, self._gripper_command(due), None, command.interventions)

    def _hold_reason(self, mono_s: float) -> str | None:
        c = self.config
        if self._estop:
            return "estop"
        if c.heartbeat_timeout_s > 0:
            if self._heartbeat_mono is None:
                return "no_heartbeat"
            if mono_s - self._heartbeat_mono > c.heartbeat_timeout_s:
                return "heartbeat_lost"
        if mono_s - self._joint_state_mono > c.joint_state_timeout_s:
            return "stale_joint_states"
        if (self._following and self.safety.started
                and np.max(np.abs(self.safety.position - self.measured)) > c.max_tracking_error_rad):
            return "tracking_error"
        if self._chunk_mono is not None and mono_s - self._chunk_mono > c.chunk_timeout_s:
            return "stale_chunk"
        return None

    def _hold(self, reason: str) -> Command | None:
        if reason != self._holding:
            self.counts[f"hold_{reason}"] += 1
            self._holding = reason
            self.clear_chunks()
            if reason == "tracking_error":
                self.safety.reset(self.measured)
                self._stop_sent = False
        self._following = False
        self.state = f"holding: {reason}"
        return self._stopping(reason)

    def _stopping(self, reason: str | None = None) -> Command | None:
        """One tick of decelerate-and-hold, until one command at rest has been sent; None after that."""
        if not self.safety.started or (self.safety.stopped and self._stop_sent):
            return None
        command = self.safety.hold()
        self._stop_sent = self.safety.stopped
        return Command(command.position, command.velocity, None, reason, command.interventions)

    def clear_chunks(self) -> None:
        """Forget every chunk (after a hold, or a clock that jumped back)."""
        self._arm.clear()
        self._gripper.clear()
        self._pending.clear()
        self._last_target = None

    def _gripper_command(self, due_s: float) -> float | None:
        value = self._gripper.query(due_s)
        if value is None:
            return None
        lo, hi = self.gripper_range
        opening = float(np.clip(value[0], lo, hi))
        if abs(opening - value[0]) > 1e-9:  # not the rounding of a blend of targets at a limit
            self.counts["limited_gripper_range"] += 1
        if self._gripper_sent is not None and abs(opening - self._gripper_sent) <= GRIPPER_RESEND_M:
            return None
        self._gripper_sent = opening
        return opening

    def _record_latency(self, due_s: float, now_s: float) -> None:
        """Observation stamp -> first command using the chunk, for every chunk that this command first uses."""
        used = [stamp for start, stamp in self._pending if start <= due_s]
        if used:
            self.latencies_s.extend(now_s - stamp for stamp in used)
            self._pending = [(start, stamp) for start, stamp in self._pending if start > due_s]

    def counters(self) -> dict[str, int]:
        """Every count: chunks accepted/rejected, steps dropped, holds, safety interventions (``limited_*``)."""
        out = dict(self.counts)
        out.update({f"limited_{kind}": n for kind, n in self.safety.interventions.items()})
        return dict(sorted(out.items()))


class FrameOrigins:
    """Origins (base frame) of chosen URDF frames at arm joints q; its own pinocchio data (the control thread's)."""

    def __init__(self, kin: RobotKinematics, frames: list[str]):
        unknown = [f for f in frames if not kin.model.existFrame(f)]
        if unknown:
            raise KinematicsError(f"workspace_frames {unknown} are not in {kin.urdf_path.name} (links: "
                                  f"{', '.join(kin.frame_names)})")
        self.kin, self.data = kin, kin.model.createData()
        self.ids = [kin.model.getFrameId(f) for f in frames]

    def __call__(self, q) -> np.ndarray:
        model = self.kin.model
        pin.forwardKinematics(model, self.data, self.kin.configuration(q))
        return np.array([pin.updateFramePlacement(model, self.data, i).translation for i in self.ids])


def make_executor(kin: RobotKinematics, p: Mapping[str, Any]) -> TrajectoryExecutor:
    """The executor of trajectory_controller parameters ``p`` (their names and units) for robot ``kin``: joint
    limits from the URDF (velocity scaled, positions narrowed by the margin), the workspace box on the
    workspace frames, the watchdogs, one command every ``1 / control_rate_hz`` seconds."""
    limits = JointLimits.make(kin.lower, kin.upper, kin.velocity_limit * p["velocity_scale"], p["acceleration_limit"],
                              p["max_step_rad"]).narrowed(p["position_margin_rad"])
    safety = SafetyFilter(limits, 1.0 / p["control_rate_hz"], p["stop_deceleration"],
                          WorkspaceBox.make(p["workspace_min"], p["workspace_max"]),
                          FrameOrigins(kin, list(p["workspace_frames"])))
    config = ExecutorConfig(mode=p["mode"], ensemble_decay=p["ensemble_decay"], chunk_timeout_s=p["chunk_timeout_s"],
                            joint_state_timeout_s=p["joint_state_timeout_s"],
                            heartbeat_timeout_s=p["heartbeat_timeout_s"],
                            max_tracking_error_rad=p["max_tracking_error_rad"], max_future_s=p["max_future_stamp_s"])
    return TrajectoryExecutor(config, safety, kin.arm_joint_names, kin.gripper_joint_name, kin.gripper_range,
                              p["base_frame"])


class ClockFollower:
    """A smooth, non-decreasing estimate of a clock seen only in steps - a simulator's ``/clock``, published with
    each physics chunk (100 Hz by default) - for a control loop ticking in between: reading the stepped clock
    directly would make consecutive ticks alternately see no time pass and two periods pass.

    Fits ``clock = a + rate * monotonic`` over the last ``window_s`` of observations and never runs more than
    ``max_lead_s`` ahead of (or behind) the last observed value, so a paused simulator pauses the estimate.
    """

    def __init__(self, window_s: float = 1.0, max_lead_s: float = 0.02):
        self.window_s, self.max_lead_s = window_s, max_lead_s
        self._samples: deque[tuple[float, float]] = deque()
        self._last: float | None = None

    def observe(self, mono_s: float, clock_s: float) -> bool:
        """A clock value seen at ``mono_s``; returns True when the clock went back (restarted): history reset."""
        jumped = bool(self._samples) and clock_s < self._samples[-1][1]
        if jumped:
            self._samples.clear()
            self._last = None
        if self._samples and clock_s == self._samples[-1][1]:
            return jumped
        self._samples.append((mono_s, clock_s))
        while mono_s - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        return jumped

    def now(self, mono_s: float) -> float | None:
        """The clock's estimated value at ``mono_s``, or None before the first observation."""
        if not self._samples:
            return None
        last_mono, last_clock = self._samples[-1]
        if len(self._samples) >= 2:
            m, c = np.array(self._samples).T
            rate = max(0.0, float(np.polyfit(m - m[-1], c - c[-1], 1)[0]))
            estimate = c.mean() + rate * (mono_s - m.mean())
        else:
            estimate = last_clock + (mono_s - last_mono)
        estimate = min(max(estimate, last_clock - self.max_lead_s), last_clock + self.max_lead_s)
        if self._last is not None:
            estimate = max(estimate, self._last)
        self._last = estimate
        return estimate
