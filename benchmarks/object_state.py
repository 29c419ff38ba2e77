#!/usr/bin/env python3
"""Object state on synthetic serve_bread recordings: position/yaw error against the simulator and speed.

    python benchmarks/object_state.py [--recordings DIR ...] [--num 2] [--size 480]

Without --recordings, generates --num demos (seed 0...) at --size into a temporary folder. Per recording:
rectified frames, MPS camera poses and hand (humanego_perception.object_eval.recording_inputs); masks from the
ColourShapeDetector (IoU against the simulator's labels) and, as an ablation, the simulator's masks; then
estimate_object_states. Errors are those of the keypoint centroid against the truth of the SAME surface points
(object_eval.position_errors): median / p90 over valid frames per object and overall, and the bread's yaw
error. Speed: frames/s of detection, keypoints+tracking, triangulation (one core of the project machine).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from humanego_perception.object_eval import position_errors, recording_inputs
from humanego_perception.objects import ColourShapeDetector, estimate_object_states, prompts_from_task
from humanego_sim.aria_recording import Recording
from humanego_sim.generate_demos import generate
from humanego_sim.tasks import load_task


def iou_median(detected, truth, name, min_px=40) -> float:
    ious = [(d[name] & t[name]).sum() / (d[name] | t[name]).sum()
            for d, t in zip(detected, truth, strict=True) if t[name].sum() >= min_px]
    return float(np.median(ious)) if ious else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", nargs="*", type=Path)
    parser.add_argument("--num", type=int, default=2)
    parser.add_argument("--size", type=int, default=480, help="recorded and rectified size (square)")
    args = parser.parse_args()
    prompts = prompts_from_task(load_task("serve_bread"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = args.recordings
        if not paths:
            results = generate("serve_bread", args.num, Path(tmp), seed=0, width=args.size, height=args.size,
                               progress=False)
            paths = [Path(tmp) / r.name for r in results]
        errors = {(source, p.name): [] for source in ("detector", "gt masks") for p in prompts}
        yaw, speed = [], {"detection": [], "tracking": [], "triangulation": []}
        for path in paths:
            inputs = recording_inputs(Recording.open(path), args.size, args.size)
            detector = ColourShapeDetector()
            started = time.perf_counter()
            detected = [detector.detect(f, prompts) for f in inputs.frames]
            speed["detection"].append(len(detected) / (time.perf_counter() - started))
            print(f"{path.name}: {len(detected)} frames; detector median IoU "
                  + ", ".join(f"{p.name} {iou_median(detected, inputs.label_masks, p.name):.2f}" for p in prompts))
            for source, masks in (("detector", detected), ("gt masks", inputs.label_masks)):
                timings = {}
                tracks = estimate_object_states(inputs.frames, inputs.camera, inputs.T_world_camera, masks, prompts,
                                                inputs.T_world_hand, inputs.hand_valid, inputs.grasp,
                                                timings=timings)
                if source == "detector":
                    speed["tracking"].append(len(detected) / max(timings["tracking_s"], 1e-9))
                    speed["triangulation"].append(len(detected) / max(timings["triangulation_s"], 1e-9))
                for p in prompts:
                    e = position_errors(tracks[p.name], inputs)
                    valid = tracks[p.name].valid.mean()
                    if e is None:
                        print(f"  {source:<9} {p.name:<6} valid {valid:.2f}: no error (no valid frame/keypoint)")
                        continue
                    errors[(source, p.name)].append(e.position_m)
                    if p.name == "bread":
                        yaw.append(e.yaw_deg)
                    print(f"  {source:<9} {p.name:<6} valid {valid:.2f} position median "
                          f"{1e3 * np.median(e.position_m):5.1f} mm p90 {1e3 * np.percentile(e.position_m, 90):5.1f} mm"
                          + (f", yaw median {np.median(e.yaw_deg):.1f} deg" if p.name == "bread" else ""))
        print("\nall recordings (position error over valid frames, mm):")
        for source in ("detector", "gt masks"):
            every = []
            for p in prompts:
                e = np.concatenate(errors[(source, p.name)]) if errors[(source, p.name)] else np.array([np.nan])
                every.append(e)
                print(f"  {source:<9} {p.name:<6} median {1e3 * np.median(e):5.1f} "
                      f"p90 {1e3 * np.percentile(e, 90):5.1f}")
            e = np.concatenate(every)
            print(f"  {source:<9} {'all':<6} median {1e3 * np.median(e):5.1f} p90 {1e3 * np.percentile(e, 90):5.1f}")
        if yaw:
            y = np.concatenate(yaw)
            print(f"bread yaw error (both sources): median {np.median(y):.1f} deg, p90 {np.percentile(y, 90):.1f} deg")
        print("frames/s: " + ", ".join(f"{k} {np.mean(v):.0f}" for k, v in speed.items()))


if __name__ == "__main__":
    main()
