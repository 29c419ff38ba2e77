#!/usr/bin/env python3
"""Embodiment-agnostic views: human arm mask accuracy against the simulator's truth, inpainting quality, and the
per-frame cost of masking, inpainting and the gripper overlay.

    python benchmarks/views.py [--recordings DIR ...] [--num 2] [--size 480] [--out DIR] [--iterations 60]
                               [--sam2-encoder F --sam2-decoder F] [--lama F]

Without --recordings, --num serve_bread demos are generated at --size x --size (fisheye, like Aria's RGB)
into --out (a temporary folder if not given). Prints (nothing is asserted):

1. arm mask IoU against the ground-truth arm mask on rectified --size x --size images (Rectifier, rotated
   90 degrees clockwise like the pipeline's), over every frame where the arm is in view: mean, 10th
   percentile, fraction of frames >= 0.8; per backend available (landmarks_skin; the landmark prior alone,
   i.e. skin_refine off; sam2 with --sam2-*), and landmarks_skin on the raw fisheye images. Landmarks: the
   recording's MPS hand tracking matched by timestamp, moved into the camera frame. Goal: >= 0.8 mean.
2. inpainting quality: the frame's arm mask mirrored left-right onto arm-free background (frames where the
   mirrored hole misses the arm), so the true pixels under the hole are known: mean absolute error (grey
   levels, RGB) inside the hole, per method and working scale (and LaMa with --lama).
3. per-frame milliseconds (p50 / p99, one core) of masking, inpainting (telea, ns; full and half working
   scale) and the overlay (gripper + 2 keypoint dots), on images rectified to 320x240 and 640x480 (WxH, the
   robot camera's sizes), cycling the recording's frames with hands in view.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from humanego_core import geometry
from humanego_core.hand import hand_frame
from humanego_core.image_warp import Rectifier
from humanego_perception.arm_mask import HandInCamera, LandmarkSkinMasker, Sam2ArmMasker
from humanego_perception.gripper_overlay import GripperOverlay, draw_keypoints
from humanego_perception.inpaint import LamaInpainter, OpenCVInpainter
from humanego_perception.views import ViewsConfig, load_views_config
from humanego_sim.aria_recording import Recording
from humanego_sim.generate_demos import generate

TIMING_SIZES = [(320, 240), (640, 480)]


def percentiles_ms(seconds) -> tuple[float, float]:
    a = np.asarray(seconds) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def find_recordings(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if (path / "metadata.json").is_file():
            found.append(path)
        else:
            found += sorted(p.parent for p in path.glob("*/metadata.json"))
    if not found:
        raise SystemExit(f"no recordings (folders with metadata.json) in {', '.join(map(str, paths))}")
    return found


def frames_with_hands(root: Path, rectifier: Rectifier | None):
    """(image, camera, hands, gt arm mask) of every frame where the arm is in view."""
    recording = Recording.open(root)
    masks = recording.gt()["arm_mask"]
    tracking = recording.hand_tracking
    camera = rectifier.target if rectifier else recording.camera_model()
    T_camera_device = geometry.invert(camera.T_device_camera)
    for i, frame in enumerate(recording.read_frames()):
        row = int(np.argmin(np.abs(tracking.t_ns - recording.frame_timestamps_ns[i])))
        hands = [HandInCamera(side, geometry.transform_points(T_camera_device, tracking.landmarks[side][row]),
                              float(tracking.confidence[side][row]))
                 for side in ("left", "right") if tracking.seen(side)[row]]
        truth = masks[i]
        if rectifier is not None:
            frame, truth = rectifier(frame), rectifier(truth.astype(np.uint8), interpolation="nearest") > 0
        if truth.any():
            yield frame, camera, hands, truth


def accuracy(args, recordings: list[Path], views: ViewsConfig) -> list:
    """Table 1; returns (image, landmarks_skin mask, truth) of every frame, for table 2."""
    print(f"\n1. human arm mask IoU vs the simulator's arm mask, {args.size}x{args.size} rectified (rotated cw90)")
    print(f"   {'backend':44s} | {'frames':>6s} | {'mean':>6s} | {'p10':>6s} | {'>= 0.8':>6s}")
    maskers = {"landmarks_skin": LandmarkSkinMasker(views.arm_mask),
               "landmark prior only (skin_refine off)": LandmarkSkinMasker(replace(views.arm_mask,
                                                                                    skin_refine=False))}
    if args.sam2_encoder:
        maskers["sam2"] = Sam2ArmMasker(replace(views.arm_mask, backend="sam2", sam2_encoder=args.sam2_encoder,
                                                sam2_decoder=args.sam2_decoder))
    scores = {name: [] for name in maskers}
    kept = []  # (image, mask, truth) for the inpainting quality table
    for root in recordings:
        source = Recording.open(root).camera_model()
        rectifier = Rectifier(source, args.size, args.size, rotate_cw90=True)
        for image, camera, hands, truth in frames_with_hands(root, rectifier):
            for name, masker in maskers.items():
                mask = masker.mask(image, camera, hands)
                scores[name].append(iou(mask, truth))
                if name == "landmarks_skin":
                    kept.append((image, mask, truth))
    for name, values in scores.items():
        a = np.array(values)
        print(f"   {name:44s} | {len(a):6d} | {a.mean():6.3f} | {np.percentile(a, 10):6.3f} | "
              f"{(a >= 0.8).mean():6.1%}", flush=True)
    fisheye = [iou(maskers["landmarks_skin"].mask(image, camera, hands), truth)
               for root in recordings for image, camera, hands, truth in frames_with_hands(root, None)]
    a = np.array(fisheye)
    print(f"   {'landmarks_skin, raw fisheye images':44s} | {len(a):6d} | {a.mean():6.3f} | "
          f"{np.percentile(a, 10):6.3f} | {(a >= 0.8).mean():6.1%}", flush=True)
    return kept


def inpainting_quality(args, kept: list, views: ViewsConfig) -> None:
    print("\n2. inpainting error on known background: the arm mask mirrored left-right onto arm-free pixels")
    cases = []
    for image, mask, truth in kept:
        hole = mask[:, ::-1]
        arm_zone = cv2.dilate(truth.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        if hole.any() and not (hole & arm_zone).any() and (image[hole].max(axis=-1) > 0).all():
            cases.append((image, hole))
    if not cases:
        print("   no frame whose mirrored arm mask misses the arm")
        return
    inpainters = {f"{m} radius {views.inpaint.radius_px}, scale {s}": OpenCVInpainter(m, views.inpaint.radius_px,
                                                                                      views.inpaint.dilate_px, s)
                  for m in ("telea", "ns") for s in (1.0, 0.5)}
    if args.lama:
        inpainters["lama"] = LamaInpainter(args.lama, views.inpaint.dilate_px, views.inpaint.lama_context,
                                           views.inpaint.lama_output_max)
    print(f"   {len(cases)} frames; error = mean |filled - true| in the hole (RGB grey levels)")
    print(f"   {'inpainter':44s} | {'mean':>6s} | {'p90':>6s}")
    for name, inpainter in inpainters.items():
        errors = [np.abs(inpainter.inpaint(image, hole).astype(int) - image.astype(int))[hole].mean()
                  for image, hole in cases]
        print(f"   {name:44s} | {np.mean(errors):6.2f} | {np.percentile(errors, 90):6.2f}", flush=True)


def timed(fn, n: int) -> tuple[float, float]:
    """p50, p99 ms of fn(0..n-1) after one warm-up call."""
    fn(0)
    seconds = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        seconds.append(time.perf_counter() - t)
    return percentiles_ms(seconds)


def timing_at(args, root: Path, views: ViewsConfig, width: int, height: int) -> None:
    """Table 3's rows for one image size."""
    rectifier = Rectifier(Recording.open(root).camera_model(), width, height)
    frames = [(image, camera, hands) for image, camera, hands, _ in frames_with_hands(root, rectifier)
              if hands][: args.iterations]
    masker = LandmarkSkinMasker(views.arm_mask)
    masks = [masker.mask(image, camera, hands) for image, camera, hands in frames]
    label = f"{width}x{height}"
    hole = 100 * np.mean([m.mean() for m in masks])

    def row(name: str, fn) -> None:
        p50, p99 = timed(fn, len(frames))
        print(f"   {name:44s} | {label:>7s} | {p50:7.2f} | {p99:7.2f} | {hole:6.1f}", flush=True)

    row("arm mask (landmarks_skin)", lambda i: masker.mask(*frames[i]))
    for method in ("telea", "ns"):
        for scale in (1.0, 0.5):
            inpainter = OpenCVInpainter(method, views.inpaint.radius_px, views.inpaint.dilate_px, scale)
            row(f"inpaint {method}, scale {scale}", lambda i, p=inpainter: p.inpaint(frames[i][0], masks[i]))
    overlay = GripperOverlay(views.gripper)
    poses = [hand_frame(hands[0].landmarks) for _, _, hands in frames]
    dots = np.array([[width * 0.3, height * 0.5], [width * 0.6, height * 0.4]])

    def decorate(i: int) -> np.ndarray:
        out = overlay.draw(frames[i][0], frames[i][1], poses[i], views.gripper.open_width_m)
        return draw_keypoints(out, dots, views.keypoints, 0)

    row("gripper overlay + 2 keypoints", decorate)


