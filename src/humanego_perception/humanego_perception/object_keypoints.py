"""Object poses from tracked keypoints (``objects.pose_method: keypoints``): HumanEgo's keypoint pipeline.

:mod:`humanego_perception.objects` splits a clip into an object's static windows, grasps and carries; this
module locates the object in its static windows, on the rectified frames with the SLAM camera poses:

1. **Keypoints** (:func:`select_keypoints`) on the object's largest mask of the first static window it is
   located in: Shi-Tomasi corners inside the eroded mask (texture), plus, for a flat-coloured object, the
   corners of its silhouette.
2. **2D tracks** of those keypoints through every frame of the clip (:mod:`humanego_perception.tracking`:
   pyramidal Lucas-Kanade by default, CoTracker ONNX when configured); with LK a point is lost where it leaves
   the object's (dilated) mask or fails the forward-backward check.
3. **Triangulation** per static window (:func:`humanego_perception.triangulation.triangulate_tracks`: RANSAC
   over view pairs with parallax, DLT on the inliers, Huber refinement of the reprojection error) with the SLAM
   camera poses; each keypoint's depth is then pulled towards the object's common depth as far as its
   triangulation covariance leaves it uncertain (:func:`fuse_keypoints`).
4. **Depth from a metric cue** (:meth:`KeypointLocator._metric`): the egocentric head moves only centimetres,
   so the depth errors of an object's keypoints are large and shared; the points are scaled along their rays
   about the window's mean camera centre (every projection stays) until their centroid is as deep as the
   hand's pinch point at the adjacent grasp onset / release (inside the object), or, for an object never
   grasped, until their base lies on the support the grasped object stood on (the shape fit's cues).
5. **6-DoF pose**: in the first window that triangulates, the object frame is set from the 3D keypoints
   (:func:`keypoint_frame`: like the shape fit's frame, base centre, z up, x along the longer horizontal
   extent, percentiles against stray points), and the keypoints expressed in it are the object's model. In
   each later static window (after a release) the model is rigidly fitted
   (:func:`humanego_perception.triangulation.rigid_fit`, Kabsch) to those of its keypoints that are still
   tracked and triangulate again, and kept upright (a resting object stands on its support); when too few
   are, the pose carried by the hand stays. LK loses most points under the hand during a carry: on six
   serve_bread recordings the bread kept enough of them (4 of 14) in one.

Accuracy (``benchmarks/object_state.py --pose-method keypoints``, six serve_bread recordings at 480 px, default
detector): position median 18.5 mm, p90 80 mm over both objects and all frames (bread 9 / 28 mm, plate 61 /
83 mm), bread yaw 40 deg median; the shape fit (the default) has 2.3 / 8.4 mm and 1.3 deg. The simulator's
objects are flat-coloured: their keypoints are mostly silhouette corners, which slide along the outline as
the head moves, and the plate's spread along the viewing rays over 10-30 cm.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from humanego_core import geometry
from humanego_core.config import option
from humanego_perception.shape_fit import pose_from
from humanego_perception.tracking import CoTrackerConfig, CoTrackerOnnx, LucasKanadeConfig, LucasKanadeTracker
from humanego_perception.triangulation import (
    TriangulationConfig,
    TriangulationError,
    point_covariance,
    projection_matrices,
    rigid_fit,
    triangulate_tracks,
)


class KeypointError(ValueError):
    """Bad input to keypoint selection (image and mask that do not fit)."""


@dataclass
class KeypointSelectionConfig:
    max_points: int = option(24, help="keypoints selected per object", minimum=3)
    min_distance_px: float = option(3.0, help="minimum distance between keypoints (px)", minimum=1.0)
    quality: float = option(0.01, help="Shi-Tomasi quality relative to the best corner", minimum=1e-4, maximum=1.0)
    erode_px: int = option(2, help="erosion of the mask before looking for texture corners (px)", minimum=0)
    silhouette_px: int = option(3, help="half width of the band around the outline where silhouette corners are "
                                        "looked for when texture corners are too few (px)", minimum=1)


@dataclass
class TrackerConfig:
    backend: Literal["lucas_kanade", "cotracker_onnx"] = option(
        "lucas_kanade", help="2D point tracker: OpenCV's pyramidal LK, or a CoTracker ONNX export (set "
                             "cotracker.model_path)")
    lucas_kanade: LucasKanadeConfig = option(default_factory=LucasKanadeConfig, help="LK tracker")
    cotracker: CoTrackerConfig = option(default_factory=CoTrackerConfig, help="CoTracker ONNX tracker")


@dataclass
class KeypointPoseConfig:
    selection: KeypointSelectionConfig = option(default_factory=KeypointSelectionConfig,
                                                help="keypoints on the object masks")
    tracker: TrackerConfig = option(default_factory=TrackerConfig, help="2D tracking of the keypoints")
    # A low parallax floor: the keypoint covariances carry how weak the depth is, and the fusion weighs it.
    triangulation: TriangulationConfig = option(default_factory=lambda: TriangulationConfig(min_parallax_deg=0.25),
                                                help="triangulation of the tracks with the SLAM camera poses")
    min_keypoints: int = option(3, help="triangulated keypoints a window needs for a pose (and model keypoints "
                                        "triangulated again for a rigid fit after a release)", minimum=3)
    max_refit_rms_m: float = option(0.015, help="a rigid fit after a release whose keypoints lie further than this "
                                               "from the model (RMS, m) is refused and the carried pose kept: "
                                               "tracks that slid onto the hand or the background", minimum=0.0)
    max_position_sigma_m: float = option(0.05, help="without a metric cue (pinch point, support height), a window "
                                                    "whose fused keypoint centre is more uncertain than this "
                                                    "(largest standard deviation, m) gives no pose", minimum=0.0)
    # Both measured on six serve_bread recordings at 480 px (benchmarks/object_state.py --pose-method keypoints):
    # silhouette corners of flat-coloured objects slide along the outline as the head moves, errors of several
    # pixels that the reprojection error (0.2-1 px) does not show. Position median over the recordings, bread /
    # plate: floor 0.5 px and extremes 37-131 / 38-175 mm; 2 px, 10th percentile 6-71 / 18-78 mm; 4 px, 10th
    # percentile 7-29 / 18-80 mm; 8 px 7-37 / 23-57 mm.
    pixel_sigma_px: float = option(4.0, help="floor of the tracking noise assumed in the keypoint covariances (px)",
                                   minimum=0.01)
    extent_percentile: float = option(10.0, help="the object frame spans the keypoints from this percentile of "
                                                 "their coordinates to 100 minus it (0: all of them)",
                                      minimum=0.0, maximum=49.0)


def select_keypoints(image_gray: np.ndarray, mask: np.ndarray, config: KeypointSelectionConfig | None = None
                     ) -> np.ndarray:
    """Up to ``max_points`` trackable points (N, 2) float32 (x, y) of the object under ``mask``.

    First Shi-Tomasi corners (``cv2.goodFeaturesToTrack``, ``quality`` relative to the best) inside the mask
    eroded by ``erode_px`` (the object's own texture, not its outline against a background that changes with
    the viewpoint); when those are fewer than half of ``max_points`` (a flat-coloured object), corners of the
    image in a band of ``silhouette_px`` around the mask outline are added.
    """
    c = config or KeypointSelectionConfig()
    gray = np.asarray(image_gray)
    mask = np.asarray(mask, dtype=bool)
    if gray.ndim != 2 or gray.dtype != np.uint8 or mask.shape != gray.shape:
        raise KeypointError(f"select_keypoints needs a uint8 grey image and a mask of its size, got {gray.dtype} "
                            f"{gray.shape} and mask {mask.shape}")
    if not mask.any():
        return np.zeros((0, 2), np.float32)
    m = mask.astype(np.uint8)
    inner = cv2.erode(m, _disc(c.erode_px)) if c.erode_px else m
    found = _corners(gray, inner, c.max_points, c.quality, c.min_distance_px)
    if len(found) < c.max_points // 2:
        band = cv2.dilate(m, _disc(c.silhouette_px)) & ~cv2.erode(m, _disc(c.silhouette_px)) & 1
        outline = _corners(gray, band, c.max_points, c.quality, c.min_distance_px)
        far = [p for p in outline if len(found) == 0 or np.min(np.linalg.norm(found - p, axis=1)) >= c.min_distance_px]
        found = np.concatenate([found, np.array(far, np.float32).reshape(-1, 2)])[:c.max_points]
    return found.astype(np.float32)


def _corners(gray: np.ndarray, region: np.ndarray, count: int, quality: float, min_distance: float) -> np.ndarray:
    if not region.any():
        return np.zeros((0, 2), np.float32)
    pts = cv2.goodFeaturesToTrack(gray, count, quality, min_distance, mask=region.astype(np.uint8))
    return np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def make_tracker(config: TrackerConfig) -> LucasKanadeTracker | CoTrackerOnnx:
    """The configured tracker (a CoTracker model file is loaded, and its signature checked, here)."""
    if config.backend == "cotracker_onnx":
        return CoTrackerOnnx(config.cotracker)
    return LucasKanadeTracker(config.lucas_kanade)


def fuse_keypoints(X: np.ndarray, covariances: Sequence[np.ndarray], camera_centre: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, 3) with their depths fused: the posterior means under the prior that they lie within the
    object, and the covariance (3, 3) of the object's centre.

    Prior: X_i ~ N(c, s^2 I) with s the keypoints' RMS distance from their centroid across the viewing ray from
    ``camera_centre`` (measured well even when depth is not), times sqrt(1.5) for the third axis. The centre c
    is the generalised-least-squares mean of the keypoints (weights (Sigma_i + s^2 I)^-1, Sigma_i their
    triangulation covariances); each keypoint is then c + s^2 (Sigma_i + s^2 I)^-1 (X_i - c): what the images
    measure (the layout across the rays) is kept, what they do not (a poor depth) is pulled to the object's
    common depth.
    """
    X = np.asarray(X, dtype=np.float64)
    centroid = X.mean(axis=0)
    ray = centroid - np.asarray(camera_centre, dtype=np.float64)
    ray /= np.linalg.norm(ray)
    across = (X - centroid) - np.outer((X - centroid) @ ray, ray)
    s2 = max(float(np.mean(np.sum(across ** 2, axis=1))) * 1.5, 1e-6)
    prior = s2 * np.eye(3)
    weights = [np.linalg.inv(C + prior) for C in covariances]
    information = sum(weights)
    c = np.linalg.solve(information, sum(W @ x for W, x in zip(weights, X, strict=True)))
    fused = np.array([c + prior @ W @ (x - c) for W, x in zip(weights, X, strict=True)])
    return fused, np.linalg.inv(information)


