"""Object state from egocentric video: every task object's 6-DoF pose in the world, per RGB frame.

HumanEgo's stages, on rectified (pinhole) frames with MPS SLAM camera poses:

1. **Masks** from a detector prompted by the task config (:class:`ObjectPrompt`): :class:`ColourShapeDetector`
   (the simulator's flat-coloured objects: colour distance in CIE Lab, hysteresis growth, morphology,
   connected components scored by colour fit, size and shape), :class:`OnnxDetector` (an instance-segmentation
   ONNX model), or :class:`GroundTruthMasks` (ablations only).
2. **Keypoints** on a mask (:func:`select_keypoints`): corners inside the eroded mask (texture), and, where an
   object is flat-coloured and has too few, the corners of its silhouette (found on the image in a band
   around the mask, so they are corners LK can follow).
3. **2D tracking** through a static window (:mod:`humanego_perception.tracking`).
4. **Triangulation** with the SLAM poses (:func:`humanego_perception.triangulation.triangulate_tracks`).
5. **Pose** (:func:`estimate_object_states`), the rules:

   - A *static window* is a run of frames where the object cannot move: for a static object the whole clip;
     for a dynamic one every run between grasps of it (a grasp interval is a run of ``grasp >= threshold``
     with the hand tracked whose pinch point at onset lies within ``grasp_radius_m`` of the object's viewing
     ray), each window shrunk by ``grasp_margin_frames`` next to a grasp.
   - Each window is triangulated from all its frames. The keypoints' depths are fused by their covariance
     (an egocentric head moves a few centimetres, so depth is the weak direction) under a prior that they lie
     within the object's extent (measured across the viewing rays), and, for a window next to a grasp, with
     the hand's pinch point at grasp onset / release (it lies within the object) as a second measurement.
   - The object frame is set at the first window that triangulates: origin = centroid of the fused 3D
     keypoints, z = world up (MPS world is gravity aligned), x = their principal horizontal axis, sign such
     that x has a non-negative world-x component (y if x is perpendicular to it).
   - While grasped, the object moves rigidly with the hand:
     ``T_world_obj(t) = T_world_hand(t) inv(T_world_hand(onset)) T_world_obj(onset - 1)``.
   - After a release, the window is triangulated again; the position is the re-fused keypoint centroid and
     the orientation the carried one (``post_release: retriangulated``), or the carried pose is kept
     (``carried``, also the fall-back when the window does not triangulate).

   Validity per frame: a frame of a window with a known pose is valid whether or not its mask is empty (the
   object is known not to move); a grasped frame is valid where the hand is tracked (else reason
   ``hand_not_tracked``). Frames before the object frame is known have reason ``not_triangulated``, or
   ``no_mask`` for an object never detected. Invalid poses are the identity, never NaN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from humanego_core import geometry
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.config import option
from humanego_perception.onnx_model import OnnxModel, OnnxModelError, TensorSpec
from humanego_perception.tracking import CoTrackerConfig, CoTrackerOnnx, LucasKanadeConfig, LucasKanadeTracker
from humanego_perception.triangulation import (
    TriangulationConfig,
    point_covariance,
    projection_matrices,
    triangulate_tracks,
)

SHAPES = ("box", "cylinder", "any")
# Reasons an ObjectTrack frame is not valid.
NO_MASK = "no_mask"
NOT_TRIANGULATED = "not_triangulated"
HAND_NOT_TRACKED = "hand_not_tracked"


class ObjectStateError(ValueError):
    """Inputs of the object-state estimation that do not fit together (the message says which)."""


# ----- prompts -----
@dataclass
class ObjectPrompt:
    """What the detector looks for: the task config's object name, colour (RGBA 0..1) and shape, and whether it
    can move (``movable`` in the task config)."""

    name: str
    rgba: list[float]
    shape: str = "any"
    dynamic: bool = True

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"object {self.name!r}: shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if len(self.rgba) < 3 or not all(0.0 <= v <= 1.0 for v in self.rgba):
            raise ValueError(f"object {self.name!r}: rgba must hold 3 or 4 values in 0..1, got {self.rgba}")


def prompts_from_task(task) -> list[ObjectPrompt]:
    """Prompts of a :class:`humanego_sim.tasks.Task`: its objects' colours, shapes (box/cylinder, others 'any')
    and ``movable`` flags, in the task's order."""
    return [ObjectPrompt(name, list(spec.rgba), spec.shape if spec.shape in SHAPES else "any", bool(spec.movable))
            for name, spec in task.objects.items()]


