"""Training samples from preprocessed recordings (``<recording>/preprocess/all_data/<idx>/training_data.json``).

One sample per kept frame ``t`` of a recording (DESIGN.md section 5):

- ``image``: the view the policy sees, float32 (3, h, w) in [0, 1]. The default observation ``clean_view`` is
  what the robot's ``clean_view`` node publishes: the arm removed (``rgb_WoArm``) with the virtual gripper drawn
  at the hand, opened by its grasp state (:class:`GripperOverlay` with the views config, as preprocessing and
  ``clean_view`` draw it) and no object keypoints (the robot side draws none). Any stored RGB image of the frame
  can be chosen instead (``observation``). Frames are area-resized to the policy's input size
  (:func:`humanego_policy.policies.prepare_image`, the runtime's conversion);
- ``tokens``, ``token_mask``: the interaction tokens of frame t (:func:`humanego_core.ict.build_tokens`) with
  the reference frame of the ICT config: ``camera_frame`` = the clip's first camera (``world_transforms.cam0``),
  ``anchor_frame`` = the static anchor object (``metadata.anchor_key``);
- ``actions`` (H, 10): the hand at ``ts_t + k / rate`` for k = 1..H (30 Hz), in frame t's reference frame,
  encoded by :func:`humanego_core.actions.encode_actions`. Poses between kept frames are interpolated from the
  frame timestamps (SLERP + linear, grasp linear); past the last kept frame the last pose repeats.
  ``action_valid`` (H,) is False past the end, and where the kept frames around a step lie more than
  ``max_gap_s`` apart (frames dropped by preprocessing: the interpolation would be a guess);
- ``done``: ``metadata.is_finished`` of frame t;
- ``K`` (3, 3): the pinhole intrinsics of ``image`` (after resizing and augmentation), and ``T_camera_ref``
  (4, 4): frame t's camera in the reference frame, so that predicted paths can be drawn on the image.

Augmentation (training only, on whole batches: :func:`augment_batch`) is a random crop (``crop_scale`` of each
side or more, anywhere in the image) resized back to the input size, i.e. a zoom and shift applied as one
affine warp whose matrix also updates ``K`` (the only image-space annotation), then colour jitter (brightness,
contrast, saturation) and Gaussian noise.

A frame whose file holds NaN or inf is left out and counted (``rejected``); any other departure from the
schema raises :class:`~humanego_core.training_data.TrainingDataError`, and a missing image raises
``FileNotFoundError`` naming it. Images are decoded, drawn and resized once and cached per recording in
``cache_dir`` (keyed by the files' sizes and times and every setting they depend on), so later runs start fast.

The split is by recording (:func:`split_recordings`): held-out recordings never contribute a frame to training;
``dataset_stats.json`` (:func:`compute_dataset_stats`) comes from the training recordings only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from humanego_core import geometry, training_data
from humanego_core.actions import NormStats, compute_stats, encode_actions
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.config import option
from humanego_core.ict import HandState, ICTConfig, ObjectState, build_tokens, reference_transform
from humanego_perception.gripper_overlay import GripperOverlay
from humanego_perception.views import load_views_config
from humanego_policy.policies import prepare_image
from humanego_training.image_io import read_rgb
from humanego_training.report import REPORT_JSON
from humanego_training.stage_cache import StageCache, file_signature, fingerprint

CACHE_VERSION = 1  # bump when the cached images change meaning
CLEAN_VIEW = "clean_view"
RGB_KEYS = tuple(k for k in training_data.IMAGE_KEYS if k.startswith("rgb"))
OBSERVATIONS = (CLEAN_VIEW, *RGB_KEYS)


@dataclass
class ICTSettings:
    frame_mode: Literal["camera_frame", "anchor_frame"] = option(
        "camera_frame", help="reference frame of tokens and actions: camera_frame (the clip's first camera; the "
                             "robot's fixed camera) or anchor_frame (the static anchor object)")
    dual_hand: bool = option(False, help="two hand slots per token (bimanual layout)")
    hand_side: Literal["left", "right"] = option("right", help="the hand whose future is the action (one-arm tasks)")
    max_tokens: int = option(8, help="token rows (entities padded to this)", minimum=1, maximum=64)

    def ict_config(self) -> ICTConfig:
        return ICTConfig(self.frame_mode, self.dual_hand, self.hand_side, self.max_tokens)


@dataclass
class AugmentConfig:
    enabled: bool = option(True, help="augment training samples (never evaluation samples)")
    crop_scale: float = option(0.85, help="random crops keep at least this fraction of each side, anywhere in "
                                          "the image, resized back (1: no crop)", minimum=0.3, maximum=1.0)
    brightness: float = option(0.2, help="brightness factor drawn from 1 +- this", minimum=0.0, maximum=1.0)
    contrast: float = option(0.2, help="contrast factor drawn from 1 +- this", minimum=0.0, maximum=1.0)
    saturation: float = option(0.2, help="saturation factor drawn from 1 +- this", minimum=0.0, maximum=1.0)
    noise_std: float = option(0.02, help="std of Gaussian pixel noise (image values in [0, 1])", minimum=0.0,
                              maximum=0.5)


@dataclass
class DataConfig:
    recordings: list[str] = option(help="preprocessed recordings, or folders of them (paths relative to the "
                                        "working directory)")
    held_out: list[str] = option(default_factory=list, help="recordings (paths, folders or folder names) kept for "
                                                            "evaluation only; empty: a random held_out_fraction")
    held_out_fraction: float = option(0.1, help="share of the recordings held out when held_out is empty",
                                      minimum=0.0, maximum=0.9)
    split_seed: int = option(0, help="seed of the random held-out choice")
    observation: Literal[OBSERVATIONS] = option(CLEAN_VIEW, help="the image the policy sees: clean_view (arm "
                                                "removed, virtual gripper drawn: the robot's camera/image_clean) "
                                                "or one of the stored images " + ", ".join(RGB_KEYS))
    views_config: str | None = option(None, help="views YAML whose gripper clean_view draws; null: the shipped "
                                                 "config/views.yaml (what clean_view uses)")
    action_rate_hz: float = option(30.0, help="rate of the future action steps (Hz)", minimum=1.0)
    max_gap_s: float = option(0.2, help="steps between kept frames further apart than this are invalid targets",
                              minimum=0.0)
    frame_stride: int = option(1, help="use every n-th kept frame as a sample (targets still use all frames)",
                               minimum=1)
    ict: ICTSettings = option(default_factory=ICTSettings, help="interaction-token layout")
    augment: AugmentConfig = option(default_factory=AugmentConfig, help="training-time augmentation")
    cache_dir: str | None = option("build/cache/datasets", help="decoded image cache (null: no cache)")


# ----- recordings and splits ---------------------------------------------------------------------------------
def is_preprocessed(path: Path) -> bool:
    return (Path(path) / training_data.ALL_DATA).is_dir()


def is_finished(path: Path) -> bool:
    """Preprocessing wrote its report, the last thing it does."""
    return (Path(path) / training_data.ALL_DATA).parent.joinpath(REPORT_JSON).is_file()


def expand_recordings(paths: Sequence[str | Path]) -> list[Path]:
    """Preprocessed recordings from paths that are one or a folder of them, in order, without repeats. In a
    folder, recordings whose preprocessing has not finished (no ``preprocess/report.json`` yet) are skipped."""
    out: list[Path] = []
    for path in map(Path, paths):
        if is_preprocessed(path):
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if is_preprocessed(p) and is_finished(p))
        else:
            raise FileNotFoundError(f"{path}: no such recording or folder")
        if not found:
            raise FileNotFoundError(f"{path}: neither a preprocessed recording (with {training_data.ALL_DATA}) nor a "
                                    "folder of them: run humanego_training preprocess first")
        seen = {r.resolve() for r in out}
        out.extend(r for r in found if r.resolve() not in seen)
    return out


def split_recordings(recordings: Sequence[Path], held_out: Sequence[str | Path] = (), fraction: float = 0.1,
                     seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(training, held-out) recordings. ``held_out`` names recordings (a path, a folder of recordings, or a
    folder name); empty: ``round(fraction * n)`` recordings drawn with ``seed`` (at least one when n > 1 and
    fraction > 0). A held-out name that matches nothing raises ValueError."""
    recordings = list(recordings)
    if held_out:
        chosen: set[int] = set()
        for name in held_out:
            path = Path(name)
            targets = {r.resolve() for r in expand_recordings([path])} if path.exists() else set()
            hits = {i for i, r in enumerate(recordings) if r.resolve() in targets or r.name == str(name)}
            if not hits:
                raise ValueError(f"held_out: {name!r} is none of the {len(recordings)} recordings")
            chosen |= hits
    else:
        n = int(round(fraction * len(recordings)))
        if fraction > 0 and len(recordings) > 1:
            n = max(n, 1)
        chosen = set(np.random.default_rng(seed).permutation(len(recordings))[:n].tolist())
    train = [r for i, r in enumerate(recordings) if i not in chosen]
    if not train:
        raise ValueError("every recording is held out: nothing is left to train on")
    return train, [r for i, r in enumerate(recordings) if i in chosen]


