"""Closed-loop success and latency of the whole robot graph on the simulated arm, over many seeds.

    python benchmarks/closed_loop.py [--seeds 50] [--policy replay|flow|act] [--bundle DIR] [--json out.json]

Runs the real graph (every node its own process, humanego_bringup.episode_runner) for serve_bread episodes
with seeds first..first+N-1 and prints:

- success rate (replay policy: the human demonstration of each scene retargeted and executed by the robot, the
  check that retargeting and control preserve the task, goal >= 95 %; a learned policy: reported, goal >= 80 %),
  next to the scripted oracle's on the same seeds (humanego_sim.oracle, physics without the ROS graph);
- per-stage latency from message stamps, and camera stamp -> first joint command (goal p50 <= 150 ms on CPU):
  the probe's camera stamp -> joint_chunk arrival (the controller uses a chunk at its next tick, <= 10 ms later)
  and the controller's own observation -> command figure (sim time);
- the control period jitter and the safety interventions.
The figures depend on the machine's load: it is printed (load average, CPUs) with them.
"""

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from humanego_bringup import episodes
from humanego_bringup.episode_runner import ClosedLoopRunner, RunConfig, format_report, node_parameters
from humanego_sim.tasks import load_task

WORKSPACE = Path(__file__).resolve().parents[1]
GOALS = {"replay": 0.95, "flow": 0.80, "act": 0.80}
LATENCY_GOAL_MS = 150.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50, help="number of episodes (default 50)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first episode (default 0)")
    parser.add_argument("--policy", choices=sorted(GOALS), default="replay")
    parser.add_argument("--bundle", type=Path, help="flow/act: policy bundle (default: the shipped one)")
    parser.add_argument("--recordings", type=Path, default=WORKSPACE / "build" / "data" / "serve_bread",
                        help="replay: preprocessed recordings, one per seed (default build/data/serve_bread)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="replay: run only the seeds that have a recording (instead of stopping)")
    parser.add_argument("--timeout", type=float, help="sim seconds per episode (default: the task's)")
    parser.add_argument("--param", action="append", default=[], metavar="NODE.NAME=VALUE",
                        help="a node parameter over config/<node>.yaml (repeatable), e.g. policy.replay_speed=0.5 "
                             "(replay the demonstration at half speed) or sim_robot.real_time_factor=0.5 (the "
                             "simulation at half real time, for machines too busy to keep up)")
    parser.add_argument("--no-oracle", action="store_true", help="skip the oracle on the same seeds")
    parser.add_argument("--out", type=Path, help="folder of graph.log (default build/bench/closed_loop/<date-time>)")
    parser.add_argument("--json", type=Path, help="write every figure and episode here")
    args = parser.parse_args()

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.policy == "replay" and args.skip_missing:
        found, missing = episodes.replay_recordings(args.recordings, seeds)
        if missing:
            print(f"no preprocessed recording of {len(missing)} of {len(seeds)} seeds in {args.recordings}: "
                  f"running the {len(found)} others")
        seeds = [s for s in seeds if s in found]
        if not seeds:
            print("no seed to run", file=sys.stderr)
            return 1
    out = args.out or WORKSPACE / "build" / "bench" / "closed_loop" / time.strftime("%Y%m%d-%H%M%S")
    config = RunConfig(policy=args.policy, seeds=seeds, bundle=args.bundle,
                       recordings=args.recordings if args.policy == "replay" else None,
                       timeout_s=args.timeout or load_task("serve_bread").episode_seconds, out_dir=out,
                       node_parameters=node_parameters(args.param))
    load_before = os.getloadavg()
    started = time.monotonic()
    bar = tqdm(total=len(seeds), unit="episode", desc=f"{args.policy} closed loop", file=sys.stderr)

    def on_episode(result: episodes.EpisodeResult) -> None:
        bar.update(1)

    runner = ClosedLoopRunner(config, log=tqdm.write, on_episode=on_episode)
    result = runner.run()
    bar.close()
    wall = time.monotonic() - started
    load_after = os.getloadavg()

    oracle = None
    if not args.no_oracle:
        from humanego_sim.oracle import evaluate

        oracle = evaluate("serve_bread", "panda", seeds, progress=False)

    print(format_report(result))
    print(f"\n== Closed loop, {args.policy} policy, serve_bread, panda, {len(seeds)} seeds "
          f"({seeds[0]}..{seeds[-1]}); {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after; {wall / 60:.1f} min")
    hint = episodes.overload_hint(result.episodes, load_after[0], os.cpu_count())
    if hint:
        print(hint)
    rate = result.success_rate
    goal = GOALS[args.policy]
    print(f"success {sum(r.success for r in result.episodes)}/{len(result.episodes)} = {100 * rate:.0f} % "
          f"(goal >= {100 * goal:.0f} %: {'met' if rate >= goal else 'NOT met'})"
          + (f"; oracle on the same seeds {oracle['successes']}/{oracle['episodes']} = "
             f"{100 * oracle['success_rate']:.0f} %" if oracle else ""))
    ok = [r.seconds for r in result.episodes if r.success]
    if ok:
        print(f"time to success (sim): mean {np.mean(ok):.1f} s"
              + (f" (oracle {oracle['mean_episode_seconds']:.1f} s)" if oracle else ""))
    joint = result.latency.get("joint_chunk", {})
    if args.policy != "replay":
        p50, p99 = joint.get("total_p50_ms", math.nan), joint.get("total_p99_ms", math.nan)
        print(f"camera stamp -> joint_chunk at the controller (+ <= 1 control period to the first command): "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (goal p50 <= {LATENCY_GOAL_MS:.0f} ms: "
              f"{'met' if p50 <= LATENCY_GOAL_MS else 'NOT met'})")
    c = result.controller
    print(f"control period jitter: p50 {c.get('period_jitter_p50_ms', 'n/a')} ms, p99 "
          f"{c.get('period_jitter_p99_ms', 'n/a')} ms, longest period {c.get('period_max_ms', 'n/a')} ms")
    if args.json:
        summary = result.to_dict()
        summary.update(wall_seconds=wall, load_before=list(load_before), load_after=list(load_after),
                       oracle=oracle)
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