# ----- detectors -----
@dataclass
class ColourShapeConfig:
    lightness_weight: float = option(
        0.0, help="weight of the lightness difference against the chroma (a, b) difference in the Lab distance; "
                   "small, so that shaded faces of an object keep its colour; achromatic prompts (white, grey) "
                   "always use at least achromatic_lightness_weight", minimum=0.0, maximum=1.0)
    achromatic_lightness_weight: float = option(
        0.5, help="lightness weight for prompts whose Lab chroma is below achromatic_chroma", minimum=0.0, maximum=1.0)
    achromatic_chroma: float = option(15.0, help="Lab chroma below which a prompt colour counts as achromatic",
                                      minimum=0.0)
    seed_distance: float = option(16.0, help="Lab distance (OpenCV 8-bit Lab units) of a sure object pixel",
                                  minimum=0.1)
    grow_distance: float = option(22.0, help="Lab distance up to which pixels next to sure ones join the mask",
                                  minimum=0.1)
    grow_px: int = option(3, help="how far (px) the mask may grow from sure pixels", minimum=0)
    close_px: int = option(2, help="radius of the morphological closing that fills small holes", minimum=0)
    open_px: int = option(1, help="radius of the opening that removes specks", minimum=0)
    min_area_px: int = option(12, help="smallest component kept (px)", minimum=1)
    max_area_fraction: float = option(0.25, help="largest component kept, as a fraction of the image",
                                      minimum=0.0, maximum=1.0)


class ColourShapeDetector:
    """Masks of objects by colour and shape (the simulator's flat-coloured objects); see the module doc.

    Defaults measured on serve_bread frames (480x480 rectified): chroma only for coloured prompts (the bread's
    shaded faces are darker but keep their hue; a lightness term cut its median IoU from 0.70 to 0.2-0.37),
    seed 16 / grow 22 (bread median IoU 0.70, plate 0.91; benchmarks/object_state.py reports the figures).

    Per prompt: Lab distance of every pixel to the prompt colour; sure pixels (``seed_distance``) grown by up to
    ``grow_px`` into pixels within ``grow_distance``; opened and closed; of the connected components the one
    with the best score = area x colour fit x shape fit (box: area over its minimum rotated rectangle; cylinder:
    area over its fitted ellipse; any: solidity) is the mask. No component: an all-False mask.
    """

    def __init__(self, config: ColourShapeConfig | None = None):
        self.config = config or ColourShapeConfig()

    def detect(self, image_rgb: np.ndarray, prompts: Sequence[ObjectPrompt]) -> dict[str, np.ndarray]:
        image = _check_rgb(image_rgb)
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
        return {p.name: self._detect_one(lab, p) for p in prompts}

    def colour_distance(self, lab: np.ndarray, prompt: ObjectPrompt) -> np.ndarray:
        """Weighted Lab distance (H, W) of an OpenCV 8-bit Lab image to the prompt's colour."""
        c = self.config
        ref = cv2.cvtColor(np.uint8([[np.rint(np.asarray(prompt.rgba[:3]) * 255)]]), cv2.COLOR_RGB2LAB)[0, 0]
        ref = ref.astype(np.float32)
        chroma = math.hypot(ref[1] - 128.0, ref[2] - 128.0)
        w = max(c.lightness_weight, c.achromatic_lightness_weight) if chroma < c.achromatic_chroma \
            else c.lightness_weight
        d = lab - ref
        return np.sqrt(w * d[..., 0] ** 2 + d[..., 1] ** 2 + d[..., 2] ** 2)

    def _detect_one(self, lab: np.ndarray, prompt: ObjectPrompt) -> np.ndarray:
        c = self.config
        distance = self.colour_distance(lab, prompt)
        mask = (distance < c.seed_distance).astype(np.uint8)
        if c.grow_px:
            grown = cv2.dilate(mask, _disc(c.grow_px)) & (distance < c.grow_distance)
            mask = grown.astype(np.uint8)
        if c.open_px:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _disc(c.open_px))
        if c.close_px:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _disc(c.close_px))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        h, w = mask.shape
        best, best_score = 0, 0.0
        for k in range(1, count):
            area = stats[k, cv2.CC_STAT_AREA]
            if area < c.min_area_px or area > c.max_area_fraction * h * w:
                continue
            component = labels == k
            fit = float(np.exp(-np.mean(distance[component]) / c.seed_distance))
            score = area * fit * _shape_score(component, stats[k], prompt.shape)
            if score > best_score:
                best, best_score = k, score
        return labels == best if best else np.zeros((h, w), dtype=bool)


