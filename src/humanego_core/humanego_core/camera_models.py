"""Camera projection models of Project Aria, vectorised in numpy (no projectaria_tools needed).

Two models, with the parameter layouts of projectaria_tools' ``CameraCalibration``:

- ``fisheye624`` (Aria's RGB and SLAM cameras, JSON name ``FisheyeRadTanThinPrism``):
  ``[f, cx, cy, k0..k5, p0, p1, s0..s3]``. With ``a, b = x/z, y/z``, ``r = |(a, b)|``,
  ``th = atan(r)``::

      (xr, yr) = th (1 + k0 th^2 + k1 th^4 + ... + k5 th^12) (a, b) / r        radial
      rd2      = xr^2 + yr^2
      u_d      = xr + 2 (xr p0 + yr p1) xr + rd2 p0 + s0 rd2 + s1 rd2^2         tangential, thin prism
      v_d      = yr + 2 (xr p0 + yr p1) yr + rd2 p1 + s2 rd2 + s3 rd2^2
      (u, v)   = f (u_d, v_d) + (cx, cy)

  Unprojection inverts the tangential/thin-prism part by Newton iterations on ``(xr, yr)`` and
  the radial polynomial by Newton iterations on ``th``, as projectaria does; it returns rays
  ``(x, y, 1)``. The model is symmetric in the sign of z (projectaria's choice), so only rays in
  front of the camera are meaningful.
- ``linear`` (pinhole): ``[fx, fy, cx, cy]``.

Pixel convention (projectaria's): integer pixel coordinates are pixel centres, so the sensor spans
``[-0.5, width - 0.5] x [-0.5, height - 0.5]``. Rescaling to another image size maps that span,
hence ``c' = s (c + 0.5) - 0.5``.

:class:`CameraModel` bundles a model with its image size, valid radius, field-of-view cone and
``T_device_camera`` the way a projectaria ``CameraCalibration`` does, and reads them from an Aria
device-calibration JSON. :func:`remap_tables` builds ``cv2.remap`` maps between two cameras
(undistortion, or rendering a fisheye image from a pinhole one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.spatial.transform import Rotation

FISHEYE624 = "fisheye624"
LINEAR = "linear"
NUM_PARAMS = {FISHEYE624: 15, LINEAR: 4}
# Names of the models in Aria's calibration JSON ("Projection": {"Name": ...}).
JSON_MODEL_NAMES = {"FisheyeRadTanThinPrism": FISHEYE624, "Linear": LINEAR}

NEWTON_MAX_ITERATIONS = 50
# projectaria stops at a step below 1e-7; going to 1e-12 costs a couple of iterations and makes
# project(unproject(p)) exact to ~1e-9 px.
NEWTON_TOLERANCE = 1e-12

_K, _P, _S = slice(3, 9), slice(9, 11), slice(11, 15)


def _check_params(params, model: str) -> np.ndarray:
    if model not in NUM_PARAMS:
        raise ValueError(f"unknown camera model {model!r} (known: {', '.join(NUM_PARAMS)})")
    p = np.asarray(params, dtype=np.float64)
    if p.shape != (NUM_PARAMS[model],):
        raise ValueError(f"{model} needs {NUM_PARAMS[model]} parameters, got shape {p.shape}")
    return p


def _last_axis(x, n: int, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] != n:
        raise ValueError(f"{name} must have shape (..., {n}), got {a.shape}")
    return a


def _radial_poly(theta: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``1 + sum k_i th^(2i+2)`` and the derivative of ``th * (that)`` with respect to th."""
    t2 = theta * theta
    poly = np.ones_like(theta)
    dpoly = np.ones_like(theta)
    power = t2.copy()
    for i, ki in enumerate(k):
        poly += ki * power
        dpoly += (2 * i + 3) * ki * power
        power *= t2
    return poly, dpoly


