"""Masks of the human arm and hand in egocentric images, from the MPS hand-tracking landmarks.

Two backends with one call, ``masker.mask(image_rgb, camera, hands) -> bool (H, W)``:

- :class:`LandmarkSkinMasker` (default, no model):

  1. *prior*: the 21 landmarks give the hand (fingers and thumb as capsules along their bones, the palm as
     the hull of the wrist and knuckles); :class:`ArmFitter` adds a tapered forearm from the WRIST landmark
     and an upper arm from the elbow. A forearm along the palm direction (WRIST - knuckles) alone is wrong
     whenever the wrist bends, so its direction is fitted to the image: the one whose capsule covers the most
     skin-coloured pixels (no elbow further from the camera than the wrist, no arm through the head);
  2. *skin colour model*, learnt on this very image: a robust Gaussian over the log-chromaticity (log R/G,
     log B/G: unchanged by shading) of the prior's confident core, against a smoothed histogram of the
     surroundings (a ring around the prior);
  3. *refinement*: prior pixels whose colour is clearly not skin are dropped, skin-like pixels next to the
     prior (within a band) are added, and only what is connected to the core is kept.

  On simulated serve_bread recordings (skin against a tan table of nearly the same hue) it reaches a mean
  IoU of 0.92 against the true arm mask at 480x480, 0.88 at 240x240 (benchmarks/views.py); the landmark
  prior with the forearm along the palm direction reaches 0.12.
- :class:`Sam2ArmMasker`: SAM2 (ONNX) prompted with the projected landmarks as positive points and points
  of a ring around the fitted arm as negative ones.

Landmarks are given in the camera's optical frame (z forward, x right, y down; metres): for a recording,
``inv(T_device_camera)`` applied to the MPS device-frame landmarks. Any :class:`CameraModel` works
(rectified pinhole or Aria's Fisheye624): every 3D point is projected with the model, and a tube's width
is measured between the projections of its two outline edges, so perspective and distortion shape it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from humanego_core import hand as lm
from humanego_core.camera_models import CameraModel
from humanego_core.config import option
from humanego_perception.onnx_model import OnnxModel, TensorSpec

SIDES = ("left", "right")
# Bone chains drawn as capsules (the palm hull covers the wrist-to-knuckle part).
FINGER_CHAINS = (
    (lm.WRIST, lm.THUMB_INTERMEDIATE, lm.THUMB_DISTAL, lm.THUMB_FINGERTIP),
    (lm.INDEX_PROXIMAL, lm.INDEX_INTERMEDIATE, lm.INDEX_DISTAL, lm.INDEX_FINGERTIP),
    (lm.MIDDLE_PROXIMAL, lm.MIDDLE_INTERMEDIATE, lm.MIDDLE_DISTAL, lm.MIDDLE_FINGERTIP),
    (lm.RING_PROXIMAL, lm.RING_INTERMEDIATE, lm.RING_DISTAL, lm.RING_FINGERTIP),
    (lm.PINKY_PROXIMAL, lm.PINKY_INTERMEDIATE, lm.PINKY_DISTAL, lm.PINKY_FINGERTIP),
)
KNUCKLES = (lm.INDEX_PROXIMAL, lm.MIDDLE_PROXIMAL, lm.RING_PROXIMAL, lm.PINKY_PROXIMAL)
PALM = (lm.WRIST, lm.THUMB_INTERMEDIATE, *KNUCKLES, lm.PALM_CENTER)
# cv2 drawing in fixed point: 4 fractional bits, coordinates kept well inside int32.
_SHIFT = 4
_MAX_PX = 1.0e6
# Directions around a disc centre: the palm is the convex hull of its discs outlined this finely.
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False))], axis=-1)


@dataclass
class ArmMaskConfig:
    backend: Literal["landmarks_skin", "sam2"] = option("landmarks_skin", help="arm masking backend")
    min_confidence: float = option(0.0, help="hands tracked with a lower confidence are ignored (MPS: -1 = not seen)")
    finger_radius_m: float = option(0.011, help="skin radius around the finger bones' centre line (m)",
                                    minimum=0.001, maximum=0.05)
    palm_radius_m: float = option(0.012, help="margin around the wrist/knuckle hull of the palm (m)",
                                  minimum=0.0, maximum=0.08)
    forearm_length_m: float = option(0.28, help="forearm drawn from the WRIST landmark (m); 0: no forearm",
                                     minimum=0.0, maximum=1.0)
    forearm_radius_wrist_m: float = option(0.032, help="forearm radius at the wrist (m)", minimum=0.005, maximum=0.15)
    forearm_radius_elbow_m: float = option(0.042, help="forearm radius at the elbow (m)", minimum=0.005, maximum=0.15)
    forearm_search_deg: float = option(180.0, help="largest angle between the forearm and the palm direction "
                                       "(WRIST - knuckles) tried when the forearm is fitted to the skin colours; "
                                       "0: always along the palm direction", minimum=0.0, maximum=180.0)
    upper_arm_length_m: float = option(0.30, help="upper arm fitted from the elbow to the skin colours (m); "
                                       "0: none", minimum=0.0, maximum=1.0)
    upper_arm_radius_m: float = option(0.05, help="upper arm radius (m)", minimum=0.005, maximum=0.2)
    shoulder_distance_m: list[float] = option(default_factory=lambda: [0.22, 0.45],
                                              help="range of shoulder-to-camera distances a fitted upper arm may "
                                              "end at (m)", minimum=0.0, maximum=2.0)
    head_radius_m: float = option(0.15, help="a fitted arm never passes closer to the camera than this (m)",
                                  minimum=0.0, maximum=1.0)
    near_m: float = option(0.05, help="near plane: geometry closer to the camera than this is cut off (m)",
                           minimum=0.001, maximum=1.0)
    sample_step_m: float = option(0.01, help="bones are sampled this finely, so perspective and lens distortion "
                                  "bend and taper them (m)", minimum=0.001, maximum=0.1)
    skin_refine: bool = option(True, help="refine the landmark prior with a per-image skin colour model")
    core_scale: float = option(0.5, help="radii of the prior's confident core, which teaches the skin colours "
                               "(fraction of the prior's)", minimum=0.05, maximum=1.0)
    ring_inner_scale: float = option(1.8, help="inner edge of the background ring the non-skin colours are learnt "
                                     "from (multiple of the prior's radii)", minimum=1.0, maximum=10.0)
    ring_outer_scale: float = option(3.0, help="outer edge of that ring (multiple of the prior's radii)",
                                     minimum=1.0, maximum=20.0)
    grow_scale: float = option(2.0, help="skin-like pixels are added up to this multiple of the prior's radii",
                               minimum=1.0, maximum=10.0)
    chroma_bins: int = option(64, help="bins per axis of the log-chromaticity (log R/G, log B/G over [-1, 1]) "
                              "histograms", minimum=8, maximum=256)
    min_value: int = option(20, help="pixels darker than this (max of R, G, B) have no reliable colour and never "
                            "count as skin", minimum=0, maximum=255)
    keep_ratio: float = option(0.25, help="a prior pixel stays unless its colour is this many times less likely "
                               "under the skin model than under the background model", minimum=1e-6)
    grow_ratio: float = option(4.0, help="a pixel next to the prior is added when its colour is this many times "
                               "more likely under the skin model than under the background model", minimum=1e-6)
    max_ring_false_positives: float = option(0.05, help="no growing where more of the background ring than "
                                             "this looks like skin (the colours do not separate)",
                                             minimum=0.0, maximum=1.0)
    min_core_px: int = option(30, help="fewer core pixels than this: no colour model, the prior is the mask",
                              minimum=1)
    sam2_encoder: str | None = option(None, help="SAM2 image encoder ONNX file (backend sam2)")
    sam2_decoder: str | None = option(None, help="SAM2 prompt encoder + mask decoder ONNX file (backend sam2)")
    sam2_negative_points: int = option(8, help="negative prompts sampled on the background ring (backend sam2)",
                                       minimum=0, maximum=64)
    dilate_px: int = option(0, help="grow the final mask by this many pixels (a safety margin that is part of "
                            "the published/stored mask)", minimum=0, maximum=50)

    def problems(self) -> list[tuple[str, str]]:
        """(key, problem) for what the schema's types and bounds cannot check."""
        out = []
        if len(self.shoulder_distance_m) != 2 or self.shoulder_distance_m[0] > self.shoulder_distance_m[1]:
            out.append(("shoulder_distance_m", f"must be [nearest, farthest], got {self.shoulder_distance_m}"))
        if self.ring_outer_scale <= self.ring_inner_scale:
            out.append(("ring_outer_scale", f"{self.ring_outer_scale} must exceed ring_inner_scale "
                                            f"{self.ring_inner_scale}"))
        return out


