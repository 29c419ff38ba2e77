"""The safety layer of the trajectory controller: what a joint command must satisfy before it leaves.

:class:`SafetyFilter` turns the desired arm position of each control tick into a command that respects

- joint position limits (targets clamped; the command never leaves the limits),
- joint velocity limits (the whole velocity vector scaled down, so the joint-space path keeps its direction),
- joint acceleration limits (per joint), approaching a target so that it is reached without overshoot
  (the speed towards it never exceeds the speed from which the acceleration limit still stops in time),
- a maximum step per tick (a cap on the command change, independent of the rates above),
- a workspace box on chosen frames (e.g. the end effector never below the table): a command that would
  take a frame further outside the box than it already is gets cut back along its step to the boundary,
- finite values (a NaN/inf target is never followed: the arm decelerates instead),

and it provides the decelerate-and-hold profile used by every stop (watchdog, e-stop, heartbeat): the
velocity falls linearly to zero along the current direction, each joint within its stop deceleration,
then the position holds. Each tick reports which limits intervened; :attr:`SafetyFilter.interventions`
counts ticks by kind (see :data:`INTERVENTIONS`).

Time is discrete: the command of a tick is the position to reach one period ``h`` later, its velocity
the change over that period (the command stream a joint trajectory controller or a servo interpolates).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Kinds of intervention, each counted once per tick it changed the command.
INTERVENTIONS = ("non_finite_target", "position_limited", "velocity_limited", "acceleration_limited",
                 "step_limited", "workspace_limited")
# Changes below this (rad, rad/s) are rounding, not an intervention.
_TOL = 1e-9
_BISECTION_STEPS = 12  # workspace cut-back resolution: 2**-12 of one tick's step


def _as_vector(name: str, value, n: int) -> np.ndarray:
    v = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {v.tolist()}")
    return v


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits of an arm (arrays of one size; scalars are broadcast by :meth:`make`)."""

    lower: np.ndarray         # rad
    upper: np.ndarray         # rad
    velocity: np.ndarray      # rad/s, > 0
    acceleration: np.ndarray  # rad/s^2, > 0
    max_step: np.ndarray      # rad per tick, > 0

    @classmethod
    def make(cls, lower, upper, velocity, acceleration, max_step) -> JointLimits:
        lower = np.asarray(lower, dtype=float)
        if lower.ndim != 1 or lower.size == 0:
            raise ValueError(f"lower limits must be a non-empty vector, got shape {lower.shape}")
        n = lower.size
        limits = cls(*(_as_vector(name, value, n) for name, value in (
            ("lower", lower), ("upper", upper), ("velocity", velocity), ("acceleration", acceleration),
            ("max_step", max_step))))
        if np.any(limits.lower >= limits.upper):
            raise ValueError(f"lower limits must be below upper limits, got {limits.lower.tolist()} and "
                             f"{limits.upper.tolist()}")
        for name in ("velocity", "acceleration", "max_step"):
            if np.any(getattr(limits, name) <= 0):
                raise ValueError(f"{name} limits must be > 0, got {getattr(limits, name).tolist()}")
        return limits

    @property
    def n(self) -> int:
        return self.lower.size

    def narrowed(self, margin) -> JointLimits:
        """The same limits with the position range shrunk by ``margin`` (rad) at both ends."""
        lower, upper = self.lower + margin, self.upper - margin
        if np.any(lower >= upper):
            raise ValueError(f"a position margin of {margin} rad leaves no range for some joints "
                             f"({self.lower.tolist()} .. {self.upper.tolist()})")
        return JointLimits(lower, upper, self.velocity, self.acceleration, self.max_step)


@dataclass(frozen=True)
class WorkspaceBox:
    """An axis-aligned box (in the arm's base frame) that the checked frames' origins must stay in."""

    minimum: np.ndarray  # (3,)
    maximum: np.ndarray  # (3,)

    @classmethod
    def make(cls, minimum, maximum) -> WorkspaceBox:
        box = cls(_as_vector("workspace minimum", minimum, 3), _as_vector("workspace maximum", maximum, 3))
        if np.any(box.minimum >= box.maximum):
            raise ValueError(f"workspace minimum {box.minimum.tolist()} must be below maximum {box.maximum.tolist()} "
                             "on every axis")
        return box

    def violation(self, points) -> float:
        """How far (m) the furthest of ``points`` (F, 3) lies outside the box; 0 when all are inside."""
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        outside = np.maximum(self.minimum - points, 0.0) + np.maximum(points - self.maximum, 0.0)
        return float(np.linalg.norm(outside, axis=1).max(initial=0.0))


def stopping_speed(distance, acceleration, period_s: float) -> np.ndarray:
    """The highest speed (per joint) from which decelerating by ``acceleration`` every tick of ``period_s``
    stops within ``distance``: the positive root of v**2 / (2 a) + v h / 2 = d (the discrete-time braking
    distance, which exceeds the continuous v**2 / (2 a) by half a tick of motion; exact when v is a whole
    number of a*h steps, otherwise the stop lands up to a*h**2/8 further)."""
    d = np.abs(np.asarray(distance, dtype=float))
    a = np.asarray(acceleration, dtype=float)
    h = period_s
    return a * (np.sqrt(h * h / 4.0 + 2.0 * d / a) - h / 2.0)


@dataclass(frozen=True)
class SafeCommand:
    position: np.ndarray           # rad, to be reached one period later
    velocity: np.ndarray           # rad/s over that period
    interventions: frozenset[str]  # kinds (INTERVENTIONS) that changed this command


