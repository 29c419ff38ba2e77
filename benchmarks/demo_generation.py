#!/usr/bin/env python3
"""Benchmark: synthetic demo generation speed, success, and how much the head camera moves.

For each task, generates N demos into a temporary folder (or --out) with the real generator and reads
them back with the recording reader. Prints seconds per demo, frames/s of the whole pipeline
(pose, render RGB + labels through the fisheye, encode, write), success from gt/, the fraction of frames
in which MPS-style hand tracking sees the hand, and the head (RGB camera) translation and rotation
range within each demo. Nothing is asserted: these are figures for the closing note.

    python benchmarks/demo_generation.py --num 5
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from humanego_sim.aria_recording import Recording
from humanego_sim.generate_demos import generate


def head_motion(T_world_rgb: np.ndarray) -> tuple[float, float]:
    """Extent (m) of the camera's positions and largest rotation (deg) away from its first orientation."""
    extent = float(np.linalg.norm(np.ptp(T_world_rgb[:, :3, 3], axis=0)))
    rel = np.einsum("ji,njk->nik", T_world_rgb[0, :3, :3], T_world_rgb[:, :3, :3])
    return extent, float(np.degrees(Rotation.from_matrix(rel).magnitude().max()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["serve_bread", "push_box", "put_in_bowl"])
    parser.add_argument("--num", type=int, default=5, help="demos per task")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("W", "H"))
    parser.add_argument("--out", type=Path, help="keep the demos here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        print(f"{'task':<12} {'demos':>5} {'s/demo':>7} {'frames/s':>8} {'success':>8} {'hand seen':>9} "
              f"{'head move (m)':>14} {'head turn (deg)':>16}")
        for task in args.tasks:
            results = generate(task, args.num, root / task, seed=1000, width=args.size[0], height=args.size[1],
                               progress=False)
            made = [r for r in results if not r.skipped]
            seconds = sum(r.seconds for r in made)
            frames = sum(r.frames for r in made)
            moves, turns, seen = [], [], []
            for r in results:
                gt = Recording.open(root / task / r.name).gt()
                move, turn = head_motion(gt["T_world_rgb"])
                moves.append(move)
                turns.append(turn)
                seen.append(float(np.mean(gt["hand_visible"])))
            per_demo, fps = seconds / max(len(made), 1), frames / max(seconds, 1e-9)
            print(f"{task:<12} {len(results):>5} {per_demo:>7.1f} {fps:>8.1f} "
                  f"{sum(r.success for r in results):>4}/{len(results):<3} {np.mean(seen):>9.2f} "
                  f"{min(moves):>6.3f}-{max(moves):<7.3f} {min(turns):>7.1f}-{max(turns):<8.1f}")


if __name__ == "__main__":
    main()
