#!/usr/bin/env python3
"""Benchmark: MuJoCo rendering (pinhole and Aria fisheye), recording writing, and physics speed.

Prints, per measurement, the time per frame (p50 / p99, ms) and frames/s:
- pinhole renders (rgb, depth, labels) of the robot's ego camera at 320x240;
- for each fisheye size (default 512 and 704, square like Aria's 1408x1408 sensor, and 1408 with
  --full): building the remap maps once, then the wide pinhole render (rgb, labels) and its warp
  into the Fisheye624 image;
- writing frames into a recording (H.264 encode of the RGB frame, PNG masks) at each fisheye size;
- physics with a robot: steps/s and the real-time factor (simulated seconds per wall second).

Nothing is asserted: these are figures for choosing the recording resolution and for the notes.

    python benchmarks/sim_render.py --frames 30 --full
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from humanego_sim.aria_recording import RecordingWriter
from humanego_sim.fisheye import FisheyeRenderer
from humanego_sim.tasks import load_task
from humanego_sim.world import World


def timed(fn: Callable[[], object], n: int, warmup: int = 2) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out


def report(name: str, seconds: np.ndarray) -> None:
    scale, unit = (1e6, "us") if np.median(seconds) < 1e-3 else (1e3, "ms")
    print(f"  {name:<44} p50 {np.percentile(seconds, 50) * scale:8.1f} {unit}   "
          f"p99 {np.percentile(seconds, 99) * scale:8.1f} {unit}   {1.0 / np.median(seconds):9.1f} /s")


def pinhole(world: World, camera: str, n: int) -> None:
    print("pinhole, 320x240")
    for kind in ("rgb", "depth", "labels"):
        report(f"render {kind}", timed(lambda kind=kind: world.render(camera, 320, 240, kind), n))


def fisheye(world: World, camera: str, size: int, n: int, calibration: Path | None) -> float:
    model = RecordingWriter.camera_for(size, size, calibration)
    t = time.perf_counter()
    renderer = FisheyeRenderer.from_camera_model(world, camera, model)
    built = time.perf_counter() - t
    pw, ph = renderer.pinhole.width, renderer.pinhole.height
    print(f"fisheye {size}x{size} (pinhole {pw}x{ph}, fovy {renderer.fovy_deg:.1f} deg; maps built in {built:.2f} s)")
    rgb, labels = renderer.render_pinhole("rgb"), renderer.render_pinhole("labels")
    report("pinhole render rgb", timed(lambda: renderer.render_pinhole("rgb"), n))
    report("pinhole render labels", timed(lambda: renderer.render_pinhole("labels"), n))
    report("warp rgb (bilinear)", timed(lambda: renderer.warp(rgb, "rgb"), n))
    report("warp labels (nearest)", timed(lambda: renderer.warp(labels, "labels"), n))
    frame = timed(lambda: (renderer.render("rgb"), renderer.render("labels")), n)
    report("frame: rgb + labels through the fisheye", frame)
    return float(np.median(frame))


def writing(size: int, n: int, calibration: Path | None, world: World, camera: str) -> float:
    """Writing n rendered frames into a recording: wall time per frame and the H.264 encoder's CPU time.

    The encoder (ffmpeg) runs in a child process, in parallel with the caller; its CPU time is read
    from the children's resource usage once it has exited (at finish).
    """
    renderer = FisheyeRenderer.from_camera_model(world, camera, RecordingWriter.camera_for(size, size, calibration))
    rgb, labels = renderer.render("rgb"), renderer.render("labels")
    gt = {"arm_mask": labels == 2, "object_labels": labels.astype(np.uint8)}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        writer = RecordingWriter(Path(tmp) / "demo", width=size, height=size, fps=30.0, calibration_json=calibration,
                                 metadata={"task": world.task.name, "instruction": world.task.instruction, "seed": 0})
        for i in range(n):
            # A moving image, as in a demo (a repeated frame would cost the encoder nothing).
            writer.add_frame(i * 33_333_333, np.roll(rgb, 3 * i, axis=1), {}, gt)
        t_ns = np.arange(0, n * 33_333_333 + 1, 5_000_000)
        writer.set_trajectory(t_ns, np.broadcast_to(np.eye(4), (len(t_ns), 4, 4)))
        writer.finish({})
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    encoder = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    print(f"recording {size}x{size}, {n} frames (rgb video + 2 PNG masks per frame)")
    print(f"  wall time per frame, writer start to finish   {1000 * wall / n:8.1f} ms   {n / wall:7.1f} /s")
    print(f"  H.264 encoder CPU time per frame (child)      {1000 * encoder / n:8.1f} ms")
    return wall / n


def physics(task: str, robot: str, seconds: float) -> None:
    world = World(load_task(task), robot=robot)
    world.reset(seed=0)
    steps = int(round(seconds / world.model.opt.timestep))
    per_step = timed(world.step, steps, warmup=10)
    print(f"physics, {robot} + {task}, timestep {world.model.opt.timestep * 1000:.1f} ms, {steps} steps")
    report("mj_step", per_step)
    print(f"  real-time factor {world.model.opt.timestep * steps / per_step.sum():.1f}x")
    world.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="serve_bread", help="task whose scene is rendered (config/tasks)")
    parser.add_argument("--robot", default="panda", help="robot for the physics figure (panda or ur5e)")
    parser.add_argument("--frames", type=int, default=30, help="timed repetitions per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 704], help="square fisheye sizes (px)")
    parser.add_argument("--full", action="store_true", help="also the full 1408x1408 sensor (slow)")
    parser.add_argument("--physics-seconds", type=float, default=5.0, help="simulated time for the physics figure")
    parser.add_argument("--calibration", type=Path, help="device calibration JSON (default: the shipped one)")
    args = parser.parse_args()

    world = World(load_task(args.task))
    world.reset(seed=0)
    camera = "ego_camera"
    pinhole(world, camera, args.frames)
    render = {size: fisheye(world, camera, size, args.frames, args.calibration)
              for size in args.sizes + ([1408] if args.full else [])}
    write = {size: writing(size, args.frames, args.calibration, world, camera) for size in args.sizes}
    print("a 10 s demo at 30 fps (300 frames of rgb + labels, rendered and written; human posing not included)")
    for size in args.sizes:
        print(f"  {size}x{size}: {300 * (render[size] + write[size]):6.1f} s")
    world.close()
    physics(args.task, args.robot, args.physics_seconds)


if __name__ == "__main__":
    main()
