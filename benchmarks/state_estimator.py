#!/usr/bin/env python3
"""The state estimator's parts on the simulated serve_bread robot scene: per-frame cost and RGB-D object accuracy.

    python benchmarks/state_estimator.py [--seeds 10] [--size 320x240] [--init-frames 5] [--repeat 300]

Per frame (what the node does for every camera frame, sim_truth backend): the gripper as the ICT hand
(RobotKinematics FK + ee_to_gripper + grasp) and the tokens (RobotTokenBuilder: reference frame + build_tokens),
milliseconds p50 / p99 over --repeat calls. RGB-D backend (humanego_perception.rgbd_objects), per seed: one
rendered RGB + depth frame of the robot's camera used --init-frames times (a fixed camera and a still scene),
the robot's self-mask excluded; position error of each object's base centre against the simulator (base
frame), a box's yaw error modulo 180 degrees, seconds per frame of detection and of the final shape fit.
Nothing is asserted; one core of the project machine unless it is shared.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from humanego_core import geometry
from humanego_core.actions import NormStats
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.ict import ICTConfig
from humanego_core.kinematics import RobotKinematics
from humanego_perception.objects import ColourShapeDetector, prompts_from_task
from humanego_perception.rgbd_objects import RgbdObjectEstimator, RgbdObjectsConfig, depth_in_metres
from humanego_perception.robot_mask import RobotSelfMask
from humanego_perception.robot_state import GripperHand, RobotTokenBuilder
from humanego_perception.views import load_views_config
from humanego_sim.robot_sim import CAMERA_OPTICAL_FRAME, RobotSim
from humanego_sim.tasks import load_task


def scene_view(task, seed: int, width: int, height: int) -> dict:
    sim = RobotSim(task, "panda", seed=seed)
    try:
        sim.step(5)
        snap = sim.snapshot()
        static = {child: (parent, T) for parent, child, T in sim.static_transforms()}

        def in_world(frame):
            parent, T = static[frame]
            return T if parent == "world" else in_world(parent) @ T

        T_base_world = np.linalg.inv(in_world("base_link"))
        K = sim.camera_matrix(width, height)
        return {"rgb": sim.render(width, height, "rgb"), "depth": depth_in_metres(sim.render(width, height, "depth"),
                                                                                  "32FC1"),
                "camera": CameraModel(LINEAR, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], width, height),
                "T_base_camera": T_base_world @ in_world(CAMERA_OPTICAL_FRAME),
                "q": dict(zip(snap.joint_names, snap.positions, strict=True)),
                "truth": {n: T_base_world @ T for n, T in snap.object_poses.items()}}
    finally:
        sim.close()


def per_frame_cost(view: dict, repeat: int) -> None:
    kinematics = RobotKinematics.load("panda")
    hand = GripperHand(kinematics, load_views_config().gripper.T_ee_gripper)
    stats = NormStats(np.array([0.5, 0.0, 0.1]), np.array([0.2, 0.2, 0.2]))
    for mode in ("camera_frame", "anchor_frame"):
        builder = RobotTokenBuilder(ICTConfig(frame_mode=mode), stats, ["bread", "plate"], "plate")
        hand_ms, token_ms = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            state = hand.state(view["q"])
            t1 = time.perf_counter()
            builder.build(view["T_base_camera"], [state], view["truth"])
            t2 = time.perf_counter()
            hand_ms.append((t1 - t0) * 1e3)
            token_ms.append((t2 - t1) * 1e3)
        print(f"{mode}: gripper hand {np.percentile(hand_ms, 50):.3f} / {np.percentile(hand_ms, 99):.3f} ms, "
              f"tokens {np.percentile(token_ms, 50):.3f} / {np.percentile(token_ms, 99):.3f} ms (p50 / p99)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="scenes (placement seeds 0..N-1)")
    parser.add_argument("--size", default="320x240", help="camera image WIDTHxHEIGHT")
    parser.add_argument("--init-frames", type=int, default=5, help="frames the objects are estimated from")
    parser.add_argument("--repeat", type=int, default=300, help="calls timed per frame-cost figure")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    task = load_task("serve_bread")
    prompts = prompts_from_task(task)
    self_mask = RobotSelfMask(RobotKinematics.load("panda").urdf_path)
    errors = {p.name: [] for p in prompts}
    yaw_errors, detect_s, fit_s = [], [], []
    for seed in tqdm(range(args.seeds), desc="rgbd objects", unit="scene"):
        view = scene_view(task, seed, width, height)
        if seed == 0:
            per_frame_cost(view, args.repeat)
        exclude = self_mask.mask(view["camera"], np.linalg.inv(view["T_base_camera"]), view["q"])
        estimator = RgbdObjectEstimator(prompts, ColourShapeDetector(), RgbdObjectsConfig(init_frames=args.init_frames))
        for i in range(args.init_frames):
            t0 = time.perf_counter()
            estimator.add_view(view["rgb"], view["depth"], view["camera"], view["T_base_camera"], exclude)
            (fit_s if i == args.init_frames - 1 else detect_s).append(time.perf_counter() - t0)
        for name, T in estimator.poses.items():
            truth = view["truth"][name]
            errors[name].append(np.linalg.norm(T[:3, 3] - truth[:3, 3]) * 1e3)
            if name == task.manipulated:
                yaw = np.degrees(geometry.geodesic_angle(T[:3, :3], truth[:3, :3]))
                yaw_errors.append(min(yaw, 180.0 - yaw))
        for name in estimator.pending:
            print(f"seed {seed}: {name} not estimated")
    print(f"rgbd objects at {width}x{height}, {args.init_frames} frames, {args.seeds} scenes:")
    for name, e in errors.items():
        if e:
            print(f"  {name}: position error median {np.median(e):.1f} mm, p90 {np.percentile(e, 90):.1f} mm, "
                  f"max {np.max(e):.1f} mm ({len(e)} estimated)")
    print(f"  {task.manipulated} yaw error median {np.median(yaw_errors):.2f} deg, max {np.max(yaw_errors):.2f} deg")
    print(f"  detection {np.median(detect_s) * 1e3:.0f} ms per frame; last frame with the fits "
          f"{np.median(fit_s):.2f} s (median)")


if __name__ == "__main__":
    main()
