"""EgoMimic co-training samples from the HDF5 export (DESIGN.md section 5): a human and a robot domain.

Files: the human export of ``humanego_training preprocess --hdf5`` (:mod:`humanego_training.egomimic`, data
attribute ``domain`` "human") and robot demos (:mod:`humanego_training.robot_episodes`, "robot"). Every frame of
a demo listed in the file's ``mask/train`` (training) or ``mask/valid`` (evaluation) is a sample:

- ``image`` float32 (3, h, w) in [0, 1]: ``obs/front_img_1`` resized (humanego_policy.policies.prepare_image);
- ``domain`` int64: 0 human, 1 robot (:data:`DOMAINS`);
- ``ee_pose`` (3,), ``actions_xyz`` (H, 3): ``obs/ee_pose`` and the first H steps of ``actions_xyz_act``;
- ``joint_positions`` (J,), ``actions_joints`` (H, J): ``obs/joint_positions`` and ``actions_joints_act`` of
  robot samples; zeros for human samples (their loss is masked by ``domain``);
- ``action_valid`` (H,) bool: step k of frame t is valid while t + k lies within the demo (the export repeats
  the last frame past the end).

Normalisation is a z-score per domain and per key (:class:`DomainStats`, EgoMimic's per-embodiment
normalisation: a hand and a gripper move through different ranges in different cameras), computed over the
training demos only and stored in the run's ``dataset_stats.json`` under ``"egomimic"``.

Domains are balanced in a training epoch by ``robot_fraction``: the robot samples are repeated (or thinned) so
that they make up that share of the epoch; evaluation uses every sample once. NaN/inf frames are left out and
counted (``rejected``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from humanego_core.config import option
from humanego_core.metrics import horizon_weights
from humanego_policy.policies import prepare_image

DOMAINS = ("human", "robot")
HUMAN, ROBOT = 0, 1
KEYS = {"human": ("ee_pose", "actions_xyz_act"),
        "robot": ("ee_pose", "actions_xyz_act", "joint_positions", "actions_joints_act")}
STD_FLOOR = 1e-3  # a key that barely varies is scaled by this rather than blown up


class EgoMimicDataError(ValueError):
    """An HDF5 file that does not fit the EgoMimic layout; the message names the file and the item."""


@dataclass
class EgoMimicDataConfig:
    human: list[str] = option(help="HDF5 files of the human domain (humanego_training preprocess --hdf5)")
    robot: list[str] = option(default_factory=list, help="HDF5 files of the robot domain (humanego_training."
                              "robot_episodes); empty: human data only")
    robot_fraction: float = option(0.5, help="share of robot samples in a training epoch (robot frames repeated or "
                                   "thinned to it); ignored without robot data", minimum=0.0, maximum=1.0)
    frame_stride: int = option(1, help="use every n-th frame of a demo as a sample", minimum=1)


@dataclass(frozen=True)
class KeyStats:
    mean: np.ndarray
    std: np.ndarray

    def normalise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) * self.std + self.mean


@dataclass
class DomainStats:
    """Per-domain, per-key z-score statistics (over the last axis)."""

    stats: dict[str, dict[str, KeyStats]] = field(default_factory=dict)

    def __getitem__(self, domain: str) -> dict[str, KeyStats]:
        return self.stats[domain]

    def to_dict(self) -> dict:
        return {"egomimic": {d: {k: {"mean": s.mean.tolist(), "std": s.std.tolist()} for k, s in keys.items()}
                             for d, keys in self.stats.items()}}

    @classmethod
    def from_dict(cls, data: dict, source: str) -> DomainStats:
        try:
            return cls({d: {k: KeyStats(np.asarray(s["mean"], np.float64), np.asarray(s["std"], np.float64))
                            for k, s in keys.items()} for d, keys in data["egomimic"].items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise EgoMimicDataError(f"{source}: no EgoMimic statistics ({type(exc).__name__}: {exc})") from None

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


@dataclass
class Demo:
    """One demo's arrays, as stored (not normalised)."""

    source: str
    domain: str
    images: np.ndarray            # (T, H0, W0, 3) uint8
    arrays: dict[str, np.ndarray]  # KEYS[domain] -> (T, ...) float