# ----- one recording -----------------------------------------------------------------------------------------
@dataclass
class RecordingFrames:
    """The usable kept frames of one recording, in time order, as arrays."""

    root: Path
    files: list[Path]
    data: list[dict]
    ts: np.ndarray  # (F,) s
    T_world_ref: np.ndarray  # (F, 4, 4)
    T_world_hand: np.ndarray  # (F, 4, 4) the action hand
    grasp: np.ndarray  # (F,)
    rejected: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.files)


def _nonfinite_key(value, key: str = "") -> str | None:
    """The dotted key of the first NaN/inf number in parsed JSON, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return key
    if isinstance(value, dict):
        items = ((f"{key}.{k}" if key else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{key}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next((found for k, v in items if (found := _nonfinite_key(v, k)) is not None), None)


def _objects(data: dict) -> list[ObjectState]:
    meta, objects = data["metadata"], data["entities"]["objects"]
    return [ObjectState(obj.get("name", key), np.array(obj["T_obj_to_world"]), key == meta["anchor_key"])
            for key, obj in objects.items()]


def _hands(data: dict) -> list[HandState]:
    return [HandState(side, np.array(hand["T_hand_to_world"]), float(hand["grasp"]))
            for side, hand in data["entities"]["hands"].items()]


def load_recording(root: Path, config: DataConfig) -> RecordingFrames:
    """The recording's training_data.json files, checked; frames holding NaN/inf are left out and counted."""
    root = Path(root)
    folder = root / training_data.ALL_DATA
    files = sorted(f for f in folder.glob(f"*/{training_data.FILE_NAME}") if f.parent.name.isdigit())
    if not files:
        raise training_data.TrainingDataError(str(folder), "", "no training_data.json files: preprocess the "
                                                               "recording first (humanego_training preprocess)")
    ict = config.ict.ict_config()
    kept_files, kept, rejected = [], [], Counter()
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise training_data.TrainingDataError(str(path), "", f"cannot read ({exc})") from None
        bad = _nonfinite_key(data)
        if bad is not None:
            rejected[f"NaN/inf in {bad}"] += 1
            continue
        training_data.validate(data, str(path))
        if ict.hand_side not in data["entities"]["hands"]:
            raise training_data.TrainingDataError(str(path), f"entities.hands.{ict.hand_side}",
                                                  f"no {ict.hand_side} hand (the ICT config's hand_side); this "
                                                  f"recording has {', '.join(data['entities']['hands'])}")
        kept_files.append(path)
        kept.append(data)
    if not kept:
        raise training_data.TrainingDataError(str(folder), "", f"every frame was rejected ({dict(rejected)})")
    order = np.argsort([d["metadata"]["ts"] for d in kept], kind="stable")
    kept_files, kept = [kept_files[i] for i in order], [kept[i] for i in order]
    ts = np.array([d["metadata"]["ts"] for d in kept], dtype=np.float64)
    if np.any(np.diff(ts) <= 0):
        i = int(np.flatnonzero(np.diff(ts) <= 0)[0])
        raise training_data.TrainingDataError(str(kept_files[i + 1]), "metadata.ts",
                                              f"{ts[i + 1]} does not follow {ts[i]} of {kept_files[i]}")
    T_world_ref = np.stack([reference_transform(ict, np.array(d["metadata"]["world_transforms"]["cam0"]),
                                                _objects(d)) for d in kept])
    hands = [d["entities"]["hands"][ict.hand_side] for d in kept]
    return RecordingFrames(root, kept_files, kept, ts, T_world_ref,
                           np.array([h["T_hand_to_world"] for h in hands], dtype=np.float64),
                           np.array([h["grasp"] for h in hands], dtype=np.float64), rejected)


