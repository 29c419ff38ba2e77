#!/usr/bin/env python3
"""ACT's figures from a run trained by ``humanego_training train --config config/training/serve_bread_act.yaml``.

    python benchmarks/act.py --run runs/serve_bread_act [--flow-run runs/serve_bread_flow] [--threads 1]

1. Held-out metrics (DESIGN.md section 6, EMA weights, every frame of the run's held-out recordings): ACT over
   its own 100-step chunk, and over the first ``--compare-steps`` (50) steps, the flow policy's horizon, so the
   horizon-weighted ``*_w`` figures compare with it (``--flow-run``: the flow run on the same recordings, which
   must be its held-out ones too).
2. Temporal ensembling (ACT, section 3.3) replayed offline on the held-out recordings: a chunk predicted at every
   frame, the commanded position at the next step taken from the newest chunk alone or ensembled over every chunk
   covering it (:class:`humanego_core.ensembling.TemporalEnsembler`, world frame); error against the recorded hand
   and smoothness (mean norm of the second difference of the commanded positions, mm per step^2).
3. Export: the run's checkpoint as a bundle (ONNX, parity with torch checked) and the per-chunk latency of
   ``PolicyRuntime.predict`` with onnxruntime and torch (p50/p99, CPU ms per call; see benchmarks/policy_latency.py
   on reading figures taken on a busy machine).

Nothing is asserted; the figures are printed as markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from humanego_core.actions import NormStats, decode_actions
from humanego_core.ensembling import TemporalEnsembler
from humanego_core.metrics import action_metrics
from humanego_policy.checkpoint import load_checkpoint
from humanego_policy.runtime import PolicyRuntime
from humanego_training.dataset import PolicyDataset, load_recording
from humanego_training.evaluate import predict_dataset, run_data_config
from humanego_training.export import export_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_latency import measure  # noqa: E402 (the benchmark next to this one)

COLUMNS = ("pos_err_k1_m", "pos_err_kK_m", "pos_err_w_m", "rot_err_k1_deg", "rot_err_kK_deg", "rot_err_w_deg",
           "grasp_f1_k1", "grasp_f1_kK", "grasp_f1_w", "done_acc", "zero_state_ratio")


def held_out_set(run: Path):
    """(checkpoint, policy, stats, dataset of every frame of the held-out recordings, their RecordingFrames)."""
    checkpoint = load_checkpoint(run)
    policy = checkpoint.build_policy(use_ema=True)
    data = dataclasses.replace(run_data_config(checkpoint.path), frame_stride=1)
    stats = NormStats.from_dict(checkpoint.dataset_stats, f"{checkpoint.path}: dataset_stats")
    held_out = json.loads((checkpoint.path.parent / "config.json").read_text())["split"]["held_out"]
    if not held_out:
        raise SystemExit(f"{run}: the run has no held-out recordings")
    frames = [load_recording(Path(r), data) for r in held_out]
    dataset = PolicyDataset(frames, data, stats, policy.horizon, policy.image_size)
    return checkpoint, policy, stats, dataset, frames


def metrics_over(actions, done, dataset, stats, steps: int, k: int) -> dict:
    pred_T, pred_grasp = decode_actions(actions[:, :steps], stats)
    target_T, target_grasp = decode_actions(dataset.actions[:, :steps], stats)
    return action_metrics(pred_T, pred_grasp, target_T, target_grasp, dataset.action_valid[:, :steps], done,
                          dataset.done, k)


def print_metrics(rows: list[tuple[str, dict]]) -> None:
    print("| policy | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for label, m in rows:
        cells = [f"{m[c] * 100:.2f} cm" if c.endswith("_m") else f"{m[c]:.2f}" if c.endswith("_deg") else f"{m[c]:.3f}"
                 for c in COLUMNS]
        print(f"| {label} | " + " | ".join(cells) + " |")


def ensembling_figures(actions, dataset, stats, frames, dt: float, decay: float) -> dict[str, float]:
    """Commanded next-step positions from the newest chunk vs the ensemble, over every held-out recording."""
    pred_T, pred_grasp = decode_actions(actions, stats)
    target_T, _ = decode_actions(dataset.actions[:, :1], stats)
    errors = {"newest chunk": [], "ensembled": []}
    roughness = {"newest chunk": [], "ensembled": [], "recorded hand": []}
    for r, rec in enumerate(frames):
        rows = np.flatnonzero(dataset.recording == r)
        rows = rows[np.argsort(dataset.frame[rows])]
        ensembler = TemporalEnsembler(decay)
        newest, ensembled, truth, valid = [], [], [], []
        for row in rows:
            f = dataset.frame[row]
            T_world_ref = rec.T_world_ref[f]
            world = (T_world_ref @ pred_T[row])[:, :3, 3]  # (H, 3)
            ensembler.add(rec.ts[f] + dt, dt, np.c_[world, pred_grasp[row]])
            newest.append(world[0])
            ensembled.append(ensembler.query(rec.ts[f] + dt)[:3])
            truth.append((T_world_ref @ target_T[row, 0])[:3, 3])
            valid.append(dataset.action_valid[row, 0])
        newest, ensembled, truth, valid = map(np.asarray, (newest, ensembled, truth, valid))
        for label, path in (("newest chunk", newest), ("ensembled", ensembled)):
            errors[label].extend(np.linalg.norm(path - truth, axis=1)[valid])
        for label, path in (("newest chunk", newest), ("ensembled", ensembled), ("recorded hand", truth)):
            roughness[label].extend(np.linalg.norm(np.diff(path, 2, axis=0), axis=1))
    return {**{f"next-step error {k} (cm)": 100 * float(np.mean(v)) for k, v in errors.items()},
            **{f"roughness {k} (mm/step^2)": 1000 * float(np.mean(v)) for k, v in roughness.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/serve_bread_act"), help="the ACT run folder")
    parser.add_argument("--flow-run", type=Path, help="a flow-matching run trained on the same split")
    parser.add_argument("--compare-steps", type=int, default=50, help="steps of the comparison with flow matching")
    parser.add_argument("--decay", type=float, default=0.01, help="temporal ensembling decay (ACT: 0.01)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of inference (default 2)")
    parser.add_argument("--runs", type=int, default=200, help="timed chunks per backend")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    checkpoint, policy, stats, dataset, frames = held_out_set(args.run)
    if policy.policy_type != "act":
        raise SystemExit(f"{args.run}: a {policy.policy_type} run, not ACT")
    _, actions, done = predict_dataset(policy, dataset)
    H, steps = policy.horizon, min(args.compare_steps, policy.horizon)
    recordings = [str(r.root) for r in frames]
    print(f"\n## Held-out metrics: {len(dataset)} frames of {len(frames)} recordings, EMA weights\n")
    rows = [(f"ACT, {H} steps (K={steps})", metrics_over(actions, done, dataset, stats, H, steps)),
            (f"ACT, first {steps} steps", metrics_over(actions, done, dataset, stats, steps, steps))]
    if args.flow_run:
        _, flow, flow_stats, flow_set, flow_frames = held_out_set(args.flow_run)
        if [str(r.root) for r in flow_frames] != recordings:
            raise SystemExit(f"{args.flow_run} holds out other recordings than {args.run}: not comparable")
        _, flow_actions, flow_done = predict_dataset(flow, flow_set)
        rows.append((f"flow matching, {flow.horizon} steps",
                     metrics_over(flow_actions, flow_done, flow_set, flow_stats, steps, steps)))
    print_metrics(rows)

    print(f"\n## Temporal ensembling replayed on the held-out recordings (decay {args.decay})\n")
    figures = ensembling_figures(actions, dataset, stats, frames, checkpoint.dt, args.decay)
    print("| figure | value |\n|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value:.3f} |")

    with tempfile.TemporaryDirectory() as tmp:
        result = export_bundle(checkpoint.path, Path(tmp) / "serve_bread_act", progress=False)
        size = sum(result.files.values()) / 1e6
        print(f"\n## Export and latency\n\nbundle: layout {result.layout}, {size:.1f} MB, onnxruntime vs torch max abs "
              f"diff {result.parity_max_abs_diff:.2e}; {args.threads} threads, {args.runs} chunks, load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
        print("| backend | p50 ms | p99 ms | mean ms | CPU ms |\n|---|---|---|---|---|")
        for backend in ("onnxruntime", "torch"):
            runtime = PolicyRuntime(result.path, backend=backend, threads=args.threads)
            ms, cpu_ms = measure(runtime, args.runs, args.warmup, backend)
            p50, p99 = np.percentile(ms, [50, 99])
            print(f"| {backend} | {p50:.2f} | {p99:.2f} | {ms.mean():.2f} | {cpu_ms:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