def timing(args, recordings: list[Path], views: ViewsConfig) -> None:
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # one core: cv2's thread pool then has one core to run on
    try:
        print(f"\n3. per-frame ms, one core (pinned to CPU {min(cpus)}), up to {args.iterations} frames with hands")
        print(f"   {'step':44s} | {'size':>7s} | {'p50 ms':>7s} | {'p99 ms':>7s} | {'hole %':>6s}")
        for width, height in TIMING_SIZES:
            timing_at(args, recordings[0], views, width, height)
    finally:
        os.sched_setaffinity(0, cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--recordings", type=Path, nargs="*", help="recording folders (or folders of them)")
    parser.add_argument("--num", type=int, default=2, help="demos to generate without --recordings")
    parser.add_argument("--size", type=int, default=480, help="generated and rectified image size (px)")
    parser.add_argument("--out", type=Path, help="where to generate (default: a temporary folder)")
    parser.add_argument("--iterations", type=int, default=60, help="frames timed per step and size")
    parser.add_argument("--views-config", type=Path, help="views YAML (default: config/views.yaml)")
    parser.add_argument("--sam2-encoder", help="SAM2 encoder ONNX: adds the sam2 backend to table 1")
    parser.add_argument("--sam2-decoder", help="SAM2 decoder ONNX")
    parser.add_argument("--lama", help="LaMa ONNX (Carve/LaMa-ONNX signature): adds LaMa to table 2")
    args = parser.parse_args()
    if bool(args.sam2_encoder) != bool(args.sam2_decoder):
        parser.error("--sam2-encoder and --sam2-decoder go together")
    views = load_views_config(args.views_config)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        if args.recordings:
            recordings = find_recordings(args.recordings)
        else:
            out = args.out or Path(tmp)
            t = time.perf_counter()
            generate("serve_bread", args.num, out, width=args.size, height=args.size, progress=False)
            print(f"generated {args.num} serve_bread demos at {args.size}x{args.size} in "
                  f"{time.perf_counter() - t:.0f} s -> {out}")
            recordings = find_recordings([out])
        print(f"recordings: {', '.join(str(r) for r in recordings)}")
        kept = accuracy(args, recordings, views)
        inpainting_quality(args, kept, views)
        timing(args, recordings, views)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
