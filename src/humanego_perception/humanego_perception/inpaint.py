"""Filling the masked (arm) pixels of an image so that the arm disappears.

- :class:`OpenCVInpainter` (default, no model): ``cv2.inpaint`` (Telea's fast marching or Navier-Stokes) run
  on a crop around the mask only, which is what makes it fast enough for the robot's camera rate.
- :class:`LamaInpainter`: LaMa exported to ONNX in the two-input layout of the common public export
  (Carve's LaMa-ONNX): ``image`` float32 [1, 3, 512, 512] RGB in 0..1 and ``mask`` float32 [1, 1, 512, 512]
  (1 = fill) in, ``output`` float32 [1, 3, 512, 512] out, in 0..255 for that export (``output_scale``). The
  image is resized to the model's size and back; only the masked pixels take the model's output.

Both keep every pixel outside the (dilated) mask unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from humanego_core.config import option
from humanego_perception.onnx_model import OnnxModel, TensorSpec

LAMA_SIZE = 512


@dataclass
class InpaintConfig:
    backend: Literal["telea", "ns", "lama"] = option("telea", help="telea / ns: OpenCV; lama: the LaMa ONNX model")
    radius_px: int = option(5, help="OpenCV inpainting neighbourhood (px)", minimum=1, maximum=50)
    dilate_px: int = option(2, help="grow the mask before filling, so that the arm's blurred edge goes too (px)",
                            minimum=0, maximum=50)
    lama_model: str | None = option(None, help="LaMa ONNX file (backend lama)")
    lama_output_scale: float = option(255.0, help="the LaMa export's output range: 255 (0..255) or 1 (0..1)",
                                      minimum=1e-6)


def _check(image: np.ndarray, mask: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask is {mask.shape}, the image {image.shape[:2]}")


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return mask.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


class OpenCVInpainter:
    def __init__(self, config: InpaintConfig):
        self.config = config
        self.flag = cv2.INPAINT_NS if config.backend == "ns" else cv2.INPAINT_TELEA

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        _check(image, mask)
        fill = dilate(mask, self.config.dilate_px)
        if not fill.any():
            return image.copy()
        ys, xs = np.nonzero(fill)
        margin = 2 * self.config.radius_px + 2  # the pixels the fill reads around the hole
        y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, image.shape[0])
        x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, image.shape[1])
        out = image.copy()
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        filled = cv2.inpaint(crop, fill[y0:y1, x0:x1].astype(np.uint8), self.config.radius_px, self.flag)
        out[y0:y1, x0:x1][fill[y0:y1, x0:x1]] = filled[fill[y0:y1, x0:x1]]
        return out


class LamaInpainter:
    INPUTS = [TensorSpec("image", (1, 3, LAMA_SIZE, LAMA_SIZE), "float32"),
              TensorSpec("mask", (1, 1, LAMA_SIZE, LAMA_SIZE), "float32")]
    OUTPUTS = [TensorSpec("output", (1, 3, LAMA_SIZE, LAMA_SIZE), "float32")]

    def __init__(self, config: InpaintConfig):
        self.config = config
        self.model = OnnxModel(config.lama_model or "", self.INPUTS, self.OUTPUTS,
                               what="LaMa inpainting (config key inpaint.lama_model)")

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        _check(image, mask)
        fill = dilate(mask, self.config.dilate_px)
        if not fill.any():
            return image.copy()
        h, w = fill.shape
        small = cv2.resize(image, (LAMA_SIZE, LAMA_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        small_mask = cv2.resize(fill.astype(np.uint8), (LAMA_SIZE, LAMA_SIZE), interpolation=cv2.INTER_NEAREST)
        feeds = {"image": small.transpose(2, 0, 1)[None], "mask": small_mask[None, None].astype(np.float32)}
        result = self.model.run(feeds)["output"][0].transpose(1, 2, 0) * (255.0 / self.config.lama_output_scale)
        result = cv2.resize(np.clip(result, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
        out = image.copy()
        out[fill] = result[fill]
        return out