def _tangential_thin_prism(xr: np.ndarray, yr: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p0, p1 = params[_P]
    s0, s1, s2, s3 = params[_S]
    rd2 = xr * xr + yr * yr
    rd4 = rd2 * rd2
    dot2 = 2.0 * (xr * p0 + yr * p1)
    return (xr + dot2 * xr + rd2 * p0 + s0 * rd2 + s1 * rd4,
            yr + dot2 * yr + rd2 * p1 + s2 * rd2 + s3 * rd4)


def fisheye624_project(points, params) -> np.ndarray:
    """Pixels ``(..., 2)`` of points ``(..., 3)`` in the camera's optical frame (no visibility checks)."""
    p = _check_params(params, FISHEYE624)
    X = _last_axis(points, 3, "points")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = X[..., 0] / X[..., 2]
        b = X[..., 1] / X[..., 2]
        r = np.hypot(a, b)
        theta = np.arctan(r)
        poly, _ = _radial_poly(theta, p[_K])
        # th / r -> 1 as r -> 0 (projectaria's limit below machine epsilon)
        scale = poly * np.where(r < np.finfo(np.float64).eps, 1.0, theta / np.where(r > 0, r, 1.0))
    ud, vd = _tangential_thin_prism(scale * a, scale * b, p)
    return np.stack([p[0] * ud + p[1], p[0] * vd + p[2]], axis=-1)


def fisheye624_unproject(pixels, params) -> np.ndarray:
    """Rays ``(..., 3)`` with z = 1 through pixels ``(..., 2)`` (no visibility checks)."""
    p = _check_params(params, FISHEYE624)
    uv = _last_axis(pixels, 2, "pixels")
    ud = (uv[..., 0] - p[1]) / p[0]
    vd = (uv[..., 1] - p[2]) / p[0]
    p0, p1 = p[_P]
    s0, s1, s2, s3 = p[_S]

    # Newton on (xr, yr): distortion(xr, yr) = (ud, vd); the Jacobian is close to identity.
    xr, yr = ud.copy(), vd.copy()
    for _ in range(NEWTON_MAX_ITERATIONS):
        ex, ey = _tangential_thin_prism(xr, yr, p)
        ex, ey = ud - ex, vd - ey
        rd2 = xr * xr + yr * yr
        j00 = 1 + 6 * xr * p0 + 2 * yr * p1
        j11 = 1 + 6 * yr * p1 + 2 * xr * p0
        j01 = 2 * (xr * p1 + yr * p0)
        j10 = j01.copy()
        tx = 2 * (s0 + 2 * s1 * rd2)
        ty = 2 * (s2 + 2 * s3 * rd2)
        j00 += xr * tx
        j01 += yr * tx
        j10 += xr * ty
        j11 += yr * ty
        det = j00 * j11 - j01 * j10
        dx = (j11 * ex - j01 * ey) / det
        dy = (j00 * ey - j10 * ex) / det
        xr += dx
        yr += dy
        if np.all(dx * dx + dy * dy < NEWTON_TOLERANCE**2):
            break

    # Newton on theta: theta * poly(theta) = |(xr, yr)|.
    rd = np.hypot(xr, yr)
    theta = rd.copy()
    for _ in range(NEWTON_MAX_ITERATIONS):
        poly, dpoly = _radial_poly(theta, p[_K])
        eps = np.finfo(np.float64).eps
        safe = np.abs(dpoly) > eps
        residual = rd - theta * poly
        step = np.where(safe, residual / np.where(safe, dpoly, 1.0),
                        np.where(residual * dpoly > 0, 10 * eps, -10 * eps))
        theta += step
        # stay within the hemisphere, where tan is finite (as projectaria does)
        theta = np.where(np.abs(theta) >= math.pi / 2, 0.999 * math.pi / 2, theta)
        if np.all(np.abs(step) < NEWTON_TOLERANCE):
            break

    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(rd > 0, np.tan(theta) / np.where(rd > 0, rd, 1.0), 0.0)
    return np.stack([factor * xr, factor * yr, np.ones_like(xr)], axis=-1)


def linear_project(points, params) -> np.ndarray:
    p = _check_params(params, LINEAR)
    X = _last_axis(points, 3, "points")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([p[0] * X[..., 0] / X[..., 2] + p[2], p[1] * X[..., 1] / X[..., 2] + p[3]], axis=-1)


def linear_unproject(pixels, params) -> np.ndarray:
    p = _check_params(params, LINEAR)
    uv = _last_axis(pixels, 2, "pixels")
    return np.stack([(uv[..., 0] - p[2]) / p[0], (uv[..., 1] - p[3]) / p[1], np.ones(uv.shape[:-1])], axis=-1)


def project(points, params, model: str) -> np.ndarray:
    return fisheye624_project(points, params) if model == FISHEYE624 else linear_project(points, params)


def unproject(pixels, params, model: str) -> np.ndarray:
    return fisheye624_unproject(pixels, params) if model == FISHEYE624 else linear_unproject(pixels, params)


def rescale_params(params, model: str, scale: float, origin_offset=(0.0, 0.0)) -> np.ndarray:
    """Parameters for an image cropped by ``origin_offset`` (px) then scaled by ``scale`` (projectaria's order)."""
    p = _check_params(params, model).copy()
    ox, oy = origin_offset
    focal, cx, cy = ([0], 1, 2) if model == FISHEYE624 else ([0, 1], 2, 3)
    p[focal] *= scale
    p[cx] = scale * (p[cx] - ox + 0.5) - 0.5
    p[cy] = scale * (p[cy] - oy + 0.5) - 0.5
    return p


def linear_params(focal: float, width: int, height: int) -> np.ndarray:
    """Pinhole with square pixels and the principal point at the image centre (projectaria's and MuJoCo's)."""
    return np.array([focal, focal, (width - 1) / 2.0, (height - 1) / 2.0])


@dataclass(frozen=True)
class CameraModel:
    """A calibrated camera, like projectaria's ``CameraCalibration`` (which see for the checks)."""

    model: str
    params: np.ndarray
    width: int
    height: int
    valid_radius: float | None = None  # circle around the principal point outside which pixels are invalid
    max_solid_angle: float = math.pi  # rays further than this from the optical axis (rad) are not visible
    T_device_camera: np.ndarray = field(default_factory=lambda: np.eye(4))
    label: str = ""

    def __post_init__(self):
        object.__setattr__(self, "params", _check_params(self.params, self.model))
        object.__setattr__(self, "T_device_camera", np.asarray(self.T_device_camera, dtype=np.float64))
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    @property
    def principal_point(self) -> np.ndarray:
        return self.params[1:3] if self.model == FISHEYE624 else self.params[2:4]

    @property
    def focal_lengths(self) -> np.ndarray:
        return np.array([self.params[0], self.params[0]]) if self.model == FISHEYE624 else self.params[0:2]

    def intrinsic_matrix(self) -> np.ndarray:
        """K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]: a pinhole's projection (a fisheye's before its distortion)."""
        (fx, fy), (cx, cy) = self.focal_lengths, self.principal_point
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def project_no_checks(self, points) -> np.ndarray:
        return project(points, self.params, self.model)

    def unproject_no_checks(self, pixels) -> np.ndarray:
        return unproject(pixels, self.params, self.model)

    def is_visible(self, pixels) -> np.ndarray:
        """Pixels inside the sensor and the valid radius."""
        uv = _last_axis(pixels, 2, "pixels")
        inside = ((uv[..., 0] >= -0.5) & (uv[..., 0] <= self.width - 0.5)
                  & (uv[..., 1] >= -0.5) & (uv[..., 1] <= self.height - 0.5))
        if self.valid_radius is not None:
            d = uv - self.principal_point
            inside &= np.sum(d * d, axis=-1) <= self.valid_radius**2
        return inside

    def project(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``(..., 2)`` and a mask of those projectaria's ``project`` accepts (in the cone, visible)."""
        X = _last_axis(points, 3, "points")
        uv = self.project_no_checks(X)
        in_cone = np.arctan2(np.hypot(X[..., 0], X[..., 1]), X[..., 2]) <= self.max_solid_angle
        return uv, in_cone & self.is_visible(np.nan_to_num(uv, nan=-1e9, posinf=-1e9, neginf=-1e9))

    def unproject(self, pixels) -> tuple[np.ndarray, np.ndarray]:
        """Rays ``(..., 3)`` (z = 1) and a mask of the visible pixels (projectaria returns None for the others)."""
        uv = _last_axis(pixels, 2, "pixels")
        return self.unproject_no_checks(uv), self.is_visible(uv)

    def rescale(self, width: int, height: int, scale: float, origin_offset=(0.0, 0.0)) -> CameraModel:
        """The same camera for a cropped-then-scaled image, as projectaria's ``rescale``."""
        ox, oy = origin_offset
        if abs((self.width - 2 * ox) * scale - width) > 1e-5 or abs((self.height - 2 * oy) * scale - height) > 1e-5:
            raise ValueError(f"{width}x{height} is not ({self.width}x{self.height} - 2 * offset {tuple(origin_offset)})"
                             f" * scale {scale}")
        return replace(self, params=rescale_params(self.params, self.model, scale, origin_offset),
                       width=width, height=height,
                       valid_radius=None if self.valid_radius is None else self.valid_radius * scale)

    def pixel_grid(self) -> np.ndarray:
        """Centres of all pixels, ``(height, width, 2)`` as (u, v)."""
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        return np.stack([u, v], axis=-1)

    @classmethod
    def from_calibration_json(cls, calibration, label: str = "camera-rgb") -> CameraModel:
        """The camera ``label`` of an Aria device calibration (JSON text or parsed dict)."""
        data = json.loads(calibration) if isinstance(calibration, str) else calibration
        cameras = data.get("CameraCalibrations") if isinstance(data, dict) else None
        if not isinstance(cameras, list):
            raise ValueError("device calibration has no 'CameraCalibrations' list")
        entry = next((c for c in cameras if c.get("Label") == label), None)
        if entry is None:
            raise ValueError(f"device calibration has no camera {label!r} "
                             f"(cameras: {', '.join(str(c.get('Label')) for c in cameras)})")
        try:
            name = entry["Projection"]["Name"]
            if name not in JSON_MODEL_NAMES:
                raise ValueError(f"camera {label!r}: projection model {name!r} is not supported "
                                 f"(supported: {', '.join(JSON_MODEL_NAMES)})")
            config = entry["ConfigData"]
            pose = entry["T_Device_Camera"]
            w, (x, y, z) = pose["UnitQuaternion"]
            T = np.eye(4)
            T[:3, :3] = Rotation.from_quat([x, y, z, w]).as_matrix()
            T[:3, 3] = pose["Translation"]
            return cls(model=JSON_MODEL_NAMES[name], params=np.array(entry["Projection"]["Params"], float),
                       width=int(config["ImageWidth"]), height=int(config["ImageHeight"]),
                       valid_radius=config.get("ValidRadius"), max_solid_angle=float(config["MaxSolidAngle"]),
                       T_device_camera=T, label=label)
        except (KeyError, TypeError) as e:
            raise ValueError(f"camera {label!r} in the device calibration is malformed: missing or bad {e}") from e

    @classmethod
    def from_projectaria(cls, calib) -> CameraModel:
        """From a projectaria ``CameraCalibration`` (duck-typed: this module never imports projectaria)."""
        name = str(calib.get_model_name()).rsplit(".", 1)[-1]
        model = {"FISHEYE624": FISHEYE624, "LINEAR": LINEAR}.get(name)
        if model is None:
            raise ValueError(f"camera {calib.get_label()!r}: projection model {name} is not supported")
        width, height = (int(v) for v in calib.get_image_size())
        return cls(model=model, params=np.array(calib.get_projection_params(), float), width=width, height=height,
                   valid_radius=calib.get_valid_radius(), max_solid_angle=float(calib.get_max_solid_angle()),
                   T_device_camera=np.array(calib.get_transform_device_camera().to_matrix()), label=calib.get_label())


def remap_tables(target: CameraModel, source: CameraModel, R_source_target=None,
                 target_rays: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cv2.remap`` maps that make an image of ``target`` from an image of ``source`` (same centre).

    For every target pixel: its ray (rotated by ``R_source_target``, default identity) and the
    source pixel that sees it. Returns ``map_x, map_y`` (float32, target-sized) and ``valid``: the
    target pixel is visible, its ray is in front of the source and within its ``max_solid_angle``,
    and lands in the source's visible area. Invalid entries of the maps are set far outside the
    source image, so ``cv2.BORDER_CONSTANT`` fills them. ``target_rays``: the result of
    ``target.unproject(target.pixel_grid())`` if the caller has it already (the costly part).
    """
    rays, valid = target_rays if target_rays is not None else target.unproject(target.pixel_grid())
    if R_source_target is not None:
        rays = rays @ np.asarray(R_source_target, dtype=np.float64).T
    uv, seen = source.project(rays)
    valid = valid & seen & (rays[..., 2] > 0)
    far = -10.0 - max(source.width, source.height)
    uv = np.where(valid[..., None], uv, far)
    return uv[..., 0].astype(np.float32), uv[..., 1].astype(np.float32), valid
