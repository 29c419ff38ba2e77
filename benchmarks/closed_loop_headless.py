"""The closed loop without ROS: the robot side's parts in one process, in lock step, without latency.

    python benchmarks/closed_loop_headless.py [--seeds 8] [--first-seed 0] [--mode receding_horizon]
    python benchmarks/closed_loop_headless.py --policy flow [--bundle models/serve_bread_flow] [--seeds 8]

Per seed, a chunk every policy period, retargeted from the measured joints (humanego_control.retarget with
config/ik_retarget.yaml, the alignment of config/views.yaml), executed by the trajectory executor and safety
filter at 100 Hz (config/trajectory_controller.yaml) and simulated by MuJoCo (humanego_sim.robot_sim). The chunk:

- ``replay``: the human demonstration of that scene (the recording in --recordings whose metadata.json names the
  seed, as benchmarks/closed_loop.py finds it; played as config/policy.yaml plays it);
- ``flow`` / ``act``: the bundle's policy on what the graph would give it: the simulator's camera image cleaned
  by humanego_perception.robot_view (config/clean_view.yaml), the tokens the state estimator builds from the
  joints and the simulator's object poses (humanego_perception.robot_state), inference by PolicyRuntime.

What the graph adds, DDS, process scheduling and the latency of every stage, is absent: comparing this with
benchmarks/closed_loop.py separates retargeting, control and the model from timing. An episode succeeds by the
task's check; it stops at 20 s of sim time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from humanego_bringup import episodes
from humanego_control import ik_retarget_node, trajectory_controller_node
from humanego_control.ik import IKConfig
from humanego_control.retarget import Retargeter
from humanego_control.trajectory import make_executor
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.kinematics import RobotKinematics
from humanego_perception import clean_view_node, state_estimator_node
from humanego_perception.robot_state import GripperHand, RobotTokenBuilder, load_bundle_tokens
from humanego_perception.robot_view import RobotCleanView
from humanego_perception.views import load_views_config
from humanego_policy import policy_node
from humanego_policy.bundle import DEFAULT_BUNDLES
from humanego_policy.replay import DemoReplay, ReplayTiming
from humanego_ros.parameters import options_from, shipped_parameters
from humanego_sim import sim_robot_node
from humanego_sim.robot_sim import EGO_CAMERA, RobotSim, Snapshot, TrajectoryPoint
from humanego_sim.tasks import load_task

WORKSPACE = Path(__file__).resolve().parents[1]
TASK = "serve_bread"


def control_parameters() -> dict:
    return shipped_parameters("trajectory_controller", trajectory_controller_node.parameters())


class ReplaySource:
    """Chunks of a retimed human demonstration, in the world frame, at the replay node's rate."""

    def __init__(self, recording: Path):
        policy = shipped_parameters("policy", policy_node.parameters())
        self.replay = DemoReplay.load(recording, policy["replay_hand"]).retimed(ReplayTiming.from_parameters(policy))
        self.period = 1.0 / policy["replay_rate_hz"]
        self.horizon = policy["replay_horizon"]
        self.dt = self.replay.dt

    def chunk(self, sim: RobotSim, snapshot: Snapshot, T_base_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        poses, grasp, _ = self.replay.chunk(snapshot.elapsed, self.horizon)
        return T_base_world @ poses, grasp


class PolicySource:
    """A policy bundle on the clean view of the simulator's camera and the state estimator's tokens."""

    def __init__(self, bundle: Path, period: float, threads: int, seed: int):
        from humanego_policy.runtime import PolicyRuntime  # torch or onnxruntime only when a model runs

        views = load_views_config()
        clean = shipped_parameters("clean_view", clean_view_node.parameters())
        estimator = shipped_parameters("state_estimator", state_estimator_node.parameters())
        camera = shipped_parameters("sim_robot", sim_robot_node.parameters())
        kin = RobotKinematics.load("panda")
        self.clean_view = RobotCleanView.from_config(kin.urdf_path, views, clean["padding_px"],
                                                     inpaint_scale=clean["inpaint_scale"])
        ict_config, stats = load_bundle_tokens(bundle)
        task = load_task(TASK)
        self.builder = RobotTokenBuilder(ict_config, stats, list(task.objects), estimator["anchor_object"] or task.goal)
        self.hand = GripperHand(kin, views.gripper.T_ee_gripper, ict_config.hand_side,
                                estimator["closed_below_fraction"])
        self.runtime = PolicyRuntime(bundle, threads=threads, seed=seed)
        self.size = camera["camera_width"], camera["camera_height"]
        self.period = period
        self.dt = self.runtime.bundle.manifest.dt

    def chunk(self, sim: RobotSim, snapshot: Snapshot, T_base_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width, height = self.size
        K = sim.camera_matrix(width, height)
        camera = CameraModel(LINEAR, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], width, height)
        T_base_camera = T_base_world @ sim.world.camera_pose(EGO_CAMERA)
        positions = dict(zip(snapshot.joint_names, snapshot.positions, strict=True))
        image, _ = self.clean_view.process(sim.render(width, height), camera, np.linalg.inv(T_base_camera), positions)
        objects = {name: T_base_world @ T for name, T in snapshot.object_poses.items()}
        tokens, T_base_ref = self.builder.build(T_base_camera, [self.hand.state(positions)], objects)
        out = self.runtime.predict(image, tokens.tokens, tokens.mask)
        return T_base_ref @ out.T_ref, out.grasp


def run_episode(seed: int, source, mode: str, seconds: float) -> tuple[bool, float, float, dict]:
    """(success, sim seconds, bread's distance from the plate centre in m, safety counters)."""
    control = control_parameters()
    retarget = shipped_parameters("ik_retarget", ik_retarget_node.parameters())
    sim = RobotSim(load_task(TASK), "panda", seed=seed)
    static = {child: (parent, T) for parent, child, T in sim.static_transforms()}

    def in_world(frame):
        parent, T = static[frame]
        return T if parent == "world" else in_world(parent) @ T

    T_base_world = np.linalg.inv(in_world("base_link"))
    kin = RobotKinematics.load("panda")
    retargeter = Retargeter(kin, load_views_config().gripper.T_ee_gripper, options_from(IKConfig, retarget),
                            retarget["grasp_threshold"], retarget["symmetric_gripper"])
    # As the graph runs it, without the heartbeat node (nothing here can stall).
    executor = make_executor(kin, control | {"mode": mode, "heartbeat_timeout_s": 0.0})
    period = 1.0 / control["control_rate_hz"]
    names = [*kin.arm_joint_names, kin.gripper_joint_name]
    substeps = round(period / sim.timestep)
    next_chunk = 0.0
    try:
        while sim.elapsed < seconds:
            t = sim.elapsed
            snapshot = sim.snapshot()
            q = snapshot.positions[:kin.n]
            executor.on_joint_state(q, t)
            if t >= next_chunk - 1e-9:
                poses, grasp = source.chunk(sim, snapshot, T_base_world)
                # ik_retarget solves the first horizon_steps of each chunk (0: all of it).
                steps = retarget["horizon_steps"] or len(grasp)
                out = retargeter.retarget(poses[:steps], grasp[:steps], q, source.dt)
                times = source.dt * np.arange(1, len(out.q) + 1)
                executor.add_chunk(names, times, np.c_[out.q, out.gripper_opening], t, kin.base_frame, t, t)
                next_chunk += source.period
            command = executor.tick(t, t)
            if command is not None:
                sim.set_trajectory(sim.robot.arm_joints, [TrajectoryPoint(period, command.position, command.velocity)])
                if command.gripper is not None:
                    sim.set_gripper(command.gripper)
            if snapshot.success.success:  # the episode ends at the first state that passes the task's check
                break
            sim.step(substeps)
        check = snapshot.success
        counters = {k: v for k, v in executor.counters().items() if k.startswith(("limited_", "hold_")) and v}
        return check.success, snapshot.elapsed, check.xy_distance, counters
    finally:
        sim.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", choices=("replay", "flow", "act"), default="replay")
    parser.add_argument("--seeds", type=int, default=8, help="number of episodes (default 8)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--recordings", type=Path, default=WORKSPACE / "build" / "data" / "serve_bread",
                        help="replay: folder of preprocessed recordings, one per seed (default build/data/serve_bread)")
    parser.add_argument("--bundle", type=Path, help="flow/act: policy bundle (default: the shipped one)")
    parser.add_argument("--policy-period", type=float, default=0.1,
                        help="flow/act: sim seconds between observations (default 0.1; the graph's policy takes "
                             "the newest observation whenever inference is free)")
    parser.add_argument("--threads", type=int, default=2, help="flow/act: inference threads (default 2)")
    parser.add_argument("--mode", choices=("receding_horizon", "temporal_ensembling"),
                        default=control_parameters()["mode"])
    parser.add_argument("--seconds", type=float, default=20.0, help="sim seconds per episode (default 20)")
    args = parser.parse_args()
    successes = 0
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.policy == "replay":
        recordings, missing = episodes.replay_recordings(args.recordings, seeds)
        if missing:
            parser.error(f"no preprocessed recording of seeds {missing} in {args.recordings}: make them with "
                         "scripts/make_training_data.sh (or generate_demos --seed and preprocess)")
    else:
        bundle = args.bundle or WORKSPACE / "models" / DEFAULT_BUNDLES[args.policy]
    print(f"{args.policy}, headless, {args.mode}: seed | success | sim s | bread from the plate centre cm | safety")
    for seed in seeds:
        source = (ReplaySource(recordings[seed]) if args.policy == "replay"
                  else PolicySource(bundle, args.policy_period, args.threads, seed))
        success, seconds, distance, counters = run_episode(seed, source, args.mode, args.seconds)
        successes += success
        print(f"{seed} | {'yes' if success else 'no'} | {seconds:.1f} | {distance * 100:.1f} | {counters}", flush=True)
    print(f"success {successes}/{len(seeds)} = {100 * successes / len(seeds):.0f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
