"""Export of preprocessed human recordings to EgoMimic's HDF5 layout (for ACT and human+robot co-training).

DESIGN.md section 5, in robomimic's conventions as EgoMimic uses them::

    data/demo_<i>/obs/front_img_1   (T, H, W, 3) uint8   the policy's view (arm removed, virtual gripper drawn)
    data/demo_<i>/obs/ee_pose       (T, 3)               hand position in the frame's camera
    data/demo_<i>/actions_xyz_act   (T, 100, 3)          hand positions at t+1 .. t+100 in the camera at t,
                                                         the last frame repeated past the end
    data/demo_<i>  attrs num_samples, source (the recording folder)
    mask/train, mask/valid          byte strings of demo names
    data attrs total, env_args (JSON), domain "human"

Robot demos (``robot_episodes``, domain "robot") go through the same writer (:func:`write_demos`) and add
``obs/joint_positions`` and ``actions_joints_act``.

Each recording is one demo, its kept frames (``training_data.json``) in order. Normalisation (z-score per
domain) is computed by the training dataset from these arrays, not stored here.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from humanego_core import training_data
from humanego_core.geometry import invert, transform_points
from humanego_training.image_io import read_rgb

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
    images = np.stack([read_rgb(recording / f["obs"][POLICY_IMAGE]) for f in frames])
    return {"front_img_1": images, "ee_pose": ee_pose.astype(np.float32), "actions_xyz_act": actions.astype(np.float32)}


def export(recordings: list[Path], out: Path, valid_fraction: float = 0.1, seed: int = 0,
           horizon: int = ACTION_HORIZON, progress=None) -> dict:
    """Write ``out`` (replaced atomically) from preprocessed recordings; returns a summary."""
    if not recordings:
        raise ValueError("no recordings to export")

    def demos():
        for recording in recordings:
            yield str(recording), demo_arrays(Path(recording), load_frames(recording), horizon)

    return write_demos(out, demos(), "human", valid_fraction, seed, progress)


def write_demos(out: Path, demos, domain: str, valid_fraction: float = 0.1, seed: int = 0, progress=None,
                attrs: dict | None = None) -> dict:
    """Write ``out`` (replaced atomically) from ``(source, arrays)`` pairs, one demo each; returns a summary.

    Keys of ``arrays`` that start with ``actions`` are stored in the demo group, the others under ``obs/``;
    ``domain`` ("human" or "robot") goes into the data attributes with ``attrs`` (JSON-encoded when not
    a string or number). Shared by the human export and the robot demos (``robot_episodes``).
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie in [0, 1), got {valid_fraction}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    names, total = [], 0
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for i, (source, arrays) in enumerate(demos):
            demo = data.create_group(f"demo_{i}")
            obs = demo.create_group("obs")
            for key, array in arrays.items():
                group = demo if key.startswith("actions") else obs
                if array.ndim == 4 and array.dtype == np.uint8:  # images: one compressed chunk per frame
                    group.create_dataset(key, data=array, chunks=(1, *array.shape[1:]), compression="lzf")
                else:
                    group.create_dataset(key, data=array)
            num_samples = len(next(iter(arrays.values())))
            demo.attrs["num_samples"] = num_samples
            demo.attrs["source"] = source
            names.append(f"demo_{i}")
            total += num_samples
            if progress is not None:
                progress(1)
        if not names:
            raise ValueError(f"no demos to write to {out}")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(names))
        n_valid = int(round(valid_fraction * len(names))) if len(names) > 1 else 0
        valid = sorted(names[j] for j in order[:n_valid])
        train = sorted(n for n in names if n not in valid)
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array([n.encode() for n in train], dtype="S"))
        mask.create_dataset("valid", data=np.array([n.encode() for n in valid], dtype="S"))
        data.attrs["total"] = total
        data.attrs["domain"] = domain
        data.attrs["env_args"] = json.dumps({"env_name": f"humanego_{domain}", "type": domain, "env_kwargs": {}})
        for key, value in (attrs or {}).items():
            data.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)
    tmp.replace(out)
    return {"path": str(out), "demos": len(names), "samples": total, "train": train, "valid": valid}

