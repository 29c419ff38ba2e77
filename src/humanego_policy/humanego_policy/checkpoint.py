"""Policy checkpoints: what ``humanego_training train`` saves (``<run>/latest.pt``) and ``export`` reads.

One ``torch.save`` file holding a dict::

    format          "humanego-policy-checkpoint"
    version         1
    policy_type     "flow" | "act" | "egomimic" (humanego_policy.policies.POLICY_CLASSES)
    model_config    the policy's resolved settings (Policy.config_dict(); build_policy of it rebuilds the model)
    token_layout    {token_dim, max_tokens, frame_mode, dual_hand, hand_side}  (TokenLayout)
    dt              seconds between action steps (1 / 30 for 30 Hz recordings)
    dataset_stats   the dataset_stats.json mapping (humanego_core.actions.NormStats.to_dict() and more keys)
    state_dict      the model's weights
    ema_state_dict  exponential moving average of the weights, or None
    training        free-form resume state of the trainer (step, epoch, optimizer/scheduler state dicts, torch
                    RNG state, ...), or None

Files are loaded with ``torch.load(weights_only=True)``: ``training`` may hold tensors, numbers, strings,
lists and dicts, not numpy arrays or other objects. :func:`save_checkpoint` writes a temporary file and
renames it, so an interrupted save never leaves a broken ``latest.pt``.

Use from the trainer::

    from humanego_policy.checkpoint import TokenLayout, save_checkpoint, load_checkpoint
    save_checkpoint(run / "latest.pt", policy, TokenLayout.from_ict(ict_config), stats.to_dict(), dt=1 / 30,
                    ema_state_dict=ema.state_dict(), training={"step": step, "optimizer": opt.state_dict()})
    ckpt = load_checkpoint(run)              # a run folder means its latest.pt
    policy = ckpt.build_policy(use_ema=True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from humanego_policy.bundle import TokenLayout
from humanego_policy.policies import Policy, build_policy

FORMAT = "humanego-policy-checkpoint"
VERSION = 1
LATEST = "latest.pt"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what is wrong."""


@dataclass
class Checkpoint:
    path: Path
    policy_type: str
    model_config: dict
    token_layout: TokenLayout
    dt: float
    dataset_stats: dict
    state_dict: dict
    ema_state_dict: dict | None = None
    training: dict | None = None

    def build_policy(self, use_ema: bool = True) -> Policy:
        """The policy with the checkpoint's weights (the EMA weights when there are any and ``use_ema``), in eval
        mode. Weights that do not fit the model (another architecture or token layout) raise CheckpointError."""
        policy = build_policy(self.policy_type, self.model_config, self.token_layout.token_dim,
                              self.token_layout.max_tokens, source=f"{self.path}: model_config")
        weights = self.ema_state_dict if use_ema and self.ema_state_dict is not None else self.state_dict
        try:
            policy.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.path}: weights do not fit a {self.policy_type} policy for "
                                  f"{self.token_layout.describe()}: {exc}") from None
        return policy.eval()


def resolve_path(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (meaning its latest.pt); a missing one raises FileNotFoundError."""
    path = Path(path)
    if path.is_dir():
        path = path / LATEST
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def save_checkpoint(path: str | Path, policy: Policy, token_layout: TokenLayout, dataset_stats: dict, dt: float,
                    ema_state_dict: dict | None = None, training: dict | None = None) -> Path:
    if (policy.token_dim, policy.max_tokens) != (token_layout.token_dim, token_layout.max_tokens):
        raise ValueError(f"policy built for {policy.max_tokens}x{policy.token_dim} tokens, token layout says "
                         f"{token_layout.max_tokens}x{token_layout.token_dim}")
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, "policy_type": policy.policy_type,
            "model_config": policy.config_dict(), "token_layout": token_layout.to_dict(), "dt": float(dt),
            "dataset_stats": dataset_stats, "state_dict": policy.state_dict(), "ema_state_dict": ema_state_dict,
            "training": training}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = resolve_path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for files that are not checkpoints
        raise CheckpointError(f"{path}: not a readable policy checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a humanego policy checkpoint (no format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')!r}, this code reads {VERSION}")
    for key in ("policy_type", "model_config", "token_layout", "dt", "dataset_stats", "state_dict"):
        if key not in data:
            raise CheckpointError(f"{path}: required key {key!r} is missing")
    try:
        layout = TokenLayout.from_dict(data["token_layout"], str(path))
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    return Checkpoint(path, data["policy_type"], data["model_config"], layout, float(data["dt"]),
                      data["dataset_stats"], data["state_dict"], data.get("ema_state_dict"), data.get("training"))
