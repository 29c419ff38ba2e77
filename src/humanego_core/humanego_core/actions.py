"""Policy actions: poses in the reference frame <-> normalised 10-D action vectors (DESIGN.md section 5).

One action per arm and step is ``[xyz (normalised) | rot6d (6) | grasp]`` with

- ``xyz = (p - pos_mean) / pos_std``: the position of the target (hand / gripper frame) in the reference
  frame, z-scored per axis with the dataset statistics (``dataset_stats.json``, computed over the
  training recordings only);
- ``rot6d``: the first two columns of the rotation, laid out ``[R00, R01, R10, R11, R20, R21]``
  (``humanego_core.geometry.rot6d_from_matrix``), decoded by Gram-Schmidt so that network outputs that
  are not orthonormal still give a rotation;
- ``grasp`` in [0, 1] (1 = closed). Decoding clips it to [0, 1]: a regressed value may overshoot.

The same :class:`NormStats` normalise the ICT tokens' positions (``humanego_core.ict``), so a policy
bundle carries one ``dataset_stats.json`` for both.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from humanego_core import geometry

ACTION_DIM = 10
POS_SLICE = slice(0, 3)
ROT6D_SLICE = slice(3, 9)
GRASP_INDEX = 9

# Per-axis position std floor (m): an axis the demonstrations barely move along would otherwise be
# blown up by 1/std and turn millimetre noise into large normalised values.
MIN_POS_STD = 0.01

# Tolerance of the rigidity check on poses handed to the encoder (float32 round trips stay well inside).
RIGID_TOLERANCE = 1e-4


@dataclass(frozen=True, eq=False)
class NormStats:
    """Position statistics of a dataset: ``pos_mean`` and ``pos_std`` (3,) in metres.

    ``extra`` holds any other top-level keys of ``dataset_stats.json`` (written by the training CLI,
    e.g. sample counts), kept untouched through load and save.
    """

    pos_mean: np.ndarray
    pos_std: np.ndarray
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        mean = np.asarray(self.pos_mean, dtype=np.float64)
        std = np.asarray(self.pos_std, dtype=np.float64)
        if mean.shape != (3,) or std.shape != (3,):
            raise ValueError(f"NormStats: pos mean and std must have 3 values each, got {mean.shape} and {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise ValueError("NormStats: pos mean/std contain NaN or inf")
        if np.any(std <= 0):
            raise ValueError(f"NormStats: pos std must be positive, got {std.tolist()}")
        object.__setattr__(self, "pos_mean", mean)
        object.__setattr__(self, "pos_std", std)
        if "pos" in self.extra:
            raise ValueError("NormStats: 'pos' belongs in pos_mean/pos_std, not in extra")

    def to_dict(self) -> dict:
        return {"pos": {"mean": self.pos_mean.tolist(), "std": self.pos_std.tolist()}, **self.extra}

    @classmethod
    def from_dict(cls, data, source: str = "<dataset stats>") -> NormStats:
        """Read ``{"pos": {"mean": [3 numbers], "std": [3 numbers]}, ...}``; errors name ``source`` and the key."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: top level must be a mapping, got {type(data).__name__}")
        pos = data.get("pos")
        if not isinstance(pos, dict):
            raise ValueError(f"{source}: pos: required mapping with 'mean' and 'std' is missing")
        values = {}
        for key in ("mean", "std"):
            v = pos.get(key)
            if not isinstance(v, list) or len(v) != 3 or not all(_finite_number(x) for x in v):
                raise ValueError(f"{source}: pos.{key}: must be a list of 3 finite numbers, got {v!r}")
            values[key] = v
        if any(x <= 0 for x in values["std"]):
            raise ValueError(f"{source}: pos.std: must be positive, got {values['std']}")
        unknown = sorted(set(pos) - {"mean", "std"})
        if unknown:
            raise ValueError(f"{source}: pos: unknown keys {unknown}; valid: mean, std")
        return cls(np.array(values["mean"]), np.array(values["std"]),
                   {k: v for k, v in data.items() if k != "pos"})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> NormStats:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: dataset stats file not found (it is written by the training CLI "
                                    "next to the checkpoint and copied into the policy bundle)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=str(path))


def _finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def compute_stats(positions) -> NormStats:
    """Mean and std (floored at :data:`MIN_POS_STD`) of (N, 3) positions in metres."""
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] == 0:
        raise ValueError(f"positions must have shape (N, 3) with N >= 1, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("positions contain NaN or inf")
    return NormStats(p.mean(axis=0), np.maximum(p.std(axis=0), MIN_POS_STD))


def normalise_positions(p, stats: NormStats) -> np.ndarray:
    return (np.asarray(p, dtype=np.float64) - stats.pos_mean) / stats.pos_std


def denormalise_positions(x, stats: NormStats) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) * stats.pos_std + stats.pos_mean


def encode_actions(T_ref_target, grasp, stats: NormStats) -> np.ndarray:
    """(..., 4, 4) rigid poses in the reference frame and (...) grasp in [0, 1] -> (..., 10) float32 actions."""
    try:
        T = geometry.check_transform(T_ref_target, "T_ref_target", tol=RIGID_TOLERANCE)
    except geometry.GeometryError as exc:
        raise ValueError(f"encode_actions: {exc}") from None
    g = np.asarray(grasp, dtype=np.float64)
    if g.shape != T.shape[:-2]:
        raise ValueError(f"encode_actions: grasp must have shape {T.shape[:-2]} (one per pose), got {g.shape}")
    if not np.all(np.isfinite(g)) or np.any(g < 0.0) or np.any(g > 1.0):
        raise ValueError("encode_actions: grasp must be finite and lie in [0, 1]")
    out = np.empty(T.shape[:-2] + (ACTION_DIM,), dtype=np.float64)
    out[..., POS_SLICE] = normalise_positions(T[..., :3, 3], stats)
    out[..., ROT6D_SLICE] = geometry.rot6d_from_matrix(T[..., :3, :3])
    out[..., GRASP_INDEX] = g
    return out.astype(np.float32)


def decode_actions(actions, stats: NormStats) -> tuple[np.ndarray, np.ndarray]:
    """(..., 10) actions -> (poses (..., 4, 4) float64 in the reference frame, grasp (...) clipped to [0, 1]).

    NaN/inf or a rot6d with (near) zero or parallel columns raise ValueError.
    """
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim == 0 or a.shape[-1] != ACTION_DIM:
        raise ValueError(f"decode_actions: actions must have shape (..., {ACTION_DIM}), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("decode_actions: actions contain NaN or inf")
    try:
        R = geometry.matrix_from_rot6d(a[..., ROT6D_SLICE])
    except geometry.GeometryError as exc:
        raise ValueError(f"decode_actions: {exc}") from None
    T = geometry.make_transform(R, denormalise_positions(a[..., POS_SLICE], stats))
    return T, np.clip(a[..., GRASP_INDEX], 0.0, 1.0)