class SafetyFilter:
    """Stateful per-tick command shaping; see the module docstring.

    ``frame_points(q) -> (F, 3)`` gives the origins (in the base frame) of the frames the ``workspace`` box
    applies to; both or neither must be given.
    """

    def __init__(self, limits: JointLimits, period_s: float, stop_deceleration,
                 workspace: WorkspaceBox | None = None,
                 frame_points: Callable[[np.ndarray], np.ndarray] | None = None):
        if not period_s > 0:
            raise ValueError(f"control period must be > 0, got {period_s}")
        if (workspace is None) != (frame_points is None):
            raise ValueError("a workspace box needs the frame_points function and vice versa")
        self.limits = limits
        self.period_s = float(period_s)
        self.stop_deceleration = _as_vector("stop deceleration", stop_deceleration, limits.n)
        if np.any(self.stop_deceleration <= 0):
            raise ValueError(f"stop deceleration must be > 0, got {self.stop_deceleration.tolist()}")
        self.workspace = workspace
        self.frame_points = frame_points
        self.interventions: Counter = Counter()
        self.position: np.ndarray | None = None
        self.velocity: np.ndarray | None = None

    @property
    def started(self) -> bool:
        return self.position is not None

    @property
    def stopped(self) -> bool:
        """True before the first command and whenever the last command had zero velocity."""
        return self.velocity is None or not np.any(self.velocity)

    def reset(self, position) -> None:
        """Start from ``position`` (the measured joint positions) at rest."""
        q = np.asarray(position, dtype=float)
        if q.shape != (self.limits.n,) or not np.all(np.isfinite(q)):
            raise ValueError(f"reset position must be {self.limits.n} finite values, got {q.tolist()}")
        self.position, self.velocity = q.copy(), np.zeros(self.limits.n)

    def step(self, target, target_velocity=None) -> SafeCommand:
        """The command towards ``target`` (rad, where the arm should be one period from now), moving with
        ``target_velocity`` (rad/s, the desired trajectory's velocity there; None = 0)."""
        self._require_started()
        lim, h = self.limits, self.period_s
        target = np.asarray(target, dtype=float)
        feedforward = np.zeros(lim.n) if target_velocity is None else np.asarray(target_velocity, dtype=float)
        if target.shape != (lim.n,) or feedforward.shape != (lim.n,):
            raise ValueError(f"target and its velocity must have {lim.n} values, got {target.shape}, "
                             f"{feedforward.shape}")
        if not (np.all(np.isfinite(target)) and np.all(np.isfinite(feedforward))):
            return self._finish(self._decelerated(), {"non_finite_target"})
        kinds = set()
        clamped = np.clip(target, lim.lower, lim.upper)
        if np.any(np.abs(clamped - target) > _TOL):
            kinds.add("position_limited")
            feedforward = np.where(clamped != target, 0.0, feedforward)
        feedforward = np.clip(feedforward, -lim.velocity, lim.velocity)
        # Follow the target's own motion, and close the remaining gap no faster than the arm can still stop in.
        gap = clamped - self.position - feedforward * h
        velocity = feedforward + np.sign(gap) * np.minimum(np.abs(gap) / h,
                                                           stopping_speed(gap, lim.acceleration, h))
        return self._finish(velocity, kinds)

    def hold(self) -> SafeCommand:
        """One tick of the decelerate-and-hold profile."""
        self._require_started()
        return self._finish(self._decelerated(), set())

    def _require_started(self) -> None:
        if self.position is None:
            raise RuntimeError("SafetyFilter.reset(measured position) must come before the first command")

    def _decelerated(self) -> np.ndarray:
        """The velocity one tick further along a linear ramp to zero, all joints stopping together."""
        time_to_stop = float(np.max(np.abs(self.velocity) / self.stop_deceleration))
        if time_to_stop <= self.period_s:
            return np.zeros(self.limits.n)
        return self.velocity * (1.0 - self.period_s / time_to_stop)

    def _finish(self, velocity: np.ndarray, kinds: set[str]) -> SafeCommand:
        """Apply the rate, position, step and workspace limits to a desired velocity and commit the command."""
        lim, h, q = self.limits, self.period_s, self.position
        peak = float(np.max(np.abs(velocity) / lim.velocity))
        if peak > 1.0 + _TOL:
            velocity = velocity / peak
            kinds.add("velocity_limited")
        dv = np.clip(velocity - self.velocity, -lim.acceleration * h, lim.acceleration * h)
        if np.any(np.abs(self.velocity + dv - velocity) > _TOL):
            kinds.add("acceleration_limited")
        velocity = self.velocity + dv

        command = q + velocity * h
        inside = np.clip(command, lim.lower, lim.upper)
        if np.any(np.abs(inside - command) > _TOL):
            kinds.add("position_limited")
        step = inside - q
        peak = float(np.max(np.abs(step) / lim.max_step))
        if peak > 1.0 + _TOL:
            step = step / peak
            kinds.add("step_limited")
        if self.workspace is not None and np.any(step):
            fraction = self._workspace_fraction(q, step)
            if fraction < 1.0:
                step = step * fraction
                kinds.add("workspace_limited")

        self.position, self.velocity = q + step, step / h
        self.interventions.update(kinds)
        return SafeCommand(self.position.copy(), self.velocity.copy(), frozenset(kinds))

    def _workspace_fraction(self, q: np.ndarray, step: np.ndarray) -> float:
        """The largest part of ``step`` (0..1) that takes no checked frame further outside the box than it is
        at ``q`` (so an arm that starts outside may move back in, never further out)."""
        allowed = self.workspace.violation(self.frame_points(q)) + 1e-9
        if self.workspace.violation(self.frame_points(q + step)) <= allowed:
            return 1.0
        lo, hi = 0.0, 1.0
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            if self.workspace.violation(self.frame_points(q + mid * step)) <= allowed:
                lo = mid
            else:
                hi = mid
        return lo