@dataclass
class HandInCamera:
    """One tracked hand: MPS landmarks (21, 3) in the camera's optical frame (m) and the tracking confidence."""

    side: str
    landmarks: np.ndarray
    confidence: float = 1.0

    def __post_init__(self):
        if self.side not in SIDES:
            raise ValueError(f"hand side must be one of {SIDES}, got {self.side!r}")
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64)
        if self.landmarks.shape != (lm.NUM_LANDMARKS, 3):
            raise ValueError(f"{self.side} hand: landmarks must have shape (21, 3), got {self.landmarks.shape}")
        if not np.all(np.isfinite(self.landmarks)):
            raise ValueError(f"{self.side} hand: landmarks contain NaN or inf")
        if not np.isfinite(self.confidence):
            raise ValueError(f"{self.side} hand: confidence is {self.confidence}")


def _raise_problems(config: ArmMaskConfig) -> None:
    problems = config.problems()
    if problems:
        raise ValueError("; ".join(f"arm_mask.{key}: {problem}" for key, problem in problems))


def _check_inputs(image_rgb: np.ndarray, camera: CameraModel) -> None:
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image must be uint8 HxWx3 RGB, got {image_rgb.dtype} {image_rgb.shape}")
    if image_rgb.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image is {image_rgb.shape[1]}x{image_rgb.shape[0]}, the camera model is "
                         f"{camera.width}x{camera.height}")