def _shape_score(component: np.ndarray, stat: np.ndarray, shape: str) -> float:
    """How well a component fits the prompt's shape, 0..1."""
    x, y, w, h = stat[cv2.CC_STAT_LEFT], stat[cv2.CC_STAT_TOP], stat[cv2.CC_STAT_WIDTH], stat[cv2.CC_STAT_HEIGHT]
    crop = component[y:y + h, x:x + w].astype(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    area = float(crop.sum())
    if shape == "box":
        (_, _), (rw, rh), _ = cv2.minAreaRect(contour)
        return min(1.0, area / max(rw * rh + rw + rh + 1.0, 1.0))  # +perimeter: pixel areas vs continuous
    if shape == "cylinder" and len(contour) >= 5:
        (_, _), (ew, eh), _ = cv2.fitEllipse(contour)
        ellipse = math.pi * (ew / 2 + 0.5) * (eh / 2 + 0.5)
        return min(area, ellipse) / max(area, ellipse, 1.0)
    hull = cv2.convexHull(contour)
    return min(1.0, area / max(cv2.contourArea(hull) + cv2.arcLength(hull, True) / 2 + 1.0, 1.0))


@dataclass
class OnnxDetectorConfig:
    model_path: str = option("", help="ONNX instance-segmentation model: input 'images' float32 [1, 3, H, W] RGB "
                                      "0..1; outputs 'masks' [1, N, H, W], 'scores' [1, N], 'labels' [1, N] int64")
    class_names: list[str] = option(default_factory=list, help="class name of each label index of the model")
    prompt_classes: dict[str, str] = option(default_factory=dict,
                                            help="prompt name -> class name where they differ (default: equal)")
    score_threshold: float = option(0.3, help="instances scoring below this are ignored", minimum=0.0, maximum=1.0)
    masks_are_logits: bool = option(True, help="masks output holds logits (thresholded at 0) or probabilities "
                                               "(thresholded at 0.5)")


class OnnxDetector:
    """Masks from an ONNX instance-segmentation model: per prompt, the best-scoring instance of its class."""

    def __init__(self, config: OnnxDetectorConfig):
        self.config = config
        if not config.class_names:
            raise ObjectStateError("onnx detector: class_names is empty; list the model's classes in the config")
        what = "object instance-segmentation model (config key onnx.model_path)"
        self.model = OnnxModel(config.model_path,
                               [TensorSpec("images", (1, 3, None, None))],
                               [TensorSpec("masks", (1, None, None, None)), TensorSpec("scores", (1, None)),
                                TensorSpec("labels", (1, None), "int64")], what)
        shape = self.model.session.get_inputs()[0].shape
        if not all(isinstance(d, int) for d in shape[2:]):
            raise OnnxModelError(f"{config.model_path}: input 'images' must have a fixed H, W (got {shape}); "
                                 f"export the {what} at a fixed size")
        self.height, self.width = int(shape[2]), int(shape[3])

    def detect(self, image_rgb: np.ndarray, prompts: Sequence[ObjectPrompt]) -> dict[str, np.ndarray]:
        image = _check_rgb(image_rgb)
        h, w = image.shape[:2]
        resized = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        out = self.model.run({"images": (resized.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]})
        masks, scores, labels = out["masks"][0], out["scores"][0], out["labels"][0]
        if masks.shape[0] != scores.shape[0] or labels.shape[0] != scores.shape[0]:
            raise OnnxModelError(f"{self.config.model_path}: outputs disagree on the number of instances "
                                 f"(masks {masks.shape[0]}, scores {scores.shape[0]}, labels {labels.shape[0]})")
        threshold = 0.0 if self.config.masks_are_logits else 0.5
        result = {}
        for prompt in prompts:
            wanted = self.config.prompt_classes.get(prompt.name, prompt.name)
            if wanted not in self.config.class_names:
                raise ObjectStateError(f"onnx detector: object {prompt.name!r} (class {wanted!r}) is not among the "
                                       f"model's class_names {self.config.class_names}; map it in prompt_classes")
            cls = self.config.class_names.index(wanted)
            candidates = np.flatnonzero((labels == cls) & (scores >= self.config.score_threshold))
            if len(candidates) == 0:
                result[prompt.name] = np.zeros((h, w), dtype=bool)
                continue
            best = candidates[int(np.argmax(scores[candidates]))]
            mask = (masks[best] > threshold).astype(np.uint8)
            result[prompt.name] = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) > 0
        return result


class GroundTruthMasks:
    """Ablation only: masks from a callable ``(frame_index, name) -> bool mask`` (e.g. the simulator's labels).

    ``detect`` takes the frame index instead of an image."""

    def __init__(self, lookup: Callable[[int, str], np.ndarray]):
        self.lookup = lookup

    def detect(self, frame_index: int, prompts: Sequence[ObjectPrompt]) -> dict[str, np.ndarray]:
        return {p.name: np.asarray(self.lookup(frame_index, p.name), dtype=bool) for p in prompts}


