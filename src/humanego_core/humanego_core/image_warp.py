"""Warping images between camera models with precomputed ``cv2.remap`` tables.

- :class:`ImageWarp`: the image of one camera made from the image of another with the same centre
  (tables from :func:`humanego_core.camera_models.remap_tables`, computed once, in fixed point, which
  ``cv2.remap`` runs several times faster than float tables). Pixels that see nothing of the source are 0.
- :class:`Rectifier`: Aria's Fisheye624 image undistorted to a linear pinhole of any size and focal
  length, optionally rotated 90 degrees clockwise (Aria's RGB sensor is mounted sideways; HumanEgo and
  EgoMimic rotate it upright). It makes the same camera as projectaria-tools'
  ``get_linear_camera_calibration`` (+ ``rotate_camera_calib_cw90deg``) and the same image as its
  ``distort_by_calibration`` (checked by the tests), but from tables computed once. When the output
  samples the source more coarsely than 1:2, the source is first shrunk by area averaging, so that
  fine texture does not alias.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from humanego_core.camera_models import LINEAR, CameraModel, linear_params, remap_tables

INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}

# Rotating a camera's image 90 degrees clockwise turns its optical frame about z: the new x axis is the
# old -y (what pointed up now points right), the new y axis the old x. Columns: new axes in the old frame.
R_CAMERA_CW90 = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


class ImageWarp:
    """Makes images of ``target`` from images of ``source`` (see :func:`remap_tables` for the arguments)."""

    def __init__(self, target: CameraModel, source: CameraModel, R_source_target=None, target_rays=None):
        self.target, self.source = target, source
        map_x, map_y, self.valid = remap_tables(target, source, R_source_target, target_rays)
        self._maps = {"linear": cv2.convertMaps(map_x, map_y, cv2.CV_16SC2),
                      "nearest": cv2.convertMaps(map_x, map_y, cv2.CV_16SC2, nninterpolation=True)}
        self._invalid = ~self.valid if not self.valid.all() else None

    def __call__(self, image: np.ndarray, interpolation: str = "linear") -> np.ndarray:
        """``image`` (source-sized, any channels) warped to the target; 0 where the source sees nothing."""
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        if image.shape[:2] != (self.source.height, self.source.width):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, the source camera is "
                             f"{self.source.width}x{self.source.height}")
        maps = self._maps[interpolation]
        out = cv2.remap(image, maps[0], maps[1], INTERPOLATIONS[interpolation], borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0)
        if self._invalid is not None:
            out[self._invalid] = 0  # bilinear weights of the border can leak into pixels next to it
        return out


def linear_camera(source: CameraModel, width: int, height: int, focal: float | None = None,
                  rotate_cw90: bool = False) -> CameraModel:
    """The pinhole that :class:`Rectifier` makes of ``source``: ``width`` x ``height`` as published (after the
    rotation), principal point at the centre, ``T_device_camera`` of the source (turned by the rotation).

    ``focal`` (px) defaults to the source's focal length at the image centre scaled by
    ``width / source.width``: the same angular resolution as the source, shrunk like the image.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"output size must be positive, got {width}x{height}")
    if focal is None:
        focal = float(source.focal_lengths[0]) * width / source.width
    if not (math.isfinite(focal) and focal > 0):
        raise ValueError(f"focal length must be positive, got {focal}")
    T = source.T_device_camera.copy()
    if rotate_cw90:
        T[:3, :3] = T[:3, :3] @ R_CAMERA_CW90
    label = source.label + ("-linear-cw90" if rotate_cw90 else "-linear") if source.label else ""
    return CameraModel(LINEAR, linear_params(focal, width, height), width, height, T_device_camera=T, label=label)


class Rectifier:
    """Undistorts images of ``source`` (e.g. Aria's Fisheye624 RGB camera) to :func:`linear_camera`."""

    def __init__(self, source: CameraModel, width: int, height: int, focal: float | None = None,
                 rotate_cw90: bool = False, antialias: bool = True):
        self.source = source
        self.target = linear_camera(source, width, height, focal, rotate_cw90)
        R_source_target = R_CAMERA_CW90 if rotate_cw90 else None
        # Halve the source while it still samples at least as finely as the output at the centre (and its
        # size stays whole).
        self.shrink = 1
        if antialias:
            ratio = float(source.focal_lengths.min()) / float(self.target.focal_lengths.max())
            while (ratio >= 2 * self.shrink and source.width % (2 * self.shrink) == 0
                   and source.height % (2 * self.shrink) == 0):
                self.shrink *= 2
        sampled = source
        if self.shrink > 1:
            sampled = source.rescale(source.width // self.shrink, source.height // self.shrink, 1.0 / self.shrink)
        self.warp = ImageWarp(self.target, sampled, R_source_target)

    def __call__(self, image: np.ndarray, interpolation: str = "linear") -> np.ndarray:
        if image.shape[:2] != (self.source.height, self.source.width):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, the camera is "
                             f"{self.source.width}x{self.source.height}")
        if self.shrink > 1:
            mode = cv2.INTER_AREA if interpolation == "linear" else cv2.INTER_NEAREST
            image = cv2.resize(image, (self.warp.source.width, self.warp.source.height), interpolation=mode)
        return self.warp(image, interpolation)
