"""Offline evaluation of a policy on preprocessed recordings: DESIGN.md section 6 metrics and videos.

:func:`predict_dataset` runs a policy over a :class:`~humanego_training.dataset.PolicyDataset` with seeded
sampling noise (the same noise every time, so evaluations of one checkpoint repeat exactly);
:func:`dataset_metrics` decodes predictions and targets to poses in the reference frame and computes
:func:`humanego_core.metrics.action_metrics` (``pos_err_*_m``, ``rot_err_*_deg``, ``grasp_f1_*``, ``done_acc``,
``zero_state_ratio``; ``k`` = the horizon unless given). :func:`render_recording` writes an mp4 per recording:
the policy's image, the ground-truth future path (green) and the predicted one (red; filled dots where the
gripper is closed) projected with the sample's intrinsics, and the done probability against the label.

``humanego_training evaluate --checkpoint RUN_OR_FILE --recordings ...`` re-runs this for any recordings with
the data settings of the run (its ``config.json``) and the checkpoint's statistics and token layout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from humanego_core import training_data
from humanego_core.actions import NormStats, decode_actions
from humanego_core.config import ConfigError, from_dict
from humanego_core.metrics import action_metrics
from humanego_policy.checkpoint import CheckpointError, load_checkpoint
from humanego_policy.policies import Policy
from humanego_training.dataset import DataConfig, PolicyDataset, expand_recordings, load_recording, scale_intrinsics
from humanego_training.stage_cache import write_json_atomic

MODEL_KEYS = ("image", "tokens", "token_mask")
GT_COLOUR = (40, 220, 60)
PRED_COLOUR = (240, 40, 40)
RENDER_MIN_SIZE = 288  # px: videos are upscaled to at least this (and to multiples of 16 for H.264)


@torch.no_grad()
def predict_dataset(policy: Policy, dataset: PolicyDataset, batch_size: int = 128, device: str | torch.device = "cpu",
                    seed: int = 0, indices: Sequence[int] | None = None,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample indices (N,), predicted actions (N, H, 10) normalised, done probabilities (N,)) of ``indices``
    (default: every sample), with sampling noise drawn from ``seed``."""
    was_training = policy.training
    policy.eval()
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    generator = torch.Generator().manual_seed(seed)
    actions, done = [], []
    for start in tqdm(range(0, len(indices), batch_size), desc="evaluate", unit="batch", disable=not progress,
                      leave=False):
        chunk = indices[start:start + batch_size]
        batch = {k: torch.from_numpy(v).to(device) for k, v in _model_inputs(dataset, chunk).items()}
        noise = policy.sample_noise(len(chunk), generator=generator).to(device)
        out = policy.predict(batch, noise=noise)
        actions.append(out["actions"].float().cpu().numpy())
        done.append(out["done_prob"].float().cpu().numpy())
    policy.train(was_training)
    return indices, np.concatenate(actions), np.concatenate(done)