def scale_about(points: np.ndarray, centre: np.ndarray, factor: float) -> np.ndarray:
    """Points moved along their rays from ``centre`` to ``factor`` times their distance: every projection
    through a camera at ``centre`` stays where it was."""
    return centre + (np.asarray(points, dtype=np.float64) - centre) * factor


def keypoint_frame(points: np.ndarray, extent_percentile: float = 0.0) -> np.ndarray:
    """T_world_obj of 3D keypoints (N, 3), in the shape fit's convention: z world up, x the principal axis of
    their horizontal layout (pointing to world +x; +y if perpendicular), origin at the centre of their extent
    along x and y, at the height of their base. The extent runs from the ``extent_percentile`` to the
    100 - ``extent_percentile`` percentile of the coordinates (0: lowest to highest), the base is at the
    ``extent_percentile`` of the heights (a keypoint whose depth is off lies off along its viewing ray)."""
    points = np.asarray(points, dtype=np.float64)
    xy = points[:, :2] - points[:, :2].mean(axis=0)
    axis = np.linalg.eigh(xy.T @ xy)[1][:, -1] if len(points) >= 2 and np.ptp(xy, axis=0).max() > 0 \
        else np.array([1.0, 0.0])
    if axis[0] < -1e-9 or (abs(axis[0]) <= 1e-9 and axis[1] < 0):
        axis = -axis
    yaw = math.atan2(axis[1], axis[0])
    R = pose_from(0.0, 0.0, 0.0, yaw)[:3, :3]
    local = points @ R  # R^T p: coordinates along the object's axes
    low, high = np.percentile(local, [extent_percentile, 100.0 - extent_percentile], axis=0)
    centre = R @ np.r_[(low[:2] + high[:2]) / 2, 0.0]
    return pose_from(centre[0], centre[1], float(low[2]), yaw)


