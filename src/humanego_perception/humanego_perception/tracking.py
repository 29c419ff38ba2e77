"""2D point trackers: points chosen in one frame followed through a video.

Both trackers have ``track(frames, query_frame, points, masks=None) -> (tracks (F, N, 2), visible (F, N))``:
pixel positions in every frame and whether the point is seen there. Where ``visible`` is False the
position is the last one known (never NaN), so callers must mask with ``visible``.

- :class:`LucasKanadeTracker`: OpenCV's pyramidal Lucas-Kanade, frame to frame, forward from the query
  frame and backward from it. Each step is checked forward-backward (track t -> t+1, then back; a point
  that does not come back within ``fb_threshold_px`` is lost from there on), and a point is lost when it
  leaves the image or, if masks are given, the (dilated) mask of its frame.
- :class:`CoTrackerOnnx`: a CoTracker ONNX export (Meta's CoTracker3, offline model wrapped for export as
  ``(video, queries) -> (tracks, visibility[, confidence])``, the signature of the public CoTracker ONNX
  export scripts): inputs ``video`` float32 [1, T, 3, H, W] in 0..255 and ``queries`` float32 [1, N, 3]
  as (t, x, y) in the model's pixels; outputs ``tracks`` [1, T, N, 2] and ``visibility`` [1, T, N]
  (probability). Frames are resized to the model's fixed H, W and coordinates scaled back; a model with a
  fixed T is run on windows of T frames, each window's queries being the positions of the previous window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from humanego_core.config import option
from humanego_perception.onnx_model import OnnxModel, OnnxModelError, TensorSpec


class TrackingError(ValueError):
    """Bad input to a tracker (shapes, frame index, points outside the image)."""


@dataclass
class LucasKanadeConfig:
    window_px: int = option(15, help="side of the LK search window (px, odd)", minimum=5, maximum=101)
    pyramid_levels: int = option(3, help="pyramid levels above the full image", minimum=0, maximum=8)
    max_iterations: int = option(30, help="LK iterations per level", minimum=1)
    epsilon: float = option(0.01, help="LK stops when the step is below this (px)", minimum=1e-6)
    min_eigenvalue: float = option(1e-4, help="OpenCV's minEigThreshold: points on flat image areas are lost",
                                   minimum=0.0)
    fb_threshold_px: float = option(1.0, help="forward-backward error (px) above which a point is lost",
                                    minimum=0.01)
    mask_margin_px: int = option(3, help="a point stays visible within this distance of the mask (px)", minimum=0)
    reference: Literal["query", "previous"] = option(
        "previous", help="query: every frame is matched to the query frame (no drift; points lost behind an "
                      "occluder are found again; for a static scene or a short window); previous: frame to frame "
                      "(follows appearance changes; a lost point stays lost)")


def _check_inputs(frames: Sequence[np.ndarray], query_frame: int, points) -> tuple[np.ndarray, int, int]:
    if len(frames) == 0:
        raise TrackingError("no frames to track through")
    if not 0 <= query_frame < len(frames):
        raise TrackingError(f"query_frame {query_frame} is outside the {len(frames)} frames")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.all(np.isfinite(pts)):
        raise TrackingError(f"points must be finite (N, 2) pixels, got shape {pts.shape}")
    h, w = np.asarray(frames[query_frame]).shape[:2]
    return pts, h, w


def _inside(pts: np.ndarray, w: int, h: int) -> np.ndarray:
    return (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)


class LucasKanadeTracker:
    """Pyramidal LK with forward-backward checks (see the module doc)."""

    def __init__(self, config: LucasKanadeConfig | None = None):
        self.config = config or LucasKanadeConfig()
        c = self.config
        size = c.window_px | 1
        self._params = dict(winSize=(size, size), maxLevel=c.pyramid_levels,
                            criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, c.max_iterations, c.epsilon),
                            minEigThreshold=c.min_eigenvalue)
        self._dilate = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * c.mask_margin_px + 1,) * 2)

    def track(self, frames_gray: Sequence[np.ndarray], query_frame: int, points,
              masks: Sequence[np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Track ``points`` (N, 2) given in ``frames_gray[query_frame]`` through all frames (uint8 HxW each).

        ``masks``: optional per-frame bool masks (or None for a frame without one); a point outside its
        frame's mask (dilated by ``mask_margin_px``) is lost from there on.
        """
        pts, h, w = _check_inputs(frames_gray, query_frame, points)
        if masks is not None and len(masks) != len(frames_gray):
            raise TrackingError(f"{len(masks)} masks for {len(frames_gray)} frames")
        F, N = len(frames_gray), len(pts)
        tracks = np.zeros((F, N, 2))
        visible = np.zeros((F, N), dtype=bool)
        tracks[query_frame] = pts
        visible[query_frame] = _inside(pts, w, h) & self._in_mask(masks, query_frame, pts)
        query_image = self._gray(frames_gray, query_frame, h, w)
        for step in (1, -1):
            current = pts.astype(np.float32)
            alive = visible[query_frame].copy()
            shift = np.zeros(2, np.float32)  # median image motion of the points seen last
            previous = query_image
            t = query_frame + step
            while 0 <= t < F:
                image = self._gray(frames_gray, t, h, w)
                if self.config.reference == "query":
                    # Every point from the query frame, lost ones too (re-found after an occlusion); the
                    # guess is the point's last position, or for a lost one the motion of the others.
                    guess = np.where(alive[:, None], current, pts.astype(np.float32) + shift)
                    moved, ok = self._step(query_image, image, pts.astype(np.float32), guess)
                    ok &= _inside(moved.astype(np.float64), w, h) & self._in_mask(masks, t, moved)
                    current = np.where(ok[:, None], moved, guess)
                    alive = ok
                elif alive.any():
                    index = np.flatnonzero(alive)
                    moved, ok = self._step(previous, image, current[alive], current[alive])
                    ok &= _inside(moved.astype(np.float64), w, h) & self._in_mask(masks, t, moved)
                    current[index] = moved
                    alive[index[~ok]] = False
                if alive.any():
                    shift = np.median(current[alive] - pts[alive], axis=0).astype(np.float32)
                tracks[t] = current
                visible[t] = alive
                previous = image
                t += step
        return tracks, visible

    def _step(self, source: np.ndarray, image: np.ndarray, pts: np.ndarray, guess: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """LK of ``pts`` of ``source`` into ``image`` from ``guess``, and back: (positions, passed the checks)."""
        forward, status, _ = cv2.calcOpticalFlowPyrLK(source, image, pts.reshape(-1, 1, 2), guess.reshape(-1, 1, 2),
                                                      flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **self._params)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(image, source, forward, pts.reshape(-1, 1, 2).copy(),
                                                        flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **self._params)
        forward, back = forward.reshape(-1, 2), back.reshape(-1, 2)
        fb = np.linalg.norm(back - pts, axis=1)
        ok = (status.ravel() == 1) & (status_back.ravel() == 1) & (fb < self.config.fb_threshold_px)
        return forward, ok & np.all(np.isfinite(forward), axis=1)

    def _in_mask(self, masks, t: int, pts: np.ndarray) -> np.ndarray:
        if masks is None or masks[t] is None:
            return np.ones(len(pts), dtype=bool)
        mask = np.asarray(masks[t], dtype=bool)
        if self.config.mask_margin_px:
            mask = cv2.dilate(mask.astype(np.uint8), self._dilate) > 0
        h, w = mask.shape
        ij = np.rint(pts).astype(np.int64)
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
        out = np.zeros(len(pts), dtype=bool)
        out[inside] = mask[ij[inside, 1], ij[inside, 0]]
        return out

    @staticmethod
    def _gray(frames, t: int, h: int, w: int) -> np.ndarray:
        image = np.asarray(frames[t])
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if image.shape != (h, w) or image.dtype != np.uint8:
            raise TrackingError(f"frame {t}: expected uint8 {w}x{h} grey (or RGB), got {image.dtype} "
                                f"{image.shape[1]}x{image.shape[0]}")
        return image


@dataclass
class CoTrackerConfig:
    model_path: str = option("", help="CoTracker ONNX export (inputs video [1, T, 3, H, W] 0..255, queries [1, N, 3] "
                                      "(t, x, y); outputs tracks [1, T, N, 2], visibility [1, T, N])")
    visibility_threshold: float = option(0.5, help="visibility probability above which a point counts as seen",
                                         minimum=0.0, maximum=1.0)


class CoTrackerOnnx:
    """CoTracker through onnxruntime (see the module doc for the model's signature and where it comes from)."""

    def __init__(self, config: CoTrackerConfig):
        self.config = config
        what = "CoTracker point tracker (config key objects.keypoints.tracker.cotracker.model_path)"
        self.model = OnnxModel(config.model_path,
                               [TensorSpec("video", (1, None, 3, None, None)), TensorSpec("queries", (1, None, 3))],
                               [TensorSpec("tracks", (1, None, None, 2)), TensorSpec("visibility", (1, None, None))],
                               what)
        shape = next(i.shape for i in self.model.session.get_inputs() if i.name == "video")
        if not all(isinstance(d, int) for d in shape[3:]):
            raise OnnxModelError(f"{config.model_path}: input 'video' must have a fixed H, W (got {shape}); export "
                                 f"the {what} at the model's resolution")
        self.window = shape[1] if isinstance(shape[1], int) else None
        self.height, self.width = int(shape[3]), int(shape[4])

    def track(self, frames_gray: Sequence[np.ndarray], query_frame: int, points,
              masks: Sequence[np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as :meth:`LucasKanadeTracker.track` (grey or RGB frames; masks are not used: CoTracker
        predicts occlusion itself). Frames after the query frame are tracked forward and those before it on
        the time-reversed video, so every window starts at a frame where the points are known."""
        pts, h, w = _check_inputs(frames_gray, query_frame, points)
        F, N = len(frames_gray), len(pts)
        tracks = np.zeros((F, N, 2))
        visible = np.zeros((F, N), dtype=bool)
        tracks[query_frame] = pts
        visible[query_frame] = _inside(pts, w, h)
        scale = np.array([self.width / w, self.height / h])
        for order in (range(query_frame, F), range(query_frame, -1, -1)):
            order = list(order)
            start_pts = pts.copy()
            step = (self.window or len(order)) - 1
            for first in range(0, max(len(order) - 1, 1), max(step, 1)):
                chunk = order[first:first + step + 1]
                if len(chunk) < 2:
                    break
                video = np.stack([self._rgb(frames_gray[t], h, w) for t in chunk])
                if self.window and len(chunk) < self.window:  # pad a fixed-T model with the last frame
                    video = np.concatenate([video, np.repeat(video[-1:], self.window - len(chunk), axis=0)])
                queries = np.c_[np.zeros(N), start_pts * scale][None].astype(np.float32)
                out = self.model.run({"video": video[None].astype(np.float32), "queries": queries})
                chunk_tracks = out["tracks"][0, :len(chunk)] / scale
                chunk_vis = out["visibility"][0, :len(chunk)] >= self.config.visibility_threshold
                tracks[chunk[1:]] = chunk_tracks[1:]
                visible[chunk[1:]] = chunk_vis[1:] & np.stack([_inside(p, w, h) for p in chunk_tracks[1:]])
                start_pts = chunk_tracks[-1]
        return tracks, visible

    def _rgb(self, frame: np.ndarray, h: int, w: int) -> np.ndarray:
        """(3, H, W) float32 0..255 at the model's resolution."""
        image = np.asarray(frame)
        if image.shape[:2] != (h, w) or image.dtype != np.uint8:
            raise TrackingError(f"frames must all be uint8 {w}x{h}, got {image.dtype} {image.shape}")
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return image.transpose(2, 0, 1).astype(np.float32)