def _model_inputs(dataset: PolicyDataset, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {"image": dataset.images[indices].astype(np.float32) / np.float32(255.0),
            "tokens": dataset.tokens[indices], "token_mask": dataset.token_mask[indices]}


def dataset_metrics(dataset: PolicyDataset, stats: NormStats, indices: np.ndarray, actions: np.ndarray,
                    done_prob: np.ndarray, k: int | None = None) -> dict[str, float]:
    """DESIGN.md section 6 metrics of predictions for ``dataset[indices]`` (``k``: step of the *_kK metrics,
    default the horizon), plus ``samples`` (N)."""
    pred_T, pred_grasp = decode_actions(actions, stats)
    target_T, target_grasp = decode_actions(dataset.actions[indices], stats)
    metrics = action_metrics(pred_T, pred_grasp, target_T, target_grasp, dataset.action_valid[indices], done_prob,
                             dataset.done[indices], k or actions.shape[1])
    return {**metrics, "samples": len(indices)}


def render_recording(path: Path, dataset: PolicyDataset, stats: NormStats, recording: int, indices: np.ndarray,
                     actions: np.ndarray, done_prob: np.ndarray, fps: float = 10.0) -> Path:
    """An mp4 of the samples of ``dataset.recordings[recording]`` among ``indices`` (with their ``actions`` and
    ``done_prob``), in frame order: ground truth green, prediction red, done probability and label."""
    rows = np.flatnonzero(dataset.recording[indices] == recording)
    if not len(rows):
        raise ValueError(f"no evaluated sample of {dataset.recordings[recording]} to render")
    rows = rows[np.argsort(dataset.frame[indices[rows]])]
    h, w = dataset.image_size
    factor = max(1, math.ceil(RENDER_MIN_SIZE / min(h, w)))
    size = (_multiple(h * factor, 16), _multiple(w * factor, 16))
    pred_T, pred_grasp = decode_actions(actions[rows], stats)
    target_T, target_grasp = decode_actions(dataset.actions[indices[rows]], stats)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
        for j, row in enumerate(rows):
            i = indices[row]
            image = cv2.resize(np.ascontiguousarray(dataset.images[i].transpose(1, 2, 0)), (size[1], size[0]),
                               interpolation=cv2.INTER_LINEAR)
            K = scale_intrinsics(dataset.K[i].astype(np.float64), (h, w), size)
            T_camera_ref = dataset.T_camera_ref[i].astype(np.float64)
            valid = dataset.action_valid[i]
            _draw_path(image, K, T_camera_ref, target_T[j][valid], target_grasp[j][valid], GT_COLOUR)
            _draw_path(image, K, T_camera_ref, pred_T[j], pred_grasp[j], PRED_COLOUR)
            label = "done" if dataset.done[i] >= 0.5 else "not done"
            _text(image, f"frame {dataset.frame[i]}  done p={done_prob[row]:.2f} ({label})", 0)
            _text(image, "green: truth  red: predicted", 1)
            writer.append_data(image)
    tmp.replace(path)
    return path


def _multiple(value: int, base: int) -> int:
    return int(math.ceil(value / base) * base)


def _draw_path(image: np.ndarray, K: np.ndarray, T_camera_ref: np.ndarray, T_ref: np.ndarray, grasp: np.ndarray,
               colour) -> None:
    """Polyline of the positions of ``T_ref`` (N, 4, 4) projected into ``image``; dots filled where grasped."""
    if not len(T_ref):
        return
    p = T_ref[:, :3, 3] @ T_camera_ref[:3, :3].T + T_camera_ref[:3, 3]
    front = p[:, 2] > 1e-3
    uv = (p[front] @ K.T)[:, :2] / p[front, 2:3]
    if not len(uv):
        return
    points = np.round(np.clip(uv, -1e4, 1e4) * 16).astype(np.int32)
    cv2.polylines(image, [points.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA, 4)
    for point, closed in zip(points, grasp[front] >= 0.5, strict=True):
        cv2.circle(image, tuple(int(v) for v in point), 3 * 16, colour, -1 if closed else 1, cv2.LINE_AA, 4)


def _text(image: np.ndarray, text: str, line: int) -> None:
    y = 14 + 16 * line
    cv2.putText(image, text, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)


def evaluate_split(policy: Policy, dataset: PolicyDataset, stats: NormStats, out_json: Path | None,
                   render_dir: Path | None = None, renders: int = 0, batch_size: int = 128,
                   device: str | torch.device = "cpu", seed: int = 0, max_samples: int | None = None,
                   k: int | None = None, extra: dict | None = None, progress: bool = False) -> dict:
    """Metrics of ``policy`` on ``dataset`` (evenly spaced ``max_samples`` of it when given), written to
    ``out_json`` with ``extra`` fields; mp4s of the first ``renders`` recordings into ``render_dir``."""
    indices = None
    if max_samples is not None and max_samples < len(dataset):
        indices = np.unique(np.linspace(0, len(dataset) - 1, max_samples).round().astype(np.int64))
    indices, actions, done_prob = predict_dataset(policy, dataset, batch_size, device, seed, indices, progress)
    result = {**(extra or {}), "metrics": dataset_metrics(dataset, stats, indices, actions, done_prob, k),
              "recordings": [str(r) for r in dataset.recordings], "rejected": dict(dataset.rejected)}
    if render_dir is not None and renders:
        rendered = []
        for r in sorted(set(dataset.recording[indices].tolist()))[:renders]:
            name = f"{Path(out_json).stem if out_json else 'eval'}_{dataset.recordings[r].name}.mp4"
            rendered.append(str(render_recording(render_dir / name, dataset, stats, r, indices, actions, done_prob)))
        result["renders"] = rendered
    if out_json is not None:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(out_json), result)
    return result


def format_metrics(metrics: dict) -> str:
    return (f"pos_err_w {metrics['pos_err_w_m'] * 100:.2f} cm, rot_err_w {metrics['rot_err_w_deg']:.2f} deg, "
            f"grasp_f1_w {metrics['grasp_f1_w']:.3f}, done_acc {metrics['done_acc']:.3f} "
            f"({metrics['samples']} samples)")


# ----- CLI ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanego_training evaluate",
        description="Evaluate a trained policy checkpoint on preprocessed recordings: the offline metrics of "
                    "DESIGN.md section 6 (pos/rot error at step 1, step K and horizon-weighted, grasp F1, done "
                    "accuracy, zero-state ratio) and mp4 videos of predicted vs true future paths. The data "
                    "settings (observation image, action rate) come from the run's config.json next to the "
                    "checkpoint; statistics and token layout from the checkpoint.",
        epilog="example: humanego run humanego_training evaluate --checkpoint runs/serve_bread_flow "
               "--recordings build/data/serve_bread/demo_0007 --out runs/serve_bread_flow/evaluate")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a run folder (its latest.pt) or a .pt file")
    parser.add_argument("--recordings", type=Path, nargs="+", required=True,
                        help="preprocessed recordings, or folders of them")
    parser.add_argument("--out", type=Path, help="folder for metrics.json and videos (default <run>/evaluate)")
    parser.add_argument("--renders", type=int, default=2, help="videos of the first N recordings (default 2)")
    parser.add_argument("--k", type=int, help="step of the *_kK metrics (default: the horizon)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    parser.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA weights")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run_data_config(checkpoint_path: Path) -> DataConfig:
    """The data settings the checkpoint's run trained with (``config.json`` next to it)."""
    config_json = checkpoint_path.parent / "config.json"
    if not config_json.is_file():
        raise FileNotFoundError(f"{config_json}: the run's config.json is missing (it holds the data settings the "
                                "checkpoint was trained with)")
    data = json.loads(config_json.read_text())
    return from_dict(DataConfig, data["data"], str(config_json), "data")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = pick_device(args.device)
    try:
        checkpoint = load_checkpoint(args.checkpoint)
        if checkpoint.policy_type == "egomimic":
            raise CheckpointError(f"{checkpoint.path}: an EgoMimic run (HDF5 data) is evaluated during training (its "
                                  "eval_snapshots); this command evaluates policies of preprocessed recordings")
        policy = checkpoint.build_policy(use_ema=not args.raw_weights).to(device)
        data = run_data_config(checkpoint.path)
        stats = NormStats.from_dict(checkpoint.dataset_stats, f"{checkpoint.path}: dataset_stats")
        if checkpoint.token_layout.ict_config() != data.ict.ict_config():
            raise CheckpointError(f"{checkpoint.path}: token layout {checkpoint.token_layout.describe()} differs from "
                                  f"the run's config.json data.ict")
        recordings = expand_recordings(args.recordings)
        frames = [load_recording(r, data) for r in recordings]
        dataset = PolicyDataset(frames, data, stats, policy.horizon, policy.image_size, progress=not args.no_progress)
    except (CheckpointError, ConfigError, FileNotFoundError, training_data.TrainingDataError, ValueError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    out = args.out or checkpoint.path.parent / "evaluate"
    result = evaluate_split(policy, dataset, stats, out / "metrics.json", out, args.renders, args.batch_size, device,
                            args.seed, k=args.k, extra={"checkpoint": str(checkpoint.path)},
                            progress=not args.no_progress)
    print(f"{len(recordings)} recordings: {format_metrics(result['metrics'])}")
    print(json.dumps(result["metrics"], indent=1))
    print(f"-> {out / 'metrics.json'}" + (f", videos {', '.join(result.get('renders', []))}" if args.renders else ""))
    return 0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"[ERROR] device {name}: CUDA is not available on this machine")
    return torch.device(name)


if __name__ == "__main__":
    sys.exit(main())