def _check_rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ObjectStateError(f"image must be uint8 HxWx3 RGB, got {image.dtype} {image.shape}")
    return image


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


# ----- keypoints -----
def select_keypoints(image_gray: np.ndarray, mask: np.ndarray, max_points: int = 24, min_distance_px: float = 3.0,
                     quality: float = 0.01, erode_px: int = 2, silhouette_px: int = 3) -> np.ndarray:
    """Up to ``max_points`` trackable points (N, 2) float32 (x, y) of the object under ``mask``.

    First Shi-Tomasi corners (``cv2.goodFeaturesToTrack``, ``quality`` relative to the best) inside the mask
    eroded by ``erode_px`` (the object's own texture, not its outline against a background that may change);
    when those are fewer than half of ``max_points`` (a flat-coloured object), the corners of its silhouette
    are added: corners of the image in a band of ``silhouette_px`` around the mask outline.
    """
    gray = np.asarray(image_gray)
    mask = np.asarray(mask, dtype=bool)
    if gray.ndim != 2 or gray.dtype != np.uint8 or mask.shape != gray.shape:
        raise ObjectStateError(f"select_keypoints needs a uint8 grey image and a mask of its size, got "
                               f"{gray.dtype} {gray.shape} and mask {mask.shape}")
    if max_points < 1 or not mask.any():
        return np.zeros((0, 2), np.float32)
    m = mask.astype(np.uint8)
    inner = cv2.erode(m, _disc(erode_px)) if erode_px else m
    found = _corners(gray, inner, max_points, quality, min_distance_px)
    if len(found) < max_points // 2:
        band = cv2.dilate(m, _disc(silhouette_px)) & ~cv2.erode(m, _disc(silhouette_px)) & 1
        outline = _corners(gray, band, max_points, quality, min_distance_px)
        far = [p for p in outline if len(found) == 0 or np.min(np.linalg.norm(found - p, axis=1)) >= min_distance_px]
        found = np.concatenate([found, np.array(far, np.float32).reshape(-1, 2)])[:max_points]
    return found.astype(np.float32)


def _corners(gray, region, count, quality, min_distance) -> np.ndarray:
    if not region.any():
        return np.zeros((0, 2), np.float32)
    pts = cv2.goodFeaturesToTrack(gray, count, quality, min_distance, mask=region.astype(np.uint8))
    return np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2)


# ----- estimation -----
@dataclass
class KeypointConfig:
    max_points: int = option(24, help="keypoints per object and window", minimum=3)
    min_distance_px: float = option(3.0, help="minimum distance between keypoints (px)", minimum=1.0)
    quality: float = option(0.01, help="Shi-Tomasi quality relative to the best corner", minimum=1e-4, maximum=1.0)
    erode_px: int = option(2, help="erosion of the mask for texture corners (px)", minimum=0)
    silhouette_px: int = option(3, help="half width of the band around the outline for silhouette corners (px)",
                                minimum=1)


@dataclass
class DetectorConfig:
    backend: Literal["colour_shape", "onnx"] = option("colour_shape", help="which detector makes the masks")
    colour_shape: ColourShapeConfig = field(default_factory=ColourShapeConfig)
    onnx: OnnxDetectorConfig = field(default_factory=OnnxDetectorConfig)


@dataclass
class TrackerConfig:
    backend: Literal["lucas_kanade", "cotracker_onnx"] = option("lucas_kanade", help="2D point tracker")
    lucas_kanade: LucasKanadeConfig = field(default_factory=LucasKanadeConfig)
    cotracker: CoTrackerConfig = field(default_factory=CoTrackerConfig)


