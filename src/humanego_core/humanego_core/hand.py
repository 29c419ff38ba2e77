"""The hand pose frame of HumanEgo, computed from the 21 MPS hand-tracking landmarks.

DESIGN.md section 5: origin = midpoint of THUMB_FINGERTIP and INDEX_FINGERTIP; x = normalize(
INDEX_PROXIMAL - THUMB_INTERMEDIATE); y = (midpoint of THUMB_INTERMEDIATE and INDEX_PROXIMAL) - WRIST,
Gram-Schmidt against x; z = x cross y. Landmark indices follow projectaria_tools' HandLandmark enum.

The hand frame is built on the knuckles, which tracking sees more steadily than the tips; the **pinch frame**
(:func:`pinch_frame`: the same origin, x from the thumb tip to the index tip, the axis a pinch squeezes along,
y from the wrist to the tips) is where a gripper's fingers belong. While a hand holds a pinch grasp the one
sits still in the other (:func:`pinch_in_hand`), and that rotation is part of the hand-to-gripper alignment
(``config/views.yaml`` ``gripper.ee_to_gripper``, HumanEgo's T_align): ``humanego run humanego_training
hand_alignment`` measures it on recordings.
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


def _checked(landmarks) -> np.ndarray:
    L = np.asarray(landmarks, dtype=np.float64)
    if L.shape[-2:] != (NUM_LANDMARKS, 3):
        raise GeometryError(f"landmarks must have shape (..., 21, 3), got {L.shape}")
    if not np.all(np.isfinite(L)):
        raise GeometryError("landmarks contain NaN or inf")
    return L


def hand_frame(landmarks: np.ndarray) -> np.ndarray:
    """4x4 (or ...x4x4) pose of the hand frame in the landmarks' frame, from (..., 21, 3) landmarks."""
    L = _checked(landmarks)
    origin = 0.5 * (L[..., THUMB_FINGERTIP, :] + L[..., INDEX_FINGERTIP, :])
    x = L[..., INDEX_PROXIMAL, :] - L[..., THUMB_INTERMEDIATE, :]
    y = 0.5 * (L[..., THUMB_INTERMEDIATE, :] + L[..., INDEX_PROXIMAL, :]) - L[..., WRIST, :]
    return _frame(origin, x, y, "INDEX_PROXIMAL and THUMB_INTERMEDIATE coincide")


def pinch_frame(landmarks: np.ndarray) -> np.ndarray:
    """4x4 (or ...x4x4) pinch frame: origin between the thumb and index tips, x from the thumb tip to the index
    tip (the squeeze axis), y from the wrist towards the tips, Gram-Schmidt against x."""
    L = _checked(landmarks)
    thumb, index = L[..., THUMB_FINGERTIP, :], L[..., INDEX_FINGERTIP, :]
    origin = 0.5 * (thumb + index)
    return _frame(origin, index - thumb, origin - L[..., WRIST, :], "the thumb and index tips coincide")


def pinch_in_hand(landmarks: np.ndarray) -> np.ndarray:
    """T_hand_pinch (..., 4, 4): the pinch frame in the hand frame (same origin, so a rotation)."""
    T_hand = hand_frame(landmarks)
    T = np.zeros_like(T_hand)
    T[..., :3, :3] = np.swapaxes(T_hand[..., :3, :3], -1, -2) @ pinch_frame(landmarks)[..., :3, :3]
    T[..., 3, 3] = 1.0
    return T


def _frame(origin, x, y, x_degenerate: str) -> np.ndarray:
    x_norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(x_norm < 1e-9):
        raise GeometryError(f"degenerate hand: {x_degenerate}")
    x = x / x_norm
    y = y - np.sum(y * x, axis=-1, keepdims=True) * x
    y_norm = np.linalg.norm(y, axis=-1, keepdims=True)
    if np.any(y_norm < 1e-9):
        raise GeometryError("degenerate hand: the wrist lies on the frame's x axis")
    y = y / y_norm
    z = np.cross(x, y)
    T = np.zeros(origin.shape[:-1] + (4, 4))
    T[..., :3, 0], T[..., :3, 1], T[..., :3, 2], T[..., :3, 3] = x, y, z, origin
    T[..., 3, 3] = 1.0
    return T


def pinch_distance(landmarks: np.ndarray) -> np.ndarray:
    """Thumb-index fingertip distance (m) of (..., 21, 3) landmarks."""
    L = np.asarray(landmarks, dtype=np.float64)
    return np.linalg.norm(L[..., THUMB_FINGERTIP, :] - L[..., INDEX_FINGERTIP, :], axis=-1)