def hand_in_ref(rec: RecordingFrames) -> np.ndarray:
    """(F, 4, 4) the action hand in each frame's own reference frame."""
    return geometry.invert(rec.T_world_ref) @ rec.T_world_hand


def compute_dataset_stats(recordings: Sequence[RecordingFrames]) -> NormStats:
    """Position statistics of the action hand in the reference frame over the given (training) recordings."""
    positions = np.concatenate([hand_in_ref(r)[:, :3, 3] for r in recordings])
    stats = compute_stats(positions)
    return NormStats(stats.pos_mean, stats.pos_std,
                     {"frames": int(len(positions)), "recordings": [str(r.root) for r in recordings]})


def future_targets(rec: RecordingFrames, horizon: int, rate_hz: float,
                   max_gap_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T_ref_hand (F, H, 4, 4), grasp (F, H), valid (F, H)): the hand at ts + k / rate, k = 1..H, in each
    frame's reference frame; the last pose repeats past the end (valid False), as it does across gaps longer
    than ``max_gap_s`` (valid False there too)."""
    F = len(rec)
    query = rec.ts[:, None] + np.arange(1, horizon + 1)[None, :] / rate_hz  # (F, H)
    if F == 1:
        T_world = np.broadcast_to(rec.T_world_hand[0], (1, horizon, 4, 4)).copy()
        grasp = np.full((1, horizon), rec.grasp[0])
        valid = np.zeros((1, horizon), bool)
    else:
        T_world = geometry.interpolate_trajectory(rec.ts, rec.T_world_hand, query.ravel()).reshape(F, horizon, 4, 4)
        grasp = np.interp(query, rec.ts, rec.grasp)
        after = np.clip(np.searchsorted(rec.ts, query), 1, F - 1)  # the first kept frame at or after each step
        gap = rec.ts[after] - rec.ts[after - 1]
        on_frame = np.minimum(np.abs(rec.ts[after] - query), np.abs(rec.ts[after - 1] - query)) < 1e-6
        valid = (query <= rec.ts[-1] + 1e-6) & (on_frame | (gap <= max_gap_s + 1e-9))
    T_ref = geometry.invert(rec.T_world_ref)[:, None] @ T_world
    return T_ref, grasp, valid


# ----- images ------------------------------------------------------------------------------------------------
def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """K of an image (height, width) ``from_size`` resized to ``to_size`` (pixel centres at integer coordinates,
    as OpenCV resizes)."""
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    A = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return A @ K


class ImageSource:
    """The observation image of a kept frame at the policy's input size, uint8 (3, h, w)."""

    def __init__(self, config: DataConfig, image_size: tuple[int, int]):
        self.observation = config.observation
        self.image_size = tuple(image_size)
        self.overlay = None
        self.gripper_config = None
        if self.observation == CLEAN_VIEW:
            views = load_views_config(config.views_config)
            self.overlay, self.gripper_config = GripperOverlay(views.gripper), views.gripper

    def key(self) -> str:
        return fingerprint(CACHE_VERSION, self.observation, self.image_size, self.gripper_config)

    def files(self, rec: RecordingFrames) -> list[Path]:
        name = "rgb_WoArm_path" if self.observation == CLEAN_VIEW else self.observation
        return [rec.root / d["obs"][name] for d in rec.data]

    def __call__(self, rec: RecordingFrames, i: int, path: Path) -> np.ndarray:
        image = read_rgb(path)
        meta = rec.data[i]["metadata"]
        if image.shape[:2] != (meta["h"], meta["w"]):
            raise training_data.TrainingDataError(str(path), "", f"image is {image.shape[1]}x{image.shape[0]}, "
                                                  f"{rec.files[i]} says {meta['w']}x{meta['h']}")
        if self.overlay is not None:
            K = np.array(meta["k"])
            camera = CameraModel(LINEAR, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]), meta["w"], meta["h"])
            T_camera_hand = geometry.invert(np.array(meta["c2w"])) @ rec.T_world_hand[i]
            grasped = rec.grasp[i] >= 0.5
            opening = self.gripper_config.closed_width_m if grasped else self.gripper_config.open_width_m
            image = self.overlay.draw(image, camera, T_camera_hand, opening)
        return np.round(prepare_image(image, self.image_size) * 255.0).astype(np.uint8)