@dataclass
class ObjectStateConfig:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    keypoints: KeypointConfig = field(default_factory=KeypointConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    # A low parallax floor: the keypoint covariances carry how weak the depth is, and the fusion weighs it.
    triangulation: TriangulationConfig = field(default_factory=lambda: TriangulationConfig(min_parallax_deg=0.25))
    max_position_sigma_m: float = option(0.05, help="a window whose fused keypoint centroid is more uncertain than "
                                                    "this (largest standard deviation, m) gives no pose", minimum=0.0)
    min_mask_area_px: int = option(12, help="a mask smaller than this counts as no detection (px)", minimum=1)
    min_keypoints: int = option(3, help="triangulated keypoints a window needs for a pose", minimum=1)
    grasp_threshold: float = option(0.5, help="grasp signal at or above this is a grasp", minimum=0.0, maximum=1.0)
    grasp_margin_frames: int = option(2, help="frames next to a grasp left out of the static windows", minimum=0)
    min_carry_m: float = option(0.05, help="a grasp whose pinch point moves less than this (m) is not a carry: the "
                                           "object is left static", minimum=0.0)
    grasp_radius_m: float = option(0.08, help="a grasp holds the object when the pinch point at onset is within "
                                              "this of the object's viewing ray (m)", minimum=0.0)
    hand_anchor: bool = option(True, help="fuse the pinch point at grasp onset / release into the adjacent "
                                          "window's keypoint depths")
    hand_anchor_sigma_m: float = option(0.015, help="uncertainty of the pinch point as a point of the object (m)",
                                        minimum=1e-4)
    hand_anchor_frames: int = option(3, help="grasped frames averaged for the pinch point", minimum=1)
    pixel_sigma_px: float = option(0.5, help="floor of the tracking noise assumed in the keypoint covariances (px)",
                                   minimum=0.01)
    post_release: Literal["retriangulated", "carried"] = option(
        "retriangulated", help="pose after a release: retriangulated position with the carried orientation, or the "
                               "pose carried by the hand")


@dataclass
class ObjectTrack:
    """Per-frame pose of one object (see the module doc for the rules)."""

    name: str
    T_world_obj: np.ndarray  # (F, 4, 4); identity where not valid
    valid: np.ndarray  # (F,) bool
    reason: np.ndarray  # (F,) str: "" where valid, else why not
    is_dynamic: bool
    keypoints_world: np.ndarray  # (N, 3) at the first valid frame
    keypoints_uv: np.ndarray  # (F, N, 2) projections of the keypoints (for drawing)
    keypoints_visible: np.ndarray  # (F, N) bool
    reprojection_error_px: float  # RMS over the triangulated keypoints of all windows (inf: none)

    @property
    def visible(self) -> np.ndarray:
        return self.keypoints_visible


def make_detector(config: DetectorConfig):
    """The configured detector (ground-truth masks are built directly, for ablations)."""
    if config.backend == "onnx":
        return OnnxDetector(config.onnx)
    return ColourShapeDetector(config.colour_shape)


def make_tracker(config: TrackerConfig):
    if config.backend == "cotracker_onnx":
        return CoTrackerOnnx(config.cotracker)
    return LucasKanadeTracker(config.lucas_kanade)


@dataclass
class _Window:
    start: int
    stop: int  # exclusive: the frames whose pose this window gives
    triangulate_range: tuple[int, int]  # the frames it is triangulated from (away from grasps)
    anchors: list[np.ndarray]  # pinch points (3,) at the grasps next to it
    points: np.ndarray | None = None  # fused 3D keypoints (M, 3), None: not triangulated
    error_px: float = math.inf


class _Frames:
    """Grey versions of the RGB frames, converted once, on first use."""

    def __init__(self, frames: Sequence[np.ndarray]):
        self.frames, self.cache = frames, {}

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, t: int) -> np.ndarray:
        if t not in self.cache:
            self.cache[t] = cv2.cvtColor(_check_rgb(self.frames[t]), cv2.COLOR_RGB2GRAY)
        return self.cache[t]


class _Slice(Sequence):
    def __init__(self, items, start: int, stop: int):
        self.items, self.start, self.stop = items, start, stop

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.items[self.start + i]


def estimate_object_states(frames: Sequence[np.ndarray], camera: CameraModel, T_world_camera, masks,
                           prompts: Sequence[ObjectPrompt], T_world_hand, hand_valid, grasp,
                           config: ObjectStateConfig | None = None,
                           progress: Callable[[str, int, int], None] | None = None,
                           timings: dict[str, float] | None = None) -> dict[str, ObjectTrack]:
    """Pose of every prompted object in every frame (see the module doc).

    ``frames``: rectified RGB frames (random access); ``camera``: their LINEAR camera model; ``T_world_camera``
    (F, 4, 4) camera poses; ``masks``: per frame a dict name -> bool mask (a missing name or an empty mask is
    no detection); ``T_world_hand`` (F, 4, 4), ``hand_valid`` (F,) and ``grasp`` (F,) of the manipulating hand.
    ``progress(object_name, done, total)`` is called per object; ``timings`` (if given) receives the seconds
    spent in keypoints+tracking and triangulation.
    """
    config = config or ObjectStateConfig()
    F = len(frames)
    T_world_camera, T_world_hand, hand_valid, grasp = _check_inputs(F, camera, T_world_camera, masks, T_world_hand,
                                                                    hand_valid, grasp)
    K = np.array([[camera.params[0], 0.0, camera.params[2]], [0.0, camera.params[1], camera.params[3]],
                  [0.0, 0.0, 1.0]])
    gray = _Frames(frames)
    tracker = make_tracker(config.tracker)
    clock = timings if timings is not None else {}
    clock.setdefault("tracking_s", 0.0)
    clock.setdefault("triangulation_s", 0.0)
    out = {}
    for i, prompt in enumerate(prompts):
        object_masks = [_object_mask(masks[t], prompt.name, config.min_mask_area_px) for t in range(F)]
        estimator = _ObjectEstimator(prompt, K, T_world_camera, T_world_hand, hand_valid, grasp, gray,
                                     object_masks, tracker, config, clock)
        out[prompt.name] = estimator.run()
        if progress is not None:
            progress(prompt.name, i + 1, len(prompts))
    return out


