"""Policies: the registry, the interface every policy implements, and the building blocks they share.

A policy maps one observation (image + interaction tokens) to a chunk of ``horizon`` future actions of one
arm (``ACTION_DIM`` = 10 per step: normalised xyz | rot6d | grasp, DESIGN.md section 5) and a done
probability. Every policy type implements :class:`Policy`:

- ``loss(batch) -> (loss, logs)`` for training, ``predict(batch, noise=None) -> {"actions", "done_prob"}``;
- ``infer(image, tokens, token_mask, noise) -> (actions, done_prob)``: the traceable inference the
  ``single`` ONNX graph is exported from (``noise`` (B, H, 10) is the sampling noise of generative policies;
  others ignore it), so torch and onnxruntime compute the same thing from the same noise.

The batch (humanego_training.dataset): ``image`` float32 (B, 3, h, w) in [0, 1] (:func:`prepare_image`
makes it from an RGB uint8 frame, for training and deployment alike), ``tokens`` (B, T, D) float32,
``token_mask`` (B, T) bool, ``actions`` (B, H, 10) float32 normalised, ``action_valid`` (B, H) bool,
``done`` (B,) float32.

A policy's settings are a dataclass schema (``Config``) validated by :mod:`humanego_core.config` (unknown
keys and bad values are reported with the source and the key). A ``preset`` key picks a named set of
values (e.g. ``cpu`` / ``gpu``) that the other keys then override.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from humanego_core.actions import ACTION_DIM
from humanego_core.config import ConfigError, from_dict, to_dict
from humanego_core.ict import TYPE_OBJECT_OTHER
from humanego_policy.inputs import prepare_image as prepare_image  # re-exported: the dataset imports it from here

NUM_TOKEN_TYPES = TYPE_OBJECT_OTHER + 1  # ICT type ids 0 PAD .. 4 OBJ_OTHER (DESIGN.md section 5)
BATCH_KEYS = ("image", "tokens", "token_mask", "actions", "action_valid", "done")

# policy type -> "module:class"; imported on demand so that a policy module can import this one.
POLICY_CLASSES = {
    "flow": "humanego_policy.flow_matching:FlowMatchingPolicy",
    "act": "humanego_policy.act:ACTPolicy",
    "egomimic": "humanego_policy.egomimic_policy:EgoMimicPolicy",
}


class PolicyConfigError(ConfigError):
    """A policy type or setting that does not exist or does not fit."""


def policy_class(policy_type: str) -> type[Policy]:
    if policy_type not in POLICY_CLASSES:
        raise PolicyConfigError("policy", "policy_type",
                                f"unknown policy type {policy_type!r}; known: {', '.join(sorted(POLICY_CLASSES))}")
    module_name, class_name = POLICY_CLASSES[policy_type].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_policy(policy_type: str, config: dict, token_dim: int, max_tokens: int,
                 source: str = "policy config") -> Policy:
    """A freshly initialised policy of ``policy_type`` from its settings ``config`` (validated against the
    type's schema; ``source`` names where they came from in errors, e.g. the training YAML file)."""
    return policy_class(policy_type).from_config(config, token_dim, max_tokens, source)


def resolve_config(schema: type, presets: dict[str, dict], config: dict, source: str) -> Any:
    """``config`` validated against ``schema``, starting from ``presets[config["preset"]]`` when given."""
    config = dict(config or {})
    preset = config.pop("preset", None)
    values = {}
    if preset is not None:
        if preset not in presets:
            raise PolicyConfigError(source, "preset", f"unknown preset {preset!r}; known: {', '.join(presets)}")
        values.update(presets[preset])
    values.update(config)
    return from_dict(schema, values, source)


class Policy(nn.Module):
    """Interface of every policy; see the module docstring."""

    policy_type: ClassVar[str]
    Config: ClassVar[type]
    PRESETS: ClassVar[dict[str, dict]] = {}
    # ONNX layouts this policy can be exported as (humanego_training.export); "single" works for every policy.
    ONNX_LAYOUTS: ClassVar[tuple[str, ...]] = ("single",)

    def __init__(self, config, token_dim: int, max_tokens: int):
        super().__init__()
        if token_dim < 2 or max_tokens < 1:
            raise ValueError(f"token_dim must be >= 2 and max_tokens >= 1, got {token_dim} and {max_tokens}")
        if len(config.image_size) != 2 or min(config.image_size) < 8:
            raise ValueError(f"image_size must be [height, width] of at least 8 px, got {config.image_size}")
        self.config = config
        self.token_dim = int(token_dim)
        self.max_tokens = int(max_tokens)

    @classmethod
    def from_config(cls, config: dict, token_dim: int, max_tokens: int, source: str = "policy config") -> Policy:
        return cls(resolve_config(cls.Config, cls.PRESETS, config, source), token_dim, max_tokens)

    def config_dict(self) -> dict:
        """The resolved settings (what a checkpoint stores; ``from_config`` of it rebuilds the same model)."""
        return to_dict(self.config)

    # --- shape contract, read by export and the runtime ---
    @property
    def horizon(self) -> int:
        return int(self.config.horizon)

    @property
    def action_dim(self) -> int:
        return ACTION_DIM

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the model's input image."""
        return int(self.config.image_size[0]), int(self.config.image_size[1])

    # --- the interface ---
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def infer(self, image: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor,
              noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def sample_noise(self, batch_size: int, generator: torch.Generator | None = None,
                     device: torch.device | None = None) -> torch.Tensor:
        return torch.randn(batch_size, self.horizon, self.action_dim, generator=generator, device=device)

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor], noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        image, tokens, token_mask = batch["image"], batch["tokens"], batch["token_mask"]
        if noise is None:
            noise = self.sample_noise(image.shape[0], device=image.device)
        actions, done_prob = self.infer(image, tokens, token_mask, noise)
        return {"actions": actions, "done_prob": done_prob}

    def onnx_graphs(self, layout: str) -> list[OnnxGraph]:
        """The graphs of an ONNX ``layout`` (one of ``ONNX_LAYOUTS``), with example inputs of batch size 1.
        ``single``: ``policy`` = :meth:`infer` (image, tokens, token_mask, noise -> actions, done_prob)."""
        if layout not in self.ONNX_LAYOUTS:
            raise ValueError(f"the {self.policy_type} policy exports as {', '.join(self.ONNX_LAYOUTS)}, not {layout!r}")
        h, w = self.image_size
        inputs = {"image": torch.rand(1, 3, h, w), "tokens": torch.randn(1, self.max_tokens, self.token_dim),
                  "token_mask": torch.ones(1, self.max_tokens, dtype=torch.bool),
                  "noise": torch.randn(1, self.horizon, self.action_dim)}
        return [OnnxGraph("policy", _Infer(self), inputs, ["actions", "done_prob"])]

    def check_batch(self, batch: dict[str, torch.Tensor], keys=BATCH_KEYS) -> None:
        """Raise ValueError naming the key when a batch entry has the wrong shape for this policy."""
        h, w = self.image_size
        batch_size = batch["image"].shape[0]
        expected = {"image": (batch_size, 3, h, w), "tokens": (batch_size, self.max_tokens, self.token_dim),
                    "token_mask": (batch_size, self.max_tokens),
                    "actions": (batch_size, self.horizon, self.action_dim),
                    "action_valid": (batch_size, self.horizon), "done": (batch_size,)}
        for key in keys:
            if key not in batch:
                raise ValueError(f"batch has no {key!r} (keys: {', '.join(batch)})")
            if tuple(batch[key].shape) != expected[key]:
                raise ValueError(f"batch[{key!r}] has shape {tuple(batch[key].shape)}, the "
                                 f"{self.policy_type} policy expects {expected[key]}")


@dataclasses.dataclass
class OnnxGraph:
    """One graph of an exported policy: ``module(*inputs.values())`` returns the ``outputs`` in order. The batch
    axis (dynamic) of every input and output is 0 unless ``batch_axes`` says otherwise."""

    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: list[str]
    batch_axes: dict[str, int] = dataclasses.field(default_factory=dict)

    def batch_axis(self, name: str) -> int:
        return self.batch_axes.get(name, 0)


class _Infer(nn.Module):
    def __init__(self, policy: Policy):
        super().__init__()
        self.policy = policy

    def forward(self, image, tokens, token_mask, noise):
        return self.policy.infer(image, tokens, token_mask, noise)


def nonfinite_keys(batch: dict[str, torch.Tensor]) -> list[str]:
    """Batch entries holding NaN or inf (a batch with any must be skipped and counted, never trained on)."""
    return [k for k, v in batch.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


# --- building blocks --------------------------------------------------------------------------------------
class ImagePatchEncoder(nn.Module):
    """RGB in [0, 1] -> a grid of patch tokens (B, (h/s)*(w/s), dim) with learned 2-D position embeddings.

    A stem of stride-2 3x3 convolutions (s = 2^levels) instead of one linear patch projection: the local
    features before patching make the few coarse tokens informative at a small cost (torch ops only)."""

    def __init__(self, image_size: tuple[int, int], dim: int, levels: int, base_channels: int):
        super().__init__()
        stride = 2 ** levels
        h, w = image_size
        if h % stride or w % stride:
            raise ValueError(f"image size {h}x{w} must be divisible by the encoder stride {stride}")
        layers, channels = [], 3
        for i in range(levels):
            out = dim if i == levels - 1 else min(base_channels * 2 ** i, dim)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GroupNorm(1, out), nn.GELU()]
            channels = out
        self.stem = nn.Sequential(*layers)
        self.grid = (h // stride, w // stride)
        self.position = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.stem((image - self.mean) / self.std)  # (B, dim, gh, gw)
        return features.flatten(2).transpose(1, 2) + self.position


class TokenEmbedding(nn.Module):
    """ICT tokens (B, T, D) -> (B, T, dim): a linear map of the values plus embeddings of the entity type
    (token[..., 0], rounded) and of the slot (order is meaningful: hands, anchor, others)."""

    def __init__(self, token_dim: int, max_tokens: int, dim: int):
        super().__init__()
        self.values = nn.Linear(token_dim - 1, dim)
        self.types = nn.Embedding(NUM_TOKEN_TYPES, dim)
        self.slots = nn.Parameter(torch.zeros(1, max_tokens, dim))
        nn.init.trunc_normal_(self.slots, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        type_id = torch.round(tokens[..., 0]).clamp(0, NUM_TOKEN_TYPES - 1).long()
        return self.values(tokens[..., 1:]) + self.types(type_id) + self.slots


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) times in [0, 1] -> (B, dim) [sin | cos] features over geometric frequencies (t scaled by 1000, as
    diffusion models do, so the fastest frequencies resolve small steps of t)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class TimeEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim))


def key_padding_bias(valid: torch.Tensor) -> torch.Tensor:
    """(B, S) bool valid keys -> (B, 1, 1, S) additive attention bias (0 valid, -1e9 masked)."""
    return (~valid).to(torch.float32)[:, None, None, :] * -1e9


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value projections, so that the keys and values of a
    fixed context can be computed once (:meth:`keys_values`) and attended to many times (:meth:`attend`)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model dim {dim} must be divisible by the number of heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def keys_values(self, context: torch.Tensor) -> torch.Tensor:
        """(B, S, dim) -> (2, B, heads, S, dim/heads)."""
        k, v = self.kv(context).chunk(2, dim=-1)
        return torch.stack([self._split(k), self._split(v)])

    def attend(self, x: torch.Tensor, kv: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        q = self._split(self.q(x))
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=bias)
        b, _, n, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(b, n, -1))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(x, self.keys_values(x), bias)


def feed_forward(dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        self.mlp = feed_forward(dim, hidden, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), bias))
        return x + self.dropout(self.mlp(self.norm2(x)))
