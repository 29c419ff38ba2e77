"""Object poses on the robot from its fixed RGB-D camera (no rclpy; the ``state_estimator``'s ``rgbd`` backend).

HumanEgo estimates the objects over the first frames and tracks them after; so does this, with the parts of
:mod:`humanego_perception.objects` (the detector, prompted by the task's objects) and
:mod:`humanego_perception.shape_fit` (the prompt's box or upright cylinder fitted to the mask outlines):

1. **Estimation** (:meth:`RgbdObjectEstimator.add_view`, until every object has a pose). Per frame the robot's
   own pixels (its URDF self-mask at the measured joint state) are blacked out before detection and removed
   from the masks. Per object and frame with a mask of at least ``min_mask_area_px``: its outline, the median of
   its depth points (base frame) as the initial centre, their spread as the initial size, and the height of the
   support it stands on = the median height of the depth points in a ring around the mask (the table right next
   to it; other objects' and the robot's pixels excluded). After ``init_frames`` such frames the shape is fitted
   to the outlines with its base at that support height: a fixed camera sees the same silhouette every frame,
   and the support height is the metric cue that fixes the depth along the viewing rays (the depth points alone
   lie on the visible surface, half an object in front of its centre).
2. **Tracking** (:meth:`RgbdObjectEstimator.update`, every observation): an object does not move unless the
   gripper carries it (the robot's camera sees a grasped object mostly hidden by the gripper, so it is not
   re-detected). At a grasp onset (grasp > 0.5 after not) the movable object whose centre lies within
   ``grasp_radius_m`` of the pinch point (the hand frame's origin) is taken, and moves rigidly with the hand
   until the grasp opens: ``T_obj(t) = T_hand(t) inv(T_hand(onset)) T_obj(onset)``; released, it keeps the
   carried pose (the rule of :mod:`humanego_perception.objects` for the human videos).

Frames: everything in the robot's base frame, which must have z up (the shape fit's objects stand upright on a
horizontal support). The depth image is aligned with the colour image (same camera model): metres along the
optical axis (``32FC1``) or millimetres (``16UC1``, RealSense); 0, NaN and inf are no measurement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from humanego_core import geometry
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.config import option
from humanego_core.ict import GRASP_THRESHOLD, HandState
from humanego_perception.objects import ObjectPrompt
from humanego_perception.shape_fit import BOX, CYLINDER, ShapeFitError, fit_shape, mask_outline


@dataclass
class RgbdObjectsConfig:
    init_frames: int = option(5, help="frames with a detection of an object its pose is estimated from", minimum=1)
    min_mask_area_px: int = option(30, help="a smaller mask counts as no detection (px)", minimum=1)
    support_ring_px: int = option(6, help="width of the ring around a mask whose depth gives the support height "
                                          "(px)", minimum=1, maximum=100)
    min_depth_points: int = option(20, help="depth points an object's mask (and its ring) needs in a frame",
                                   minimum=1)
    outline_scale_px: float = option(1.0, help="outline distance (px) where the fit's soft-L1 loss turns linear",
                                     minimum=0.01)
    grasp_radius_m: float = option(0.06, help="a grasp onset takes the movable object whose centre is this close "
                                              "to the pinch point (m)", minimum=0.0)


@dataclass
class _Views:
    T_base_camera: list[np.ndarray] = field(default_factory=list)
    outlines: list[np.ndarray] = field(default_factory=list)
    centres: list[np.ndarray] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)
    support_z: list[float] = field(default_factory=list)


def depth_in_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """float64 metres, NaN where there is no measurement (0, NaN, inf)."""
    if encoding == "32FC1":
        d = depth.astype(np.float64)
    elif encoding in ("16UC1", "mono16"):
        d = depth.astype(np.float64) * 1e-3
    else:
        raise ValueError(f"depth encoding {encoding!r}; expected 32FC1 (m) or 16UC1 (mm)")
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return d


class RgbdObjectEstimator:
    """Poses (base frame) of the prompted objects; see the module doc."""

    def __init__(self, prompts: Sequence[ObjectPrompt], detector, config: RgbdObjectsConfig | None = None):
        if not prompts:
            raise ValueError("no objects to estimate")
        self.prompts = list(prompts)
        self.detector = detector
        self.config = config or RgbdObjectsConfig()
        self._views = {p.name: _Views() for p in self.prompts}
        self.poses: dict[str, np.ndarray] = {}
        self.sizes: dict[str, np.ndarray] = {}
        self.fit_rms_px: dict[str, float] = {}
        self._held: tuple[str, np.ndarray] | None = None  # (object, T_hand_obj) while carried
        self._grasping = False

    @property
    def ready(self) -> bool:
        return len(self.poses) == len(self.prompts)

    @property
    def pending(self) -> list[str]:
        return [p.name for p in self.prompts if p.name not in self.poses]

    def add_view(self, rgb: np.ndarray, depth_m: np.ndarray, camera: CameraModel, T_base_camera,
                 exclude: np.ndarray | None = None) -> list[str]:
        """Use one frame for the objects without a pose yet; returns the objects estimated by it.

        ``depth_m``: (H, W) metres with NaN for no measurement (:func:`depth_in_metres`); ``exclude``: (H, W)
        bool pixels that are not objects (the robot)."""
        if camera.model != LINEAR:
            raise ValueError("the rgbd object backend takes rectified (pinhole) images")
        shape = (camera.height, camera.width)
        if rgb.dtype != np.uint8 or rgb.shape != (*shape, 3) or depth_m.shape != shape:
            raise ValueError(f"rgb uint8 {shape + (3,)} and depth {shape} expected like the camera, got "
                             f"{rgb.dtype} {rgb.shape} and {depth_m.shape}")
        try:
            T_base_camera = geometry.check_transform(T_base_camera, "T_base_camera")
        except geometry.GeometryError as exc:
            raise ValueError(str(exc)) from None
        exclude = np.zeros(shape, bool) if exclude is None else np.asarray(exclude, bool)
        pending = [p for p in self.prompts if p.name not in self.poses]
        if not pending:
            return []
        image = rgb.copy()
        image[exclude] = 0
        masks = {name: np.asarray(m, bool) & ~exclude for name, m in self.detector.detect(image, pending).items()}
        points = self._points_in_base(depth_m, camera, T_base_camera)
        others = exclude.copy()
        for m in masks.values():
            others |= m
        estimated = []
        for prompt in pending:
            view = self._measure(masks[prompt.name], others, points)
            if view is None:
                continue
            views = self._views[prompt.name]
            views.T_base_camera.append(T_base_camera)
            for key, value in zip(("outlines", "centres", "sizes", "support_z"), view, strict=True):
                getattr(views, key).append(value)
            if len(views.outlines) >= self.config.init_frames:
                self._fit(prompt, camera)
                estimated.append(prompt.name)
        return estimated

    def _points_in_base(self, depth_m: np.ndarray, camera: CameraModel, T_base_camera) -> np.ndarray:
        rays = camera.unproject_no_checks(camera.pixel_grid())
        return geometry.transform_points(T_base_camera, (rays * depth_m[..., None]).reshape(-1, 3)).reshape(
            depth_m.shape + (3,))

    def _measure(self, mask: np.ndarray, others: np.ndarray, points: np.ndarray):
        c = self.config
        if mask.sum() < c.min_mask_area_px:
            return None
        valid = np.isfinite(points[..., 2])
        inside = points[mask & valid]
        k = 2 * c.support_ring_px + 1
        ring = (cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)) > 0) & ~others & valid
        around = points[ring]
        if len(inside) < c.min_depth_points or len(around) < c.min_depth_points:
            return None
        centre = np.median(inside, axis=0)
        spread = np.percentile(np.linalg.norm(inside[:, :2] - centre[:2], axis=1), 90)
        return mask_outline(mask), centre, float(max(2.0 * spread, 0.01)), float(np.median(around[:, 2]))

    def _fit(self, prompt: ObjectPrompt, camera: CameraModel) -> None:
        views = self._views.pop(prompt.name)
        self._views[prompt.name] = _Views()  # a failed fit starts over with new frames
        shape = CYLINDER if prompt.shape == "cylinder" else BOX  # 'any': its bounding box
        try:
            fit = fit_shape(shape, camera.intrinsic_matrix(), np.stack(views.T_base_camera), views.outlines,
                            np.median(views.centres, axis=0), float(np.median(views.sizes)),
                            base_z=float(np.median(views.support_z)), outline_scale_px=self.config.outline_scale_px)
        except ShapeFitError:
            return
        self.poses[prompt.name] = fit.T_world_obj
        self.sizes[prompt.name] = fit.size
        self.fit_rms_px[prompt.name] = fit.rms_px

    def centre(self, name: str) -> np.ndarray:
        """The body centre of an estimated object (base frame)."""
        height = self.sizes[name][-1]
        return geometry.transform_points(self.poses[name], np.array([[0.0, 0.0, height / 2]]))[0]

    def update(self, hand: HandState | None) -> Mapping[str, np.ndarray]:
        """Carry a grasped object with the hand (None: no hand known, nothing moves); the current poses."""
        if hand is None or not self.ready:
            return self.poses
        grasping = hand.grasp > GRASP_THRESHOLD
        if grasping and not self._grasping:
            movable = [p.name for p in self.prompts if p.dynamic]
            distance = {n: float(np.linalg.norm(self.centre(n) - hand.T_world_hand[:3, 3])) for n in movable}
            near = [n for n in movable if distance[n] <= self.config.grasp_radius_m]
            if near:
                name = min(near, key=distance.get)
                self._held = (name, geometry.relative(hand.T_world_hand, self.poses[name]))
        elif not grasping:
            self._held = None
        self._grasping = grasping
        if self._held is not None:
            name, T_hand_obj = self._held
            self.poses[name] = hand.T_world_hand @ T_hand_obj
        return self.poses
