"""``training_data.json``: one file per kept frame of a preprocessed recording (HumanEgo's schema).

DESIGN.md section 5. Layout: ``<recording>/preprocess/all_data/<05d>/training_data.json`` with the frame's
images next to it; image paths are relative to the recording folder. ::

    metadata: idx, ts, w, h, fps, k (3x3), c2w (4x4), anchor_key, is_finished,
              world_transforms {cam0: 4x4, virtual_static_anchor: 4x4}
    obs:      mask_arm_path, mask_obj_path, rgb_path, rgb_WArmObjKpts_path, rgb_WoArm_path,
              rgb_WoArm_WArmObjKpts_path
    entities: hands {left|right: {T_hand_to_world 4x4, grasp}},
              objects {objN: {T_obj_to_world 4x4, is_dynamic}}

Additions that HumanEgo's readers ignore: ``metadata.frame_index`` (the frame in the recording),
``metadata.device_time_ns`` and ``entities.objects.objN.name`` (the task's object name). ``ts`` is seconds
since the first kept frame; ``c2w`` is ``T_world_camera`` of the rectified (pinhole) camera whose
intrinsics are ``k``; ``cam0`` is the camera of the first kept frame.

:func:`validate` checks a loaded file against the schema (keys, shapes, finite numbers, rigid transforms,
files that exist) and raises :class:`TrainingDataError` naming the file and the dotted key.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from humanego_core.geometry import GeometryError, check_transform

FILE_NAME = "training_data.json"
ALL_DATA = "preprocess/all_data"
IMAGE_KEYS = ("mask_arm_path", "mask_obj_path", "rgb_path", "rgb_WArmObjKpts_path", "rgb_WoArm_path",
              "rgb_WoArm_WArmObjKpts_path")
HAND_SIDES = ("left", "right")


class TrainingDataError(ValueError):
    def __init__(self, source: str, key: str, problem: str):
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def frame_folder(recording: Path, idx: int) -> Path:
    return Path(recording) / ALL_DATA / f"{idx:05d}"


def load(path: str | Path, recording: str | Path | None = None) -> dict:
    """Read and validate one training_data.json (``recording`` defaults to the folder above preprocess/)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise TrainingDataError(str(path), "", f"cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise TrainingDataError(str(path), "", f"not JSON ({exc})") from None
    validate(data, str(path), Path(recording) if recording is not None else path.parents[3])
    return data


def validate(data, source: str, recording: Path | None = None) -> None:
    """Raise TrainingDataError on the first departure from the schema; with ``recording``, image files must exist."""
    _mapping(data, source, "", ("metadata", "obs", "entities"))
    meta = data["metadata"]
    _mapping(meta, source, "metadata", ("idx", "ts", "w", "h", "fps", "k", "c2w", "anchor_key", "is_finished",
                                        "world_transforms"))
    for key in ("idx", "w", "h"):
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0:
            raise TrainingDataError(source, f"metadata.{key}", f"must be a non-negative integer, got {meta[key]!r}")
    for key in ("ts", "fps"):
        _number(meta[key], source, f"metadata.{key}")
    if not isinstance(meta["is_finished"], bool):
        raise TrainingDataError(source, "metadata.is_finished", "must be true or false")
    k = _matrix(meta["k"], (3, 3), source, "metadata.k")
    if not (k[0, 0] > 0 and k[1, 1] > 0 and np.allclose(k[2], [0, 0, 1]) and k[1, 0] == 0 and k[0, 1] == 0):
        raise TrainingDataError(source, "metadata.k", "must be a pinhole matrix [[fx,0,cx],[0,fy,cy],[0,0,1]]")
    _transform(meta["c2w"], source, "metadata.c2w")
    _mapping(meta["world_transforms"], source, "metadata.world_transforms", ("cam0", "virtual_static_anchor"))
    for key, value in meta["world_transforms"].items():
        _transform(value, source, f"metadata.world_transforms.{key}")
    entities = data["entities"]
    _mapping(entities, source, "entities", ("hands", "objects"))
    if not isinstance(entities["hands"], dict) or not entities["hands"]:
        raise TrainingDataError(source, "entities.hands", "must map left/right to a hand")
    for side, hand in entities["hands"].items():
        if side not in HAND_SIDES:
            raise TrainingDataError(source, f"entities.hands.{side}", f"side must be one of {HAND_SIDES}")
        _mapping(hand, source, f"entities.hands.{side}", ("T_hand_to_world", "grasp"))
        _transform(hand["T_hand_to_world"], source, f"entities.hands.{side}.T_hand_to_world")
        grasp = _number(hand["grasp"], source, f"entities.hands.{side}.grasp")
        if not 0.0 <= grasp <= 1.0:
            raise TrainingDataError(source, f"entities.hands.{side}.grasp", f"must lie in [0, 1], got {grasp}")
    if not isinstance(entities["objects"], dict):
        raise TrainingDataError(source, "entities.objects", "must be a mapping")
    for name, obj in entities["objects"].items():
        _mapping(obj, source, f"entities.objects.{name}", ("T_obj_to_world", "is_dynamic"))
        _transform(obj["T_obj_to_world"], source, f"entities.objects.{name}.T_obj_to_world")
        if not isinstance(obj["is_dynamic"], bool):
            raise TrainingDataError(source, f"entities.objects.{name}.is_dynamic", "must be true or false")
    if meta["anchor_key"] not in entities["objects"]:
        raise TrainingDataError(source, "metadata.anchor_key",
                                f"{meta['anchor_key']!r} is not one of the objects {sorted(entities['objects'])}")
    _mapping(data["obs"], source, "obs", IMAGE_KEYS)
    for key in IMAGE_KEYS:
        value = data["obs"][key]
        if not isinstance(value, str) or not value or Path(value).is_absolute():
            raise TrainingDataError(source, f"obs.{key}", f"must be a path relative to the recording, got {value!r}")
        if recording is not None and not (recording / value).is_file():
            raise TrainingDataError(source, f"obs.{key}", f"{recording / value} does not exist")


def _mapping(value, source: str, key: str, required) -> None:
    if not isinstance(value, dict):
        raise TrainingDataError(source, key, f"must be a mapping, got {type(value).__name__}")
    for name in required:
        if name not in value:
            raise TrainingDataError(source, f"{key}.{name}" if key else name, "required key is missing")


def _number(value, source: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TrainingDataError(source, key, f"must be a finite number, got {value!r}")
    return float(value)


def _matrix(value, shape, source: str, key: str) -> np.ndarray:
    try:
        m = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TrainingDataError(source, key, f"must be a {shape[0]}x{shape[1]} matrix of numbers") from None
    if m.shape != shape:
        raise TrainingDataError(source, key, f"must be {shape[0]}x{shape[1]}, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise TrainingDataError(source, key, "contains NaN or inf")
    return m


def _transform(value, source: str, key: str) -> np.ndarray:
    m = _matrix(value, (4, 4), source, key)
    try:
        return check_transform(m, key, tol=1e-5)
    except GeometryError as exc:
        raise TrainingDataError(source, key, str(exc)) from None


def matrix(value) -> list:
    """A matrix as nested lists of floats (for writing)."""
    return np.asarray(value, dtype=np.float64).tolist()