def _read_file(path: Path, split: str) -> tuple[str, list[Demo], list[str] | None]:
    """(domain, demos of ``split``, joint names or None) of one HDF5 file."""
    if not path.is_file():
        raise FileNotFoundError(f"EgoMimic HDF5 {path} not found")
    demos = []
    with h5py.File(path, "r") as f:
        domain = f["data"].attrs.get("domain", "") if "data" in f else ""
        if isinstance(domain, bytes):
            domain = domain.decode()
        if domain not in DOMAINS:
            raise EgoMimicDataError(f"{path}: data attribute 'domain' is {domain!r}, expected one of {DOMAINS}")
        if f"mask/{split}" not in f:
            raise EgoMimicDataError(f"{path}: no mask/{split}")
        joint_names = json.loads(f["data"].attrs["joint_names"]) if domain == "robot" else None
        for name in (n.decode() for n in f[f"mask/{split}"][()]):
            if f"data/{name}" not in f:
                raise EgoMimicDataError(f"{path}: mask/{split} lists {name}, which data/ does not hold")
            demo = f[f"data/{name}"]
            arrays = {}
            for key in KEYS[domain]:
                item = f"obs/{key}" if key in ("ee_pose", "joint_positions") else key
                if item not in demo:
                    raise EgoMimicDataError(f"{path}: data/{name}/{item} is missing (a {domain} demo needs "
                                            f"{', '.join(KEYS[domain])})")
                arrays[key] = demo[item][()].astype(np.float64)
            if "obs/front_img_1" not in demo:
                raise EgoMimicDataError(f"{path}: data/{name}/obs/front_img_1 is missing")
            images = demo["obs/front_img_1"][()]
            lengths = {len(images), *(len(a) for a in arrays.values())}
            if len(lengths) != 1 or images.dtype != np.uint8 or images.ndim != 4:
                raise EgoMimicDataError(f"{path}: data/{name}: arrays of different lengths {sorted(lengths)} or "
                                        f"images not (T, H, W, 3) uint8 ({images.dtype} {images.shape})")
            demos.append(Demo(f"{path}:{name}", domain, images, arrays))
    return domain, demos, joint_names


def load_demos(config: EgoMimicDataConfig, split: str) -> tuple[list[Demo], list[str]]:
    """Demos of ``split`` ("train" or "valid") of every file, and the robot's joint names ([] without robot)."""
    demos, joint_names = [], None
    for expected, paths in (("human", config.human), ("robot", config.robot)):
        for path in map(Path, paths):
            domain, found, names = _read_file(path, split)
            if domain != expected:
                raise EgoMimicDataError(f"{path}: listed under {expected} but holds the {domain} domain")
            if names is not None:
                if joint_names is not None and names != joint_names:
                    raise EgoMimicDataError(f"{path}: joints {names} differ from the other robot files' {joint_names}")
                joint_names = names
            demos.extend(found)
    return demos, joint_names or []


def compute_stats(demos: Sequence[Demo]) -> DomainStats:
    """z-score statistics per domain and key over ``demos`` (the training demos)."""
    stats: dict[str, dict[str, KeyStats]] = {}
    for domain in DOMAINS:
        mine = [d for d in demos if d.domain == domain]
        if not mine:
            continue
        stats[domain] = {}
        for key in KEYS[domain]:
            values = np.concatenate([d.arrays[key].reshape(-1, d.arrays[key].shape[-1]) for d in mine])
            values = values[np.all(np.isfinite(values), axis=1)]
            stats[domain][key] = KeyStats(values.mean(axis=0), np.maximum(values.std(axis=0), STD_FLOOR))
    return DomainStats(stats)


