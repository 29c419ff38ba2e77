"""Model inputs shared by training and deployment, without torch (the onnxruntime path of the policy node
imports no torch)."""

from __future__ import annotations

import cv2
import numpy as np


def prepare_image(image_rgb: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 frame (h0, w0, 3) as the model's input: float32 (3, h, w) in [0, 1], area-resized.
    The one conversion used by the training dataset and by the runtime, so they see the same pixels."""
    image_rgb = np.asarray(image_rgb)
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 (h, w, 3), got {image_rgb.dtype} {image_rgb.shape}")
    h, w = image_size
    if image_rgb.shape[:2] != (h, w):
        shrinking = image_rgb.shape[0] >= h and image_rgb.shape[1] >= w
        image_rgb = cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.ascontiguousarray(image_rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