def load_images(rec: RecordingFrames, source: ImageSource, cache_dir: Path | None,
                progress: bool = False) -> np.ndarray:
    """(F, 3, h, w) uint8 observation images of a recording, from the cache when its key matches."""
    files = source.files(rec)
    cache = key = None
    if cache_dir is not None:
        folder = Path(cache_dir) / hashlib.sha256(str(rec.root.resolve()).encode()).hexdigest()[:16]
        cache = StageCache(folder)
        key = fingerprint(source.key(), file_signature(files + rec.files))
        stored = cache.load("images", key)
        if stored is not None:
            return stored["images"]
    h, w = source.image_size
    images = np.empty((len(files), 3, h, w), np.uint8)
    for i, path in enumerate(tqdm(files, desc=f"{rec.root.name}: images", unit="frame", disable=not progress,
                                  leave=False)):
        images[i] = source(rec, i, path)
    if cache is not None:
        cache.save("images", key, {"images": images, "source": np.str_(str(rec.root))})
    return images


# ----- augmentation ------------------------------------------------------------------------------------------
def augment_batch(image: torch.Tensor, K: torch.Tensor, config: AugmentConfig,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop (zoom + shift) resized back, colour jitter and noise of a batch of float32 (B, 3, h, w) images
    in [0, 1], on their device. Returns the images and ``K`` (B, 3, 3) updated by the same warp, so that a point
    projected with the new K lands on the same content. Draws come from ``generator`` (CPU)."""
    b, _, h, w = image.shape

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(b, generator=generator, dtype=torch.float64)).to(image.device)

    out, K = image, K.to(torch.float64)
    if config.crop_scale < 1.0:
        scale = uniform(config.crop_scale, 1.0)
        x0 = uniform(0.0, 1.0) * (1.0 - scale) * w  # crop window [x0, x0 + scale * w] in pixel edges
        y0 = uniform(0.0, 1.0) * (1.0 - scale) * h
        # Input <- output in normalised coordinates (align_corners=False): x_in = s * x_out + s - 1 + 2 x0 / w.
        theta = torch.zeros(b, 2, 3, dtype=torch.float64, device=image.device)
        theta[:, 0, 0] = theta[:, 1, 1] = scale
        theta[:, 0, 2] = scale - 1.0 + 2.0 * x0 / w
        theta[:, 1, 2] = scale - 1.0 + 2.0 * y0 / h
        grid = F.affine_grid(theta.to(image.dtype), list(image.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        # The same map on pixel coordinates (centres at integers): u' = (u + 0.5 - x0) / s - 0.5.
        A = torch.zeros(b, 3, 3, dtype=torch.float64, device=image.device)
        A[:, 0, 0] = A[:, 1, 1] = 1.0 / scale
        A[:, 0, 2] = (0.5 - x0) / scale - 0.5
        A[:, 1, 2] = (0.5 - y0) / scale - 0.5
        A[:, 2, 2] = 1.0
        K = A @ K.to(image.device)
    view = (b, 1, 1, 1)
    if config.brightness:
        out = out * uniform(1.0 - config.brightness, 1.0 + config.brightness).to(out.dtype).view(view)
    if config.contrast:
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * uniform(1.0 - config.contrast, 1.0 + config.contrast).to(out.dtype).view(view) + mean
    if config.saturation:
        grey = out.mean(dim=1, keepdim=True)
        out = (out - grey) * uniform(1.0 - config.saturation, 1.0 + config.saturation).to(out.dtype).view(view) + grey
    if config.noise_std:
        noise = torch.randn(out.shape, generator=generator, dtype=out.dtype).to(out.device)
        out = out + config.noise_std * noise
    return out.clamp(0.0, 1.0), K.to(torch.float32)


# ----- the dataset -------------------------------------------------------------------------------------------
class PolicyDataset(torch.utils.data.Dataset):
    """Samples of several recordings (see the module docstring), unaugmented: training augments whole batches
    (:func:`augment_batch`)."""

    def __init__(self, recordings: Sequence[RecordingFrames], config: DataConfig, stats: NormStats, horizon: int,
                 image_size: tuple[int, int], progress: bool = False):
        self.config, self.stats, self.horizon, self.image_size = config, stats, int(horizon), tuple(image_size)
        self.rejected: Counter = Counter()
        self.recordings = [r.root for r in recordings]
        ict = config.ict.ict_config()
        source = ImageSource(config, self.image_size)
        cache_dir = Path(config.cache_dir) if config.cache_dir else None
        parts: dict[str, list] = {k: [] for k in ("image", "tokens", "token_mask", "actions", "action_valid", "done",
                                                  "K", "T_camera_ref", "recording", "frame")}
        for r, rec in enumerate(tqdm(recordings, desc="dataset", unit="rec", disable=not progress)):
            self.rejected.update(rec.rejected)
            images = load_images(rec, source, cache_dir, progress)
            T_ref, grasp, valid = future_targets(rec, self.horizon, config.action_rate_hz, config.max_gap_s)
            T_camera_ref = geometry.invert(np.array([d["metadata"]["c2w"] for d in rec.data])) @ rec.T_world_ref
            for i in range(0, len(rec), config.frame_stride):
                meta = rec.data[i]["metadata"]
                try:
                    tokens = build_tokens(ict, rec.T_world_ref[i], _hands(rec.data[i]), _objects(rec.data[i]), stats)
                    actions = encode_actions(T_ref[i], grasp[i], stats)
                except ValueError as exc:
                    raise training_data.TrainingDataError(str(rec.files[i]), "", str(exc)) from None
                if not (np.all(np.isfinite(tokens.tokens)) and np.all(np.isfinite(actions))):
                    self.rejected["NaN/inf in tokens or actions"] += 1
                    continue
                K = scale_intrinsics(np.array(meta["k"]), (meta["h"], meta["w"]), self.image_size)
                for key, value in (("image", images[i]), ("tokens", tokens.tokens), ("token_mask", tokens.mask),
                                   ("actions", actions), ("action_valid", valid[i]), ("done", meta["is_finished"]),
                                   ("K", K), ("T_camera_ref", T_camera_ref[i]), ("recording", r), ("frame", i)):
                    parts[key].append(value)
        if not parts["image"]:
            raise ValueError(f"no samples in {len(recordings)} recordings (rejected: {dict(self.rejected)})")
        self.images = np.stack(parts.pop("image"))
        self.tokens = np.stack(parts.pop("tokens")).astype(np.float32)
        self.token_mask = np.stack(parts.pop("token_mask"))
        self.actions = np.stack(parts.pop("actions")).astype(np.float32)
        self.action_valid = np.stack(parts.pop("action_valid"))
        self.done = np.array(parts.pop("done"), np.float32)
        self.K = np.stack(parts.pop("K")).astype(np.float32)
        self.T_camera_ref = np.stack(parts.pop("T_camera_ref")).astype(np.float32)
        self.recording = np.array(parts.pop("recording"), np.int64)
        self.frame = np.array(parts.pop("frame"), np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(self.images[index].astype(np.float32) / np.float32(255.0)),
                "tokens": torch.from_numpy(self.tokens[index]), "token_mask": torch.from_numpy(self.token_mask[index]),
                "actions": torch.from_numpy(self.actions[index]),
                "action_valid": torch.from_numpy(self.action_valid[index]),
                "done": torch.tensor(self.done[index]), "K": torch.from_numpy(self.K[index]),
                "T_camera_ref": torch.from_numpy(self.T_camera_ref[index]), "index": torch.tensor(index)}

    def describe(self, index: int) -> str:
        return f"{self.recordings[self.recording[index]]} frame {self.frame[index]}"

