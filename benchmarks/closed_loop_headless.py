"""The replay closed loop without ROS: the robot side's parts in one process, in lock step, without latency.

    python benchmarks/closed_loop_headless.py [--seeds 8] [--first-seed 0] [--mode receding_horizon]

Per seed: the human demonstration of that scene (the recording in --recordings whose metadata.json names the
seed, as benchmarks/closed_loop.py finds it; played as config/policy.yaml plays it) is retargeted at the
policy's rate from the measured joints (humanego_control.retarget with config/ik_retarget.yaml, the alignment
of config/views.yaml), executed by the trajectory executor and safety filter at 100 Hz
(config/trajectory_controller.yaml) and simulated by MuJoCo (humanego_sim.robot_sim). What
the graph adds, DDS, process scheduling and IK latency, is absent: comparing this with benchmarks/closed_loop.py
separates retargeting and control from timing. An episode succeeds by the task's check; it stops at 20 s of sim time.
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
from humanego_core.kinematics import RobotKinematics
from humanego_perception.views import load_views_config
from humanego_policy import policy_node
from humanego_policy.replay import DemoReplay, ReplayTiming
from humanego_ros.parameters import options_from, shipped_parameters
from humanego_sim.robot_sim import RobotSim, TrajectoryPoint
from humanego_sim.tasks import load_task

WORKSPACE = Path(__file__).resolve().parents[1]


def control_parameters() -> dict:
    return shipped_parameters("trajectory_controller", trajectory_controller_node.parameters())


def run_episode(seed: int, recording: Path, mode: str, seconds: float) -> tuple[bool, float, float, dict]:
    """(success, sim seconds, bread's distance from the plate centre in m, safety counters)."""
    control = control_parameters()
    retarget = shipped_parameters("ik_retarget", ik_retarget_node.parameters())
    policy = shipped_parameters("policy", policy_node.parameters())
    sim = RobotSim(load_task("serve_bread"), "panda", seed=seed)
    static = {child: (parent, T) for parent, child, T in sim.static_transforms()}

    def in_world(frame):
        parent, T = static[frame]
        return T if parent == "world" else in_world(parent) @ T

    T_base_world = np.linalg.inv(in_world("base_link"))
    kin = RobotKinematics.load("panda")
    retargeter = Retargeter(kin, load_views_config().gripper.T_ee_gripper, options_from(IKConfig, retarget),
                            retarget["grasp_threshold"], retarget["symmetric_gripper"])
    replay = DemoReplay.load(recording, policy["replay_hand"]).retimed(ReplayTiming.from_parameters(policy))
    # ik_retarget solves the first horizon_steps of each chunk (0: all of it).
    horizon = min(retarget["horizon_steps"] or policy["replay_horizon"], policy["replay_horizon"])
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
                poses, grasp, _ = replay.chunk(t, horizon)
                out = retargeter.retarget(T_base_world @ poses, grasp, q, replay.dt)
                times = replay.dt * np.arange(1, horizon + 1)
                executor.add_chunk(names, times, np.c_[out.q, out.gripper_opening], t, kin.base_frame, t, t)
                next_chunk += 1.0 / policy["replay_rate_hz"]
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
    parser.add_argument("--seeds", type=int, default=8, help="number of episodes (default 8)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--recordings", type=Path, default=WORKSPACE / "build" / "data" / "serve_bread",
                        help="folder of preprocessed recordings, one per seed (default build/data/serve_bread)")
    parser.add_argument("--mode", choices=("receding_horizon", "temporal_ensembling"),
                        default=control_parameters()["mode"])
    parser.add_argument("--seconds", type=float, default=20.0, help="sim seconds per episode (default 20)")
    args = parser.parse_args()
    successes = 0
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"replay, headless, {args.mode}: seed | success | sim s | bread from the plate centre cm | safety")
    recordings, missing = episodes.replay_recordings(args.recordings, seeds)
    if missing:
        parser.error(f"no preprocessed recording of seeds {missing} in {args.recordings}: make them with "
                     "scripts/make_training_data.sh (or generate_demos --seed and preprocess)")
    for seed in seeds:
        success, seconds, distance, counters = run_episode(seed, recordings[seed], args.mode, args.seconds)
        successes += success
        print(f"{seed} | {'yes' if success else 'no'} | {seconds:.1f} | {distance * 100:.1f} | {counters}", flush=True)
    print(f"success {successes}/{len(seeds)} = {100 * successes / len(seeds):.0f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
