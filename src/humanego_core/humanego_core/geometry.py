"""Rigid-body geometry on batches of poses.

Rotations, quaternions and SLERP come from ``scipy.spatial.transform``; this module adds only what
scipy lacks: SE(3) homogeneous transforms on batches (compose, invert, interpolate, apply) and the
6-D rotation representation of HumanEgo (first two columns of R laid out
``[R00, R01, R10, R11, R20, R21]``, decoded by Gram-Schmidt).

Conventions: transforms are ``(..., 4, 4)`` float64 arrays; ``T_a_b`` maps points from frame b to
frame a. Quaternions are ``[x, y, z, w]`` (scalar last), as in ROS messages and scipy.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

# Columns shorter than this (or this close to parallel) cannot define a rotation.
_DEGENERATE_NORM = 1e-8


class GeometryError(ValueError):
    """An input that cannot represent a rotation or rigid transform."""


def _as_array(x, name: str, last_shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < len(last_shape) or arr.shape[-len(last_shape):] != last_shape:
        raise GeometryError(f"{name} must have shape (..., {', '.join(map(str, last_shape))}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} contains NaN or inf")
    return arr


def _rotation(R: np.ndarray) -> Rotation:
    """scipy Rotation of a (..., 3, 3) batch, keeping the batch shape recoverable."""
    return Rotation.from_matrix(R.reshape(-1, 3, 3))


def make_transform(rotation, translation) -> np.ndarray:
    """Build (..., 4, 4) transforms from (..., 3, 3) rotation matrices and (..., 3) translations."""
    R = _as_array(rotation, "rotation", (3, 3))
    t = _as_array(translation, "translation", (3,))
    batch = np.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    T = np.zeros(batch + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def identity(batch_shape: tuple[int, ...] = ()) -> np.ndarray:
    return np.broadcast_to(np.eye(4), tuple(batch_shape) + (4, 4)).copy()


def check_transform(T, name: str = "transform", tol: float = 1e-6) -> np.ndarray:
    """Return T as float64 after checking it is a finite rigid transform; raise naming what is wrong."""
    T = _as_array(T, name, (4, 4))
    if not np.allclose(T[..., 3, :], [0.0, 0.0, 0.0, 1.0], atol=tol):
        raise GeometryError(f"{name}: bottom row must be [0, 0, 0, 1]")
    R = T[..., :3, :3]
    if not np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=tol):
        raise GeometryError(f"{name}: rotation block is not orthonormal (tolerance {tol})")
    if not np.allclose(np.linalg.det(R), 1.0, atol=tol):
        raise GeometryError(f"{name}: rotation block has determinant != 1 (a reflection?)")
    return T


def compose(*transforms) -> np.ndarray:
    """Product T1 @ T2 @ ... with broadcasting over batch dimensions."""
    if not transforms:
        raise GeometryError("compose needs at least one transform")
    out = _as_array(transforms[0], "transform 0", (4, 4))
    for i, T in enumerate(transforms[1:], start=1):
        out = out @ _as_array(T, f"transform {i}", (4, 4))
    return out


def invert(T) -> np.ndarray:
    """Inverse of rigid transforms using R^T (exact for rigid motions, unlike a general inverse)."""
    T = _as_array(T, "transform", (4, 4))
    R_t = np.swapaxes(T[..., :3, :3], -1, -2)
    out = np.zeros_like(T)
    out[..., :3, :3] = R_t
    out[..., :3, 3] = -(R_t @ T[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def relative(T_w_a, T_w_b) -> np.ndarray:
    """T_a_b = inv(T_w_a) @ T_w_b: pose of b expressed in frame a."""
    return compose(invert(T_w_a), T_w_b)


def transform_points(T, points) -> np.ndarray:
    """Apply (..., 4, 4) transforms to (..., N, 3) points."""
    T = _as_array(T, "transform", (4, 4))
    p = _as_array(points, "points", (3,))
    return (p @ np.swapaxes(T[..., :3, :3], -1, -2)) + T[..., None, :3, 3]


def interpolate(T0, T1, alpha) -> np.ndarray:
    """Pose between T0 (alpha=0) and T1 (alpha=1): SLERP on rotation, linear on translation.

    T0 and T1 are single (4, 4) transforms or equal-shape batches; alpha is a scalar or an array
    broadcastable to the batch. Extrapolation (alpha outside [0, 1]) is refused.
    """
    T0 = _as_array(T0, "T0", (4, 4))
    T1 = _as_array(T1, "T1", (4, 4))
    if T0.shape != T1.shape:
        raise GeometryError(f"T0 and T1 must have the same shape, got {T0.shape} and {T1.shape}")
    batch = T0.shape[:-2]
    a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), batch)
    if np.any(a < 0.0) or np.any(a > 1.0) or not np.all(np.isfinite(a)):
        raise GeometryError("alpha must lie in [0, 1]")
    R0 = _rotation(T0[..., :3, :3])
    R1 = _rotation(T1[..., :3, :3])
    # Relative rotation scaled by alpha (geodesic), equivalent to pairwise SLERP on batches.
    delta = (R0.inv() * R1).as_rotvec()
    R = R0 * Rotation.from_rotvec(delta * a.reshape(-1, 1))
    t = (1.0 - a[..., None]) * T0[..., :3, 3] + a[..., None] * T1[..., :3, 3]
    return make_transform(R.as_matrix().reshape(batch + (3, 3)), t)


def interpolate_trajectory(times, transforms, query_times) -> np.ndarray:
    """Sample a timed pose sequence at query_times (SLERP + linear), clamping to the end poses.

    times: (N,) strictly increasing; transforms: (N, 4, 4); query_times: (M,). Returns (M, 4, 4).
    """
    times = np.asarray(times, dtype=np.float64)
    T = _as_array(transforms, "transforms", (4, 4))
    if times.ndim != 1 or T.shape[0] != times.shape[0]:
        raise GeometryError(f"times {times.shape} and transforms {T.shape} must have the same length")
    if times.shape[0] < 2 or np.any(np.diff(times) <= 0):
        raise GeometryError("times must hold at least two strictly increasing values")
    q = np.clip(np.asarray(query_times, dtype=np.float64), times[0], times[-1])
    rot = Slerp(times, Rotation.from_matrix(T[:, :3, :3]))(q)
    t = np.stack([np.interp(q, times, T[:, :3, 3][:, k]) for k in range(3)], axis=-1)
    return make_transform(rot.as_matrix(), t)


def transform_from_pos_quat(position, quat_xyzw) -> np.ndarray:
    """(..., 4, 4) from positions (..., 3) and quaternions (..., 4) [x, y, z, w].

    Non-unit quaternions are normalised; a zero (or non-finite) quaternion is an error.
    """
    q = _as_array(quat_xyzw, "quaternion", (4,))
    norms = np.linalg.norm(q, axis=-1)
    if np.any(norms < _DEGENERATE_NORM):
        raise GeometryError("quaternion has zero norm and cannot represent a rotation")
    R = Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(q.shape[:-1] + (3, 3))
    return make_transform(R, position)


def pos_quat_from_transform(T) -> tuple[np.ndarray, np.ndarray]:
    """Positions (..., 3) and unit quaternions (..., 4) [x, y, z, w] with w >= 0."""
    T = _as_array(T, "transform", (4, 4))
    q = _rotation(T[..., :3, :3]).as_quat(canonical=True).reshape(T.shape[:-2] + (4,))
    return T[..., :3, 3].copy(), q


def rot6d_from_matrix(R) -> np.ndarray:
    """HumanEgo 6-D rotation: first two columns of R as [R00, R01, R10, R11, R20, R21]; (..., 6)."""
    R = _as_array(R, "rotation", (3, 3))
    return R[..., :, :2].reshape(R.shape[:-2] + (6,)).copy()


def matrix_from_rot6d(d6) -> np.ndarray:
    """Decode (..., 6) HumanEgo rot6d to (..., 3, 3) rotations by Gram-Schmidt.

    The two encoded columns need not be unit or orthogonal (network outputs are not); they are
    orthonormalised. Columns that are (near) zero or (near) parallel carry no rotation and raise.
    """
    d6 = _as_array(d6, "rot6d", (6,))
    cols = d6.reshape(d6.shape[:-1] + (3, 2))
    a1, a2 = cols[..., 0], cols[..., 1]
    n1 = np.linalg.norm(a1, axis=-1, keepdims=True)
    if np.any(n1 < _DEGENERATE_NORM):
        raise GeometryError("rot6d first column has (near) zero norm")
    b1 = a1 / n1
    u2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    n2 = np.linalg.norm(u2, axis=-1, keepdims=True)
    scale2 = np.linalg.norm(a2, axis=-1, keepdims=True)
    if np.any(n2 < _DEGENERATE_NORM * np.maximum(scale2, 1.0)):
        raise GeometryError("rot6d columns are (near) parallel or the second is zero: no unique rotation")
    b2 = u2 / n2
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def geodesic_angle(R_a, R_b) -> np.ndarray:
    """Rotation angle (rad) of R_a^T R_b: acos((tr(R_a^T R_b) - 1) / 2), clipped for round-off."""
    R_a = _as_array(R_a, "R_a", (3, 3))
    R_b = _as_array(R_b, "R_b", (3, 3))
    tr = np.einsum("...ji,...ji->...", R_a, R_b)
    return np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0))
