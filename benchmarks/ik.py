#!/usr/bin/env python3
"""IK retargeting: time per action chunk and the residuals it leaves.

    python benchmarks/ik.py [--chunks 200] [--horizon 50] [--robots panda ur5e] [--seed 0]

Chunks like a policy's: --horizon gripper poses 1/30 s apart, made from smooth random joint paths of the arm
(a random start within the middle 60% of each joint's range, a velocity drawn per joint up to 30% of its
limit, changing smoothly), so every target is reachable; the measured joint state the chunk starts from is
the path's start plus 0.05 rad of noise per joint (a policy predicts from an observation a little in the past).
Three cases per robot:

- exact: the poses as they are;
- jitter: each pose perturbed by 2 mm and 1 deg (a policy's step-to-step noise). Most residuals stay at the
  IK's tolerance; the largest (a millimetre or two, not flagged) are steps of paths passing close to a
  singular configuration, where the perturbed pose is not reachable nearby;
- out of reach: steps 20..29 of each chunk pushed 1 m away from the base: those are clamped and flagged.

Printed per robot and case (Retargeter.retarget, the ik_retarget node's work per chunk, pinned to one core):
ms per chunk p50/p99 and min (on a shared machine the min is the best estimate of the uncontended cost;
the load average is printed), us per step (mean), LM iterations per step, position / rotation residual of
the reached steps p50/p99/max, flagged steps %. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from scipy.spatial.transform import Rotation

from humanego_control.retarget import Retargeter
from humanego_core.kinematics import RobotKinematics
from humanego_perception.views import load_views_config

DT = 1 / 30


def joint_path(kin: RobotKinematics, horizon: int, rng: np.random.Generator) -> np.ndarray:
    span = kin.upper - kin.lower
    start = kin.lower + span * rng.uniform(0.2, 0.8, kin.n)
    velocity = kin.velocity_limit * rng.uniform(-0.3, 0.3, kin.n)
    accel = kin.velocity_limit * rng.normal(0.0, 0.5, (horizon, kin.n))
    velocities = np.clip(velocity + np.cumsum(accel * DT, axis=0), -0.3 * kin.velocity_limit,
                         0.3 * kin.velocity_limit)
    return np.clip(start + np.cumsum(velocities * DT, axis=0), kin.lower, kin.upper)


def chunks(kin: RobotKinematics, T_ee_gripper: np.ndarray, count: int, horizon: int, case: str, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        path = joint_path(kin, horizon, rng)
        poses = np.stack([kin.fk(q) @ T_ee_gripper for q in path])
        if case == "jitter":
            poses[:, :3, 3] += rng.normal(0, 0.002 / np.sqrt(3), (horizon, 3))
            turn = Rotation.from_rotvec(rng.normal(0, np.radians(1.0) / np.sqrt(3), (horizon, 3))).as_matrix()
            poses[:, :3, :3] = turn @ poses[:, :3, :3]
        elif case == "out of reach":
            far = poses[20:30, :3, 3]
            poses[20:30, :3, 3] = far + far / np.linalg.norm(far, axis=1, keepdims=True)
        q_measured = np.clip(path[0] + rng.normal(0, 0.05, kin.n), kin.lower, kin.upper)
        yield poses, q_measured


def summary(values, scale=1.0) -> str:
    if len(values) == 0:
        return "-"
    a = np.asarray(values) * scale
    return f"{np.percentile(a, 50):.4f} / {np.percentile(a, 99):.4f} / {a.max():.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--robots", nargs="+", default=["panda", "ur5e"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"# IK retargeting, {args.chunks} chunks x {args.horizon} steps, one core of {platform.processor() or '?'} "
          f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    T_ee_gripper = load_views_config().gripper.T_ee_gripper
    print("| robot | case | ms/chunk p50 / p99 / min | us/step | iterations/step "
          "| position residual mm p50 / p99 / max | rotation residual deg p50 / p99 / max | flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for robot in args.robots:
        kin = RobotKinematics.load(robot)
        retargeter = Retargeter(kin, T_ee_gripper)
        for case in ("exact", "jitter", "out of reach"):
            times, iterations, pos, rot, flagged = [], [], [], [], []
            for poses, q_measured in chunks(kin, T_ee_gripper, args.chunks, args.horizon, case, args.seed):
                started = time.perf_counter()
                out = retargeter.retarget(poses, np.zeros(len(poses)), q_measured, DT)
                times.append(time.perf_counter() - started)
                ik = out.ik
                iterations.extend(ik.iterations)
                pos.extend(ik.position_error_m[ik.reached])
                rot.extend(np.degrees(ik.rotation_error_rad[ik.reached]))
                flagged.extend(ik.flagged)
            t = np.asarray(times) * 1e3
            print(f"| {robot} | {case} | {np.percentile(t, 50):.1f} / {np.percentile(t, 99):.1f} / {t.min():.1f} | "
                  f"{1e3 * t.mean() / args.horizon:.0f} | {np.mean(iterations):.1f} | {summary(pos, 1e3)} | "
                  f"{summary(rot)} | {100 * np.mean(flagged):.1f}% |")


if __name__ == "__main__":
    main()
