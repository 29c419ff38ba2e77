"""``humanego_training preprocess``: human recordings → ``training_data.json`` frames (HumanEgo's stages).

Per recording, each stage cached in ``<recording>/preprocess/cache`` (:mod:`stage_cache`), so a rerun
resumes where it stopped and a changed setting recomputes only what depends on it:

1. ``hands``    hand pose frame and grasp from the MPS landmarks (:mod:`humanego_perception.hand_state`);
2. ``phases``   manipulation-phase segmentation and trimming (:mod:`humanego_perception.phases`);
3. ``frames``   the kept window's frames rectified to a pinhole camera (:class:`humanego_core.image_warp.Rectifier`);
4. ``masks``    object masks from the configured detector (:mod:`humanego_perception.objects`);
5. ``objects``  object 6-DoF poses (:func:`humanego_perception.objects.estimate_object_states`): each object
   located in its static windows, carried rigidly with the hand while grasped. ``objects.pose_method``
   chooses how a static window locates it: ``shape_fit`` (default; a box/cylinder fitted to the mask
   outlines with the SLAM camera poses, the pinch point at grasp onset or the support height fixing the
   depth) or ``keypoints`` (:mod:`humanego_perception.object_keypoints`: keypoints selected on the masks,
   tracked in 2D by OpenCV's LK or a CoTracker ONNX model, triangulated with the SLAM camera poses by DLT
   and robust reprojection refinement, the object frame set from the 3D keypoints and refound after a
   release by a rigid fit of them);
6. ``write``    arm mask, inpainting, virtual gripper and object keypoint dots (the fitted shape's corners or
   the triangulated keypoints), one folder per kept frame with ``training_data.json`` (:mod:`training_data`)
   and its images;
7. a report: ``preprocess/report.json`` (kept/dropped frames and why, figures), ``report.png`` (trajectories).

A frame is kept when it lies in the manipulation window, its hand is valid, every object's pose is known
and (``drop_frames_without_object_mask``) every object's mask on it is non-empty. Every dropped frame is
counted under its reason.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from humanego_core import geometry, training_data
from humanego_core.ament_index import resource_path
from humanego_core.camera_models import CameraModel
from humanego_core.config import ConfigError, describe_schema, load_config, option, to_dict
from humanego_core.image_warp import Rectifier
from humanego_perception.arm_mask import HandInCamera
from humanego_perception.gripper_overlay import GripperOverlay, draw_keypoints
from humanego_perception.hand_state import HandStateConfig, HandStates, choose_side, estimate_hand_states
from humanego_perception.object_keypoints import make_tracker
from humanego_perception.objects import (
    ObjectStateConfig,
    ObjectTrack,
    estimate_object_states,
    make_detector,
    prompts_from_task,
)
from humanego_perception.phases import PhaseConfig, Segmentation, segment_manipulation
from humanego_perception.views import ViewsConfig, build_human_arm_masker, build_inpainter, load_views_config
from humanego_sim.tasks import Task, load_task
from humanego_training import egomimic, report
from humanego_training.human_recording import (
    HumanRecording,
    HumanRecordingError,
    find_recordings,
    open_human_recording,
)
from humanego_training.image_io import read_rgb, write_image
from humanego_training.stage_cache import StageCache, file_signature, fingerprint, write_json_atomic

PREPROCESS = "preprocess"
CACHE = "preprocess/cache"
FRAMES = "frames"
VERSION = 1  # bump when a stage's output changes meaning, so old caches are not reused
WRITES_IN_FLIGHT = 2  # kept frames whose files the writer thread may still be writing (memory: ~4 MB each)


@dataclass
class ImageConfig:
    width: int = option(480, help="width of the rectified images (px)", minimum=16, maximum=4096)
    height: int = option(480, help="height of the rectified images (px)", minimum=16, maximum=4096)
    focal: float | None = option(None, help="focal length of the rectified pinhole (px); null: the fisheye's "
                                            "angular resolution at the centre, scaled to the width", minimum=1.0)
    rotate_cw90: bool = option(True, help="rotate Aria's sideways RGB image upright (as HumanEgo and EgoMimic)")
    format: Literal["png", "jpg"] = option("png", help="image files written per frame: png (lossless) or jpg")
    jpeg_quality: int = option(95, help="JPEG quality when format is jpg", minimum=1, maximum=100)


@dataclass
class PreprocessConfig:
    image: ImageConfig = option(default_factory=ImageConfig, help="rectified output images")
    hand_side: Literal["auto", "left", "right"] = option("auto", help="left, right, or auto (the hand seen most)")
    hand: HandStateConfig = option(default_factory=HandStateConfig, help="hand pose and grasp estimation")
    phases: PhaseConfig = option(default_factory=PhaseConfig, help="manipulation-phase segmentation")
    objects: ObjectStateConfig = option(default_factory=ObjectStateConfig, help="object masks, tracks, poses")
    anchor_object: str | None = option(None, help="the static anchor object (virtual_static_anchor); null: the "
                                                  "task's goal object")
    drop_frames_without_object_mask: bool = option(True, help="drop frames on which an object's mask is empty")
    views_config: str | None = option(None, help="views YAML (arm masking, inpainting, gripper drawing); null: "
                                                 "the shipped config/views.yaml")


def load_preprocess_config(path: str | Path | None = None) -> PreprocessConfig:
    """The preprocessing configuration (None: the shipped config/preprocess.yaml)."""
    return load_config(path or resource_path("config", "preprocess.yaml"), PreprocessConfig)


@dataclass
class RecordingResult:
    """What one recording's run produced: counts for people, the stages' outputs for evaluation code."""

    recording: Path
    frames: int
    kept: int
    dropped: dict[str, int]
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    report: Path | None = None
    camera: CameraModel | None = None  # the rectified camera
    T_world_camera: np.ndarray | None = None  # (F, 4, 4)
    hands: HandStates | None = None
    window: np.ndarray | None = None  # frame indices of the manipulation window
    objects: dict[str, ObjectTrack] = field(default_factory=dict)  # tracks over the window's frames
    kept_frames: np.ndarray | None = None  # frame indices written to all_data, in idx order


class CachedFrames(Sequence):
    """The rectified frames of the window, read from the cache on demand (random access for tracking)."""

    def __init__(self, folder: Path, indices: np.ndarray):
        self.folder, self.indices = folder, indices

    def __len__(self) -> int:
        return len(self.indices)

    def path(self, i: int) -> Path:
        """The file of the i-th frame of the window."""
        return self.folder / f"{int(self.indices[i]):05d}.png"

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        try:
            return read_rgb(self.path(i))
        except (FileNotFoundError, ValueError) as exc:
            raise type(exc)(f"{exc}; the frame cache is damaged: rerun with --force") from None


class Preprocessor:
    """Runs the stages on one recording at a time; the models (detector, masker, inpainter) are built once."""

    def __init__(self, task: Task, config: PreprocessConfig, progress: bool = True, force: bool = False):
        self.task, self.config, self.progress, self.force = task, config, progress, force
        self.views: ViewsConfig = load_views_config(config.views_config)
        self.prompts = prompts_from_task(task)
        self.anchor = config.anchor_object or task.goal
        if self.anchor not in task.objects:
            raise ConfigError("preprocess config", "anchor_object",
                              f"{self.anchor!r} is not an object of task {task.name} ({', '.join(task.objects)})")
        self.detector = make_detector(config.objects.detector)
        # The keypoints pose method's tracker, built (and a CoTracker model file checked) before any recording.
        self.tracker = make_tracker(config.objects.keypoints.tracker) if config.objects.pose_method == "keypoints" \
            else None
        self.arm_masker = build_human_arm_masker(self.views)
        self.inpainter = build_inpainter(self.views)
        self.overlay = GripperOverlay(self.views.gripper)

    # ----- one recording -----
    def run(self, root: Path) -> RecordingResult:
        started = time.perf_counter()
        rec = open_human_recording(root)
        cache = StageCache(root / CACHE)
        if self.force:
            shutil.rmtree(root / CACHE, ignore_errors=True)
            cache = StageCache(root / CACHE)
        cfg = self.config
        rectifier = Rectifier(rec.camera, cfg.image.width, cfg.image.height, cfg.image.focal, cfg.image.rotate_cw90)
        camera = rectifier.target
        inputs_key = fingerprint(VERSION, file_signature(rec.inputs()))
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        hands_key = fingerprint(inputs_key, cfg.hand_side, cfg.hand)
        hands = self._hands(rec, cache, hands_key)
        timings["hands"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        phases_key = fingerprint(hands_key, cfg.phases, rec.fps)
        seg = self._phases(hands, rec.fps, cache, phases_key)
        timings["phases"] = time.perf_counter() - t0
        window = np.arange(seg.start, seg.stop)

        T_world_camera = np.tile(np.eye(4), (rec.num_frames, 1, 1))
        on_trajectory = rec.trajectory.contains(rec.frame_t_ns)
        T_world_camera[on_trajectory] = rec.trajectory.at(rec.frame_t_ns[on_trajectory]) @ camera.T_device_camera

        t0 = time.perf_counter()
        frames_key = fingerprint(phases_key, cfg.image, camera.params)
        frames = self._frames(rec, rectifier, window, root / CACHE / FRAMES, cache, frames_key)
        timings["frames"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        masks_key = fingerprint(frames_key, cfg.objects.detector, self.prompts)
        masks = self._masks(frames, cache, masks_key, root)
        timings["masks"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        objects_key = fingerprint(masks_key, cfg.objects)
        objects = self._objects(frames, camera, T_world_camera[window], masks, hands, window, cache, objects_key)
        timings["objects"] = time.perf_counter() - t0

        reasons = self._frame_reasons(rec.num_frames, seg, hands, objects, masks, window)
        kept = np.flatnonzero(reasons == "")
        t0 = time.perf_counter()
        write_key = fingerprint(objects_key, self.views, cfg.image.format, cfg.image.jpeg_quality,
                                cfg.drop_frames_without_object_mask, self.anchor, kept)
        self._write(root, rec, camera, frames, window, kept, hands, seg, objects, masks, T_world_camera, write_key)
        timings["write"] = time.perf_counter() - t0

        dropped = Counter(str(r) for r in reasons if r)
        result = RecordingResult(root, rec.num_frames, len(kept), dict(sorted(dropped.items())),
                                 time.perf_counter() - started, timings, None, camera, T_world_camera, hands, window,
                                 objects, kept)
        result.report = report.write(root / PREPROCESS, result, rec, hands, seg, objects, reasons, window,
                                     {"task": self.task.name, "config": to_dict(cfg),
                                      "camera_k": camera.intrinsic_matrix().tolist()})
        return result

    def _bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="frame", disable=not self.progress, leave=False)

    def _hands(self, rec: HumanRecording, cache: StageCache, key: str) -> HandStates:
        stored = cache.load("hands", key)
        if stored is not None:
            return HandStates(**{k: (str(v) if v.ndim == 0 and v.dtype.kind == "U" else v) for k, v in stored.items()})
        side = choose_side(rec.hand_tracking, rec.frame_t_ns, self.config.hand) \
            if self.config.hand_side == "auto" else self.config.hand_side
        hands = estimate_hand_states(rec.hand_tracking, rec.trajectory, rec.frame_t_ns, side, self.config.hand)
        cache.save("hands", key, {k: _storable(v) for k, v in vars(hands).items()})
        return hands

    def _phases(self, hands: HandStates, fps: float, cache: StageCache, key: str) -> Segmentation:
        stored = cache.load("phases", key)
        if stored is not None:
            return Segmentation(start=int(stored["start"]), stop=int(stored["stop"]), phase=stored["phase"],
                                is_finished=stored["is_finished"],
                                grasp_intervals=[tuple(map(int, iv)) for iv in stored["grasp_intervals"]],
                                reason=str(stored["reason"]))
        seg = segment_manipulation(hands, fps, self.config.phases)
        cache.save("phases", key, {"start": np.int64(seg.start), "stop": np.int64(seg.stop), "phase": seg.phase,
                                   "is_finished": seg.is_finished, "reason": np.str_(seg.reason),
                                   "grasp_intervals": np.array(seg.grasp_intervals, np.int64).reshape(-1, 2)})
        return seg

    def _frames(self, rec: HumanRecording, rectifier: Rectifier, window: np.ndarray, folder: Path,
                cache: StageCache, key: str) -> CachedFrames:
        if cache.load("frames", key) is None:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        todo = [int(i) for i in window if not (folder / f"{int(i):05d}.png").is_file()]
        with self._bar(len(todo), f"{rec.root.name}: rectify") as bar:
            for i, image in rec.frames(todo):
                write_image(folder / f"{i:05d}.png", rectifier(image))
                bar.update()
        cache.save("frames", key, {"window": window})
        return CachedFrames(folder, window)

    def _masks(self, frames: CachedFrames, cache: StageCache, key: str, root: Path) -> list[dict[str, np.ndarray]]:
        names = [p.name for p in self.prompts]
        stored = cache.load("masks", key)
        if stored is None:
            shape = (len(frames), len(names), self.config.image.height, self.config.image.width)
            packed = np.zeros(shape, bool)
            with self._bar(len(frames), f"{root.name}: object masks") as bar:
                for i in range(len(frames)):
                    found = self.detector.detect(frames[i], self.prompts)
                    for j, name in enumerate(names):
                        packed[i, j] = found[name]
                    bar.update()
            stored = {"masks": np.packbits(packed, axis=-1), "width": np.int64(shape[-1])}
            cache.save("masks", key, stored)
        masks = np.unpackbits(stored["masks"], axis=-1, count=int(stored["width"])).astype(bool)
        return [{name: masks[i, j] for j, name in enumerate(names)} for i in range(masks.shape[0])]

    def _objects(self, frames: CachedFrames, camera, T_world_camera: np.ndarray, masks, hands: HandStates,
                 window: np.ndarray, cache: StageCache, key: str) -> dict[str, ObjectTrack]:
        stored = cache.load("objects", key)
        names = [p.name for p in self.prompts]
        if stored is not None:
            return {name: ObjectTrack(name=name, **{f: _unwrap(stored[f"{name}/{f}"]) for f in _TRACK_FIELDS})
                    for name in names}
        with tqdm(total=len(self.prompts), desc=f"{frames.folder.parents[2].name}: objects", unit="object",
                  disable=not self.progress, leave=False) as bar:
            tracks = estimate_object_states(frames, camera, T_world_camera, masks, self.prompts,
                                            hands.T_world_hand[window], hands.valid[window], hands.grasp[window],
                                            self.config.objects, progress=lambda *_: bar.update(),
                                            tracker=self.tracker)
        cache.save("objects", key, {f"{name}/{f}": _storable(getattr(tracks[name], f))
                                    for name in names for f in _TRACK_FIELDS})
        return tracks

    def _frame_reasons(self, num_frames: int, seg: Segmentation, hands: HandStates, objects: dict[str, ObjectTrack],
                       masks, window: np.ndarray) -> np.ndarray:
        """Why each frame is dropped ("" = kept), the first reason that applies."""
        reasons = np.full(num_frames, "", dtype=object)
        reasons[: seg.start] = "trimmed: before manipulation"
        reasons[seg.stop:] = "trimmed: after manipulation"
        if seg.reason:
            reasons[:] = f"no manipulation: {seg.reason}"
            return reasons
        for w, i in enumerate(window):
            if not hands.valid[i]:
                reasons[i] = f"hand: {hands.reason[i]}"
                continue
            for name, track in objects.items():
                if not track.valid[w]:
                    reasons[i] = f"{name}: {track.reason[w] or 'no pose'}"
                    break
                if self.config.drop_frames_without_object_mask and not masks[w][name].any():
                    reasons[i] = f"{name}: empty mask"
                    break
        return reasons

    def _write(self, root: Path, rec: HumanRecording, camera, frames: CachedFrames, window: np.ndarray,
               kept: np.ndarray, hands: HandStates, seg: Segmentation, objects: dict[str, ObjectTrack], masks,
               T_world_camera: np.ndarray, key: str) -> None:
        """One folder per kept frame; resumes per frame when the key matches, else rewrites all of them."""
        all_data = root / training_data.ALL_DATA
        state = all_data / ".key"
        if not (state.is_file() and state.read_text() == key):
            shutil.rmtree(all_data, ignore_errors=True)
            all_data.mkdir(parents=True)
            state.write_text(key)
        position = {int(i): w for w, i in enumerate(window)}
        names = list(objects)
        K = camera.intrinsic_matrix()
        T_camera_device = geometry.invert(camera.T_device_camera)
        cam0 = T_world_camera[kept[0]] if len(kept) else np.eye(4)
        anchor_w = position[int(kept[0])] if len(kept) else 0
        T_world_anchor = objects[self.anchor].T_world_obj[anchor_w] if len(kept) else np.eye(4)
        ext = self.config.image.format
        # Encoding and writing a frame's files (a third of the stage's CPU) runs on a thread while the next frame's
        # images are made; at most WRITES_IN_FLIGHT frames wait for it.
        with self._bar(len(kept), f"{root.name}: write") as bar, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="preprocess-write") as writer:
            in_flight: deque[Future] = deque()
            for idx, i in enumerate(kept):
                folder = training_data.frame_folder(root, idx)
                if (folder / training_data.FILE_NAME).is_file():
                    bar.update()
                    continue
                w = position[int(i)]
                landmarks_cam = geometry.transform_points(T_camera_device, hands.landmarks_device[i])
                T_camera_hand = geometry.invert(T_world_camera[i]) @ hands.T_world_hand[i]
                images = self._views(frames[w], camera, HandInCamera(hands.side, landmarks_cam, 1.0), T_camera_hand,
                                     bool(hands.grasp[i] >= 0.5), masks[w], objects, w)
                files: dict[str, np.ndarray | Path] = {}
                obs = {}
                for key_name, image in images.items():
                    is_mask = key_name.startswith("mask")
                    file_name = f"{key_name[:-len('_path')]}.{'png' if is_mask else ext}"
                    # The frame itself is the cached PNG: copied, not encoded again.
                    files[file_name] = frames.path(w) if key_name == "rgb_path" and ext == "png" else image
                    obs[key_name] = str((folder / file_name).relative_to(root))
                record = {
                    "metadata": {
                        "idx": idx, "ts": float((rec.frame_t_ns[i] - rec.frame_t_ns[kept[0]]) * 1e-9),
                        "w": camera.width, "h": camera.height, "fps": rec.fps, "k": K.tolist(),
                        "c2w": training_data.matrix(T_world_camera[i]), "anchor_key": f"obj{names.index(self.anchor)}",
                        "is_finished": bool(seg.is_finished[i]),
                        "world_transforms": {"cam0": training_data.matrix(cam0),
                                             "virtual_static_anchor": training_data.matrix(T_world_anchor)},
                        "frame_index": int(i), "device_time_ns": int(rec.frame_t_ns[i]),
                    },
                    "obs": obs,
                    "entities": {
                        "hands": {hands.side: {"T_hand_to_world": training_data.matrix(hands.T_world_hand[i]),
                                               "grasp": float(hands.grasp[i])}},
                        "objects": {f"obj{j}": {"T_obj_to_world": training_data.matrix(objects[name].T_world_obj[w]),
                                                "is_dynamic": bool(objects[name].is_dynamic), "name": name}
                                    for j, name in enumerate(names)},
                    },
                }
                training_data.validate(record, str(folder / training_data.FILE_NAME))
                in_flight.append(writer.submit(self._write_folder, folder, files, record))
                while len(in_flight) > WRITES_IN_FLIGHT:
                    in_flight.popleft().result()  # raises what the writer raised
                    bar.update()
            while in_flight:
                in_flight.popleft().result()
                bar.update()

    def _write_folder(self, folder: Path, files: dict[str, np.ndarray | Path], record: dict) -> None:
        """A kept frame's folder, written as a hidden temporary folder and renamed when complete (so that an
        interrupted run leaves no partial frame); ``files``: file name -> image, or the path of a file to copy."""
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for file_name, content in files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, tmp / file_name)
            else:
                write_image(tmp / file_name, content, self.config.image.jpeg_quality)
        write_json_atomic(tmp / training_data.FILE_NAME, record)
        tmp.rename(folder)

    def _views(self, rgb: np.ndarray, camera, hand: HandInCamera, T_camera_hand: np.ndarray, grasped: bool,
               masks: dict[str, np.ndarray], objects: dict[str, ObjectTrack], w: int) -> dict[str, np.ndarray]:
        """The six images of a kept frame: the frame, its masks, the arm removed, gripper and keypoints drawn."""
        arm = self.arm_masker.mask(rgb, camera, [hand])
        without_arm = self.inpainter.inpaint(rgb, arm)
        gripper = self.views.gripper
        opening = gripper.closed_width_m if grasped else gripper.open_width_m
        labels = np.zeros(arm.shape, np.uint8)
        for j, name in enumerate(objects):
            labels[masks[name] & (labels == 0)] = j + 1

        def decorate(image: np.ndarray) -> np.ndarray:
            out = self.overlay.draw(image, camera, T_camera_hand, opening)
            for j, track in enumerate(objects.values()):
                out = draw_keypoints(out, track.keypoints_uv[w][track.keypoints_visible[w]], self.views.keypoints, j)
            return out

        return {"rgb_path": rgb, "mask_arm_path": arm.astype(np.uint8) * 255, "mask_obj_path": labels,
                "rgb_WoArm_path": without_arm, "rgb_WArmObjKpts_path": decorate(rgb),
                "rgb_WoArm_WArmObjKpts_path": decorate(without_arm)}


_TRACK_FIELDS = ("T_world_obj", "valid", "reason", "is_dynamic", "keypoints_world", "keypoints_uv",
                 "keypoints_visible", "reprojection_error_px")


def _storable(value) -> np.ndarray:
    """An array np.savez can store without pickling (strings as unicode arrays)."""
    array = np.asarray(value)
    return array.astype(str) if array.dtype == object else array


def _unwrap(value: np.ndarray):
    if value.ndim == 0:
        return value.item()
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanego_training preprocess",
        description="Turn human recordings (Aria VRS + MPS, or recording folders such as the synthetic demos) "
                    "into training frames: hand pose and grasp from MPS hand tracking, manipulation-phase "
                    "trimming, object masks, tracks and 3D poses, arm removal, virtual gripper. Writes "
                    "<recording>/preprocess/all_data/<idx>/training_data.json with the images, and a report "
                    "(report.json, report.png). Each stage is cached: an interrupted or re-run job resumes.",
        epilog="example: humanego run humanego_training preprocess --recording data/serve_bread --task serve_bread "
               "--hdf5 data/serve_bread/egomimic.hdf5")
    parser.add_argument("--recording", type=Path, required=True, nargs="+",
                        help="a recording folder, or a folder of recordings (all are processed)")
    parser.add_argument("--task", required=True, help="task name from config/tasks (the object prompts) or a YAML path")
    parser.add_argument("--config", type=Path, help="preprocessing YAML (default config/preprocess.yaml)")
    parser.add_argument("--hdf5", type=Path, help="also export all processed recordings to this EgoMimic HDF5 file")
    parser.add_argument("--force", action="store_true", help="ignore the caches and recompute every stage")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--describe-config", action="store_true",
                        help="print every configuration key with its type, default and meaning, and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--describe-config" in argv:
        print("\n".join(describe_schema(PreprocessConfig)))
        return 0
    args = build_parser().parse_args(argv)
    try:
        config = load_preprocess_config(args.config)
        task = load_task(args.task)
        recordings = [r for path in args.recording for r in find_recordings(path)]
        pre = Preprocessor(task, config, progress=not args.no_progress, force=args.force)
    except (ConfigError, HumanRecordingError, ValueError, OSError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    failed, done = [], []
    for root in tqdm(recordings, desc="recordings", unit="rec", disable=args.no_progress or len(recordings) < 2):
        try:
            result = pre.run(root)
        except (HumanRecordingError, ValueError, OSError) as exc:
            print(f"[ERROR] {root}: {exc}", file=sys.stderr)
            failed.append(root)
            continue
        done.append(root)
        drops = ", ".join(f"{n} {r}" for r, n in result.dropped.items()) or "none"
        print(f"{root}: kept {result.kept}/{result.frames} frames in {result.seconds:.1f} s (dropped: {drops}) "
              f"-> {root / training_data.ALL_DATA}, report {result.report}")
    if args.hdf5 and done:
        summary = egomimic.export([r for r in done if (r / training_data.ALL_DATA).is_dir()], args.hdf5)
        print(f"EgoMimic HDF5: {summary['demos']} demos, {summary['samples']} samples -> {summary['path']}")
    if failed:
        print(f"[ERROR] {len(failed)} of {len(recordings)} recordings failed: {', '.join(map(str, failed))}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
