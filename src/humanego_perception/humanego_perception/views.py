"""The embodiment-agnostic views' configuration and its factories.

One file, ``config/views.yaml``, is read by the offline preprocessing of human recordings and by the robot's
online ``clean_view`` node, so that training and deployment images are made the same way: the human arm
masker (:mod:`humanego_perception.arm_mask`), the inpainter (:mod:`humanego_perception.inpaint`), the virtual
gripper and the keypoint dots (:mod:`humanego_perception.gripper_overlay`).

Model files (SAM2, LaMa) are configured by path (absolute, or relative to the working directory); a backend
whose file is not set or missing is refused when the configuration is loaded, naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from humanego_core.ament_index import resource_path
from humanego_core.config import ConfigError, load_config, option
from humanego_perception.arm_mask import ArmMaskConfig, LandmarkSkinMasker, Sam2ArmMasker
from humanego_perception.gripper_overlay import GripperConfig, KeypointsConfig
from humanego_perception.inpaint import LamaInpainter, OpenCVInpainter


@dataclass
class InpaintConfig:
    backend: Literal["telea", "ns", "lama"] = option(
        "ns", help="ns / telea: OpenCV's Navier-Stokes / fast marching inpainting; lama: the LaMa ONNX model")
    radius_px: int = option(5, help="neighbourhood OpenCV's inpainting reads around each filled pixel (px of the "
                            "image; scaled with it when scale < 1)", minimum=1, maximum=50)
    dilate_px: int = option(2, help="grow the mask by this much before filling, so that the arm's blended edge "
                            "goes too (px)", minimum=0, maximum=50)
    scale: float = option(1.0, help="OpenCV inpainting runs on the hole's neighbourhood shrunk by this factor "
                          "(1: full resolution)", minimum=0.05, maximum=1.0)
    lama_model: str | None = option(None, help="LaMa ONNX file (backend lama), Carve/LaMa-ONNX's signature")
    lama_context: float = option(0.5, help="LaMa sees the hole's bounding box grown by this fraction of its size "
                                 "on each side", minimum=0.0, maximum=5.0)
    lama_output_max: float = option(255.0, help="white in the LaMa model's output: 255 for Carve/LaMa-ONNX, 1 for "
                                    "exports that end in 0..1", minimum=1e-6)


@dataclass
class ViewsConfig:
    arm_mask: ArmMaskConfig = option(default_factory=ArmMaskConfig, help="human arm masking")
    inpaint: InpaintConfig = option(default_factory=InpaintConfig, help="filling the masked arm")
    gripper: GripperConfig = option(default_factory=GripperConfig, help="the virtual gripper")
    keypoints: KeypointsConfig = option(default_factory=KeypointsConfig, help="object keypoint dots")


def default_views_path() -> Path:
    """The shipped ``config/views.yaml`` (in the installed resources)."""
    return resource_path("config", "views.yaml")


def load_views_config(path: str | Path | None = None) -> ViewsConfig:
    """The views configuration from ``path`` (None: the shipped ``config/views.yaml``), validated: schema,
    rigid ``gripper.ee_to_gripper``, and the model files the chosen backends need exist."""
    source = Path(path) if path is not None else default_views_path()
    config = load_config(source, ViewsConfig)
    check_views_config(config, str(source))
    return config


def check_views_config(config: ViewsConfig, source: str = "<views config>") -> None:
    """Raise :class:`ConfigError` (naming ``source`` and the key) on what the schema cannot check."""
    for section, part in (("arm_mask", config.arm_mask), ("gripper", config.gripper),
                          ("keypoints", config.keypoints)):
        for key, problem in part.problems():
            raise ConfigError(source, f"{section}.{key}", problem)
    needed = {"sam2": ("arm_mask.sam2_encoder", "arm_mask.sam2_decoder"), "lama": ("inpaint.lama_model",)}
    for backend in (config.arm_mask.backend, config.inpaint.backend):
        for key in needed.get(backend, ()):
            section, name = key.split(".")
            value = getattr(getattr(config, section), name)
            if value is None:
                raise ConfigError(source, key, f"backend {backend} needs this model file; set its path")
            if not Path(value).expanduser().is_file():
                raise ConfigError(source, key, f"model file {value} does not exist (backend {backend})")


def build_human_arm_masker(config: ViewsConfig) -> LandmarkSkinMasker | Sam2ArmMasker:
    """The configured human arm masker: ``.mask(image_rgb, camera, hands) -> bool (H, W)``."""
    if config.arm_mask.backend == "sam2":
        return Sam2ArmMasker(config.arm_mask)
    return LandmarkSkinMasker(config.arm_mask)


def build_inpainter(config: ViewsConfig) -> OpenCVInpainter | LamaInpainter:
    """The configured inpainter: ``.inpaint(image_rgb, mask) -> image_rgb``."""
    c = config.inpaint
    if c.backend == "lama":
        if c.lama_model is None:
            raise ConfigError("<views config>", "inpaint.lama_model", "backend lama needs this model file")
        return LamaInpainter(str(Path(c.lama_model).expanduser()), c.dilate_px, c.lama_context, c.lama_output_max,
                             what="LaMa inpainting model (config key inpaint.lama_model)")
    return OpenCVInpainter(c.backend, c.radius_px, c.dilate_px, c.scale)
