"""Oracle success rate for every task x robot, and the simulator's real-time factor.

    python benchmarks/oracle_success.py [--seeds 50] [--tasks serve_bread push_box] [--robots panda ur5e]
                                        [--json results.json]

Each cell runs ``humanego_sim.oracle.evaluate`` (the same code as ``humanego run humanego_sim oracle``)
over seeds 0..N-1 with real MuJoCo physics. The real-time factor is sim time / wall time of (a) physics
alone with the arm holding its home pose and (b) the oracle's rollouts (physics + IK + control at
50 Hz), both single-threaded on this machine's CPU, no rendering.
"""

import argparse
import json
import platform
import sys
import time

from humanego_sim.oracle import evaluate
from humanego_sim.tasks import available_tasks, load_task
from humanego_sim.world import World

ROBOTS = ["panda", "ur5e"]


def physics_rtf(task: str, robot: str, sim_seconds: float = 20.0) -> float:
    world = World(load_task(task), robot=robot)
    world.reset(0)
    steps = round(sim_seconds / world.model.opt.timestep)
    start = time.perf_counter()
    world.step(steps)
    return sim_seconds / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=50, help="episodes per task x robot (seeds 0..N-1)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks (default: every config/tasks/*.yaml)")
    parser.add_argument("--robots", nargs="+", default=ROBOTS, choices=ROBOTS)
    parser.add_argument("--json", help="write every cell's summary (with per-episode results) here")
    args = parser.parse_args()
    tasks = args.tasks or available_tasks()
    rows, summaries = [], []
    for task in tasks:
        for robot in args.robots:
            start = time.perf_counter()
            summary = evaluate(task, robot, list(range(args.seeds)))
            wall = time.perf_counter() - start
            sim = sum(r["seconds"] for r in summary["results"])
            summary.update(wall_seconds=wall, rollout_rtf=sim / wall, physics_rtf=physics_rtf(task, robot))
            summaries.append(summary)
            failures = ", ".join(f"{r['seed']}: {r['reason']}" for r in summary["results"] if not r["success"])
            rows.append((task, robot, f"{summary['successes']}/{summary['episodes']}",
                         f"{100 * summary['success_rate']:.0f} %", f"{summary['mean_episode_seconds']:.1f}",
                         f"{summary['physics_rtf']:.0f}x", f"{summary['rollout_rtf']:.0f}x", failures or "-"))
    header = ("task", "robot", "success", "rate", "mean episode (s, sim)", "physics RTF", "oracle RTF", "failures")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\nOracle, {args.seeds} seeds per cell; {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summaries, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
