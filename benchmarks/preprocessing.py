#!/usr/bin/env python3
"""Offline preprocessing end to end against the simulator's ground truth (the views/preprocessing issue's figures).

    python benchmarks/preprocessing.py [--num 20] [--size 480] [--out build/bench/serve_bread]
                                       [--recordings DIR] [--config config/preprocess.yaml] [--force]

Generates --num synthetic serve_bread recordings (--size x --size fisheye video; kept in --out, so a rerun
reuses them), preprocesses each with the shipped configuration (``humanego_training.preprocess.Preprocessor``,
stage caches in each recording, --force recomputes), then compares what preprocessing wrote with gt/, which
preprocessing never reads:

- hand: position and rotation error of ``T_hand_to_world`` vs gt ``T_world_hand`` on kept frames; grasp F1
  vs gt ``grasped`` on kept frames and on every frame with a valid hand (goal F1 >= 0.95);
- objects: position error of the estimated origin against the truth of the same surface points
  (``humanego_perception.object_eval.position_errors``), bread yaw error (goal median <= 1.5 cm);
- human arm mask: IoU of ``mask_arm.png`` vs gt ``arm_mask`` rectified the same way (goal >= 0.8);
- kept/dropped frames by reason; stage speed (frames/s, from the recordings' report.json files; meaningful
  when the stages ran, i.e. on the first run or with --force, not when they were loaded from the caches).

Nothing is asserted; the figures are printed as a table.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from humanego_core import training_data
from humanego_core.geometry import geodesic_angle
from humanego_core.image_warp import Rectifier
from humanego_perception.object_eval import RecordingInputs, position_errors
from humanego_sim.aria_recording import Recording
from humanego_sim.generate_demos import generate
from humanego_sim.tasks import load_task
from humanego_training.human_recording import find_recordings
from humanego_training.preprocess import Preprocessor, load_preprocess_config
from humanego_training.report import REPORT_JSON

ROOT = Path(__file__).resolve().parents[1]


def f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = np.sum(pred & truth)
    denominator = 2 * tp + np.sum(pred & ~truth) + np.sum(~pred & truth)
    return float(2 * tp / denominator) if denominator else 1.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.sum(a | b)
    return float(np.sum(a & b) / union) if union else 1.0


def evaluate(recording: Path, result, config) -> dict:
    rec = Recording.open(recording)
    gt = rec.gt(masks=False)
    rectifier = Rectifier(rec.camera_model(), config.image.width, config.image.height, config.image.focal,
                          config.image.rotate_cw90)
    out = {"hand_pos_m": [], "hand_rot_deg": [], "grasp_pred": [], "grasp_gt": [], "arm_iou": []}
    for path in sorted((recording / training_data.ALL_DATA).glob(f"[0-9]*/{training_data.FILE_NAME}")):
        data = json.loads(path.read_text())
        i = data["metadata"]["frame_index"]
        hand = data["entities"]["hands"]["right"]
        T = np.array(hand["T_hand_to_world"])
        out["hand_pos_m"].append(np.linalg.norm(T[:3, 3] - gt["T_world_hand"][i][:3, 3]))
        out["hand_rot_deg"].append(np.degrees(geodesic_angle(T[:3, :3], gt["T_world_hand"][i][:3, :3])))
        out["grasp_pred"].append(hand["grasp"] >= 0.5)
        out["grasp_gt"].append(bool(gt["grasped"][i]))
        mask = cv2.imread(str(recording / data["obs"]["mask_arm_path"]), cv2.IMREAD_GRAYSCALE) > 0
        truth = rectifier(rec.gt_mask("arm_mask", i).astype(np.uint8), "nearest") > 0
        out["arm_iou"].append(iou(mask, truth))
    valid = result.hands.valid
    out["grasp_all_pred"] = list(result.hands.grasp[valid] >= 0.5)
    out["grasp_all_gt"] = list(gt["grasped"][valid].astype(bool))
    window = result.window
    gt_window = {k: (v[window] if isinstance(v, np.ndarray) and v.shape[:1] == gt["t_ns"].shape else v)
                 for k, v in gt.items()}
    inputs = RecordingInputs([], result.camera, result.T_world_camera[window], result.hands.T_world_hand[window],
                             valid[window], result.hands.grasp[window], [], gt_window, rec.metadata["task"]["objects"])
    for name, track in result.objects.items():
        errors = position_errors(track, inputs)
        out[f"{name}_pos_m"] = list(errors.position_m) if errors else []
        out[f"{name}_yaw_deg"] = list(errors.yaw_deg) if errors else []
    return out


def stats(values, scale: float = 1.0) -> str:
    v = np.asarray(values, dtype=float) * scale
    if v.size == 0:
        return "n/a"
    return f"median {np.median(v):.2f}, p90 {np.percentile(v, 90):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--num", type=int, default=20, help="synthetic recordings to generate (default 20)")
    parser.add_argument("--size", type=int, default=480, help="their fisheye video size (default 480)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "serve_bread",
                        help="where the generated recordings are kept (default build/bench/serve_bread)")
    parser.add_argument("--recordings", type=Path, help="use these synthetic recordings instead of generating")
    parser.add_argument("--config", type=Path, help="preprocessing YAML (default config/preprocess.yaml)")
    parser.add_argument("--force", action="store_true", help="recompute every stage (ignore the caches)")
    args = parser.parse_args()

    folder = args.recordings
    if folder is None:
        generate("serve_bread", args.num, args.out, width=args.size, height=args.size)
        folder = args.out
    config = load_preprocess_config(args.config)
    pre = Preprocessor(load_task("serve_bread"), config, force=args.force)
    totals: dict[str, list] = {}
    dropped: Counter = Counter()
    stage_frames: Counter = Counter()
    stage_seconds: Counter = Counter()
    frames = kept = 0
    for recording in find_recordings(folder):
        result = pre.run(recording)
        frames += result.frames
        kept += result.kept
        dropped.update(result.dropped)
        for name, stage in json.loads((recording / "preprocess" / REPORT_JSON).read_text())["stages"].items():
            stage_frames[name] += stage["frames"]
            stage_seconds[name] += stage["seconds"]
        for key, values in evaluate(recording, result, config).items():
            totals.setdefault(key, []).extend(values)
        print(f"{recording.name}: kept {result.kept}/{result.frames} in {result.seconds:.1f} s")

    objects = sorted(k[:-len("_pos_m")] for k in totals if k.endswith("_pos_m") and k != "hand_pos_m")
    rows = [
        ("recordings / frames / kept", f"{len(find_recordings(folder))} / {frames} / {kept}"),
        ("hand position error (mm)", stats(totals["hand_pos_m"], 1000)),
        ("hand rotation error (deg)", stats(totals["hand_rot_deg"])),
        ("grasp F1, kept frames", f"{f1(np.array(totals['grasp_pred']), np.array(totals['grasp_gt'])):.3f}"),
        ("grasp F1, all valid hand frames",
         f"{f1(np.array(totals['grasp_all_pred']), np.array(totals['grasp_all_gt'])):.3f}"),
        *[(f"{name} position error (cm)", stats(totals[f"{name}_pos_m"], 100)) for name in objects],
        ("all objects position error (cm)", stats(sum((totals[f"{n}_pos_m"] for n in objects), []), 100)),
        ("bread yaw error (deg)", stats(totals.get("bread_yaw_deg", []))),
        ("human arm mask IoU",
         f"mean {np.mean(totals['arm_iou']):.3f}, p10 {np.percentile(totals['arm_iou'], 10):.3f}"),
        *[(f"dropped: {reason}", str(n)) for reason, n in sorted(dropped.items())],
        *[(f"stage {name} (frames/s)",
           f"{stage_frames[name] / stage_seconds[name]:.1f}" if stage_seconds[name] else "-")
          for name in stage_seconds],
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
