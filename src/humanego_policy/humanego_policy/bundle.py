"""Policy bundles: everything a deployment needs to run a trained policy, in one folder.

Written by ``humanego run humanego_training export``, read by :class:`humanego_policy.runtime.PolicyRuntime`::

    bundle.json          this manifest (BundleManifest): policy type and id, token layout, horizon, action size,
                         arm, dt, input image size, integration steps, the ONNX layout and files, provenance
    dataset_stats.json   normalisation of positions in tokens and actions (humanego_core.actions.NormStats)
    policy.pt            the torch weights (a humanego_policy.checkpoint file without training state): the
                         fallback where onnxruntime is missing, and the reference of the parity check
    <graph>.onnx         the ONNX graph(s) of the layout: ``encoder_step`` = encoder.onnx + step.onnx (the context
                         once, the integration step looped by the runtime), ``single`` = policy.onnx

Loading checks the manifest against its schema (errors name the file and the key) and that every file it
names exists (a missing one is named); :meth:`Bundle.check_compatible` refuses a bundle whose token layout or
action size differs from what the caller feeds and decodes, with both shapes in the message.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from humanego_core.actions import ACTION_DIM, NormStats
from humanego_core.config import ConfigError, from_dict, option
from humanego_core.ict import ICTConfig

FORMAT = "humanego-policy-bundle"
VERSION = 1
MANIFEST = "bundle.json"
STATS = "dataset_stats.json"
WEIGHTS = "policy.pt"
# The bundles the workspace ships, per policy type: under models/ (installed into share/humanego_bringup/models).
DEFAULT_BUNDLES = {"flow": "serve_bread_flow", "act": "serve_bread_act"}
ONNX_LAYOUTS = ("encoder_step", "single")
LAYOUT_GRAPHS = {"encoder_step": ("encoder", "step"), "single": ("policy",)}


class BundleError(ValueError):
    """A bundle that cannot be used here; the message names the file and what does not fit."""


@dataclass(frozen=True)
class TokenLayout:
    """What the interaction tokens fed to a policy look like: humanego_core.ict.ICTConfig plus the token size,
    which must be the one the ICT builder makes for that configuration."""

    token_dim: int
    max_tokens: int
    frame_mode: str = "camera_frame"
    dual_hand: bool = False
    hand_side: str = "right"

    def __post_init__(self):
        ict_config = self.ict_config()  # validates frame mode, hand side and max_tokens
        if self.token_dim != ict_config.token_dim:
            raise ValueError(f"token_dim {self.token_dim} does not fit a {'dual' if self.dual_hand else 'single'}"
                             f"-hand ICT layout ({ict_config.token_dim})")

    @classmethod
    def from_ict(cls, config: ICTConfig) -> TokenLayout:
        return cls(config.token_dim, config.max_tokens, config.frame_mode, config.dual_hand, config.hand_side)

    def ict_config(self) -> ICTConfig:
        return ICTConfig(self.frame_mode, self.dual_hand, self.hand_side, self.max_tokens)

    @property
    def shape(self) -> tuple[int, int]:
        """(max_tokens, token_dim): the tokens array of one observation."""
        return self.max_tokens, self.token_dim

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> TokenLayout:
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, dict) or set(data) != set(names):
            raise ValueError(f"{source}: token_layout must have exactly the keys {', '.join(names)}, got {data!r}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: token_layout: {exc}") from None

    def describe(self) -> str:
        hands = "both hands" if self.dual_hand else f"{self.hand_side} hand"
        return f"{self.max_tokens}x{self.token_dim} tokens ({self.frame_mode}, {hands})"



@dataclass
class OnnxSection:
    layout: Literal[ONNX_LAYOUTS] = option(help="encoder_step: encoder once + step per integration step; "
                                           "single: one graph")
    opset: int = option(help="ONNX opset the graphs were exported with", minimum=7)
    files: dict[str, str] = option(help="graph name -> file in the bundle")


@dataclass
class BundleManifest:
    format: str = option(help=f"always {FORMAT!r}")
    version: int = option(help="manifest version")
    policy_id: str = option(help="name published with every action chunk")
    policy_type: str = option(help="humanego_policy.policies.POLICY_CLASSES key")
    token_layout: dict[str, Any] = option(help="humanego_policy.checkpoint.TokenLayout fields")
    horizon: int = option(help="steps per chunk", minimum=1)
    action_dim: int = option(help="numbers per step", minimum=1)
    arm: str = option(help="the hand / arm the actions move (left or right)")
    dt: float = option(help="seconds between steps", minimum=1e-6)
    image_size: list[int] = option(help="model input [height, width]")
    integration_steps: int | None = option(help="Euler steps (flow matching), null for other policies")
    model_config: dict[str, Any] = option(help="the policy's resolved settings")
    onnx: OnnxSection | None = option(help="ONNX graphs, or null for a torch-only bundle")
    weights: str = option(WEIGHTS, help="torch weights file")
    dataset_stats: str = option(STATS, help="dataset stats file")
    source: dict[str, Any] = option(default_factory=dict, help="provenance: checkpoint, training step, EMA, ...")


@dataclass
class Bundle:
    path: Path
    manifest: BundleManifest
    token_layout: TokenLayout
    stats: NormStats
    onnx_files: dict[str, Path] = field(default_factory=dict)

    @property
    def policy_id(self) -> str:
        return self.manifest.policy_id

    @property
    def weights_path(self) -> Path:
        return self.path / self.manifest.weights

    @property
    def action_shape(self) -> tuple[int, int]:
        return self.manifest.horizon, self.manifest.action_dim

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        path = Path(path)
        manifest_path = path / MANIFEST
        if not path.is_dir():
            raise FileNotFoundError(f"policy bundle {path} does not exist (make one with "
                                    "`humanego run humanego_training export`)")
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} does not exist: {path} is not a policy bundle")
        source = str(manifest_path)
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
            manifest = from_dict(BundleManifest, data, source)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{source}: not valid JSON ({exc})") from None
        except ConfigError as exc:
            raise BundleError(str(exc)) from None
        if manifest.format != FORMAT or manifest.version != VERSION:
            raise BundleError(f"{source}: format {manifest.format!r} version {manifest.version}, this code reads "
                              f"{FORMAT!r} version {VERSION}")
        try:
            layout = TokenLayout.from_dict(manifest.token_layout, source)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        if len(manifest.image_size) != 2:
            raise BundleError(f"{source}: image_size must be [height, width], got {manifest.image_size}")
        for name in (manifest.weights, manifest.dataset_stats):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name} does not exist (named in {source})")
        onnx_files = {}
        if manifest.onnx is not None:
            expected = set(LAYOUT_GRAPHS[manifest.onnx.layout])
            if set(manifest.onnx.files) != expected:
                raise BundleError(f"{source}: onnx.files must name the graphs {sorted(expected)} of the "
                                  f"{manifest.onnx.layout} layout, got {sorted(manifest.onnx.files)}")
            for graph, name in manifest.onnx.files.items():
                onnx_files[graph] = path / name
                if not onnx_files[graph].is_file():
                    raise FileNotFoundError(f"{onnx_files[graph]} does not exist (onnx.files.{graph} in {source})")
        try:
            stats = NormStats.load(path / manifest.dataset_stats)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        return cls(path, manifest, layout, stats, onnx_files)

    def check_compatible(self, expected_layout: TokenLayout | None = None, action_dim: int = ACTION_DIM) -> None:
        """Refuse (BundleError) a bundle for other tokens than ``expected_layout`` or other actions than
        (horizon, ``action_dim``)."""
        if expected_layout is not None and expected_layout != self.token_layout:
            raise BundleError(f"policy bundle {self.path} takes {self.token_layout.describe()}, but the tokens here "
                              f"are {expected_layout.describe()}: tokens {self.token_layout.shape} vs "
                              f"{expected_layout.shape}")
        if self.manifest.action_dim != action_dim:
            raise BundleError(f"policy bundle {self.path} outputs actions {self.action_shape}, this runtime decodes "
                              f"({self.manifest.horizon}, {action_dim})")


def write_manifest(path: str | Path, manifest: BundleManifest) -> Path:
    path = Path(path) / MANIFEST
    path.write_text(json.dumps(asdict(manifest), indent=2) + "\n", encoding="utf-8")
    return path
