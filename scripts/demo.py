"""`make demo`: the whole robot stack closed loop on the simulated arm, over randomised serve_bread episodes.

Starts the robot graph as real processes (`humanego launch robot`'s Python API): the simulated Panda with its
ego camera -> clean view -> state estimator (ICT) -> policy -> IK/retargeting -> safe trajectory controller ->
simulator, plus the operator heartbeat. Each episode resets the scene with a new seed and lets the loop run
until the bread is on the plate or the task's time limit (sim time) passes. At the end it prints the success
rate, per-stage latency (camera stamp -> clean view -> ICT -> chunk -> joint chunk -> first command) and the
safety layer's interventions, and leaves in build/demo/<date-time>/:

  camera.mp4    the ego camera with the predicted (green) and executed (orange) ee paths drawn in
  bag/          rosbag2 (MCAP) of the run (humanego record's topic set; camera images with --bag-images)
  results.json  every episode and figure;  report.txt  what was printed;  graph.log  the nodes' output

Policy: the shipped bundle of --policy (models/serve_bread_flow or models/serve_bread_act) or --bundle. When the
shipped bundle is missing it falls back to the replay policy: the recorded human demonstration of each seed's
scene, retargeted and executed by the robot (recordings from scripts/make_training_data.sh, made here for the
seeds that lack one). Runs in a few minutes on 2 CPU cores with the default 3 episodes.

Examples:  make demo    make demo ARGS="--episodes 10 --seed 100"    python scripts/demo.py --policy replay
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WORKSPACE = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=3, help="number of episodes (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode's scene; episode i uses "
                        "seed + i (default 0)")
    parser.add_argument("--policy", choices=("flow", "act", "replay"), default="flow",
                        help="flow (default) or act: the shipped bundle or --bundle; replay: the human demonstration "
                             "of each scene")
    parser.add_argument("--bundle", type=Path, help="policy bundle folder (default: the shipped one of --policy)")
    parser.add_argument("--recordings", type=Path, default=WORKSPACE / "build" / "data" / "serve_bread",
                        help="replay: folder of preprocessed recordings, one per seed (default build/data/serve_bread;"
                             " missing ones are made with scripts/make_training_data.sh)")
    parser.add_argument("--timeout", type=float, help="sim seconds per episode (default: the task's episode_seconds)")
    parser.add_argument("--param", action="append", default=[], metavar="NODE.NAME=VALUE",
                        help="a node parameter over config/<node>.yaml (repeatable), e.g. policy.replay_speed=0.5 "
                             "(replay the demonstration at half speed) or sim_robot.real_time_factor=0.5 (the "
                             "simulation at half real time, for machines too busy to keep up)")
    parser.add_argument("--out", type=Path, help="output folder (default build/demo/<date-time>)")
    parser.add_argument("--no-video", action="store_true", help="do not write camera.mp4")
    parser.add_argument("--no-bag", action="store_true", help="do not record a bag")
    parser.add_argument("--bag-images", action="store_true", help="also record the camera images into the bag "
                        "(about 7 MB per second each)")
    parser.add_argument("--namespace", default="", help="robot namespace of the graph (default none)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.timeout is not None and not args.timeout > 0:
        parser.error("--timeout must be positive")
    return args


def choose_policy(args) -> tuple[str, Path | None]:
    """The policy to run and its bundle; the replay policy when the shipped bundle is missing."""
    if args.policy == "replay":
        if args.bundle is not None:
            sys.exit("--bundle is not used by --policy replay")
        return "replay", None
    from humanego_bringup.robot_graph import bundle_dir, launch_args
    from humanego_policy.bundle import Bundle, BundleError

    path = args.bundle.resolve() if args.bundle else bundle_dir(launch_args({"policy": args.policy}))
    try:
        bundle = Bundle.load(path)
    except (FileNotFoundError, BundleError) as exc:
        if args.bundle is not None:
            sys.exit(f"policy bundle {path}: {exc}")
        print(f"No shipped {args.policy} policy bundle: {exc}\n"
              f"-> falling back to the replay policy: each scene's recorded human demonstration, retargeted to the "
              f"robot and executed closed loop. Train and export a policy (models/README.md) or pass --bundle.\n")
        return "replay", None
    if bundle.manifest.policy_type != args.policy:
        sys.exit(f"{path / 'bundle.json'} holds a '{bundle.manifest.policy_type}' policy, not --policy {args.policy}")
    return args.policy, path


def ensure_recordings(folder: Path, seeds: list[int]) -> None:
    from humanego_bringup.episodes import replay_recordings

    _, missing = replay_recordings(folder, seeds)
    if not missing:
        return
    num = max(missing) + 1
    print(f"The replay policy needs the human demonstration of seed{'s' if len(missing) > 1 else ''} "
          f"{', '.join(map(str, missing))}: making it with scripts/make_training_data.sh {num} {folder} "
          f"(synthetic Aria recordings, then preprocessing; about a minute per demo on 2 cores) ...", flush=True)
    subprocess.run(["bash", str(WORKSPACE / "scripts" / "make_training_data.sh"), str(num), str(folder)], check=True)
    _, missing = replay_recordings(folder, seeds)
    if missing:
        sys.exit(f"{folder} still holds no preprocessed recording of seeds {missing} (see the output above)")


def main(argv=None) -> int:
    args = parse_args(argv)
    from humanego_sim.tasks import load_task

    seeds = list(range(args.seed, args.seed + args.episodes))
    policy, bundle = choose_policy(args)
    if policy == "replay":
        ensure_recordings(args.recordings.resolve(), seeds)
    out = (args.out or WORKSPACE / "build" / "demo" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} exists and is not empty; choose another --out")
    timeout = args.timeout or load_task("serve_bread").episode_seconds

    from humanego_bringup.episode_runner import (
        ClosedLoopRunner,
        GraphError,
        RunConfig,
        format_report,
        node_parameters,
    )
    from humanego_bringup.episodes import overload_hint
    from humanego_bringup.robot_graph import LaunchArgumentError, PreflightError

    try:
        parameters = node_parameters(args.param)
    except ValueError as exc:
        sys.exit(f"--param: {exc}")
    config = RunConfig(policy=policy, seeds=seeds, bundle=bundle,
                       recordings=args.recordings.resolve() if policy == "replay" else None, timeout_s=timeout,
                       namespace=args.namespace, out_dir=out, bag=not args.no_bag, bag_images=args.bag_images,
                       video=not args.no_video,
                       node_parameters=parameters)
    print(f"HumanEgo demo: {policy} policy{f' ({bundle})' if bundle else ''}, {len(seeds)} serve_bread episode"
          f"{'s' if len(seeds) > 1 else ''} (seeds {seeds[0]}..{seeds[-1]}, {timeout:.0f} s sim each) on the simulated "
          f"Panda; output in {out}  [{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}]", flush=True)
    started = time.monotonic()
    try:
        runner = ClosedLoopRunner(config, log=lambda line: print(line, flush=True))
    except (ValueError, FileNotFoundError, LaunchArgumentError) as exc:  # arguments, missing recordings
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    try:
        result = runner.run()
    except (GraphError, PreflightError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    report = format_report(result)
    load = os.getloadavg()[0]
    report += f"\n\nWall time {time.monotonic() - started:.0f} s; load average {load:.1f} on {os.cpu_count()} CPUs."
    hint = overload_hint(result.episodes, load, os.cpu_count())
    report += (f"\n{hint}" if hint else "") + f"\nOutput: {out}"
    print(report)
    (out / "report.txt").write_text(report + "\n")
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