def upright(T_world_obj: np.ndarray) -> np.ndarray:
    """The pose with its rotation reduced to the yaw of its x axis about world z (same origin)."""
    x = T_world_obj[:3, 0]
    yaw = math.atan2(x[1], x[0]) if math.hypot(x[0], x[1]) > 1e-9 else \
        math.atan2(-T_world_obj[0, 1], T_world_obj[1, 1])  # x straight up or down: the yaw of y
    return pose_from(*T_world_obj[:3, 3], yaw)


def model_size(shape: str, points_obj: np.ndarray) -> np.ndarray:
    """Extents of a keypoint model in the object frame, in :class:`ObjectTrack`'s ``size`` layout: cylinder
    (radius, height); box or any (L, W, H)."""
    if len(points_obj) == 0:
        return np.zeros(0)
    height = float(np.ptp(points_obj[:, 2]))
    if shape == "cylinder":
        return np.array([float(np.linalg.norm(points_obj[:, :2], axis=1).max()), height])
    return np.r_[np.ptp(points_obj[:, :2], axis=0), height]


@dataclass
class KeypointModel:
    """An object's keypoints in its frame, and which tracks they are."""

    T_world_obj: np.ndarray  # (4, 4) the pose of the window that set the frame
    track_index: np.ndarray  # (M,) indices into KeypointLocator.tracks
    points_obj: np.ndarray  # (M, 3) in the object frame
    rms_px: float  # RMS reprojection error of the triangulated keypoints


