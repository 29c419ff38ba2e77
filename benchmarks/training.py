#!/usr/bin/env python3
"""Training throughput and the held-out metrics of trained runs (the training issue's figures).

    python benchmarks/training.py [--config config/training/serve_bread_flow.yaml] [--steps 20]
                                  [--runs runs/serve_bread_flow runs/serve_bread_act ...]

1. Throughput: builds the configured run's datasets (cached images) and policy, then times ``--steps`` training
   steps exactly as ``humanego_training train`` runs them (batch augmentation, loss, backward, AdamW, EMA) with the
   config's threads, and the evaluation's prediction (flow matching: the configured Euler steps) on the held-out
   set: samples/s of both, and the projected time of the configured epochs.
2. Metrics: for each run folder in ``--runs``, the final ``eval_snapshots/eval_ep_XXXX.json`` (DESIGN.md section 6
   names, EMA weights, held-out recordings) against the issue's goals, with the run's training time.

Nothing is asserted; the figures are printed as tables. The throughput step trains nothing that is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from humanego_policy.checkpoint import load_checkpoint
from humanego_training.evaluate import predict_dataset
from humanego_training.train import Trainer, load_training_config

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"pos_err_w_m": ("<=", 0.02), "rot_err_w_deg": ("<=", 5.0), "grasp_f1_w": (">=", 0.9), "done_acc": (">=", 0.95)}
HUMANEGO = {"pos_err_w_m": 0.037, "rot_err_w_deg": 6.4, "grasp_f1_w": 0.86, "done_acc": 0.91}
COLUMNS = ("pos_err_k1_m", "pos_err_kK_m", "pos_err_w_m", "rot_err_k1_deg", "rot_err_kK_deg", "rot_err_w_deg",
           "grasp_f1_k1", "grasp_f1_kK", "grasp_f1_w", "done_acc", "zero_state_ratio")


def throughput(config_path: Path, steps: int) -> None:
    config = load_training_config(config_path)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        trainer = Trainer(config, str(config_path), Path(out), restart=True, progress=False)
        setup_s = time.perf_counter() - started
        batches = iter(trainer.loader)
        trainer.train_step(next(batches))  # first-call overheads (allocations, lazy init) are not throughput
        done = samples = 0
        started = time.perf_counter()
        while done < steps:
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(trainer.loader)
                continue
            trainer.train_step(batch)
            samples += batch["image"].shape[0]
            done += 1
        train_s = time.perf_counter() - started
        eval_rate = None
        if trainer.eval_set is not None:
            n = min(len(trainer.eval_set), 4 * config.train.eval_batch_size)
            started = time.perf_counter()
            predict_dataset(trainer.eval_policy(), trainer.eval_set, config.train.eval_batch_size, trainer.device,
                            indices=range(n))
            eval_rate = n / (time.perf_counter() - started)
    rate = samples / train_s
    per_epoch = len(trainer.loader) * config.train.batch_size / rate
    print(f"\n## Throughput: {config_path} ({config.policy.type}, device {trainer.device}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores)\n")
    print("| training samples | held-out samples | setup (datasets, model) s | train samples/s | eval samples/s | "
          "projected epoch s | projected training min |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(trainer.train_set)} | {len(trainer.eval_set) if trainer.eval_set else 0} | {setup_s:.1f} | "
          f"{rate:.1f} | {eval_rate or float('nan'):.1f} | {per_epoch:.1f} | "
          f"{config.train.epochs * per_epoch / 60:.1f} (without evaluations) |")


def final_snapshot(run: Path) -> tuple[dict, dict]:
    snapshots = sorted((run / "eval_snapshots").glob("eval_ep_*.json"))
    if not snapshots:
        raise FileNotFoundError(f"{run}: no eval_snapshots/eval_ep_*.json (train with held-out recordings first)")
    checkpoint = run / "latest.pt"
    history = {}
    if checkpoint.is_file():
        history = (load_checkpoint(checkpoint).training or {}).get("history", {})
    return json.loads(snapshots[-1].read_text()), history


def metrics_table(runs: list[Path]) -> None:
    print("\n## Held-out metrics (final evaluation, EMA weights)\n")
    print("| run | epoch | samples | train min | " + " | ".join(COLUMNS) + " |")
    print("|---|---|---|---|" + "---|" * len(COLUMNS))
    rows = []
    for run in runs:
        snapshot, history = final_snapshot(run)
        m = snapshot["metrics"]
        minutes = history.get("seconds", float("nan")) / 60
        cells = [f"{m[c] * 100:.2f} cm" if c.endswith("_m") else f"{m[c]:.2f}" if c.endswith("_deg") else f"{m[c]:.3f}"
                 for c in COLUMNS]
        print(f"| {run} | {snapshot.get('epoch')} | {m['samples']} | {minutes:.1f} | " + " | ".join(cells) + " |")
        rows.append((run, m))
    print("\n| goal | " + " | ".join(str(r) for r, _ in rows) + " | HumanEgo (real data) |")
    print("|---|" + "---|" * (len(rows) + 1))
    for key, (op, bound) in GOALS.items():
        scale, unit = (100.0, " cm") if key.endswith("_m") else (1.0, "")
        cells = []
        for _, m in rows:
            ok = m[key] <= bound if op == "<=" else m[key] >= bound
            cells.append(f"{m[key] * scale:.3f}{unit} {'met' if ok else 'NOT met'}")
        print(f"| {key} {op} {bound * scale:g}{unit} | " + " | ".join(cells) + f" | {HUMANEGO[key] * scale:g}{unit} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config/training/serve_bread_flow.yaml")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="run folders whose metrics to tabulate")
    parser.add_argument("--no-throughput", action="store_true", help="only the metrics table")
    args = parser.parse_args()
    if not args.no_throughput:
        throughput(args.config, args.steps)
    if args.runs:
        metrics_table(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
