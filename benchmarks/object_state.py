#!/usr/bin/env python3
"""Object state on synthetic serve_bread recordings: pose error against the simulator, and speed.

    python benchmarks/object_state.py [--recordings DIR ...] [--num 6] [--size 480]
                                      [--pose-method shape_fit|keypoints]

Without --recordings, generates --num demos (seed 0...) at --size into a temporary folder. Per recording:
rectified frames, MPS camera poses, the hand-state stage's hand pose and grasp
(humanego_perception.object_eval.recording_inputs); masks from the default ColourShapeDetector (median IoU
against the simulator's labels) and, as an ablation, the simulator's masks; then estimate_object_states with
the chosen pose method (objects.pose_method: shape_fit, the default, or keypoints: tracked, triangulated keypoints
with a rigid fit). Errors (object_eval.position_errors) are against the simulator's body poses (origin at the
base centre): position median / p90 over valid frames per object and over all objects, a box's yaw modulo 180
degrees, the fitted sizes (keypoints: their extents). Speed: detector frames/s, and shape-fit or
tracking + triangulation seconds per recording (one core of the project machine). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from humanego_perception.object_eval import position_errors, recording_inputs
from humanego_perception.objects import (
    ColourShapeDetector,
    ObjectStateConfig,
    estimate_object_states,
    prompts_from_task,
)
from humanego_sim.aria_recording import Recording
from humanego_sim.generate_demos import generate
from humanego_sim.tasks import load_task

SOURCES = ("detector", "sim masks")


def iou_median(detected, truth, name, min_px=40) -> float:
    ious = [(d[name] & t[name]).sum() / (d[name] | t[name]).sum()
            for d, t in zip(detected, truth, strict=True) if t[name].sum() >= min_px]
    return float(np.median(ious)) if ious else float("nan")


def mm(values) -> str:
    return f"median {1e3 * np.median(values):5.1f} p90 {1e3 * np.percentile(values, 90):5.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", nargs="*", type=Path)
    parser.add_argument("--num", type=int, default=6)
    parser.add_argument("--size", type=int, default=480, help="recorded and rectified size (square)")
    parser.add_argument("--pose-method", choices=("shape_fit", "keypoints"), default="shape_fit",
                        help="objects.pose_method: how an object is located in a static window")
    args = parser.parse_args()
    config = ObjectStateConfig(pose_method=args.pose_method)
    prompts = prompts_from_task(load_task("serve_bread"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = args.recordings
        if not paths:
            results = generate("serve_bread", args.num, Path(tmp), seed=0, width=args.size, height=args.size,
                               progress=False)
            paths = [Path(tmp) / r.name for r in results]
        position = {(s, p.name): [] for s in SOURCES for p in prompts}
        yaw = {s: [] for s in SOURCES}
        detection_fps, locate_s = [], []
        for path in paths:
            inputs = recording_inputs(Recording.open(path), args.size, args.size)
            detector = ColourShapeDetector()
            started = time.perf_counter()
            detected = [detector.detect(f, prompts) for f in inputs.frames]
            detection_fps.append(len(detected) / (time.perf_counter() - started))
            print(f"{path.name}: {len(detected)} frames; detector median IoU "
                  + ", ".join(f"{p.name} {iou_median(detected, inputs.label_masks, p.name):.2f}" for p in prompts))
            for source, masks in zip(SOURCES, (detected, inputs.label_masks), strict=True):
                timings = {}
                tracks = estimate_object_states(inputs.frames, inputs.camera, inputs.T_world_camera, masks, prompts,
                                                inputs.T_world_hand, inputs.hand_valid, inputs.grasp, config,
                                                timings=timings)
                if source == "detector":
                    locate_s.append(sum(timings.values()))
                for p in prompts:
                    track = tracks[p.name]
                    e = position_errors(track, inputs)
                    if e is None:
                        print(f"  {source:<9} {p.name:<6} valid {track.valid.mean():.2f}: no valid frame "
                              f"({', '.join(sorted(set(track.reason)))})")
                        continue
                    position[(source, p.name)].append(e.position_m)
                    line = f"  {source:<9} {p.name:<6} valid {track.valid.mean():.2f} position {mm(e.position_m)} mm"
                    if len(e.yaw_deg):
                        yaw[source].append(e.yaw_deg)
                        line += f", yaw median {np.median(e.yaw_deg):.1f} deg"
                    print(line + f", size error {np.round(1e3 * e.size_error_m).astype(int).tolist()} mm")
        print(f"\nall {len(paths)} recordings, position error over valid frames (mm):")
        for source in SOURCES:
            every = []
            for p in prompts:
                e = np.concatenate(position[(source, p.name)] or [np.array([np.nan])])
                every.append(e)
                print(f"  {source:<9} {p.name:<6} {mm(e)}")
            print(f"  {source:<9} {'all':<6} {mm(np.concatenate(every))}")
            if yaw[source]:
                y = np.concatenate(yaw[source])
                print(f"  {source:<9} box yaw error: median {np.median(y):.1f} deg, p90 {np.percentile(y, 90):.1f} deg")
        what = "shape fits" if args.pose_method == "shape_fit" else "keypoint tracking + triangulation"
        print(f"pose method {args.pose_method}; speed: detector {np.mean(detection_fps):.0f} frames/s, {what} "
              f"{np.mean(locate_s):.1f} s per recording")


if __name__ == "__main__":
    main()