@dataclass
class _Triangulated:
    index: np.ndarray  # (M,) track indices that triangulated
    points: np.ndarray  # (M, 3) fused world points
    rms_px: float
    sigma_m: float  # largest standard deviation of their centre


@dataclass
class KeypointLocator:
    """One object's keypoints: selected and tracked once, triangulated per static window (see the module doc).

    ``frames``: the clip's rectified frames (grey or RGB, random access); ``masks``: the object's bool mask per
    frame (None where not detected); ``K``, ``T_world_camera`` (F, 4, 4): the rectified camera and its poses;
    ``clock``: seconds spent are added under ``tracking_s`` and ``triangulation_s``.
    """

    config: KeypointPoseConfig
    tracker: LucasKanadeTracker | CoTrackerOnnx
    K: np.ndarray
    T_world_camera: np.ndarray
    frames: Sequence[np.ndarray]
    masks: Sequence[np.ndarray | None]
    clock: dict[str, float] = field(default_factory=dict)
    tracks: np.ndarray | None = None  # (F, N, 2)
    visible: np.ndarray | None = None  # (F, N)

    def first(self, a: int, b: int, anchors: Sequence[np.ndarray], support_z: float | None = None
              ) -> KeypointModel | None:
        """Keypoints selected on the largest mask of frames [a, b), tracked through the clip and triangulated in
        [a, b), their depth fixed by the ``anchors`` or ``support_z`` (:meth:`_metric`); the object frame they
        set and the model (None: too few keypoints, or no depth cue and too uncertain a depth)."""
        seen = [t for t in range(max(a, 0), min(b, len(self.masks))) if self.masks[t] is not None]
        if len(seen) < self.config.triangulation.min_views:
            return None
        started = time.perf_counter()
        query = max(seen, key=lambda t: self.masks[t].sum())
        points = select_keypoints(_grey(self.frames[query]), self.masks[query], self.config.selection)
        if len(points) < self.config.min_keypoints:
            return None
        self.tracks, self.visible = self.tracker.track(self.frames, query, points, self.masks)
        self._add("tracking_s", started)
        found = self._triangulate(a, b, np.arange(len(points)))
        world = self._metric(a, b, found, anchors, support_z) if found is not None else None
        if world is None:
            return None
        T_world_obj = keypoint_frame(world, self.config.extent_percentile)
        points_obj = geometry.transform_points(geometry.invert(T_world_obj), world)
        return KeypointModel(T_world_obj, found.index, points_obj, found.rms_px)

    def refit(self, a: int, b: int, anchors: Sequence[np.ndarray], model: KeypointModel) -> np.ndarray | None:
        """The model rigidly fitted to its keypoints triangulated again in frames [a, b) (depth as in
        :meth:`first`), upright (None: fewer than ``min_keypoints`` of them triangulate, or they do not fit the
        model within ``max_refit_rms_m``)."""
        found = self._triangulate(a, b, model.track_index)
        world = self._metric(a, b, found, anchors, None) if found is not None else None
        if world is None:
            return None
        model_points = model.points_obj[np.searchsorted(model.track_index, found.index)]
        try:
            T = rigid_fit(model_points, world)
        except TriangulationError:  # collinear keypoints: no rotation to fit
            return None
        residual = geometry.transform_points(T, model_points) - world
        if math.sqrt(np.mean(np.sum(residual ** 2, axis=1))) > self.config.max_refit_rms_m:
            return None
        return upright(T)

    def _metric(self, a: int, b: int, found: _Triangulated, anchors, support_z) -> np.ndarray | None:
        """The triangulated keypoints with their common depth set by a metric cue. A head that moves a few
        centimetres measures the scale of the points about the camera worst (their depth errors are shared),
        so the points are scaled about the window's mean camera centre, which keeps every projection: until
        their centroid is as deep as the mean pinch point of the ``anchors`` (inside the object), else until
        their base (``extent_percentile`` of the heights) is on the support ``support_z``, else as
        triangulated if their centre is certain to ``max_position_sigma_m``."""
        centre = self.T_world_camera[a:b, :3, 3].mean(axis=0)
        ray = found.points.mean(axis=0) - centre
        if len(anchors):
            return scale_about(found.points, centre, float((np.mean(anchors, axis=0) - centre) @ ray) / (ray @ ray))
        if support_z is not None:
            base_z = keypoint_frame(found.points, self.config.extent_percentile)[2, 3]
            if centre[2] > support_z and base_z < centre[2]:
                return scale_about(found.points, centre, (centre[2] - support_z) / (centre[2] - base_z))
        return found.points if found.sigma_m <= self.config.max_position_sigma_m else None

    def _triangulate(self, a: int, b: int, index: np.ndarray) -> _Triangulated | None:
        """Tracks ``index`` triangulated from frames [a, b) and fused (None: fewer than ``min_keypoints``)."""
        c = self.config
        if b - a < c.triangulation.min_views or self.tracks is None:
            return None
        started = time.perf_counter()
        try:
            T_wc = self.T_world_camera[a:b]
            X, inlier, ok, error_px = triangulate_tracks(self.K, T_wc, self.tracks[a:b, index],
                                                         self.visible[a:b, index], c.triangulation)
            if ok.sum() < c.min_keypoints:
                return None
            P = projection_matrices(self.K, T_wc)
            covariances = [point_covariance(X[n], P[inlier[:, n]], max(error_px[n], c.pixel_sigma_px))
                           for n in np.flatnonzero(ok)]
            points, covariance = fuse_keypoints(X[ok], covariances, T_wc[:, :3, 3].mean(axis=0))
            return _Triangulated(index[ok], points, float(np.sqrt(np.mean(error_px[ok] ** 2))),
                                 math.sqrt(np.linalg.eigvalsh(covariance)[-1]))
        finally:
            self._add("triangulation_s", started)

    def _add(self, key: str, started: float) -> None:
        self.clock[key] = self.clock.get(key, 0.0) + time.perf_counter() - started


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


class GreyFrames(Sequence):
    """Grey versions of RGB frames, converted on first use and kept (LK tracks in grey; each object's tracks
    read every frame)."""

    def __init__(self, frames: Sequence[np.ndarray]):
        self.frames, self._cache = frames, {}

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t):
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(len(self)))]
        t = int(t)
        if t not in self._cache:
            self._cache[t] = _grey(self.frames[t])
        return self._cache[t]
