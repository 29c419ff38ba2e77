"""``humanego_sim generate_demos``: synthetic egocentric human demonstrations as Aria/MPS recordings.

Each demo is rendered from the head of the kinematic demonstrator through the real Aria RGB
calibration and written as a recording folder (see ``aria_recording``). Demo ``i`` uses seed
``seed + i``, so a folder is reproducible on its own. The recording writer builds each demo in
``<demo>.incomplete`` and renames it when complete: an interrupted run leaves no half demo under a
demo's name, and a rerun skips finished demos and redoes the interrupted one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from humanego_core import geometry
from humanego_core.ament_index import resource_path
from humanego_core.config import ConfigError, load_config, to_dict
from humanego_sim.aria_recording import HandObservation, RecordingWriter
from humanego_sim.fisheye import FisheyeRenderer
from humanego_sim.human import Demonstration, HumanBody, HumanConfig, HumanFrame, hand_normals
from humanego_sim.tasks import PlacementError, load_task, task_summary
from humanego_sim.world import World, WorldConfig, load_world_config

LANDMARK_NOISE_M = 0.003  # MPS hand tracking is not exact; the ground truth in gt/ is
TRAJECTORY_RATE_HZ = 200.0
MIN_VISIBLE_LANDMARKS = 11  # a hand counts as tracked when most of its landmarks are in the image


@dataclass
class DemoResult:
    name: str
    frames: int
    success: bool
    seconds: float
    skipped: bool


def demo_name(index: int) -> str:
    return f"demo_{index:04d}"


class DemoGenerator:
    """Renders and writes demonstrations of one task; the scene and fisheye maps are built once."""

    def __init__(self, task_name: str, width: int, height: int, world_config: WorldConfig | None = None,
                 human_config: HumanConfig | None = None, calibration_json: str | None = None):
        self.task = load_task(task_name)
        self.world_config = world_config or load_world_config()
        self.human_config = human_config or HumanConfig()
        self.body = HumanBody(self.human_config)
        self.world = World(self.task, self.world_config, human=self.body)
        self.width, self.height = width, height
        self.calibration_json = calibration_json
        self.camera = RecordingWriter.camera_for(width, height, calibration_json)
        self.renderer = FisheyeRenderer.from_camera_model(self.world, HumanBody.CAMERA, self.camera)
        self.T_device_rgb = self.camera.T_device_camera

    def close(self) -> None:
        self.world.close()

    def generate(self, out_dir: Path, seed: int) -> tuple[int, bool]:
        """Write one demo into ``out_dir`` (created); returns (frames, success)."""
        task, cfg = self.task, self.human_config
        try:
            self.world.reset(seed=seed)
        except PlacementError as exc:
            raise SystemExit(f"[ERROR] {exc}") from None
        initial = {n: self.world.object_pose(n) for n in task.objects}
        demo = Demonstration(task, cfg, self.world_config.table.height, initial, np.random.default_rng([seed, 1]))
        noise = np.random.default_rng([seed, 2])
        metadata = {
            "synthetic": True, "task": task_summary(task), "instruction": task.instruction,
            "seed": seed, "fps": cfg.fps, "duration_s": demo.duration,
            "world_config": to_dict(self.world_config), "human_config": to_dict(cfg),
        }
        with RecordingWriter(out_dir, width=self.width, height=self.height, fps=cfg.fps, metadata=metadata,
                             calibration_json=self.calibration_json) as writer:
            self._write_frames(writer, demo, noise)
            self.world.set_object_pose(task.manipulated, demo.final_object_pose)
            self.world.forward()
            check = self.world.check_success()
            writer.finish({
                "success": check.success, "xy_distance": check.xy_distance,
                "height_above_goal": check.height_above_goal, "seed": seed,
                "placements": {n: vars(p) for n, p in self.world.placements.items()},
                "object_names": list(task.objects), "label_names": self.world.label_names(),
                "phases": [s.phase for s in demo.segments],
            })
        return len(demo.frame_times()), check.success

    def _write_frames(self, writer: RecordingWriter, demo: Demonstration, noise: np.random.Generator) -> None:
        seed = int(writer.metadata["seed"])
        T_rgb_device = geometry.invert(self.T_device_rgb)
        times = demo.frame_times()
        start_ns = 1_000_000_000 + seed * 1_000  # device clocks start anywhere; keep them distinct per demo
        for t in times:
            frame = demo.frame(float(t))
            self._pose_scene(frame)
            rgb = self.renderer.render("rgb")
            labels = self.renderer.render("labels")
            T_world_device = frame.T_world_rgb @ T_rgb_device
            right = self._observe_hand(frame, geometry.invert(T_world_device), noise)
            gt = {
                "T_world_device": T_world_device, "T_world_rgb": frame.T_world_rgb,
                "T_world_wrist": frame.T_world_wrist, "T_world_hand": frame.T_world_hand,
                "T_world_pinch": frame.T_world_pinch, "landmarks_world": frame.landmarks,
                "aperture": np.float64(frame.aperture), "grasped": np.bool_(frame.grasped),
                "phase": np.array(frame.phase), "hand_visible": np.bool_(right is not None),
                "arm_mask": labels == 2, "object_labels": np.where(labels >= 3, labels - 2, 0).astype(np.uint8),
            }
            for name, T in frame.objects.items():
                gt[f"T_world_{name}"] = T
            writer.add_frame(start_ns + int(round(t * 1e9)), rgb, {"left": None, "right": right}, gt)
        traj_t = np.arange(0.0, times[-1] + 2.0 / TRAJECTORY_RATE_HZ, 1.0 / TRAJECTORY_RATE_HZ)
        device = np.stack([demo.frame(float(t)).T_world_rgb @ T_rgb_device for t in traj_t])
        writer.set_trajectory(start_ns + np.round(traj_t * 1e9).astype(np.int64), device)

    def _pose_scene(self, frame: HumanFrame) -> None:
        for name, T in frame.objects.items():
            if self.task.objects[name].movable:
                self.world.set_object_pose(name, T)
        self.body.apply(self.world.model, self.world.data, frame)
        self.world.forward()

    def _observe_hand(self, frame: HumanFrame, T_device_world: np.ndarray,
                      noise: np.random.Generator) -> HandObservation | None:
        """What MPS would report for the right hand: None when too little of it is in the image."""
        landmarks = geometry.transform_points(T_device_world, frame.landmarks)
        in_camera = geometry.transform_points(geometry.invert(self.T_device_rgb), landmarks)
        _, visible = self.camera.project(in_camera)
        if int(np.count_nonzero(visible)) < MIN_VISIBLE_LANDMARKS:
            return None
        T_device_wrist = T_device_world @ frame.T_world_wrist
        palm, wrist = hand_normals()
        return HandObservation(
            landmarks=landmarks + noise.normal(0.0, LANDMARK_NOISE_M, landmarks.shape),
            T_device_wrist=T_device_wrist, palm_normal=T_device_wrist[:3, :3] @ palm,
            wrist_normal=T_device_wrist[:3, :3] @ wrist, confidence=float(noise.uniform(0.9, 1.0)))


def generate(task: str, num: int, out: Path, seed: int = 0, width: int = 512, height: int = 512,
             world_config: WorldConfig | None = None, human_config: HumanConfig | None = None,
             calibration_json: str | None = None, progress: bool = True) -> list[DemoResult]:
    """Generate demos 0..num-1 into ``out``, skipping complete ones; writes ``out/summary.json``."""
    out.mkdir(parents=True, exist_ok=True)
    generator: DemoGenerator | None = None
    results: list[DemoResult] = []
    bar = tqdm(range(num), desc=f"{task} demos", unit="demo", disable=not progress)
    try:
        for i in bar:
            name = demo_name(i)
            final = out / name
            if final.exists():
                frames, success = _check_existing(final, task, seed + i)
                results.append(DemoResult(name, frames, success, 0.0, skipped=True))
                continue
            if generator is None:
                generator = DemoGenerator(task, width, height, world_config, human_config, calibration_json)
            started = time.perf_counter()
            frames, success = generator.generate(final, seed + i)
            results.append(DemoResult(name, frames, success, time.perf_counter() - started, skipped=False))
            bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
    finally:
        if generator is not None:
            generator.close()
    _write_summary(out, task, seed, results)
    return results


def _check_existing(folder: Path, task: str, seed: int) -> tuple[int, bool]:
    """A finished demo from an earlier run: it must be of the same task and seed."""
    try:
        metadata = json.loads((folder / "metadata.json").read_text())
        episode = json.loads((folder / "gt" / "episode.json").read_text())
        frames = int(metadata["num_frames"])
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"[ERROR] {folder} exists but is not a complete demo ({exc}); delete it to regenerate") \
            from None
    if metadata.get("task", {}).get("name") != task or metadata.get("seed") != seed:
        raise SystemExit(f"[ERROR] {folder} holds task {metadata.get('task', {}).get('name')!r} seed "
                         f"{metadata.get('seed')}, not {task!r} seed {seed}; use another --out folder")
    return frames, bool(episode["success"])


def _write_summary(out: Path, task: str, seed: int, results: list[DemoResult]) -> dict:
    generated = [r for r in results if not r.skipped]
    summary = {
        "task": task, "first_seed": seed, "demos": len(results), "generated_now": len(generated),
        "frames": sum(r.frames for r in results),
        "success": sum(r.success for r in results),
        "success_rate": (sum(r.success for r in results) / len(results)) if results else math.nan,
        "seconds_per_demo": (sum(r.seconds for r in generated) / len(generated)) if generated else None,
        "failed": [r.name for r in results if not r.success],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanego_sim generate_demos",
        description="Generate synthetic egocentric human demonstrations of a tabletop task, each written as a "
                    "recording in the Project Aria / MPS formats (fisheye RGB video with device timestamps, "
                    "slam/closed_loop_trajectory.csv, hand_tracking/hand_tracking_results.csv, device calibration) "
                    "plus a gt/ folder of ground truth. Finished demos in --out are kept, so an interrupted run "
                    "resumes where it stopped.",
        epilog="example: humanego run humanego_sim generate_demos --task serve_bread --num 60 --out data/serve_bread")
    parser.add_argument("--task", required=True, help="task name from config/tasks (e.g. serve_bread) or a YAML path")
    parser.add_argument("--num", type=int, required=True, help="number of demos")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of demo 0; demo i uses seed + i (default 0)")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("W", "H"),
                        help="RGB video size; the 1408x1408 Aria calibration is rescaled to it (default 512 512)")
    parser.add_argument("--world-config", type=Path, help="world YAML (default config/sim/world.yaml)")
    parser.add_argument("--human-config", type=Path, help="demonstrator YAML (default config/sim/human.yaml)")
    parser.add_argument("--calibration", type=Path,
                        help="Aria device calibration JSON (default config/sim/aria_device_calibration.json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.num < 1:
        print("[ERROR] --num must be at least 1", file=sys.stderr)
        return 2
    try:
        world_config = load_world_config(args.world_config)
        human_config = load_config(args.human_config or resource_path("config", "sim", "human.yaml"), HumanConfig)
        calibration = None
        if args.calibration is not None:
            if not args.calibration.is_file():
                raise ConfigError(str(args.calibration), "", "file not found")
            calibration = args.calibration.read_text()
        w, h = args.size
        generate(args.task, args.num, args.out, args.seed, w, h, world_config, human_config, calibration,
                 progress=not args.no_progress)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    summary = json.loads((args.out / "summary.json").read_text())
    spd = summary["seconds_per_demo"]
    print(f"{summary['demos']} demos ({summary['generated_now']} generated now, "
          f"{summary['demos'] - summary['generated_now']} kept), {summary['frames']} frames, "
          f"success {summary['success']}/{summary['demos']}"
          + (f", {spd:.1f} s per demo" if spd is not None else "") + f" -> {args.out}")
    return 0 if summary["success"] == summary["demos"] else 1


if __name__ == "__main__":
    sys.exit(main())