def _check_inputs(F, camera, T_world_camera, masks, T_world_hand, hand_valid, grasp):
    if camera.model != LINEAR:
        raise ObjectStateError(f"camera must be the LINEAR model of the rectified frames, got {camera.model}")
    T_world_camera = geometry.check_transform(np.asarray(T_world_camera, dtype=np.float64), "T_world_camera")
    T_world_hand = np.asarray(T_world_hand, dtype=np.float64)
    hand_valid = np.asarray(hand_valid, dtype=bool)
    grasp = np.asarray(grasp, dtype=np.float64)
    for name, value, shape in (("T_world_camera", T_world_camera, (F, 4, 4)), ("T_world_hand", T_world_hand, (F, 4, 4)),
                               ("hand_valid", hand_valid, (F,)), ("grasp", grasp, (F,))):
        if value.shape != shape:
            raise ObjectStateError(f"{name} must have shape {shape} for {F} frames, got {value.shape}")
    if len(masks) != F:
        raise ObjectStateError(f"masks must hold one dict per frame ({F}), got {len(masks)}")
    bad = hand_valid & ~(np.all(np.isfinite(T_world_hand), axis=(1, 2)) & np.isfinite(grasp))
    if bad.any():
        raise ObjectStateError(f"T_world_hand or grasp is NaN/inf at {bad.sum()} frame(s) marked hand_valid "
                               f"(first: {np.flatnonzero(bad)[0]}); mark them not valid")
    return T_world_camera, T_world_hand, hand_valid, np.nan_to_num(grasp)


def _object_mask(frame_masks: dict, name: str, min_area: int) -> np.ndarray | None:
    mask = frame_masks.get(name) if frame_masks is not None else None
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    return mask if mask.sum() >= min_area else None


