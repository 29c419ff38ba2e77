"""The hand pose frame of HumanEgo, computed from the 21 MPS hand-tracking landmarks.

DESIGN.md section 5: origin = midpoint of THUMB_FINGERTIP and INDEX_FINGERTIP; x = normalize(
INDEX_PROXIMAL - THUMB_INTERMEDIATE); y = (midpoint of THUMB_INTERMEDIATE and INDEX_PROXIMAL) - WRIST,
Gram-Schmidt against x; z = x cross y. Landmark indices follow projectaria_tools' HandLandmark enum.
"""

from __future__ import annotations

import numpy as np

from humanego_core.geometry import GeometryError

THUMB_FINGERTIP = 0
INDEX_FINGERTIP = 1
MIDDLE_FINGERTIP = 2
RING_FINGERTIP = 3
PINKY_FINGERTIP = 4
WRIST = 5
THUMB_INTERMEDIATE = 6
THUMB_DISTAL = 7
INDEX_PROXIMAL = 8
INDEX_INTERMEDIATE = 9
INDEX_DISTAL = 10
MIDDLE_PROXIMAL = 11
MIDDLE_INTERMEDIATE = 12
MIDDLE_DISTAL = 13
RING_PROXIMAL = 14
RING_INTERMEDIATE = 15
RING_DISTAL = 16
PINKY_PROXIMAL = 17
PINKY_INTERMEDIATE = 18
PINKY_DISTAL = 19
PALM_CENTER = 20
NUM_LANDMARKS = 21

# HumanEgo's pinch threshold on the thumb-index tip distance (m).
GRASP_DISTANCE_THRESHOLD = 0.105


def hand_frame(landmarks: np.ndarray) -> np.ndarray:
    """4x4 (or ...x4x4) pose of the hand frame in the landmarks' frame, from (..., 21, 3) landmarks."""
    L = np.asarray(landmarks, dtype=np.float64)
    if L.shape[-2:] != (NUM_LANDMARKS, 3):
        raise GeometryError(f"landmarks must have shape (..., 21, 3), got {L.shape}")
    if not np.all(np.isfinite(L)):
        raise GeometryError("landmarks contain NaN or inf")
    origin = 0.5 * (L[..., THUMB_FINGERTIP, :] + L[..., INDEX_FINGERTIP, :])
    x = L[..., INDEX_PROXIMAL, :] - L[..., THUMB_INTERMEDIATE, :]
    y = 0.5 * (L[..., THUMB_INTERMEDIATE, :] + L[..., INDEX_PROXIMAL, :]) - L[..., WRIST, :]
    x_norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(x_norm < 1e-9):
        raise GeometryError("degenerate hand: INDEX_PROXIMAL and THUMB_INTERMEDIATE coincide")
    x = x / x_norm
    y = y - np.sum(y * x, axis=-1, keepdims=True) * x
    y_norm = np.linalg.norm(y, axis=-1, keepdims=True)
    if np.any(y_norm < 1e-9):
        raise GeometryError("degenerate hand: the wrist lies on the thumb-index line")
    y = y / y_norm
    z = np.cross(x, y)
    T = np.zeros(L.shape[:-2] + (4, 4))
    T[..., :3, 0], T[..., :3, 1], T[..., :3, 2], T[..., :3, 3] = x, y, z, origin
    T[..., 3, 3] = 1.0
    return T


def pinch_distance(landmarks: np.ndarray) -> np.ndarray:
    """Thumb-index fingertip distance (m) of (..., 21, 3) landmarks."""
    L = np.asarray(landmarks, dtype=np.float64)
    return np.linalg.norm(L[..., THUMB_FINGERTIP, :] - L[..., INDEX_FINGERTIP, :], axis=-1)
