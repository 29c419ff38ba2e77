"""Images of a MuJoCo camera as Project Aria's fisheye RGB camera sees them.

MuJoCo renders pinhole images only. :class:`FisheyeRenderer` renders the camera as a wide pinhole
(its ``fovy`` set to cover every ray the fisheye image needs, its size chosen so that at the image
centre a pinhole pixel is no larger than a fisheye pixel) and warps that image into the Fisheye624
image with ``cv2.remap`` maps computed once (:func:`humanego_core.camera_models.remap_tables`).
Both images share the camera's optical frame, so the warp is a pure change of projection.

Fisheye pixels outside Aria's valid radius, or whose ray is further than ``max_ray_angle`` from
the optical axis, are black (real Aria RGB images are vignetted circles) and have label 0. Depth
is the z coordinate in the optical frame, which both projections share, so it is warped as is.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from humanego_core.camera_models import FISHEYE624, LINEAR, CameraModel, linear_params, remap_tables


class FisheyeRenderer:
    """Renders ``camera`` of ``world`` through a Fisheye624 model of size ``width`` x ``height``.

    ``params`` are the Fisheye624 parameters for that image size (rescale the calibration first);
    ``valid_radius`` (px, around the principal point) is the calibration's, rescaled likewise.
    ``oversample`` > 1 renders the pinhole finer than the fisheye centre.
    """

    def __init__(self, world, camera: str, params, width: int, height: int, *, valid_radius: float | None,
                 max_ray_angle: float = 1.0, oversample: float = 1.0):
        if not 0 < max_ray_angle < math.radians(89):
            raise ValueError(f"max_ray_angle must be in (0, 89 deg) for a pinhole to cover it, got {max_ray_angle}")
        if oversample <= 0:
            raise ValueError(f"oversample must be positive, got {oversample}")
        self.world = world
        self.camera = camera
        self.camera_id = world.model.camera(camera).id
        self.fisheye = CameraModel(FISHEYE624, params, width, height, valid_radius=valid_radius, label=camera)

        # The pinhole must reach the widest ray the fisheye needs along x and along y.
        rays, visible = self.fisheye.unproject(self.fisheye.pixel_grid())
        inside = visible & (np.arctan(np.hypot(rays[..., 0], rays[..., 1])) <= max_ray_angle)
        if not inside.any():
            raise ValueError("no fisheye pixel is within the valid radius and max_ray_angle")
        tan_x, tan_y = np.abs(rays[inside][:, :2]).max(axis=0)
        focal = float(self.fisheye.params[0]) * oversample  # px per radian at the fisheye centre
        # Even sizes, and one spare pixel on each side for bilinear interpolation at the edge.
        pin_w = 2 * math.ceil(focal * tan_x + 1.0)
        pin_h = 2 * math.ceil(focal * tan_y + 1.0)
        limit_w, limit_h = world.model.vis.global_.offwidth, world.model.vis.global_.offheight
        if pin_w > limit_w or pin_h > limit_h:
            raise ValueError(f"the pinhole render would be {pin_w}x{pin_h}, above the model's offscreen buffer "
                             f"{limit_w}x{limit_h}: lower max_ray_angle, oversample or the fisheye size")
        self.pinhole = CameraModel(LINEAR, linear_params(focal, pin_w, pin_h), pin_w, pin_h,
                                   max_solid_angle=max_ray_angle)
        # MuJoCo's focal length from fovy: f = (H / 2) / tan(fovy / 2), square pixels, centred.
        self.fovy_deg = math.degrees(2 * math.atan(0.5 * pin_h / focal))
        map_x, map_y, self.valid = remap_tables(self.fisheye, self.pinhole, target_rays=(rays, visible))
        # Fixed-point maps: cv2.remap runs several times faster with them than with float maps.
        self._linear_maps = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        self._nearest_maps = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2, nninterpolation=True)

    @classmethod
    def from_camera_model(cls, world, camera: str, model: CameraModel, *, max_ray_angle: float | None = None,
                          oversample: float = 1.0) -> FisheyeRenderer:
        """From a (rescaled) Fisheye624 :class:`CameraModel`; ``max_ray_angle`` defaults to its field-of-view cone."""
        if model.model != FISHEYE624:
            raise ValueError(f"FisheyeRenderer needs a {FISHEYE624} camera model, got {model.model}")
        angle = model.max_solid_angle if max_ray_angle is None else max_ray_angle
        return cls(world, camera, model.params, model.width, model.height, valid_radius=model.valid_radius,
                   max_ray_angle=angle, oversample=oversample)

    @property
    def size(self) -> tuple[int, int]:
        return self.fisheye.width, self.fisheye.height

    def render_pinhole(self, kind: str = "rgb") -> np.ndarray:
        """The wide pinhole image the fisheye image is warped from (see ``World.render``)."""
        self.world.model.cam_fovy[self.camera_id] = self.fovy_deg  # set each time: others may change it
        return self.world.render(self.camera, self.pinhole.width, self.pinhole.height, kind)

    def warp(self, image: np.ndarray, kind: str = "rgb") -> np.ndarray:
        """Warp a pinhole image of :meth:`render_pinhole` into the fisheye image (0 outside the valid area)."""
        if kind == "rgb":
            maps, interpolation = self._linear_maps, cv2.INTER_LINEAR
        elif kind in ("labels", "depth"):
            maps, interpolation = self._nearest_maps, cv2.INTER_NEAREST
        else:
            raise ValueError(f"kind must be rgb, labels or depth, got {kind!r}")
        if kind == "labels":
            # cv2.remap takes no int32; label ids are small.
            if image.min(initial=0) < 0 or image.max(initial=0) > np.iinfo(np.uint16).max:
                raise ValueError("labels must be in 0..65535")
            return self._remap(image.astype(np.uint16), maps, interpolation).astype(np.int32)
        return self._remap(image, maps, interpolation)

    def _remap(self, image: np.ndarray, maps, interpolation: int) -> np.ndarray:
        out = cv2.remap(image, maps[0], maps[1], interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out[~self.valid] = 0  # bilinear weights of the border can leak into pixels next to the circle
        return out

    def render(self, kind: str = "rgb") -> np.ndarray:
        """rgb (H,W,3) uint8, labels (H,W) int32 (``World.label_names``) or depth (H,W) float32 z (m), 0 = none."""
        return self.warp(self.render_pinhole(kind), kind)