# ----------------------------------------------------------------------------------------------
# Colour: log-chromaticity and a per-image skin model
# ----------------------------------------------------------------------------------------------
# log(R/G) and log(B/G) do not change when shading scales a surface's colour, which brightness-bound
# spaces (YCrCb, Lab, HSV's V) do; on the simulator's skin against its tan table, the best per-image
# classifier errs on 11% of the arm's area in these two axes against 23-67% in Cr-Cb, Lab a-b or H-S.
CHROMA_RANGE = (-1.0, 1.0)
# Log-likelihood ratios are clipped: a colour never seen in one class is strong, not infinite, evidence.
MAX_LOG_RATIO = 5.0
# Skin colours spread at least this much in log-chromaticity (a model learnt from a few pixels of one
# shade must still accept the same skin slightly differently lit).
MIN_SKIN_SIGMA = 0.03
# Candidate arm poses score clip(log ratio, SCORE_CLIP): non-skin costs less than skin earns, since shadows
# and highlights make some true skin look unlike the (small) sample the model was learnt from.
SCORE_CLIP = (-1.0, 3.0)


# Pixels with a channel at or above this are clipped by the sensor (highlights): their chromaticity is
# not the surface's.
SATURATED = 250


class ChromaImage:
    """Per pixel: log-chromaticity (a = log R/G, b = log B/G), its histogram bin, and whether its colour is
    measurable (``valid``: not too dark, not clipped) or it is too dark to be anything lit (``dark``)."""

    _LOG = np.log(np.arange(256, dtype=np.float32) + 1.0)  # log(v + 1): no log of 0, a table lookup

    def __init__(self, image_rgb: np.ndarray, bins: int, min_value: int):
        r, g, b = (self._LOG[image_rgb[..., c]] for c in range(3))
        self.ab = np.stack([r - g, b - g], axis=-1)
        lo, hi = CHROMA_RANGE
        cell = np.clip(((self.ab - lo) * (bins / (hi - lo))).astype(np.int32), 0, bins - 1)
        self.bins = bins
        self.index = cell[..., 0] * bins + cell[..., 1]
        brightest = cv2.max(cv2.max(image_rgb[..., 0], image_rgb[..., 1]), image_rgb[..., 2])
        self.dark = brightest < min_value
        self.valid = ~self.dark & (brightest < SATURATED)


# Trimmed Gaussian fit: samples further than this squared Mahalanobis distance (the 90% quantile of a 2-D
# Gaussian) are left out of the next estimate, so a held object or a highlight in the core does not drag
# the skin colour away.
TRIM_MAHALANOBIS2 = 4.61
TRIM_ITERATIONS = 3


def _robust_gaussian(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the main cluster of (N, 2) samples: from the median and the median absolute
    deviation, then refitted a few times to the samples within TRIM_MAHALANOBIS2."""
    mean = np.median(samples, axis=0)
    spread = 1.4826 * np.median(np.abs(samples - mean), axis=0) + 1e-6  # MAD -> sigma for a Gaussian
    cov = np.diag(spread**2)
    for _ in range(TRIM_ITERATIONS):
        d = samples - mean
        inliers = samples[np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) <= TRIM_MAHALANOBIS2]
        if len(inliers) < 3:
            break
        mean = inliers.mean(axis=0)
        # the trimmed sample under-estimates the spread of a Gaussian; 1/0.9 brings the 90% core back
        cov = np.cov(inliers, rowvar=False) / 0.9 + 1e-12 * np.eye(2)
    return mean, cov


class SkinModel:
    """log p(colour | skin) - log p(colour | background) per chromaticity bin, learnt from two pixel sets of
    one image: skin as a Gaussian (robust with the few pixels of a hand), background as a smoothed
    histogram (it is many surfaces)."""

    def __init__(self, log_ratio: np.ndarray):
        self.table = log_ratio.astype(np.float32)

    @classmethod
    def learn(cls, chroma: ChromaImage, skin: np.ndarray, background: np.ndarray, min_pixels: int) -> SkinModel | None:
        """None when either set has fewer than ``min_pixels`` usable pixels."""
        skin, background = skin & chroma.valid, background & chroma.valid
        if skin.sum() < min_pixels or background.sum() < min_pixels:
            return None
        n, (lo, hi) = chroma.bins, CHROMA_RANGE
        mean, cov = _robust_gaussian(chroma.ab[skin].astype(np.float64))
        cov = cov + MIN_SKIN_SIGMA**2 * np.eye(2)
        centres = lo + (np.arange(n) + 0.5) * (hi - lo) / n
        grid = np.stack(np.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 2) - mean
        p_skin = np.exp(-0.5 * np.einsum("ni,ij,nj->n", grid, np.linalg.inv(cov), grid))
        hist = np.bincount(chroma.index[background], minlength=n * n).astype(np.float32).reshape(n, n)
        p_background = cv2.GaussianBlur(hist, (0, 0), 1.0).reshape(-1).astype(np.float64)
        p_skin /= p_skin.sum()
        p_background /= p_background.sum()
        floor = 1e-3 / (n * n)  # a colour absent from both sets is neither's evidence
        return cls(np.clip(np.log((p_skin + floor) / (p_background + floor)), -MAX_LOG_RATIO, MAX_LOG_RATIO))

    def log_ratio(self, chroma: ChromaImage) -> np.ndarray:
        """(H, W) float32; dark pixels count as not skin, clipped ones as unknown (0)."""
        out = np.where(chroma.valid, self.table[chroma.index], np.float32(0.0))
        out[chroma.dark] = -MAX_LOG_RATIO
        return out


# ----------------------------------------------------------------------------------------------
# The geometric prior
# ----------------------------------------------------------------------------------------------
@dataclass
class Tube:
    """A chain of 3D points with a metric radius at each (a capsule chain once projected)."""

    points: np.ndarray  # (N, 3)
    radii: np.ndarray  # (N,)
    axis_free: bool = False  # True: separate spheres (the palm's), not a chain
    _projection: tuple | None = field(default=None, repr=False, compare=False)

    def projected(self, camera: CameraModel, near: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`_project_discs` of the tube, kept for the last camera (a mask draws it at several scales)."""
        if self._projection is None or self._projection[0] is not camera or self._projection[1] != near:
            axes = None if self.axis_free else _chain_axes(self.points)
            self._projection = (camera, near, _project_discs(camera, self.points, self.radii, near, axes))
        return self._projection[2]


@dataclass
class ArmGeometry:
    """The hands' and arms' 3D shapes in the camera frame, ready to draw at any radius scale."""

    tubes: list[Tube] = field(default_factory=list)  # capsule chains: fingers, forearm, upper arm
    palms: list[Tube] = field(default_factory=list)  # filled as one convex hull of discs each

    @classmethod
    def hands_only(cls, hands: list[HandInCamera], config: ArmMaskConfig) -> ArmGeometry:
        geometry = cls()
        for hand in hands:
            L = hand.landmarks
            for chain in FINGER_CHAINS:
                geometry.tubes.append(_sampled(L[list(chain)], np.full(len(chain), config.finger_radius_m),
                                               config.sample_step_m))
            geometry.palms.append(Tube(L[list(PALM)], np.full(len(PALM), config.palm_radius_m), axis_free=True))
        return geometry

    def draw(self, camera: CameraModel, near: float, scale: float = 1.0) -> np.ndarray:
        """uint8 (H, W) mask, 1 inside the shapes with every radius multiplied by ``scale``."""
        mask = np.zeros((camera.height, camera.width), np.uint8)
        for tube in self.tubes:
            _fill_capsule_chain(mask, *tube.projected(camera, near), scale)
        for palm in self.palms:
            centre, half, ok = palm.projected(camera, near)
            if ok.any():
                r = scale * np.linalg.norm(half[ok], axis=-1)
                outline = (centre[ok, None, :] + r[:, None, None] * _CIRCLE[None]).reshape(-1, 2)
                cv2.fillConvexPoly(mask, cv2.convexHull(_fixed(outline)), 1, cv2.LINE_8, _SHIFT)
        return mask


def _chain_axes(points: np.ndarray) -> np.ndarray:
    """Direction of a polyline at each of its points (central differences, one-sided at the ends)."""
    d = np.gradient(points, axis=0) if len(points) > 1 else np.zeros_like(points)
    return d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)