class _ObjectEstimator:
    """The estimation of one object (split in steps for readability; state is per object)."""

    def __init__(self, prompt, K, T_world_camera, T_world_hand, hand_valid, grasp, gray, masks, tracker, config,
                 clock):
        self.prompt, self.K, self.T_wc = prompt, K, T_world_camera
        self.T_wh, self.hand_valid, self.grasp = T_world_hand, hand_valid, grasp
        self.gray, self.masks, self.tracker, self.config, self.clock = gray, masks, tracker, config, clock
        self.F = len(masks)
        self.P = projection_matrices(K, T_world_camera)

    def run(self) -> ObjectTrack:
        F = self.F
        T = geometry.identity((F,))
        valid = np.zeros(F, dtype=bool)
        reason = np.full(F, NO_MASK if not any(m is not None for m in self.masks) else NOT_TRIANGULATED, dtype=object)
        if reason[0] == NO_MASK:
            return self._track(T, valid, reason, np.zeros((0, 3)), math.inf)

        candidates = self._grasp_intervals() if self.prompt.dynamic else []
        grasps: list[tuple[int, int]] = []
        errors = []
        keypoints_obj = None
        T_current = None  # pose where the object was left (after a grasp: the carried pose at release)
        start = 0
        while start < F:
            grasp = self._next_grasp(candidates, start, T_current)
            onset = grasp[0] if grasp else F
            window = self._window(start, onset, grasps[-1] if grasps else None, grasp)
            self._triangulate(window)
            if window.points is not None:
                errors.append(window.error_px)
                if keypoints_obj is None:
                    T_current = _object_frame(window.points)
                    keypoints_obj = geometry.transform_points(geometry.invert(T_current), window.points)
                elif self.config.post_release == "retriangulated":
                    T_current = T_current.copy()
                    T_current[:3, 3] = window.points.mean(axis=0)
            if T_current is not None:
                T[window.start:window.stop] = T_current
                valid[window.start:window.stop] = True
            if grasp is None:
                break
            grasps.append(grasp)
            if T_current is not None:
                T_current = self._carry(T, valid, reason, grasp[0], grasp[1], T_current)
            start = grasp[1]
        reason[valid] = ""
        error = float(np.sqrt(np.mean(np.square(errors)))) if errors else math.inf
        return self._track(T, valid, reason, keypoints_obj if keypoints_obj is not None else np.zeros((0, 3)), error)

    # --- segmentation in time ---
    def _grasp_intervals(self) -> list[tuple[int, int]]:
        """(onset, release) frame ranges [onset, release) of grasps of this object."""
        held = self.hand_valid & (self.grasp >= self.config.grasp_threshold)
        pinch = self.T_wh[:, :3, 3]
        # A closed hand that hardly moves (resting next to the object) moves nothing: the object stays static.
        return [(a, b) for a, b in _runs(held)
                if np.linalg.norm(pinch[a:b] - pinch[a], axis=1).max() >= self.config.min_carry_m
                and self._holds_object(a, b)]

    def _holds_object(self, onset: int, release: int) -> bool:
        """The pinch point at onset lies near the ray through the object's mask centroid in the last frame
        before the onset where the object was seen (no sighting: cannot be this object)."""
        seen = [t for t in range(onset, -1, -1) if self.masks[t] is not None]
        if not seen:
            return False
        t = seen[0]
        centre = np.argwhere(self.masks[t]).mean(axis=0)[::-1]
        ray = self.T_wc[t, :3, :3] @ np.linalg.solve(self.K, [centre[0], centre[1], 1.0])
        ray /= np.linalg.norm(ray)
        pinch = self.T_wh[onset, :3, 3] - self.T_wc[t, :3, 3]
        return float(np.linalg.norm(pinch - (pinch @ ray) * ray)) <= self.config.grasp_radius_m

    def _next_grasp(self, candidates, start: int, T_current) -> tuple[int, int] | None:
        """The first candidate grasp from ``start`` on that takes this object: once the object's position is
        known, its pinch point at onset must lie within ``grasp_radius_m`` of it (the ray check of
        :meth:`_holds_object` alone cannot tell a hand resting in front of the object from one holding it)."""
        for onset, release in candidates:
            if onset < start:
                continue
            if T_current is None or np.linalg.norm(self.T_wh[onset, :3, 3] - T_current[:3, 3]) \
                    <= self.config.grasp_radius_m:
                return onset, release
        return None

    def _window(self, start: int, stop: int, before, after) -> _Window:
        """Frames [start, stop) between the grasp ``before`` and the grasp ``after`` (either may be None), with
        the pinch points at that release and that onset as anchors."""
        m = self.config.grasp_margin_frames
        n = self.config.hand_anchor_frames
        anchors = []
        if self.config.hand_anchor and after is not None:
            anchors.append(self.T_wh[after[0]:min(after[0] + n, after[1]), :3, 3].mean(axis=0))
        if self.config.hand_anchor and before is not None:
            anchors.append(self.T_wh[max(before[1] - n, before[0]):before[1], :3, 3].mean(axis=0))
        return _Window(start, stop, (start + (m if before else 0), stop - (m if after else 0)), anchors)

    # --- triangulation of a window ---
    def _triangulate(self, window: _Window) -> None:
        a, b = window.triangulate_range
        seen = [t for t in range(a, b) if self.masks[t] is not None]
        if len(seen) < self.config.triangulation.min_views:
            return
        started = time.perf_counter()
        query = max(seen, key=lambda t: self.masks[t].sum())
        kc = self.config.keypoints
        points = select_keypoints(self.gray[query], self.masks[query], kc.max_points, kc.min_distance_px,
                                  kc.quality, kc.erode_px, kc.silhouette_px)
        if len(points) < self.config.min_keypoints:
            self.clock["tracking_s"] += time.perf_counter() - started
            return
        tracks, visible = self.tracker.track(_Slice(self.gray, a, b), query - a, points, _Slice(self.masks, a, b))
        self.clock["tracking_s"] += time.perf_counter() - started
        started = time.perf_counter()
        X, inlier, ok, error_px = triangulate_tracks(self.K, self.T_wc[a:b], tracks, visible,
                                                     self.config.triangulation)
        if ok.sum() >= self.config.min_keypoints:
            covariances = [point_covariance(X[n], self.P[a:b][inlier[:, n]],
                                            max(error_px[n], self.config.pixel_sigma_px)) for n in np.flatnonzero(ok)]
            points, covariance = _fuse_keypoints(X[ok], covariances, self.T_wc[query, :3, 3], window.anchors,
                                                 self.config.hand_anchor_sigma_m)
            if np.sqrt(np.linalg.eigvalsh(covariance)[-1]) <= self.config.max_position_sigma_m:
                window.points = points
                window.error_px = float(np.sqrt(np.mean(error_px[ok] ** 2)))
        self.clock["triangulation_s"] += time.perf_counter() - started

    # --- grasp ---
    def _carry(self, T, valid, reason, onset, release, T_before) -> np.ndarray:
        """Poses while grasped (rigid with the hand from the onset); returns the pose at release."""
        frames = np.arange(onset, release)
        held = frames[self.hand_valid[onset:release]]
        T_obj_in_hand = geometry.invert(self.T_wh[onset]) @ T_before
        T[held] = self.T_wh[held] @ T_obj_in_hand
        valid[held] = True
        reason[frames[~self.hand_valid[onset:release]]] = HAND_NOT_TRACKED
        last = held[-1] if len(held) else onset
        return self.T_wh[last] @ T_obj_in_hand

    # --- output ---
    def _track(self, T, valid, reason, keypoints_obj, error) -> ObjectTrack:
        F, N = self.F, len(keypoints_obj)
        uv = np.zeros((F, N, 2))
        seen = np.zeros((F, N), dtype=bool)
        first = np.flatnonzero(valid)
        keypoints_world = np.zeros((N, 3))
        if N and len(first):
            keypoints_world = geometry.transform_points(T[first[0]], keypoints_obj)
            X = geometry.transform_points(T, keypoints_obj)  # (F, N, 3)
            x = np.einsum("fij,fnj->fni", self.P[:, :, :3], X) + self.P[:, None, :, 3]
            depth = x[..., 2]
            uv = x[..., :2] / np.where(depth > 1e-6, depth, 1.0)[..., None]
            h, w = self.gray[first[0]].shape
            seen = valid[:, None] & (depth > 1e-6) & (uv[..., 0] >= 0) & (uv[..., 0] <= w - 1) & \
                (uv[..., 1] >= 0) & (uv[..., 1] <= h - 1)
            uv = np.where(seen[..., None], uv, 0.0)
        return ObjectTrack(self.prompt.name, T, valid, reason.astype(str), self.prompt.dynamic, keypoints_world, uv,
                           seen, error)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the runs of True."""
    padded = np.r_[False, flags, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _fuse_keypoints(X: np.ndarray, covariances: list[np.ndarray], camera_centre: np.ndarray,
                    anchors: list[np.ndarray], anchor_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints with their depths fused: the posterior means under the prior that they lie within the object.

    Prior: X_i ~ N(c, s^2 I) with s the keypoints' RMS distance from their centroid across the viewing ray
    (measured well even when depth is not). The centre c is the generalised-least-squares mean of the keypoints
    (weights (Sigma_i + s^2 I)^-1) and of the anchors (weights ((anchor_sigma^2 + s^2) I)^-1); each keypoint
    is then c + s^2 (Sigma_i + s^2 I)^-1 (X_i - c), which keeps what the images measure (the layout across the
    rays) and replaces what they do not (poor depths) by the object's common depth. Returns the fused keypoints
    and the covariance (3, 3) of c.
    """
    centroid = X.mean(axis=0)
    ray = centroid - camera_centre
    ray /= np.linalg.norm(ray)
    across = (X - centroid) - np.outer((X - centroid) @ ray, ray)
    s2 = max(float(np.mean(np.sum(across ** 2, axis=1))) * 1.5, 1e-6)  # 3D spread from the 2 measured axes
    prior = s2 * np.eye(3)
    weights = [np.linalg.inv(C + prior) for C in covariances]
    information = sum(weights)
    weighted = sum(W @ x for W, x in zip(weights, X, strict=True))
    for anchor in anchors:
        W = np.eye(3) / (anchor_sigma ** 2 + s2)
        information = information + W
        weighted = weighted + W @ anchor
    c = np.linalg.solve(information, weighted)
    return np.array([c + prior @ W @ (x - c) for W, x in zip(weights, X, strict=True)]), np.linalg.inv(information)


def _object_frame(points: np.ndarray) -> np.ndarray:
    """Origin at the centroid, z world up, x the principal horizontal axis (x_world >= 0, else y_world > 0)."""
    centroid = points.mean(axis=0)
    xy = points[:, :2] - centroid[:2]
    if len(points) >= 2 and np.ptp(xy, axis=0).max() > 0:
        axis = np.linalg.eigh(xy.T @ xy)[1][:, -1]
    else:
        axis = np.array([1.0, 0.0])
    if axis[0] < -1e-9 or (abs(axis[0]) <= 1e-9 and axis[1] < 0):
        axis = -axis
    x = np.array([axis[0], axis[1], 0.0])
    z = np.array([0.0, 0.0, 1.0])
    return geometry.make_transform(np.stack([x, np.cross(z, x), z], axis=1), centroid)