class EgoMimicDataset(torch.utils.data.Dataset):
    """Samples of both domains (module docstring); ``balance``: repeat or thin robot samples to
    ``robot_fraction`` of the epoch (training)."""

    def __init__(self, demos: Sequence[Demo], stats: DomainStats, horizon: int, image_size: tuple[int, int],
                 joint_dim: int, config: EgoMimicDataConfig, balance: bool = False, seed: int = 0,
                 progress: bool = False):
        self.stats, self.horizon, self.image_size, self.joint_dim = stats, int(horizon), tuple(image_size), joint_dim
        self.rejected: Counter = Counter()
        self.sources: list[str] = []
        parts: dict[str, list] = {k: [] for k in ("image", "domain", "ee_pose", "joint_positions", "actions_xyz",
                                                  "actions_joints", "action_valid", "demo", "frame")}
        for index, demo in enumerate(tqdm(demos, desc="egomimic dataset", unit="demo", disable=not progress)):
            self.sources.append(demo.source)
            steps = demo.arrays["actions_xyz_act"].shape[1]
            if steps < self.horizon:
                raise EgoMimicDataError(f"{demo.source}: {steps} action steps, the policy's horizon is {self.horizon}")
            s = stats[demo.domain]
            normalised = {k: s[k].normalise(v) for k, v in demo.arrays.items()}
            T = len(demo.images)
            for t in range(0, T, config.frame_stride):
                sample = {k: v[t] for k, v in normalised.items()}
                if not all(np.all(np.isfinite(v)) for v in sample.values()):
                    self.rejected["NaN/inf in ee_pose, joints or actions"] += 1
                    continue
                robot = demo.domain == "robot"
                parts["image"].append(np.round(prepare_image(demo.images[t], self.image_size) * 255).astype(np.uint8))
                parts["domain"].append(ROBOT if robot else HUMAN)
                parts["ee_pose"].append(sample["ee_pose"])
                parts["actions_xyz"].append(sample["actions_xyz_act"][: self.horizon])
                parts["joint_positions"].append(sample["joint_positions"] if robot else np.zeros(joint_dim, np.float32))
                parts["actions_joints"].append(sample["actions_joints_act"][: self.horizon] if robot else
                                               np.zeros((self.horizon, joint_dim), np.float32))
                parts["action_valid"].append(t + np.arange(1, self.horizon + 1) <= T - 1)
                parts["demo"].append(index)
                parts["frame"].append(t)
        if not parts["image"]:
            raise ValueError(f"no samples in {len(demos)} demos (rejected: {dict(self.rejected)})")
        self.images = np.stack(parts.pop("image"))
        for key, dtype in (("domain", np.int64), ("ee_pose", np.float32), ("joint_positions", np.float32),
                           ("actions_xyz", np.float32), ("actions_joints", np.float32), ("action_valid", bool),
                           ("demo", np.int64), ("frame", np.int64)):
            setattr(self, key, np.asarray(parts[key], dtype=dtype))
        self.index = np.arange(len(self.images))
        robot = np.flatnonzero(self.domain == ROBOT)
        human = np.flatnonzero(self.domain == HUMAN)
        if balance and len(robot) and len(human):
            # robot / (human + robot) = robot_fraction, with every human sample once per epoch
            f = config.robot_fraction
            count = len(robot) if f >= 1.0 else int(round(f * len(human) / (1.0 - f)))
            rng = np.random.default_rng(seed)
            picks = np.concatenate([np.tile(robot, count // len(robot)),
                                    rng.choice(robot, count % len(robot), replace=False)])
            self.index = np.concatenate([human, picks]) if f < 1.0 else robot

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i = int(self.index[index])
        return {"image": torch.from_numpy(self.images[i].astype(np.float32) / np.float32(255.0)),
                "domain": torch.tensor(self.domain[i]), "ee_pose": torch.from_numpy(self.ee_pose[i]),
                "joint_positions": torch.from_numpy(self.joint_positions[i]),
                "actions_xyz": torch.from_numpy(self.actions_xyz[i]),
                "actions_joints": torch.from_numpy(self.actions_joints[i]),
                "action_valid": torch.from_numpy(self.action_valid[i]), "index": torch.tensor(i)}

    def describe(self, index: int) -> str:
        i = int(self.index[index])
        return f"{self.sources[self.demo[i]]} frame {self.frame[i]}"


def position_metrics(pred: np.ndarray, target: np.ndarray, valid: np.ndarray, k: int) -> dict[str, float]:
    """DESIGN.md section 6 position errors (m) of de-normalised xyz chunks (N, H, 3): ``pos_err_k1_m``,
    ``pos_err_kK_m`` (mean over valid samples at step 1 / K), ``pos_err_w_m`` (horizon-weighted,
    :func:`humanego_core.metrics.horizon_weights`)."""
    error = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(target, np.float64), axis=-1)
    valid = np.asarray(valid, bool)
    if not 1 <= k <= error.shape[1]:
        raise ValueError(f"step K must lie in 1..{error.shape[1]}, got {k}")
    out = {}
    for name, step in (("pos_err_k1_m", 0), ("pos_err_kK_m", k - 1)):
        if not valid[:, step].any():
            raise ValueError(f"{name}: no valid sample at step {step + 1}")
        out[name] = float(error[valid[:, step], step].mean())
    w = horizon_weights(error.shape[1])[None, :] * valid
    out["pos_err_w_m"] = float((w * error).sum() / w.sum())
    return out
