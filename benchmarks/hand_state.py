#!/usr/bin/env python3
"""Hand stage of preprocessing against the simulator's ground truth: pose and grasp accuracy, segmentation, speed.

    python benchmarks/hand_state.py [--num 14] [--seed 0] [--size 128 128] [--out DIR]
    python benchmarks/hand_state.py --recordings DIR [DIR ...]

Generates --num serve_bread demos (seeds --seed ...) into a temporary folder (or --out, where finished demos
are reused), or reads the synthetic recordings given with --recordings, and runs
``humanego_perception.hand_state.estimate_hand_states`` (side from ``choose_side``) and
``humanego_perception.phases.segment_manipulation`` with their default configurations. Prints (nothing is
asserted: these are the figures of the module docstrings and the closing note):

1. per recording and pooled: hand-frame position error (mm, median / p90) and rotation error (deg, geodesic,
   median / p90) against gt ``T_world_hand`` on valid frames; grasp F1 against gt ``grasped`` on valid frames
   and within the kept window; frames per hand reason; kept window and gt idle frames left in it;
2. the thumb-index tip distance of the MPS-style landmarks in the files (raw, before smoothing) on frames where
   gt says grasped / not grasped / idle / descend: the distributions the grasp thresholds were chosen from;
3. frames/s of the stage (hand states + segmentation, one core, best of --repeat runs per recording).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from humanego_core import geometry
from humanego_core.hand import pinch_distance
from humanego_perception.hand_state import HandStateConfig, choose_side, estimate_hand_states, grasp_f1
from humanego_perception.phases import PhaseConfig, segment_manipulation
from humanego_sim.aria_recording import Recording
from humanego_sim.generate_demos import generate

PERCENTILES = (0, 5, 50, 95, 100)


def stats(values: np.ndarray) -> str:
    return f"{np.median(values):6.2f} / {np.percentile(values, 90):6.2f}" if values.size else "     - /      -"


def run_stage(rec: Recording, hand_config: HandStateConfig, phase_config: PhaseConfig):
    side = choose_side(rec.hand_tracking, rec.frame_timestamps_ns, hand_config)
    states = estimate_hand_states(rec.hand_tracking, rec.trajectory, rec.frame_timestamps_ns, side, hand_config)
    return states, segment_manipulation(states, rec.fps, phase_config)


def timed_stage(rec: Recording, hand_config: HandStateConfig, phase_config: PhaseConfig, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        started = time.perf_counter()
        run_stage(rec, hand_config, phase_config)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=Path, nargs="+", help="synthetic recording folders (with gt/) to "
                                                                   "evaluate instead of generating demos")
    parser.add_argument("--num", type=int, default=14, help="serve_bread demos to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first generated demo")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("W", "H"),
                        help="video size of generated demos (the hand tracking does not depend on it)")
    parser.add_argument("--out", type=Path, help="generate into (and reuse demos from) this folder instead of a "
                                                 "temporary one")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per recording (the best counts)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.recordings:
            folders = args.recordings
        else:
            out = args.out or Path(tmp)
            print(f"generating {args.num} serve_bread demos into {out} ...", flush=True)
            results = generate("serve_bread", args.num, out, seed=args.seed, width=args.size[0],
                               height=args.size[1], progress=False)
            folders = [out / r.name for r in results]
        evaluate([Recording.open(f) for f in folders], args.repeat)
    return 0


def evaluate(recordings: list[Recording], repeat: int) -> None:
    hand_config, phase_config = HandStateConfig(), PhaseConfig()
    position_all, rotation_all, predicted, label, predicted_window, label_window = [], [], [], [], [], []
    reasons, kept = Counter(), Counter()
    pinch = {"grasped": [], "not grasped": [], "  idle": [], "  descend": []}
    print("\n1. accuracy against gt (valid frames)")
    print(f"   {'recording':<12} {'frames':>6} {'valid':>5} {'filled':>6} {'pos mm med/p90':>15} "
          f"{'rot deg med/p90':>15} {'grasp F1':>8} {'F1 window':>9} {'window':>9} {'idle kept':>9}")
    for rec in recordings:
        gt = rec.gt(masks=False)
        states, seg = run_stage(rec, hand_config, phase_config)
        v = states.valid
        position = 1e3 * np.linalg.norm(states.T_world_hand[v, :3, 3] - gt["T_world_hand"][v, :3, 3], axis=-1)
        rotation = np.degrees(geometry.geodesic_angle(states.T_world_hand[v, :3, :3], gt["T_world_hand"][v, :3, :3]))
        window = np.zeros(rec.num_frames, bool)
        window[seg.start:seg.stop] = True
        idle = gt["phase"] == "idle"
        print(f"   {rec.root.name:<12} {rec.num_frames:6d} {int(v.sum()):5d} {int(states.filled.sum()):6d} "
              f"{stats(position):>15} {stats(rotation):>15} {grasp_f1(states.grasp[v], gt['grasped'][v]):8.3f} "
              f"{grasp_f1(states.grasp[v & window], gt['grasped'][v & window]):9.3f} "
              f"{f'{seg.start}-{seg.stop}':>9} {f'{int(np.sum(idle & window))}/{int(idle.sum())}':>9}"
              + (f"  ({seg.reason})" if seg.reason else ""))
        position_all.append(position)
        rotation_all.append(rotation)
        predicted.append(states.grasp[v])
        label.append(gt["grasped"][v])
        predicted_window.append(states.grasp[v & window])
        label_window.append(gt["grasped"][v & window])
        reasons.update({k: n for k, n in states.counts().items() if n})
        kept["kept (in window, hand valid)"] += int(np.sum(window & v))
        kept["dropped: before window"] += seg.start if not seg.reason else 0
        kept["dropped: after window"] += rec.num_frames - seg.stop if not seg.reason else 0
        kept[f"dropped: {seg.reason}"] += rec.num_frames if seg.reason else 0
        for reason in states.reason[window & ~v]:
            kept[f"dropped in window: hand {reason}"] += 1

        tracking = rec.hand_tracking
        side = states.side
        seen = tracking.seen(side)
        raw = pinch_distance(tracking.landmarks[side])
        grasped = gt["grasped"]
        for name, mask in (("grasped", grasped), ("not grasped", ~grasped), ("  idle", idle),
                           ("  descend", gt["phase"] == "descend")):
            pinch[name].append(raw[seen & mask])
    position, rotation = np.concatenate(position_all), np.concatenate(rotation_all)
    print(f"   {'all':<12} {sum(r.num_frames for r in recordings):6d} {position.size:5d} {'':6} {stats(position):>15} "
          f"{stats(rotation):>15} {grasp_f1(np.concatenate(predicted), np.concatenate(label)):8.3f} "
          f"{grasp_f1(np.concatenate(predicted_window), np.concatenate(label_window)):9.3f}")
    print(f"   position error p99 {np.percentile(position, 99):.2f} mm, max {position.max():.2f} mm; rotation p99 "
          f"{np.percentile(rotation, 99):.2f} deg, max {rotation.max():.2f} deg")
    print("   hand frames by reason: " + ", ".join(f"{k} {n}" for k, n in sorted(reasons.items())))
    print("   frames after segmentation: " + ", ".join(f"{k} {n}" for k, n in kept.items() if n))

    print(f"\n2. raw thumb-index tip distance of the files' landmarks (m), percentiles {PERCENTILES}")
    for name, parts in pinch.items():
        values = np.concatenate(parts)
        shown = " / ".join(f"{p:.3f}" for p in np.percentile(values, PERCENTILES)) if values.size else "-"
        print(f"   {name:<12} {values.size:5d} frames: {shown}")

    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        seconds = sum(timed_stage(rec, hand_config, phase_config, repeat) for rec in recordings)
    finally:
        os.sched_setaffinity(0, cpus)
    frames = sum(r.num_frames for r in recordings)
    print(f"\n3. speed (one core, best of {repeat}): hand states + segmentation {frames} frames in {seconds:.3f} s = "
          f"{frames / seconds:,.0f} frames/s")


if __name__ == "__main__":
    sys.exit(main())
