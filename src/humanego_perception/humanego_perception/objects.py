"""Object state from egocentric video: every task object's 6-DoF pose in the world, per RGB frame.

HumanEgo's stages, on rectified (pinhole) frames with MPS SLAM camera poses:

1. **Masks** from a detector prompted by the task config (:class:`ObjectPrompt`): :class:`ColourShapeDetector`
   (the simulator's flat-coloured objects: colour distance in CIE Lab, growth, morphology, connected components
   scored by colour fit, size and shape, outline refined by GrabCut), :class:`OnnxDetector` (an
   instance-segmentation ONNX model), or :class:`GroundTruthMasks` (ablations only).
2. **Locating** the object in a static window, by ``pose_method``:

   - ``shape_fit`` (default; :mod:`humanego_perception.shape_fit`): the prompt's shape (box; cylinder; 'any': its
     bounding box), standing upright, fitted to the mask outlines of the window's views;
   - ``keypoints`` (:mod:`humanego_perception.object_keypoints`, HumanEgo's pipeline): keypoints selected on the
     mask, tracked in 2D (LK or CoTracker ONNX), triangulated with the SLAM poses, the object frame set from the
     3D keypoints and, after a release, the keypoints rigidly fitted again.

   Both use the same depth cues (below) and give the same object frame.
3. **Pose** (:func:`estimate_object_states`), the rules:

   - A *static window* is a run of frames where the object cannot move: for a static object the whole clip;
     for a dynamic one every run between grasps of it (a grasp interval is a run of ``grasp >= threshold``
     with the hand tracked whose pinch point at onset lies within ``grasp_radius_m`` of the object's viewing
     ray), each fitted without the ``grasp_margin_frames`` next to a grasp.
   - The object frame is the simulator's and a robot's usual one: origin at the centre of the object's base,
     z = world up (MPS world is gravity aligned), x along a box's longer side (sign: non-negative world x),
     a cylinder's x = world x.
   - Why shape fits by default and not triangulated keypoints: the head moves 1-12 cm while an object is in
     view at about 0.8 m, and the depth along the viewing ray is what such views measure worst. On six
     serve_bread recordings (480x480) keypoint tracks triangulated with the SLAM poses had depths off by
     15-140 mm (median absolute per window), mask-centroid rays triangulated over a whole clip put the plate
     4-190 mm off, and flat-coloured objects only have silhouette corners, which slide along curved outlines.
     Mask outlines are measured to about a pixel in every view, and two metric cues fix the depth (the
     keypoints method scales its triangulated points along their rays with the same cues):

     * a dynamic object is fitted in the window before its first grasp with the hand's pinch point at grasp
       onset (between the fingertips: inside the object, 3-9 mm from the bread's centre) as a prior on its
       centre (``pinch_sigma_m``); a window that starts after a release, if none before gave a pose, with the
       pinch point at that release;
     * a static object stands on the support the first grasped object stood on before its grasp (the base
       height of that fit); without one the shape fit does not locate it (reason ``no_support``), the
       keypoints method only where the triangulation alone is certain enough (``max_position_sigma_m``).

   - Objects are fitted in the order dynamic first (for the support height), the output keeps the prompts'.
   - While grasped, the object moves rigidly with the hand:
     ``T_world_obj(t) = T_world_hand(t) inv(T_world_hand(onset)) T_world_obj(onset - 1)``; after a release it
     keeps the carried pose at release (on serve_bread within 1-2.5 mm of where it really comes to rest), or,
     with the keypoints method, the pose of its keypoints' rigid fit where enough of them are still tracked.

   Validity per frame: a frame of a window with a known pose is valid whether or not its mask is empty (the
   object is known not to move); a grasped frame is valid where the hand is tracked (else reason
   ``hand_not_tracked``). Frames before the object's pose is known have reason ``not_fitted`` (or
   ``no_support``), an object never detected ``no_mask``. Invalid poses are the identity, never NaN.
   Accuracy on those six recordings with the default detector (``benchmarks/object_state.py``): position
   median 2.3 mm, p90 8.4 mm over both objects and all frames (the keypoint pipeline before, against the
   truth of its own surface points: 26 mm, 122 mm; ``pose_method: keypoints`` now, against the body poses:
   18.5 mm, 80 mm); bread yaw 1.3 deg median, 4.6 deg p90. The largest errors (7-9 mm) come from a box seen
   along its length, whose outline measures only length x sin(elevation) + height x cos(elevation).
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
from humanego_perception.object_keypoints import (
    GreyFrames,
    KeypointLocator,
    KeypointModel,
    KeypointPoseConfig,
    make_tracker,
    model_size,
)
from humanego_perception.onnx_model import OnnxModel, OnnxModelError, TensorSpec
from humanego_perception.shape_fit import (
    BOX,
    CYLINDER,
    ShapeFitError,
    fit_shape,
    mask_outline,
    model_points,
)

SHAPES = ("box", "cylinder", "any")
# Reasons an ObjectTrack frame is not valid.
NO_MASK = "no_mask"
NOT_FITTED = "not_fitted"
NO_SUPPORT = "no_support"
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


# The simulator's shapes as the detector and the shape fit see them: a bowl's and a marker's (flat disc)
# silhouettes are a cylinder's.
_TASK_SHAPES = {"box": "box", "cylinder": "cylinder", "bowl": "cylinder", "marker": "cylinder"}


def prompts_from_task(task) -> list[ObjectPrompt]:
    """Prompts of a :class:`humanego_sim.tasks.Task`: its objects' colours, shapes (box; cylinder, bowl and
    marker as cylinders; others 'any') and ``movable`` flags, in the task's order."""
    return [ObjectPrompt(name, list(spec.rgba), _TASK_SHAPES.get(spec.shape, "any"), bool(spec.movable))
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
    grow_distance: float = option(22.0, help="chroma (a, b) distance up to which pixels next to sure ones join "
                                             "the mask", minimum=0.1)
    grow_px: int = option(3, help="how far (px) the mask may grow from sure pixels", minimum=0)
    close_px: int = option(2, help="radius of the morphological closing that fills small holes", minimum=0)
    open_px: int = option(1, help="radius of the opening that removes specks", minimum=0)
    min_area_px: int = option(12, help="smallest component kept (px)", minimum=1)
    max_area_fraction: float = option(0.25, help="largest component kept, as a fraction of the image",
                                      minimum=0.0, maximum=1.0)
    refine_iterations: int = option(3, help="GrabCut iterations refining the outline of the chosen component; "
                                            "0 = off", minimum=0)
    refine_band_px: int = option(4, help="GrabCut may add pixels up to this far outside the component (px)",
                                 minimum=1)
    refine_core_px: int = option(2, help="pixels deeper than this inside the component are sure object pixels "
                                         "for GrabCut (px)", minimum=0)
    refine_lightness_weight: float = option(0.25, help="scale of the Lab lightness against the chroma in the image "
                                                       "GrabCut models", minimum=0.0, maximum=1.0)


class ColourShapeDetector:
    """Masks of objects by colour and shape (the simulator's flat-coloured objects); see the module doc.

    Per prompt: Lab distance of every pixel to the prompt colour; sure pixels (``seed_distance``) grown by up to
    ``grow_px`` into pixels within ``grow_distance`` in chroma; opened and closed; of the connected components
    the one with the best score = area x colour fit x shape fit (box: area over its minimum rotated rectangle;
    cylinder: area over its fitted ellipse; any: solidity) is the object, and GrabCut (colour models of the
    object and its surroundings, in a band of ``refine_band_px`` around it) sets its outline. No component: an
    all-False mask.

    Why these defaults (measured on serve_bread frames, 480x480 rectified, against the simulator's masks):
    seeds by chroma for coloured prompts (the bread's shaded faces are darker but keep their hue; a lightness
    term cut its median IoU from 0.70 to 0.2-0.37), with lightness for achromatic ones (a white plate against
    grey floor tiles); growth by chroma only (the plate's shaded side is grey). The grown mask of the bread
    takes about one pixel of the similar-coloured table all round (median IoU 0.70) and the plate's mask
    misses its grey side (one pixel per outline pixel); the shape fit measures outlines, where such biases
    become centimetres, so GrabCut refines them. Its colour models on RGB (or Lab as is) keep cutting the
    plate's side off (0.54 missing pixels per outline pixel); with the lightness at a quarter of the chroma,
    0.20 (bread: 0.29 extra, 0.21 missing). Median IoU on 6 recordings: bread 0.83-0.88, plate 0.95-0.96, and
    the plate's fitted position error falls from 6-14 mm to 0.3-3 mm (one at 9 mm, where the bread's fit gives
    a support 6 mm low). A sure core of 2 px: 1 px keeps the table around the bread (0.6 extra), 3-4 px lets
    GrabCut drop more of the plate's side.
    """

    def __init__(self, config: ColourShapeConfig | None = None):
        self.config = config or ColourShapeConfig()

    def detect(self, image_rgb: np.ndarray, prompts: Sequence[ObjectPrompt]) -> dict[str, np.ndarray]:
        image = _check_rgb(image_rgb)
        lab8 = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        # GrabCut's colour models on Lab with the lightness scaled down: shading changes lightness far more than
        # chroma (the plate's grey side, the bread's dark faces).
        refine_image = lab8.copy()
        refine_image[..., 0] = np.rint(lab8[..., 0] * self.config.refine_lightness_weight).astype(np.uint8)
        lab = lab8.astype(np.float32)
        return {p.name: self._refine(refine_image, self._detect_one(lab, p)) for p in prompts}

    def colour_distance(self, lab: np.ndarray, prompt: ObjectPrompt) -> np.ndarray:
        """Weighted Lab distance (H, W) of an OpenCV 8-bit Lab image to the prompt's colour."""
        c = self.config
        ref = _lab(prompt)
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
            chroma = np.linalg.norm(lab[..., 1:] - _lab(prompt)[1:], axis=-1)
            mask = cv2.dilate(mask, _disc(c.grow_px)) & (chroma < c.grow_distance).astype(np.uint8)
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

    def _refine(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The mask's outline set by GrabCut on a crop of ``image`` (3 uint8 channels) around it: sure object
        deeper than ``refine_core_px``, probable object on the mask, probable background within
        ``refine_band_px`` outside, background beyond."""
        c = self.config
        if not c.refine_iterations or not mask.any():
            return mask
        ys, xs = np.nonzero(mask)
        pad = 3 * c.refine_band_px  # background around the band for GrabCut's background model
        y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, mask.shape[0])
        x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, mask.shape[1])
        m = mask[y0:y1, x0:x1].astype(np.uint8)
        labels = np.full(m.shape, cv2.GC_BGD, np.uint8)
        labels[cv2.dilate(m, _disc(c.refine_band_px)) > 0] = cv2.GC_PR_BGD
        labels[m > 0] = cv2.GC_PR_FGD
        labels[(cv2.erode(m, _disc(c.refine_core_px)) if c.refine_core_px else m) > 0] = cv2.GC_FGD
        models = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.grabCut(np.ascontiguousarray(image[y0:y1, x0:x1]), labels, None, *models, c.refine_iterations,
                    cv2.GC_INIT_WITH_MASK)
        out = np.zeros_like(mask)
        out[y0:y1, x0:x1] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        return out


def _lab(prompt: ObjectPrompt) -> np.ndarray:
    """The prompt's colour in OpenCV 8-bit Lab (3,) float32."""
    rgb = np.uint8([[np.rint(np.asarray(prompt.rgba[:3]) * 255)]])
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[0, 0].astype(np.float32)


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


# ----- estimation -----
@dataclass
class DetectorConfig:
    backend: Literal["colour_shape", "onnx"] = option("colour_shape", help="which detector makes the masks")
    colour_shape: ColourShapeConfig = field(default_factory=ColourShapeConfig)
    onnx: OnnxDetectorConfig = field(default_factory=OnnxDetectorConfig)


@dataclass
class ObjectStateConfig:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    pose_method: Literal["shape_fit", "keypoints"] = option(
        "shape_fit", help="how an object is located in a static window: shape_fit (box/cylinder fitted to the mask "
                          "outlines; the more accurate on flat-coloured objects) or keypoints (keypoints on the "
                          "masks tracked in 2D, triangulated with the SLAM poses, 6-DoF pose from the 3D keypoints)")
    keypoints: KeypointPoseConfig = option(default_factory=KeypointPoseConfig,
                                           help="the keypoints pose method (pose_method: keypoints)")
    fit_views: int = option(8, help="views (frames) per shape fit, spread evenly over the frames usable in a "
                                     "static window", minimum=1)
    min_fit_views: int = option(3, help="a static window with fewer usable views gives no fit", minimum=1)
    hidden_area_fraction: float = option(
        0.8, help="a view whose mask is smaller than this fraction of the window's large masks (90th percentile "
                  "of the areas) counts as partly hidden (the hand in front) and is not fitted to",
        minimum=0.0, maximum=1.0)
    outline_scale_px: float = option(1.0, help="outline distance (px) beyond which the fit's soft-L1 loss grows "
                                               "linearly (mask errors, occluders)", minimum=0.01)
    pinch_sigma_m: float = option(0.01, help="how far the pinch point at grasp onset may lie from the grasped "
                                             "object's centre (m): the weight of that cue", minimum=1e-4)
    pinch_frames: int = option(3, help="grasped frames averaged for the pinch point at onset", minimum=1)
    min_mask_area_px: int = option(12, help="a mask smaller than this counts as no detection (px)", minimum=1)
    grasp_threshold: float = option(0.5, help="grasp signal at or above this is a grasp", minimum=0.0, maximum=1.0)
    grasp_margin_frames: int = option(2, help="frames next to a grasp that are not fitted to (the hand is "
                                             "closing or opening on the object)", minimum=0)
    min_carry_m: float = option(0.05, help="a grasp whose pinch point moves less than this (m) is not a carry: the "
                                           "object is left static", minimum=0.0)
    grasp_radius_m: float = option(0.08, help="a grasp holds the object when the pinch point at onset is within "
                                              "this of the object's viewing ray (m)", minimum=0.0)


@dataclass
class ObjectTrack:
    """Per-frame pose of one object (see the module doc for the rules)."""

    name: str
    T_world_obj: np.ndarray  # (F, 4, 4) base centre, z up; identity where not valid
    valid: np.ndarray  # (F,) bool
    reason: np.ndarray  # (F,) str: "" where valid, else why not
    is_dynamic: bool
    keypoints_world: np.ndarray  # (N, 3) the fitted model's corners / rim points at the first valid frame
    keypoints_uv: np.ndarray  # (F, N, 2) their projections (for drawing)
    keypoints_visible: np.ndarray  # (F, N) bool: valid frame, in front of the camera and inside the image
    reprojection_error_px: float  # RMS distance (px) between the fitted and the measured outlines (inf: no fit)
    size: np.ndarray = field(default_factory=lambda: np.zeros(0))  # fitted box (L, W, H) / cylinder (r, h), m

    @property
    def visible(self) -> np.ndarray:
        return self.keypoints_visible


def make_detector(config: DetectorConfig):
    """The configured detector (ground-truth masks are built directly, for ablations)."""
    if config.backend == "onnx":
        return OnnxDetector(config.onnx)
    return ColourShapeDetector(config.colour_shape)


def estimate_object_states(frames: Sequence[np.ndarray], camera: CameraModel, T_world_camera, masks,
                           prompts: Sequence[ObjectPrompt], T_world_hand, hand_valid, grasp,
                           config: ObjectStateConfig | None = None,
                           progress: Callable[[str, int, int], None] | None = None,
                           timings: dict[str, float] | None = None, tracker=None) -> dict[str, ObjectTrack]:
    """Pose of every prompted object in every frame (see the module doc).

    ``frames``: the rectified RGB frames, random access (the shape fit uses only their number: the masks carry
    what is seen; the keypoints method tracks points through them); ``camera``: their LINEAR camera model;
    ``T_world_camera`` (F, 4, 4) camera poses; ``masks``: per frame a dict name -> bool mask (a missing name or
    an empty mask is no detection); ``T_world_hand`` (F, 4, 4), ``hand_valid`` (F,) and ``grasp`` (F,) of the
    manipulating hand. ``progress(object_name, done, total)`` is called per object; ``timings`` (if given)
    receives the seconds spent fitting shapes (``fit_s``) or tracking and triangulating keypoints
    (``tracking_s``, ``triangulation_s``). ``tracker``: the keypoints method's 2D tracker (None: built from
    ``config.keypoints.tracker``).
    """
    config = config or ObjectStateConfig()
    F = len(frames)
    T_world_camera, T_world_hand, hand_valid, grasp = _check_inputs(F, camera, T_world_camera, masks, T_world_hand,
                                                                    hand_valid, grasp)
    K = camera.intrinsic_matrix()
    clock = timings if timings is not None else {}
    if config.pose_method == "keypoints":
        tracker = tracker or make_tracker(config.keypoints.tracker)
        clock.setdefault("tracking_s", 0.0)
        clock.setdefault("triangulation_s", 0.0)
        frames = GreyFrames(frames)  # every object's tracks read every frame
    else:
        clock.setdefault("fit_s", 0.0)
    # Grasped objects first: where one stood before its grasp is the support the static objects stand on.
    support_z = None
    tracks = {}
    for i, prompt in enumerate(sorted(prompts, key=lambda p: not p.dynamic)):
        object_masks = [_object_mask(masks[t], prompt.name, config.min_mask_area_px) for t in range(F)]
        keypoints = KeypointLocator(config.keypoints, tracker, K, T_world_camera, frames, object_masks, clock) \
            if config.pose_method == "keypoints" else None
        estimator = _ObjectEstimator(prompt, K, (camera.height, camera.width), T_world_camera, T_world_hand,
                                     hand_valid, grasp, object_masks, config, clock, keypoints)
        tracks[prompt.name], rest_z = estimator.run(support_z)
        support_z = support_z if support_z is not None else rest_z
        if progress is not None:
            progress(prompt.name, i + 1, len(prompts))
    return {p.name: tracks[p.name] for p in prompts}


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

    def __init__(self, prompt, K, image_size, T_world_camera, T_world_hand, hand_valid, grasp, masks, config, clock,
                 keypoints: KeypointLocator | None):
        self.prompt, self.K, self.image_size, self.T_wc = prompt, K, image_size, T_world_camera
        self.T_wh, self.hand_valid, self.grasp = T_world_hand, hand_valid, grasp
        self.masks, self.config, self.clock = masks, config, clock
        self.keypoints = keypoints  # the keypoints pose method's locator; None: shape fits
        self.shape = CYLINDER if prompt.shape == "cylinder" else BOX  # 'any': its bounding box
        self.F = len(masks)

    def run(self, support_z: float | None) -> tuple[ObjectTrack, float | None]:
        """The track, and the height of the object's base where it rested before its first grasp (None: not
        grasped or not fitted there)."""
        F = self.F
        T = geometry.identity((F,))
        valid = np.zeros(F, dtype=bool)
        if not any(m is not None for m in self.masks):
            return self._track(T, valid, np.full(F, NO_MASK, dtype=object), None), None
        reason = np.full(F, NOT_FITTED, dtype=object)
        candidates = self._grasp_intervals() if self.prompt.dynamic else []
        model, rest_z = None, None
        T_current = None  # pose where the object was left (after a grasp: the carried pose at release)
        before, start = None, 0
        while start < F:
            grasp = self._next_grasp(candidates, start, T_current)
            onset = grasp[0] if grasp else F
            if T_current is None:
                model = self._fit(start, onset, before, grasp, support_z, reason) if self.keypoints is None \
                    else self._keypoints_first(start, onset, before, grasp, support_z)
                if model is not None:
                    T_current = model.T_world_obj
                    rest_z = float(T_current[2, 3]) if grasp is not None and before is None else None
            elif self.keypoints is not None:  # seen again after a release: the model fitted to its keypoints
                a, b = self._static_range(start, onset, before, grasp)
                refit = self.keypoints.refit(a, b, self._anchors(before, grasp), model.keypoints)
                T_current = refit if refit is not None else T_current
            if T_current is not None:
                T[start:onset] = T_current
                valid[start:onset] = True
            if grasp is None:
                break
            if T_current is not None:
                T_current = self._carry(T, valid, reason, grasp[0], grasp[1], T_current)
            before, start = grasp, grasp[1]
        reason[valid] = ""
        return self._track(T, valid, reason, model), rest_z

    # --- segmentation in time ---
    def _grasp_intervals(self) -> list[tuple[int, int]]:
        """(onset, release) frame ranges [onset, release) of grasps of this object."""
        held = self.hand_valid & (self.grasp >= self.config.grasp_threshold)
        pinch = self.T_wh[:, :3, 3]
        # A closed hand that hardly moves (resting next to the object) moves nothing: the object stays static.
        return [(a, b) for a, b in _runs(held)
                if np.linalg.norm(pinch[a:b] - pinch[a], axis=1).max() >= self.config.min_carry_m
                and self._holds_object(a)]

    def _holds_object(self, onset: int) -> bool:
        """The pinch point at onset lies near the ray through the object's mask centroid in the last frame
        before the onset where the object was seen (no sighting: cannot be this object)."""
        seen = [t for t in range(onset, -1, -1) if self.masks[t] is not None]
        if not seen:
            return False
        t = seen[0]
        ray = self._ray(t, np.argwhere(self.masks[t]).mean(axis=0)[::-1])
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

    def _ray(self, t: int, pixel) -> np.ndarray:
        """World unit direction of the viewing ray through ``pixel`` (x, y) in frame t."""
        ray = self.T_wc[t, :3, :3] @ np.linalg.solve(self.K, [pixel[0], pixel[1], 1.0])
        return ray / np.linalg.norm(ray)

    # --- locating the object in a static window ---
    def _static_range(self, start: int, stop: int, before, after) -> tuple[int, int]:
        """The frames of the window [start, stop) that are measured: without the ``grasp_margin_frames`` next
        to the grasps ``before`` and ``after`` (the hand closing or opening on the object)."""
        margin = self.config.grasp_margin_frames
        return start + (margin if before else 0), stop - (margin if after else 0)

    def _anchors(self, before, after) -> list[np.ndarray]:
        """Pinch points at the onset of the grasp ``after`` and the release of the grasp ``before``."""
        n = self.config.pinch_frames
        points = [self._pinch(after[0], after[0] + n) if after else None,
                  self._pinch(before[1] - n, before[1]) if before else None]
        return [p for p in points if p is not None]

    def _keypoints_first(self, start, stop, before, after, support_z) -> _Model | None:
        located = self.keypoints.first(*self._static_range(start, stop, before, after), self._anchors(before, after),
                                       support_z)
        if located is None:
            return None
        return _Model(located.T_world_obj, located.points_obj, located.rms_px,
                      model_size(self.prompt.shape, located.points_obj), located)

    def _fit(self, start, stop, before, after, support_z, reason) -> _Model | None:
        """Fit the shape to views of frames [start, stop) between the grasps ``before`` and ``after`` (either may
        be None). The depth cue: the pinch point at the onset of ``after``, else at the release of ``before``,
        else the support height; without any, or with a support the object's viewing ray does not descend to,
        the window is not fitted (reason ``no_support``). A fit that fails (degenerate outlines) leaves the
        window ``not_fitted``."""
        c = self.config
        views, outlines = self._views(*self._static_range(start, stop, before, after))
        if len(views) < c.min_fit_views:
            return None
        largest = max(views, key=lambda t: self.masks[t].sum())
        origin = self.T_wc[largest, :3, 3]
        ray = self._ray(largest, np.argwhere(self.masks[largest]).mean(axis=0)[::-1])
        pinch = self._pinch(after[0], after[0] + c.pinch_frames) if after else \
            self._pinch(before[1] - c.pinch_frames, before[1]) if before else None
        if pinch is not None:
            guess = pinch
        elif support_z is not None and ray[2] < 0 and support_z < origin[2]:
            guess = origin + (support_z - origin[2]) / ray[2] * ray
        else:
            reason[start:stop] = NO_SUPPORT
            return None
        extent = math.sqrt(self.masks[largest].sum()) * float(np.linalg.norm(guess - origin)) / self.K[0, 0]
        started = time.perf_counter()
        try:
            fit = fit_shape(self.shape, self.K, self.T_wc[views], outlines, guess, extent,
                            centre_prior=None if pinch is None else (pinch, c.pinch_sigma_m),
                            base_z=support_z if pinch is None else None, outline_scale_px=c.outline_scale_px)
        except ShapeFitError:
            return None
        finally:
            self.clock["fit_s"] += time.perf_counter() - started
        return _Model(fit.T_world_obj, model_points(fit.shape, fit.size, rim_points=8), fit.rms_px, fit.size)

    def _views(self, a: int, b: int) -> tuple[list[int], list[np.ndarray]]:
        """Up to ``fit_views`` frames of [a, b) and their outlines, evenly spread over those whose mask is not
        partly hidden (area at least ``hidden_area_fraction`` of the 90th percentile of the window's areas)."""
        seen = [t for t in range(max(a, 0), min(b, self.F)) if self.masks[t] is not None]
        if not seen:
            return [], []
        area = np.array([self.masks[t].sum() for t in seen])
        usable = np.flatnonzero(area >= self.config.hidden_area_fraction * np.percentile(area, 90))
        picks = np.unique(np.linspace(0, len(usable) - 1, self.config.fit_views).round().astype(int))
        views = [seen[i] for i in usable[picks]]
        outlines = [mask_outline(self.masks[t]) for t in views]
        kept = [i for i, o in enumerate(outlines) if len(o) >= 3]  # a mask on one line has no area to fit
        return [views[i] for i in kept], [outlines[i] for i in kept]

    def _pinch(self, a: int, b: int) -> np.ndarray | None:
        frames = [t for t in range(max(a, 0), min(b, self.F)) if self.hand_valid[t]]
        return self.T_wh[frames, :3, 3].mean(axis=0) if frames else None

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
    def _track(self, T, valid, reason, model: _Model | None) -> ObjectTrack:
        F = self.F
        points = model.points_obj if model is not None else np.zeros((0, 3))
        N = len(points)
        uv = np.zeros((F, N, 2))
        seen = np.zeros((F, N), dtype=bool)
        first = np.flatnonzero(valid)
        keypoints_world = np.zeros((N, 3))
        if N and len(first):
            keypoints_world = geometry.transform_points(T[first[0]], points)
            P = self.K @ geometry.invert(self.T_wc)[:, :3, :]
            X = geometry.transform_points(T, points)  # (F, N, 3)
            x = np.einsum("fij,fnj->fni", P[:, :, :3], X) + P[:, None, :, 3]
            depth = x[..., 2]
            uv = x[..., :2] / np.where(depth > 1e-6, depth, 1.0)[..., None]
            h, w = self.image_size
            seen = valid[:, None] & (depth > 1e-6) & (uv[..., 0] >= 0) & (uv[..., 0] <= w - 1) & \
                (uv[..., 1] >= 0) & (uv[..., 1] <= h - 1)
            uv = np.where(seen[..., None], uv, 0.0)
        return ObjectTrack(self.prompt.name, T, valid, reason.astype(str), self.prompt.dynamic, keypoints_world, uv,
                           seen, model.rms_px if model is not None else math.inf,
                           model.size if model is not None else np.zeros(0))


@dataclass
class _Model:
    """Where a static window located an object, and what is drawn of it."""

    T_world_obj: np.ndarray  # (4, 4)
    points_obj: np.ndarray  # (N, 3) the shape's corners / rim points, or the triangulated keypoints
    rms_px: float  # outline distance of the shape fit, or reprojection error of the keypoints
    size: np.ndarray  # see ObjectTrack.size
    keypoints: KeypointModel | None = None  # the keypoints method's model (tracks and their points)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the runs of True."""
    padded = np.r_[False, flags, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
