"""Damped-least-squares inverse kinematics of the arm, warm-started along a chunk (HOP's retargeting objective).

Each target pose ``x`` (T_base_ee) is solved for joint positions ``q`` within the URDF limits (narrowed by
``position_margin_rad``: a solution the trajectory controller would clamp is a pose the arm misses) minimising

    C(q) = 1/2 ||W (x ⊖ f(q))||^2 + lambda ||q - q_prev||^2

where ``f`` is the forward kinematics, ``x ⊖ f(q)`` the pose error (position difference; rotation vector of
``R_x R_f^T``, both in the base frame), ``W = diag(1, 1, 1, w, w, w)`` with ``w = rotation_weight_m`` (metres
of position error that one radian of rotation error is worth) and ``q_prev`` the previous solution of the
chunk (the measured joint state for its first step): the smoothness term keeps consecutive solutions close
and settles a redundant arm's null space. Its price is a bias of the pose of order ``2 lambda |q - q_prev| /
sigma_min(J)^2``: with the default 1e-6, micrometres for a 0.1 rad jump per joint, up to a few tenths of a
millimetre near a singularity (tests/test_ik.py measures it), which is why it is small.

Minimisation: Levenberg-Marquardt on the linearised error, ``(J^T W^2 J + (2 lambda + mu) I) dq = J^T W^2 e +
2 lambda (q_prev - q)``, with ``mu`` raised on a step that does not lower C and lowered on one that does (so
C never increases), steps capped at ``max_step_rad`` (the linearisation holds), and joint limits as an active
set: a joint that a step would push past a limit is held at the limit and the step re-solved for the others.

Unreachable targets (out of reach, past the limits, or a local minimum the solver cannot leave) end at the
reachable pose nearest to them in the ``W`` norm, their ``fk`` is what the robot will do, and they are
flagged (``reached`` False: position error above ``reach_position_m`` or rotation error above
``reach_rotation_deg``); the target itself is never passed on. A step that is not reached from its warm start
is solved again along a path of poses interpolated from the warm start's pose to the target (``path_step_m``,
``path_step_deg`` apart, each warm-starting the next: a far target, such as the first pose of a chunk seen
from the home configuration, otherwise ends in a local minimum at a joint limit). Only if that misses by
more than ``reseed_position_m`` / ``reseed_rotation_deg`` (a joint pinned at its limit misses by millimetres
and frees itself a few steps later; another branch would be a jump of the whole arm within one step) is it
solved from the chunk's start configuration and the middle of the joint ranges, and the solution nearest its
target is kept (not for targets outside the arm's reach sphere, which no seed reaches). The
descent ends when no joint moves more than ``step_tolerance_rad`` or an iteration lowers C by less than
``cost_tolerance`` of it: towards an unreachable target the stretched arm creeps, and more iterations would
move the clamped pose by a fraction of a millimetre (0.3 mm in test_ik.py's out-of-reach case).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pinocchio as pin

from humanego_core import geometry
from humanego_core.config import option
from humanego_core.kinematics import RobotKinematics

MU_MIN, MU_MAX = 1e-9, 1e3  # range of the Levenberg-Marquardt damping


@dataclass(frozen=True)
class IKConfig:
    smoothness: float = option(1e-6, help="HOP's lambda: weight of ||q - q_prev||^2 (m^2 per rad^2)",
                               minimum=0.0, maximum=1.0)
    rotation_weight_m: float = option(0.2, help="metres of position error one radian of rotation error is worth",
                                      minimum=1e-3, maximum=10.0)
    damping: float = option(1e-4, help="initial Levenberg-Marquardt damping mu (m^2 per rad^2)",
                            minimum=MU_MIN, maximum=MU_MAX)
    max_iterations: int = option(100, help="iterations per target", minimum=1, maximum=10000)
    max_step_rad: float = option(0.2, help="largest joint change of one iteration (rad or m)",
                                 minimum=1e-3, maximum=3.2)
    step_tolerance_rad: float = option(1e-7, help="converged when no joint moves more than this in an iteration",
                                       minimum=0.0, maximum=1e-2)
    cost_tolerance: float = option(1e-6, help="converged when an iteration lowers C by less than this fraction "
                                   "(plus 1e-12 m^2): what ends the slow descent towards an unreachable target",
                                   minimum=0.0, maximum=0.1)
    reach_position_m: float = option(0.005, help="a solution farther than this from its target position is "
                                     "flagged unreachable", minimum=1e-6, maximum=1.0)
    reach_rotation_deg: float = option(3.0, help="a solution rotated more than this from its target is flagged "
                                       "unreachable", minimum=1e-4, maximum=180.0)
    reseed_position_m: float = option(0.02, help="a step missed by at most this (and reseed_rotation_deg) from its "
                                      "warm start's branch stays there, flagged, instead of being solved from other "
                                      "seeds: another branch is a jump of the whole arm", minimum=0.0, maximum=1.0)
    reseed_rotation_deg: float = option(10.0, help="see reseed_position_m", minimum=0.0, maximum=180.0)
    path_step_m: float = option(0.05, help="a target not reached from its warm start is approached along poses "
                                "at most this far apart", minimum=1e-3, maximum=1.0)
    path_step_deg: float = option(15.0, help="... and at most this much rotated from each other",
                                  minimum=0.1, maximum=180.0)
    position_margin_rad: float = option(0.0, help="solutions stay this far inside the URDF position limits: "
                                        "at least the trajectory controller's margin, or it clamps what was planned",
                                        minimum=0.0, maximum=0.5)


@dataclass(frozen=True)
class IKSolution:
    q: np.ndarray                 # (n,) joint positions within the limits
    T_reached: np.ndarray         # (4, 4) fk(q): the pose the arm will take (the target, or the nearest reachable)
    position_error_m: float
    rotation_error_rad: float
    reached: bool
    iterations: int


@dataclass(frozen=True)
class ChunkSolution:
    q: np.ndarray                 # (H, n)
    T_reached: np.ndarray         # (H, 4, 4)
    position_error_m: np.ndarray  # (H,)
    rotation_error_rad: np.ndarray  # (H,)
    reached: np.ndarray           # (H,) bool; the others are clamped to the nearest reachable pose
    iterations: np.ndarray        # (H,) summed over the seeds tried

    @property
    def flagged(self) -> np.ndarray:
        return ~self.reached


def pose_error(T_target: np.ndarray, T_current: np.ndarray) -> np.ndarray:
    """(6,) target ⊖ current in the base frame: position difference, then the rotation vector of R_t R_c^T."""
    return np.concatenate([T_target[:3, 3] - T_current[:3, 3], pin.log3(T_target[:3, :3] @ T_current[:3, :3].T)])


class InverseKinematics:
    """IK of one robot; not thread-safe (it uses the kinematics' pinocchio Data)."""

    def __init__(self, kinematics: RobotKinematics, config: IKConfig | None = None):
        self.kin = kinematics
        self.config = config or IKConfig()
        w = self.config.rotation_weight_m
        self._w2 = np.array([1.0, 1.0, 1.0, w * w, w * w, w * w])
        margin = np.minimum(self.config.position_margin_rad, (kinematics.upper - kinematics.lower) / 4)
        self.lower, self.upper = kinematics.lower + margin, kinematics.upper - margin
        self._middle = (kinematics.lower + kinematics.upper) / 2  # the last-resort seed
        self._reach_centre, self._reach_radius = kinematics.reach_sphere()

    def _cost(self, e: np.ndarray, q: np.ndarray, q_prev: np.ndarray) -> float:
        d = q - q_prev
        return 0.5 * float(e @ (self._w2 * e)) + self.config.smoothness * float(d @ d)

    def _step(self, J: np.ndarray, e: np.ndarray, q: np.ndarray, q_prev: np.ndarray, mu: float) -> np.ndarray:
        """The damped Gauss-Newton step with joints at a limit (and pushed past it) held there."""
        lam2 = 2.0 * self.config.smoothness
        lower, upper = self.lower, self.upper
        JtW = J.T * self._w2
        A = JtW @ J
        A.flat[:: len(q) + 1] += lam2 + mu
        b = JtW @ e + lam2 * (q_prev - q)
        dq = np.linalg.solve(A, b)
        over = (q + dq > upper) | (q + dq < lower)
        free = ~over
        while over.any() and free.any():
            dq[over] = np.clip(q[over] + dq[over], lower[over], upper[over]) - q[over]
            held = ~free
            dq[free] = np.linalg.solve(A[np.ix_(free, free)], b[free] - A[np.ix_(free, held)] @ dq[held])
            over = free & ((q + dq > upper) | (q + dq < lower))
            free &= ~over
        biggest = np.max(np.abs(dq))
        if biggest > self.config.max_step_rad:
            dq *= self.config.max_step_rad / biggest
        return dq

    def _descend(self, T_target: np.ndarray, seed: np.ndarray, q_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                           np.ndarray, int]:
        """(q, fk(q), error) minimising C from ``seed``, and the iterations used."""
        cfg = self.config
        q = np.clip(seed, self.lower, self.upper)
        T, J = self.kin.fk_and_jacobian(q)
        e = pose_error(T_target, T)
        cost = self._cost(e, q, q_prev)
        mu = cfg.damping
        iterations = 0
        while iterations < cfg.max_iterations:
            iterations += 1
            dq = self._step(J, e, q, q_prev, mu)
            if np.max(np.abs(dq)) <= cfg.step_tolerance_rad:
                break
            q_new = np.clip(q + dq, self.lower, self.upper)
            T_new, J_new = self.kin.fk_and_jacobian(q_new)
            e_new = pose_error(T_target, T_new)
            cost_new = self._cost(e_new, q_new, q_prev)
            if cost_new < cost:
                stalled = cost - cost_new < cfg.cost_tolerance * cost + 1e-12
                q, T, J, e, cost = q_new, T_new, J_new, e_new, cost_new
                mu = max(mu / 10.0, MU_MIN)
                if stalled:
                    break
            else:
                if mu >= MU_MAX:
                    break
                mu = min(mu * 10.0, MU_MAX)
        return q, T, e, iterations

    def _check_target(self, T_target) -> np.ndarray:
        T_target = geometry.check_transform(np.asarray(T_target, float), "IK target")
        if T_target.shape != (4, 4):
            raise ValueError(f"IK target must be one 4x4 transform, got shape {T_target.shape}")
        return T_target

    def solve(self, T_target, seed, q_prev=None, extra_seeds=()) -> IKSolution:
        """Joints reaching ``T_target`` (T_base_ee) from ``seed``, smooth to ``q_prev`` (default: the seed).

        When the target is not reached from ``seed``, each of ``extra_seeds`` is tried too and the solution
        nearest the target (in the ``W`` norm) is kept — unless the target lies beyond the arm's reach sphere
        (no seed can reach it)."""
        T_target = self._check_target(T_target)
        seed = self.kin.check_q(seed)
        q_prev = seed if q_prev is None else self.kin.check_q(q_prev)
        total = 0
        best = None
        distance = np.linalg.norm(T_target[:3, 3] - self._reach_centre)
        beyond = distance > self._reach_radius + self.config.reach_position_m
        starts = [seed] + ([] if beyond else ["path", *(s for s in extra_seeds if not np.array_equal(s, seed))])
        for start in starts:
            if isinstance(start, str):
                along = self._along_path(T_target, seed, q_prev)
                if along is None:  # the target is within one path step: the warm start was that path
                    continue
                q, T, e, iterations = along
            else:
                q, T, e, iterations = self._descend(T_target, start, q_prev)
            total += iterations
            distance = float(e @ (self._w2 * e))
            if best is None or distance < best[0]:
                best = (distance, q, T, e)
            along_path_near = isinstance(start, str) and self.near(np.linalg.norm(e[:3]), np.linalg.norm(e[3:]))
            if self._reached(e) or along_path_near:
                break
        _, q, T, e = best
        return IKSolution(q=q, T_reached=T, position_error_m=float(np.linalg.norm(e[:3])),
                          rotation_error_rad=float(np.linalg.norm(e[3:])), reached=self._reached(e),
                          iterations=total)

    def _along_path(self, T_target: np.ndarray, seed: np.ndarray,
                    q_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
        """:meth:`_descend` to ``T_target`` through poses interpolated from ``fk(seed)``, each warm-starting the
        next (a homotopy: the solution follows the seed's branch instead of stopping at a joint limit); None
        when the target lies within one path step of the seed's pose."""
        T_from = self.kin.fk(np.clip(seed, self.lower, self.upper))
        distance = np.linalg.norm(T_target[:3, 3] - T_from[:3, 3])
        angle = np.linalg.norm(pin.log3(T_target[:3, :3] @ T_from[:3, :3].T))
        n = math.ceil(max(distance / self.config.path_step_m, angle / math.radians(self.config.path_step_deg)))
        if n <= 1:
            return None
        q, total = seed, 0
        path = geometry.interpolate_trajectory(np.array([0.0, 1.0]), np.stack([T_from, T_target]),
                                               np.arange(1, n) / n)
        for T_via in path:
            q, _, _, iterations = self._descend(T_via, q, q)
            total += iterations
        q, T, e, iterations = self._descend(T_target, q, q_prev)
        return q, T, e, total + iterations

    def near(self, position_error_m: float, rotation_error_rad: float) -> bool:
        """Whether a solution missing its target by these errors is within the reseed thresholds: close enough
        that no other branch is worth a jump of the arm."""
        return bool(position_error_m <= self.config.reseed_position_m
                    and rotation_error_rad <= math.radians(self.config.reseed_rotation_deg))

    def _reached(self, e: np.ndarray) -> bool:
        return bool(np.linalg.norm(e[:3]) <= self.config.reach_position_m
                    and np.linalg.norm(e[3:]) <= math.radians(self.config.reach_rotation_deg))

    def first_step(self, T_target, q_start) -> IKSolution:
        """The first step of a chunk: from ``q_start`` (clipped into the limits), with the middle of the joint
        ranges as the last-resort seed."""
        q_start = np.clip(self.kin.check_q(q_start), self.lower, self.upper)
        return self.solve(T_target, q_start, q_start, (self._middle,))

    def solve_chunk(self, T_targets, q_start, first: IKSolution | None = None) -> ChunkSolution:
        """Solve a chunk of targets (H, 4, 4) in order, each warm-started from and smooth to the previous
        solution; the first from ``q_start`` (the measured joint state), which is clipped into the limits.
        ``first``: the first step's solution when the caller has it already (:meth:`first_step`)."""
        T_targets = np.asarray(T_targets, float)
        if T_targets.ndim != 3 or T_targets.shape[1:] != (4, 4) or len(T_targets) == 0:
            raise ValueError(f"IK chunk targets must be (H, 4, 4) with H >= 1, got shape {T_targets.shape}")
        geometry.check_transform(T_targets, "IK chunk targets")
        solutions = [first or self.first_step(T_targets[0], q_start)]
        for T_target in T_targets[1:]:
            # Other seeds only for the first step: later, another branch is a jump of the arm within one step.
            solutions.append(self.solve(T_target, solutions[-1].q, solutions[-1].q))
        return ChunkSolution(q=np.stack([s.q for s in solutions]),
                             T_reached=np.stack([s.T_reached for s in solutions]),
                             position_error_m=np.array([s.position_error_m for s in solutions]),
                             rotation_error_rad=np.array([s.rotation_error_rad for s in solutions]),
                             reached=np.array([s.reached for s in solutions]),
                             iterations=np.array([s.iterations for s in solutions]))
