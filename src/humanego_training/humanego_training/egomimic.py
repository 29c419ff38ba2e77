"""Export of preprocessed human recordings to EgoMimic's HDF5 layout (for ACT and human+robot co-training).

DESIGN.md section 5, in robomimic's conventions as EgoMimic uses them::

    data/demo_<i>/obs/front_img_1   (T, H, W, 3) uint8   the policy's view (arm removed, virtual gripper drawn)
    data/demo_<i>/obs/ee_pose       (T, 3)               hand position in the frame's camera
    data/demo_<i>/actions_xyz_act   (T, 100, 3)          hand positions at t+1 .. t+100 in the camera at t,
                                                         the last frame repeated past the end
    data/demo_<i>  attrs num_samples, source (the recording folder)
    mask/train, mask/valid          byte strings of demo names
    data attrs total, env_args (JSON), domain "human"

Each recording is one demo, its kept frames (``training_data.json``) in order. Normalisation (z-score per
domain) is computed by the training dataset from these arrays, not stored here.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np

from humanego_core.geometry import invert, transform_points
from humanego_training import training_data

ACTION_HORIZON = 100
POLICY_IMAGE = "rgb_WoArm_WArmObjKpts_path"


def load_frames(recording: Path) -> list[dict]:
    """The recording's training_data.json files in idx order (validated)."""
    files = sorted(f for f in (Path(recording) / training_data.ALL_DATA).glob(f"*/{training_data.FILE_NAME}")
                   if f.parent.name.isdigit())  # not the temporary folder of an interrupted write
    if not files:
        raise training_data.TrainingDataError(str(Path(recording) / training_data.ALL_DATA), "",
                                              "no training_data.json files: preprocess the recording first")
    return [training_data.load(f, recording) for f in files]


def demo_arrays(recording: Path, frames: list[dict], horizon: int = ACTION_HORIZON) -> dict[str, np.ndarray]:
    """front_img_1, ee_pose and actions_xyz_act of one recording's kept frames."""
    side = next(iter(frames[0]["entities"]["hands"]))
    c2w = np.array([f["metadata"]["c2w"] for f in frames])
    hand_world = np.array([f["entities"]["hands"][side]["T_hand_to_world"] for f in frames])[:, :3, 3]
    T = len(frames)
    future = np.minimum(np.arange(T)[:, None] + 1 + np.arange(horizon)[None, :], T - 1)  # (T, horizon)
    cam_from_world = invert(c2w)
    ee_pose = transform_points(cam_from_world, hand_world[:, None, :])[:, 0]
    actions = transform_points(cam_from_world, hand_world[future])
    images = np.stack([_read_rgb(recording / f["obs"][POLICY_IMAGE]) for f in frames])
    return {"front_img_1": images, "ee_pose": ee_pose.astype(np.float32), "actions_xyz_act": actions.astype(np.float32)}


def export(recordings: list[Path], out: Path, valid_fraction: float = 0.1, seed: int = 0,
           horizon: int = ACTION_HORIZON, progress=None) -> dict:
    """Write ``out`` (replaced atomically) from preprocessed recordings; returns a summary."""
    if not recordings:
        raise ValueError("no recordings to export")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie in [0, 1), got {valid_fraction}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    names, total = [], 0
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for i, recording in enumerate(recordings):
            frames = load_frames(recording)
            arrays = demo_arrays(Path(recording), frames, horizon)
            demo = data.create_group(f"demo_{i}")
            obs = demo.create_group("obs")
            obs.create_dataset("front_img_1", data=arrays["front_img_1"], chunks=(1, *arrays["front_img_1"].shape[1:]),
                               compression="lzf")
            obs.create_dataset("ee_pose", data=arrays["ee_pose"])
            demo.create_dataset("actions_xyz_act", data=arrays["actions_xyz_act"])
            demo.attrs["num_samples"] = len(frames)
            demo.attrs["source"] = str(recording)
            names.append(f"demo_{i}")
            total += len(frames)
            if progress is not None:
                progress(1)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(names))
        n_valid = int(round(valid_fraction * len(names))) if len(names) > 1 else 0
        valid = sorted(names[j] for j in order[:n_valid])
        train = sorted(n for n in names if n not in valid)
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array([n.encode() for n in train], dtype="S"))
        mask.create_dataset("valid", data=np.array([n.encode() for n in valid], dtype="S"))
        data.attrs["total"] = total
        data.attrs["domain"] = "human"
        data.attrs["env_args"] = json.dumps({"env_name": "humanego_human", "type": "human", "env_kwargs": {}})
    tmp.replace(out)
    return {"path": str(out), "demos": len(names), "samples": total, "train": train, "valid": valid}


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise training_data.TrainingDataError(str(path), "", "not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