def _sampled(points: np.ndarray, radii: np.ndarray, step: float) -> Tube:
    """The polyline resampled no coarser than ``step`` (radii interpolated)."""
    out_p, out_r = [points[:1]], [radii[:1]]
    for a in range(len(points) - 1):
        n = max(1, int(np.ceil(np.linalg.norm(points[a + 1] - points[a]) / step)))
        t = np.arange(1, n + 1)[:, None] / n
        out_p.append(points[a] + t * (points[a + 1] - points[a]))
        out_r.append(radii[a] + t[:, 0] * (radii[a + 1] - radii[a]))
    return Tube(np.concatenate(out_p), np.concatenate(out_r))


def _project_in_front(camera: CameraModel, points: np.ndarray, near: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``points`` (..., 3) and which of them are in front of the near plane and inside the model's cone."""
    ok = points[..., 2] > near
    ok &= np.arctan2(np.hypot(points[..., 0], points[..., 1]), points[..., 2]) <= camera.max_solid_angle
    uv = np.zeros(points.shape[:-1] + (2,))
    if ok.any():
        uv[ok] = camera.project_no_checks(points[ok])
    ok &= np.all(np.isfinite(uv), axis=-1)
    return uv, ok


def _project_discs(camera: CameraModel, points: np.ndarray, radii, near: float,
                   axes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outlines of tube cross-sections (or spheres) of ``radii`` at ``points`` (..., 3): centre pixel (..., 2),
    half-width vector (..., 2) and validity (...).

    The width is measured between the projections of ``P +- r n``, with n perpendicular to the viewing ray
    and to the tube's direction ``axes`` (..., 3): the two edges of a cylinder's outline, right under
    perspective and lens distortion (a disc radius from the local scale would swell tubes seen obliquely).
    Without ``axes`` (spheres), n is perpendicular to the ray and to the optical axis: the width across the
    image's radial direction, which distortion and obliquity stretch least.
    """
    points = np.asarray(points, dtype=np.float64)
    r = np.broadcast_to(np.asarray(radii, dtype=np.float64), points.shape[:-1])[..., None]
    ray = points / np.maximum(np.linalg.norm(points, axis=-1, keepdims=True), 1e-12)
    across = np.cross(ray, [0.0, 0.0, 1.0]) if axes is None else np.cross(np.broadcast_to(axes, points.shape), ray)
    length = np.linalg.norm(across, axis=-1, keepdims=True)
    fallback = np.cross(ray, np.where(np.abs(ray[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    across = np.where(length > 1e-9, across / np.maximum(length, 1e-12),
                      fallback / np.maximum(np.linalg.norm(fallback, axis=-1, keepdims=True), 1e-12))
    a, ok_a = _project_in_front(camera, points + r * across, near)
    b, ok_b = _project_in_front(camera, points - r * across, near)
    _, ok = _project_in_front(camera, points, near)
    return 0.5 * (a + b), 0.5 * (a - b), ok & ok_a & ok_b


def _fixed(uv: np.ndarray) -> np.ndarray:
    return np.round(np.clip(uv, -_MAX_PX, _MAX_PX) * (1 << _SHIFT)).astype(np.int32)


def _fill_capsule_chain(mask: np.ndarray, centre: np.ndarray, half: np.ndarray, ok: np.ndarray,
                        scale: float = 1.0) -> None:
    """The quads between consecutive valid cross-sections, and round caps (discs) where a run of valid ones
    starts or ends. Neighbouring quads share their edge (one half-width vector per cross-section), so the
    chain has no gaps at its bends."""
    half = half * scale
    # the half-width vectors of a chain keep one orientation, so that the quads do not twist into bow ties
    flips = np.sign(np.sum(half[1:] * half[:-1], axis=-1))
    half = half * np.concatenate([[1.0], np.cumprod(np.where(flips < 0, -1.0, 1.0))])[:, None]
    inside = np.concatenate([[False], ok, [False]])
    caps = ok & ~(inside[:-2] & inside[2:])
    radii = np.round(np.clip(np.linalg.norm(half[caps], axis=-1), 0, _MAX_PX) * (1 << _SHIFT)).astype(np.int64)
    for (u, v), radius in zip(_fixed(centre[caps]).tolist(), radii.tolist(), strict=True):
        cv2.circle(mask, (u, v), radius, 1, -1, cv2.LINE_8, _SHIFT)
    pair = ok[:-1] & ok[1:]
    if pair.any():
        c0, c1, h0, h1 = centre[:-1][pair], centre[1:][pair], half[:-1][pair], half[1:][pair]
        for quad in _fixed(np.stack([c0 + h0, c1 + h1, c1 - h1, c0 - h0], axis=1)):
            cv2.fillConvexPoly(mask, quad, 1, cv2.LINE_8, _SHIFT)


# ----------------------------------------------------------------------------------------------
# Fitting the arm to the image
# ----------------------------------------------------------------------------------------------
def sphere_directions(count: int) -> np.ndarray:
    """``count`` unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    phi = np.pi * (1.0 + 5**0.5) * i
    rho = np.sqrt(1.0 - z * z)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=-1)


def cone_directions(axis: np.ndarray, half_angle: float, rings: int, per_ring: int) -> np.ndarray:
    """``axis`` and ``rings`` rings of ``per_ring`` directions around it, out to ``half_angle`` (rad)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    out = [axis]
    for k in range(1, rings + 1):
        a = half_angle * k / rings
        for b in np.linspace(0, 2 * np.pi, per_ring, endpoint=False):
            out.append(np.cos(a) * axis + np.sin(a) * (np.cos(b) * e1 + np.sin(b) * e2))
    return np.array(out)


# Coarse search over the sphere (about 23 degrees apart), then a finer one around the best direction.
COARSE_DIRECTIONS = 80
FINE_HALF_ANGLE, FINE_RINGS, FINE_PER_RING = np.radians(20.0), 3, 8
SEARCH_STEP_M = 0.03  # candidate arms are scored as coarser chains than they are drawn


class ArmFitter:
    """Fits the forearm and upper arm of each hand to the skin evidence of an image.

    The forearm starts at the WRIST landmark; by default it points away from the knuckles (the palm
    direction), but wrists bend, so where ``forearm_search_deg`` > 0 the direction is the one, within that
    angle of the palm direction, whose capsule covers the most skin-coloured pixels (all directions of a
    coarse sphere, then a finer cone around the best). Candidates whose elbow would be further from the
    camera than the wrist are not tried: in egocentric views the arm comes from the body, behind the hand.
    Where the forearm was found, the skin model is relearnt with its pixels and the upper arm is fitted the
    same way from the elbow, ending at a plausible shoulder distance from the camera, and kept only where it
    covers more skin than not. No arm passes through the wearer's head (``head_radius_m``).
    """

    def __init__(self, config: ArmMaskConfig):
        self.config = config
        self.coarse = sphere_directions(COARSE_DIRECTIONS)

    def fit(self, hands: list[HandInCamera], camera: CameraModel, chroma: ChromaImage | None) -> ArmGeometry:
        """The hands with their arms. Without colours (None) the forearm follows the palm direction and there
        is no upper arm."""
        cfg = self.config
        geometry = ArmGeometry.hands_only(hands, cfg)
        if cfg.forearm_length_m <= 0:
            return geometry
        evidence = self._evidence(geometry, camera, chroma)
        elbows = []
        for hand in hands:
            L = hand.landmarks
            wrist = L[lm.WRIST]
            palm_direction = wrist - L[list(KNUCKLES)].mean(axis=0)
            if np.linalg.norm(palm_direction) < 1e-6:
                continue
            palm_direction /= np.linalg.norm(palm_direction)
            forearm = self._forearm_direction(wrist, palm_direction, geometry, evidence)
            geometry.tubes.append(_sampled(np.stack([wrist, wrist + cfg.forearm_length_m * (
                palm_direction if forearm is None else forearm)]),
                np.array([cfg.forearm_radius_wrist_m, cfg.forearm_radius_elbow_m]), cfg.sample_step_m))
            if forearm is not None:
                elbows.append(wrist + cfg.forearm_length_m * forearm)
        if elbows and cfg.upper_arm_length_m > 0:
            # relearnt with the forearms' skin: many more pixels than the hands alone, and lit like the arm
            evidence = self._evidence(geometry, camera, chroma)
            for elbow in elbows:
                upper = self._upper_arm_direction(elbow, geometry, evidence)
                if upper is not None:
                    geometry.tubes.append(_sampled(np.stack([elbow, elbow + cfg.upper_arm_length_m * upper]),
                                                   np.array([cfg.forearm_radius_elbow_m, cfg.upper_arm_radius_m]),
                                                   cfg.sample_step_m))
        return geometry

    def _evidence(self, geometry: ArmGeometry, camera: CameraModel, chroma: ChromaImage | None):
        """(camera, clipped skin log-likelihood ratio) learnt from the core of ``geometry`` against everything
        far from it; None without colours or enough pixels."""
        if chroma is None:
            return None
        cfg = self.config
        core = geometry.draw(camera, cfg.near_m, cfg.core_scale) > 0
        background = geometry.draw(camera, cfg.near_m, cfg.ring_outer_scale) == 0
        model = SkinModel.learn(chroma, core, background, cfg.min_core_px)
        if model is None:
            return None
        return camera, np.clip(model.log_ratio(chroma), *SCORE_CLIP).astype(np.float64)

    def _forearm_direction(self, wrist, palm_direction, geometry, evidence) -> np.ndarray | None:
        """The fitted direction, or None where nothing fits better than non-skin (or there is no evidence)."""
        cfg = self.config
        if evidence is None or cfg.forearm_search_deg <= 0:
            return None
        max_angle = np.radians(cfg.forearm_search_deg)

        def allowed(d):
            elbow = wrist + cfg.forearm_length_m * d
            return ((d @ palm_direction >= np.cos(max_angle) - 1e-9)
                    & (np.linalg.norm(elbow, axis=-1) <= np.linalg.norm(wrist))
                    & self._clear_of_head(wrist, d, cfg.forearm_length_m))

        radii = (cfg.forearm_radius_wrist_m, cfg.forearm_radius_elbow_m)
        best, score = self._search(wrist, np.vstack([palm_direction, self.coarse]), allowed, cfg.forearm_length_m,
                                   radii, geometry, evidence)
        return best if best is not None and score > 0 else None

    def _upper_arm_direction(self, elbow, geometry, evidence) -> np.ndarray | None:
        cfg = self.config
        near, far = cfg.shoulder_distance_m

        def allowed(d):
            distance = np.linalg.norm(elbow + cfg.upper_arm_length_m * d, axis=-1)
            return (distance >= near) & (distance <= far) & self._clear_of_head(elbow, d, cfg.upper_arm_length_m)

        best, score = self._search(elbow, self.coarse, allowed, cfg.upper_arm_length_m,
                                   (cfg.forearm_radius_elbow_m, cfg.upper_arm_radius_m), geometry, evidence)
        return best if best is not None and score > 0 else None

    def _clear_of_head(self, start, directions, length) -> np.ndarray:
        """Segments start -> start + length d that stay further than head_radius_m from the camera."""
        t = np.clip(-(directions @ start) / length, 0.0, 1.0)  # closest point's fraction along each segment
        closest = start + (t * length)[:, None] * directions
        return np.linalg.norm(closest, axis=-1) > self.config.head_radius_m

    def _search(self, start, directions, allowed, length, radii, geometry, evidence):
        """(best direction, its score) over coarse then fine candidates; (None, -inf) if none is allowed."""
        best, best_score = None, -np.inf
        camera, evidence_map = evidence
        # what geometry covers already earns nothing: a candidate is scored on the skin it adds
        integral = cv2.integral(np.where(geometry.draw(camera, self.config.near_m) > 0, 0.0, evidence_map))
        for stage in range(2):
            if stage == 1:
                if best is None:
                    break
                directions = cone_directions(best, FINE_HALF_ANGLE, FINE_RINGS, FINE_PER_RING)
                directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
            directions = directions[allowed(directions)]
            if len(directions):
                scores = self._scores(start, directions, length, radii, camera, integral)
                k = int(np.argmax(scores))
                if scores[k] > best_score:
                    best, best_score = directions[k], float(scores[k])
        return best, best_score

    def _scores(self, start, directions, length, radii, camera, integral) -> np.ndarray:
        """Skin evidence of each candidate capsule, from ``integral``, the integral image of the evidence.

        A capsule's score approximates the integral of the evidence over it: along its axis, each sample's
        square of side 2r (a box sum) times the projected spacing over 2r. Vectorised over all candidates:
        ranking a hundred poses costs less than drawing one.
        """
        n = max(2, int(np.ceil(length / SEARCH_STEP_M)) + 1)
        t = np.linspace(0.0, 1.0, n)
        points = start + length * t[None, :, None] * directions[:, None, :]
        uv, half, ok = _project_discs(camera, points, radii[0] + t * (radii[1] - radii[0]), self.config.near_m,
                                      axes=directions[:, None, :])
        r = np.linalg.norm(half, axis=-1)
        h, w = integral.shape[0] - 1, integral.shape[1] - 1
        x0 = np.clip(np.round(uv[..., 0] - r + 0.5), 0, w).astype(np.int64)
        x1 = np.clip(np.round(uv[..., 0] + r + 0.5), 0, w).astype(np.int64)
        y0 = np.clip(np.round(uv[..., 1] - r + 0.5), 0, h).astype(np.int64)
        y1 = np.clip(np.round(uv[..., 1] + r + 0.5), 0, h).astype(np.int64)
        box = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        # spacing to the neighbours along the axis (half on each side), in pixels
        gap = np.linalg.norm(np.diff(uv, axis=1), axis=-1) * (ok[:, 1:] & ok[:, :-1])
        spacing = 0.5 * (np.pad(gap, ((0, 0), (1, 0))) + np.pad(gap, ((0, 0), (0, 1))))
        return np.sum(np.where(ok, box * spacing / np.maximum(2.0 * r, 1e-9), 0.0), axis=1)


# ----------------------------------------------------------------------------------------------
# Backend 1: landmarks + skin colour
# ----------------------------------------------------------------------------------------------
class LandmarkSkinMasker:
    """The default arm masker: landmark prior, arm fitted to the skin colours, colour refinement."""

    def __init__(self, config: ArmMaskConfig):
        _raise_problems(config)
        self.config = config
        self.fitter = ArmFitter(config)

    def prior(self, image_rgb: np.ndarray, camera: CameraModel, hands: list[HandInCamera]
              ) -> tuple[ArmGeometry, ChromaImage]:
        """The fitted hand and arm geometry, and the image's colours (for the refinement)."""
        cfg = self.config
        chroma = ChromaImage(image_rgb, cfg.chroma_bins, cfg.min_value)
        return self.fitter.fit(hands, camera, chroma if cfg.skin_refine else None), chroma

    def mask(self, image_rgb: np.ndarray, camera: CameraModel, hands: list[HandInCamera]) -> np.ndarray:
        _check_inputs(image_rgb, camera)
        cfg = self.config
        hands = [h for h in hands if h.confidence >= cfg.min_confidence]
        if not hands:
            return np.zeros(image_rgb.shape[:2], bool)
        geometry, chroma = self.prior(image_rgb, camera, hands)
        prior = geometry.draw(camera, cfg.near_m) > 0
        mask = self._refine(geometry, chroma, camera, prior) if cfg.skin_refine else prior
        return dilate_mask(mask, cfg.dilate_px)

    def _refine(self, geometry: ArmGeometry, chroma: ChromaImage, camera: CameraModel,
                prior: np.ndarray) -> np.ndarray:
        cfg = self.config
        core = geometry.draw(camera, cfg.near_m, cfg.core_scale) > 0
        ring = ((geometry.draw(camera, cfg.near_m, cfg.ring_outer_scale) > 0)
                & (geometry.draw(camera, cfg.near_m, cfg.ring_inner_scale) == 0))
        model = SkinModel.learn(chroma, core, ring, cfg.min_core_px)
        if model is None:
            return prior
        log_ratio = model.log_ratio(chroma)
        kept = prior & (log_ratio >= np.log(cfg.keep_ratio))
        skin_like = log_ratio >= np.log(cfg.grow_ratio)
        candidate = kept
        # Grow only where the colours tell skin from the surroundings: the share of the background ring the
        # model would call skin is its false-positive rate on this very image.
        if skin_like[ring].mean() <= cfg.max_ring_false_positives:
            candidate = kept | (skin_like & (geometry.draw(camera, cfg.near_m, cfg.grow_scale) > 0))
        # only what is connected to the confident core: isolated skin-coloured spots are something else
        count, labels = cv2.connectedComponents(candidate.astype(np.uint8), connectivity=8)
        anchored = np.zeros(count, bool)
        anchored[np.unique(labels[core & candidate])] = True
        anchored[0] = False
        return anchored[labels]


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Bool ``mask`` grown by a disc of radius ``pixels``."""
    if pixels <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


# ----------------------------------------------------------------------------------------------
# Backend 2: SAM2 (ONNX)
# ----------------------------------------------------------------------------------------------
SAM2_SIZE = 1024  # the encoder's square input (pixels)
SAM2_LOW_RES = 256  # the decoder's mask logits: SAM2_SIZE / 4
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SAM2_ENCODER_OUTPUTS = [TensorSpec("high_res_feats_0", (1, 32, 256, 256)),
                        TensorSpec("high_res_feats_1", (1, 64, 128, 128)),
                        TensorSpec("image_embed", (1, 256, 64, 64))]
SAM2_ENCODER_INPUTS = [TensorSpec("image", (1, 3, SAM2_SIZE, SAM2_SIZE))]
SAM2_DECODER_INPUTS = SAM2_ENCODER_OUTPUTS[::-1] + [
    TensorSpec("point_coords", (1, "num_points", 2)), TensorSpec("point_labels", (1, "num_points")),
    TensorSpec("mask_input", (1, 1, SAM2_LOW_RES, SAM2_LOW_RES)), TensorSpec("has_mask_input", (1,))]
SAM2_DECODER_OUTPUTS = [TensorSpec("masks", (1, "num_masks", SAM2_LOW_RES, SAM2_LOW_RES)),
                        TensorSpec("iou_predictions", (1, "num_masks"))]


class Sam2ArmMasker:
    """SAM2 prompted with the landmarks, as exported by the common two-file ONNX export.

    The export is samexporter's (github.com/vietanhdev/samexporter, ``samexporter/export_sam2.py``, used the
    same way by its ``sam2_onnx.py``): the image encoder takes ``image`` [1, 3, 1024, 1024] float32, RGB
    resized to 1024x1024 (no padding), /255, ImageNet mean/std normalised, and returns ``high_res_feats_0``
    [1, 32, 256, 256], ``high_res_feats_1`` [1, 64, 128, 128], ``image_embed`` [1, 256, 64, 64]; the decoder
    takes those plus ``point_coords`` [1, N, 2] (pixels of the 1024x1024 input), ``point_labels`` [1, N]
    (1 positive, 0 negative), ``mask_input`` [1, 1, 256, 256] and ``has_mask_input`` [1] (0: no mask prompt),
    and returns ``masks`` [1, K, 256, 256] (low-resolution logits over the whole 1024x1024 input, K = 3 with
    multimask output) and ``iou_predictions`` [1, K].

    Prompts: the landmarks in the image (positive) and ``sam2_negative_points`` points on a ring around the
    landmark prior (negative). The mask with the best predicted IoU is upsampled to the image and
    thresholded at 0.
    """

    def __init__(self, config: ArmMaskConfig, providers: list[str] | None = None):
        _raise_problems(config)
        for key in ("sam2_encoder", "sam2_decoder"):
            if getattr(config, key) is None:
                raise ValueError(f"arm_mask.{key} is not set: the sam2 backend needs the SAM2 encoder and decoder "
                                 f"ONNX files (see config/views.yaml)")
        self.config = config
        self.fitter = ArmFitter(config)
        self.encoder = OnnxModel(Path(config.sam2_encoder).expanduser(), SAM2_ENCODER_INPUTS, SAM2_ENCODER_OUTPUTS,
                                 "SAM2 image encoder (config key arm_mask.sam2_encoder)", providers)
        self.decoder = OnnxModel(Path(config.sam2_decoder).expanduser(), SAM2_DECODER_INPUTS, SAM2_DECODER_OUTPUTS,
                                 "SAM2 prompt encoder and mask decoder (config key arm_mask.sam2_decoder)", providers)

    def prompts(self, image_rgb: np.ndarray, camera: CameraModel, hands: list[HandInCamera]
                ) -> tuple[np.ndarray, np.ndarray]:
        """Prompt pixels (N, 2) of the image and their labels (N,): 1 on the landmarks, 0 around the arm."""
        cfg = self.config
        positives = [_project_in_front(camera, h.landmarks, cfg.near_m) for h in hands]
        positive = np.concatenate([uv[ok & camera.is_visible(np.where(ok[:, None], uv, -1e9))]
                                   for uv, ok in positives]) if positives else np.zeros((0, 2))
        chroma = ChromaImage(image_rgb, cfg.chroma_bins, cfg.min_value)
        geometry = self.fitter.fit(hands, camera, chroma)
        ring = ((geometry.draw(camera, cfg.near_m, cfg.ring_outer_scale) > 0)
                & (geometry.draw(camera, cfg.near_m, cfg.ring_inner_scale) == 0))
        negative = _spread_points(ring, cfg.sam2_negative_points)
        coords = np.concatenate([positive, negative]).astype(np.float32)
        labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))]).astype(np.float32)
        return coords, labels

    @staticmethod
    def encoder_input(image_rgb: np.ndarray) -> np.ndarray:
        """[1, 3, 1024, 1024] float32: the image resized to the encoder's square, ImageNet-normalised."""
        resized = cv2.resize(image_rgb, (SAM2_SIZE, SAM2_SIZE), interpolation=cv2.INTER_LINEAR)
        normalised = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])

    def mask(self, image_rgb: np.ndarray, camera: CameraModel, hands: list[HandInCamera]) -> np.ndarray:
        _check_inputs(image_rgb, camera)
        hands = [h for h in hands if h.confidence >= self.config.min_confidence]
        coords, labels = self.prompts(image_rgb, camera, hands)
        if not (labels == 1).any():
            return np.zeros(image_rgb.shape[:2], bool)
        height, width = image_rgb.shape[:2]
        features = self.encoder.run({"image": self.encoder_input(image_rgb)})
        scale = np.array([SAM2_SIZE / width, SAM2_SIZE / height], np.float32)
        out = self.decoder.run({**features, "point_coords": (coords * scale)[None], "point_labels": labels[None],
                                "mask_input": np.zeros((1, 1, SAM2_LOW_RES, SAM2_LOW_RES), np.float32),
                                "has_mask_input": np.zeros(1, np.float32)})
        best = int(np.argmax(out["iou_predictions"][0]))
        logits = cv2.resize(out["masks"][0, best], (width, height), interpolation=cv2.INTER_LINEAR)
        return dilate_mask(logits > 0.0, self.config.dilate_px)


def _spread_points(region: np.ndarray, count: int) -> np.ndarray:
    """``count`` pixels (x, y) of ``region`` spread around its centroid (evenly in angle); fewer if it is small."""
    ys, xs = np.nonzero(region)
    if count == 0 or len(xs) == 0:
        return np.zeros((0, 2))
    angle = np.arctan2(ys - ys.mean(), xs - xs.mean())
    order = np.argsort(angle)
    picks = order[(np.arange(count) * len(order)) // count]
    return np.unique(np.stack([xs[picks], ys[picks]], axis=-1), axis=0).astype(np.float64)
