"""Pose and size of a box or an upright cylinder from its silhouettes in views with known camera poses.

The model is the object's convex bounding shape standing upright on a horizontal support (MPS world: z up):

- ``box``: base centre (x, y, z), yaw about z, full extents L >= W (along its x, y) and height H;
- ``cylinder``: base centre (x, y, z), radius r and height h (no yaw: its x axis is world x).

Its object frame is the simulator's and a robot's usual one: origin at the centre of the base, z up, x along
the box's longer side, pointing towards world +x (a box looks the same turned by 180 degrees).

The silhouette of a convex body is the convex hull of its projected points, so the model's silhouette in a
view is the hull of its projected corners (box) or rim points (cylinder); a mask's outline is the convex hull
of its outer contours (interior holes and notches, e.g. another object lying on it, do not count).

:func:`fit_shape` minimises, over the chosen views, the distances between the two outlines (each outline's
points to the other polygon, robust soft-L1 of scale ``outline_scale_px``, each view weighted by the mean
over its points), plus optional cues that fix what silhouettes from nearly one viewpoint leave open (depth
along the viewing ray trades against size):

- ``centre_prior``: a 3D point measured within ``sigma`` of the body's centre (the hand's pinch point when it
  grasps the object: between the fingertips, inside the object);
- ``base_z``: the known height of the support the object stands on.

With neither, only the parallax between views fixes the depth (weak for a head that moves a few centimetres).
Functions take the pinhole K of rectified images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares

from humanego_core import geometry

BOX = "box"
CYLINDER = "cylinder"
SHAPES = (BOX, CYLINDER)
_RIM_POINTS = 32  # rim polygon of a cylinder: radius error r (1 - cos(pi / 32)) = 0.5 % of r
_OUTLINE_SAMPLES = 64  # points per outline in the residuals
_PIXEL_HALF_SIZE = 0.15  # see mask_outline


class ShapeFitError(ValueError):
    """Inputs a shape cannot be fitted to (no views, empty outlines, bad shapes)."""


@dataclass
class ShapeFit:
    shape: str
    T_world_obj: np.ndarray  # (4, 4) base centre, z up, x along the box's longer side
    size: np.ndarray  # box: (L, W, H), L >= W; cylinder: (radius, height)
    rms_px: float  # RMS distance between the fitted and the measured outlines over the views


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Convex hull (M, 2) float64 of a bool mask's outer contours, each contour pixel taken as a square of
    +- ``_PIXEL_HALF_SIZE`` around its centre.

    Why: a pixel is in a mask where most of it is covered, and the convex hull of such a raster of a convex
    shape lies off its edge on average by -0.2 px through the pixel centres and +0.4 px through the corners of
    whole pixels (a 10 x 5 x 4 cm box, a 9 cm cylinder and a 20 x 12 x 10 cm box at 0.8 m drawn at 8x
    supersampling); squares of +- 0.15 px are within +- 0.1 px (test_shape_fit.py checks it)."""
    contours, _ = cv2.findContours(np.asarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise ShapeFitError("mask_outline: the mask is empty")
    centres = np.concatenate(contours).reshape(-1, 2).astype(np.float32)
    corners = (centres[:, None] + _PIXEL_HALF_SIZE * np.float32([[-1, -1], [1, -1], [1, 1], [-1, 1]])).reshape(-1, 2)
    return cv2.convexHull(corners).reshape(-1, 2).astype(np.float64)


def model_points(shape: str, size, rim_points: int = _RIM_POINTS) -> np.ndarray:
    """Points (N, 3) in the object frame whose convex hull is the model: a box's 8 corners, a cylinder's two
    rims (``rim_points`` each)."""
    if shape == BOX:
        L, W, H = size
        return np.array([[sx * L / 2, sy * W / 2, z] for z in (0.0, H) for sx in (-1, 1) for sy in (-1, 1)])
    if shape == CYLINDER:
        r, h = size
        a = np.linspace(0.0, 2 * math.pi, rim_points, endpoint=False)
        rim = np.c_[r * np.cos(a), r * np.sin(a)]
        return np.concatenate([np.c_[rim, np.zeros(rim_points)], np.c_[rim, np.full(rim_points, h)]])
    raise ShapeFitError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")


def pose_from(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    """T_world_obj of a base centre (x, y, z) and a yaw about world z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return geometry.make_transform(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), [x, y, z])


def _pad(polygons: list[np.ndarray]) -> np.ndarray:
    """Polygons (M_i, 2) as one array (V, max M_i, 2), each padded by repeating its last vertex (a zero-length
    edge changes neither its arc length nor the distances to it)."""
    size = max(len(p) for p in polygons)
    return np.stack([np.concatenate([p, np.repeat(p[-1:], size - len(p), axis=0)]) for p in polygons])


def _sample_closed(polygons: np.ndarray, count: int) -> np.ndarray:
    """``count`` points (V, count, 2) evenly spaced by arc length along closed polygons (V, M, 2)."""
    closed = np.concatenate([polygons, polygons[:, :1]], axis=1)
    step = np.linalg.norm(np.diff(closed, axis=1), axis=-1)  # (V, M)
    arc = np.concatenate([np.zeros((len(step), 1)), np.cumsum(step, axis=1)], axis=1)  # (V, M + 1)
    s = (np.arange(count) + 0.5) / count * arc[:, -1:]  # (V, count)
    edge = np.clip((arc[:, None, 1:] <= s[..., None]).sum(-1), 0, step.shape[1] - 1)  # edge index (V, count)
    start = np.take_along_axis(arc, edge, axis=1)
    length = np.take_along_axis(step, edge, axis=1)
    t = np.where(length > 1e-12, (s - start) / np.maximum(length, 1e-12), 0.0)[..., None]
    a = np.take_along_axis(closed, edge[..., None], axis=1)
    b = np.take_along_axis(closed, edge[..., None] + 1, axis=1)
    return a + t * (b - a)


def _distance_to_polygons(points: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """Distance (V, N) of points (V, N, 2) to the edges of closed polygons (V, M, 2)."""
    a = polygons[:, None]  # (V, 1, M, 2)
    ab = np.roll(polygons, -1, axis=1)[:, None] - a
    ap = points[:, :, None] - a  # (V, N, M, 2)
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return np.sqrt(((ap - t[..., None] * ab) ** 2).sum(-1).min(axis=2))


class _Views:
    """The measured outlines and the projection matrices of the views a shape is fitted to."""

    def __init__(self, K, T_world_camera, outlines):
        T_world_camera = geometry.check_transform(np.asarray(T_world_camera, dtype=np.float64), "T_world_camera")
        if T_world_camera.ndim != 3 or len(T_world_camera) != len(outlines) or not len(outlines):
            raise ShapeFitError(f"need one camera pose per outline and at least one view, got "
                                f"{T_world_camera.shape} poses and {len(outlines)} outlines")
        if any(len(o) < 3 for o in outlines):
            raise ShapeFitError("an outline has fewer than 3 points")
        self.P = np.asarray(K, dtype=np.float64) @ geometry.invert(T_world_camera)[:, :3, :]
        self.outlines = _pad([np.asarray(o, dtype=np.float64) for o in outlines])
        self.samples = _sample_closed(self.outlines, _OUTLINE_SAMPLES)

    def distances(self, points_world: np.ndarray) -> np.ndarray:
        """(V, 2 * samples): measured outline points to the model's silhouette, then the silhouette's points to
        the measured outline, in pixels."""
        x = np.einsum("vij,nj->vni", self.P[:, :, :3], points_world) + self.P[:, None, :, 3]
        uv = x[..., :2] / np.maximum(x[..., 2:], 1e-6)  # a model behind a camera gives a far-off silhouette
        hulls = _pad([cv2.convexHull(p.astype(np.float32)).reshape(-1, 2).astype(np.float64) for p in uv])
        return np.concatenate([_distance_to_polygons(self.samples, hulls),
                               _distance_to_polygons(_sample_closed(hulls, _OUTLINE_SAMPLES), self.outlines)],
                              axis=1)


def fit_shape(shape: str, K, T_world_camera, outlines, initial_centre, initial_size: float,
              centre_prior: tuple[np.ndarray, float] | None = None, base_z: float | None = None,
              outline_scale_px: float = 1.0) -> ShapeFit:
    """Fit a box or cylinder to its outlines (see the module doc).

    ``outlines``: per view the measured outline polygon (M, 2) (:func:`mask_outline`); ``T_world_camera``
    (V, 4, 4) the views' poses; ``initial_centre`` (3,) a guess of the body's centre and ``initial_size`` of
    its extent (m); ``centre_prior`` (point (3,), sigma m); ``base_z`` fixes the base's height.
    A box is tried from four yaws (its outline cost has a basin per side) and the best fit kept.
    """
    if shape not in SHAPES:
        raise ShapeFitError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    views = _Views(K, T_world_camera, outlines)
    centre0 = np.asarray(initial_centre, dtype=np.float64)
    if centre0.shape != (3,) or not np.all(np.isfinite(centre0)) or not initial_size > 0:
        raise ShapeFitError(f"initial_centre must be a finite 3-vector and initial_size > 0, got {centre0}, "
                            f"{initial_size}")
    scale = outline_scale_px
    box = shape == BOX
    free_z = base_z is None
    height0 = initial_size * (0.7 if box else 0.3)

    def unpack(q):
        x, y = q[0], q[1]
        z = q[2] if free_z else base_z
        rest = q[3:] if free_z else q[2:]
        yaw, log_size = (rest[0], rest[1:]) if box else (0.0, rest)
        return x, y, z, yaw, np.exp(log_size)

    def residuals(q):
        x, y, z, yaw, size = unpack(q)
        T = pose_from(x, y, z, yaw)
        d = views.distances(geometry.transform_points(T, model_points(shape, size)))
        # soft-L1 as a residual: sqrt(2 s^2 (sqrt(1 + (d / s)^2) - 1)), each view the mean of its two outlines
        robust = np.sqrt(2.0 * scale * scale * (np.sqrt(1.0 + (d / scale) ** 2) - 1.0)) / scale
        out = [(robust / math.sqrt(d.shape[1] / 2)).ravel()]
        if centre_prior is not None:
            point, sigma = centre_prior
            out.append((np.array([x, y, z + size[-1] / 2]) - point) / sigma)
        return np.concatenate(out)

    z0 = [centre0[2] - height0 / 2] if free_z else []
    log_size0 = np.log([initial_size, initial_size * 0.6, height0] if box else [initial_size / 2, height0])
    starts = [np.r_[centre0[:2], z0, yaw, log_size0] for yaw in np.radians([0.0, 45.0, 90.0, 135.0])] if box \
        else [np.r_[centre0[:2], z0, log_size0]]
    x_scale = np.r_[0.01, 0.01, [0.01] if free_z else [], [0.3] if box else [], np.full(len(log_size0), 0.2)]
    best = min((least_squares(residuals, q0, x_scale=x_scale, diff_step=1e-4) for q0 in starts),
               key=lambda r: r.cost)
    x, y, z, yaw, size = unpack(best.x)
    if not (np.all(np.isfinite(best.x)) and np.all(np.isfinite(size)) and size.min() > 0):
        raise ShapeFitError(f"the {shape} fit diverged (size {size}); check the outlines and the cues")
    if box and size[1] > size[0]:
        size, yaw = size[[1, 0, 2]], yaw + math.pi / 2
    yaw = (yaw + math.pi / 2) % math.pi - math.pi / 2  # a box is symmetric by 180 deg: x towards world +x
    T = pose_from(x, y, z, yaw)
    d = views.distances(geometry.transform_points(T, model_points(shape, size)))
    return ShapeFit(shape, T, size, float(np.sqrt(np.mean(d ** 2))))
