"""The embodiment-agnostic views' configuration and its factories: one file (``config/views.yaml``) shared by
offline preprocessing of human recordings and the robot's online ``clean_view`` node, so that training and
deployment images are made the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from humanego_core.ament_index import resource_path
from humanego_core.config import ConfigError, load_config
from humanego_perception import arm_mask
from humanego_perception.gripper_overlay import GripperConfig, KeypointStyle
from humanego_perception.inpaint import InpaintConfig, LamaInpainter, OpenCVInpainter


@dataclass
class ViewsConfig:
    arm_mask: arm_mask.ArmMaskConfig = field(default_factory=arm_mask.ArmMaskConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)
    gripper: GripperConfig = field(default_factory=GripperConfig)
    keypoints: KeypointStyle = field(default_factory=KeypointStyle)


def default_views_path() -> Path:
    return resource_path("config", "views.yaml")


def load_views_config(path: str | Path | None = None) -> ViewsConfig:
    """The views configuration (None: the shipped config/views.yaml); model files it names must exist."""
    source = Path(path) if path is not None else default_views_path()
    try:
        config = load_config(source, ViewsConfig)
    except ValueError as exc:  # a schema's own check (e.g. a non-rigid ee_to_gripper)
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(source), "", str(exc)) from None
    models = {"arm_mask.sam2_encoder": config.arm_mask.sam2_encoder if config.arm_mask.backend == "sam2" else "",
              "arm_mask.sam2_decoder": config.arm_mask.sam2_decoder if config.arm_mask.backend == "sam2" else "",
              "inpaint.lama_model": config.inpaint.lama_model if config.inpaint.backend == "lama" else ""}
    for key, model in models.items():
        if model is None:
            raise ConfigError(str(source), key, "the configured backend needs this model file; set its path")
        if model and not Path(model).is_file():
            raise ConfigError(str(source), key, f"model file {model} does not exist")
    return config


def build_human_arm_masker(config: ViewsConfig):
    """The configured human arm masker (``.mask(image_rgb, camera, hands) -> bool``)."""
    if config.arm_mask.backend == "sam2":
        return arm_mask.Sam2ArmMasker(config.arm_mask)
    return arm_mask.LandmarkSkinMasker(config.arm_mask)


def build_inpainter(config: ViewsConfig):
    """The configured inpainter (``.inpaint(image_rgb, mask) -> image_rgb``)."""
    if config.inpaint.backend == "lama":
        return LamaInpainter(config.inpaint)
    return OpenCVInpainter(config.inpaint)
