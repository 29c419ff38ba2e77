"""Multi-view geometry for points tracked through a video with known camera poses (MPS SLAM).

- :func:`triangulate_dlt`: the linear (DLT) triangulation of one point from V >= 2 projection matrices,
  with Hartley's normalisation of the pixel coordinates.
- :func:`refine_point`: robust (Huber) least squares on the reprojection error, ``scipy.optimize.least_squares``.
- :func:`triangulate_tracks`: every track of a video: RANSAC over pairs of views with enough parallax (the
  egocentric camera moves only a few centimetres, so most pairs see a point from almost the same place and
  say little about its depth), then DLT on the inlier views and robust refinement. A point whose inlier
  views are too few or span too small a parallax angle is returned with ``ok`` False.
- :func:`rigid_fit`: the rigid transform (no scale) that best maps one point set onto another (Kabsch).

Camera poses are ``T_world_camera`` (camera optical frame: z forward, x right, y down); the projection matrix
of a view is ``K [R | t]`` of ``T_camera_world``. The functions taking K are for pinhole (rectified) images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from humanego_core import geometry
from humanego_core.config import option

# Depth (in the camera frame, same unit as the poses) below which a point counts as behind the camera.
_MIN_DEPTH = 1e-6


class TriangulationError(ValueError):
    """Inputs that cannot be triangulated (shapes, non-finite values, too few views)."""


@dataclass
class TriangulationConfig:
    min_views: int = option(3, help="inlier views a point needs to count as triangulated", minimum=2)
    min_parallax_deg: float = option(
        1.0, help="smallest angle between two rays of a point that RANSAC may pair, and that its inlier views "
                  "must span; below it the depth is unreliable", minimum=0.0, maximum=90.0)
    ransac_threshold_px: float = option(2.0, help="reprojection error (px) within which a view is an inlier",
                                        minimum=0.01)
    ransac_iterations: int = option(64, help="view pairs tried per point", minimum=1)
    huber_f_scale_px: float = option(1.0, help="Huber loss scale (px) of the refinement", minimum=0.01)
    seed: int = option(0, help="seed of the pair sampling (results are deterministic)")


def projection_matrices(K, T_world_camera) -> np.ndarray:
    """(F, 3, 4) ``K [R | t]`` of each camera pose ``T_world_camera`` (F, 4, 4)."""
    K = _finite(K, "K", (3, 3))
    T_camera_world = geometry.invert(_finite(T_world_camera, "T_world_camera", None))
    return K @ T_camera_world[..., :3, :]


def project(P, X) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (..., 2) and depths (...) of points X (..., 3) through projection matrices P (..., 3, 4)."""
    x = P[..., :3] @ X[..., None] + P[..., 3:]
    depth = x[..., 2, 0]
    safe = np.where(np.abs(depth) > _MIN_DEPTH, depth, _MIN_DEPTH)
    return x[..., :2, 0] / safe[..., None], depth


def triangulate_dlt(P, uv) -> np.ndarray:
    """Point (3,) seen at pixels uv (V, 2) by cameras P (V, 3, 4), V >= 2: homogeneous DLT.

    The pixels are normalised (centred, mean distance sqrt 2) before the SVD, which keeps the system
    well conditioned (Hartley & Zisserman, 4.4). A point at infinity (rays parallel) raises.
    """
    P = _finite(P, "P", (3, 4))
    uv = _finite(uv, "uv", (2,))
    if P.ndim != 3 or uv.shape != (P.shape[0], 2) or P.shape[0] < 2:
        raise TriangulationError(f"need P (V, 3, 4) and uv (V, 2) with V >= 2, got {P.shape} and {uv.shape}")
    X = _dlt_batch(P[None], uv[None])[0]
    if not np.all(np.isfinite(X)):
        raise TriangulationError("the rays are parallel: the point is at infinity (no baseline)")
    return X


def refine_point(X0, P, uv, loss: str = "huber", f_scale_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Point minimising the (robust) reprojection error over views P (V, 3, 4), uv (V, 2), from X0 (3,).

    ``loss`` is a ``scipy.optimize.least_squares`` loss ("linear", "huber", "soft_l1", "cauchy", ...),
    ``f_scale_px`` its inlier scale in pixels. Returns the point and the per-view error (V,) in pixels.
    """
    X0 = _finite(X0, "X0", (3,))
    P = _finite(P, "P", (3, 4))
    uv = _finite(uv, "uv", (2,))
    if X0.shape != (3,) or P.ndim != 3 or uv.shape != (P.shape[0], 2):
        raise TriangulationError(f"need X0 (3,), P (V, 3, 4), uv (V, 2); got {X0.shape}, {P.shape}, {uv.shape}")

    def residuals(X):
        return (project(P, X)[0] - uv).ravel()

    result = least_squares(residuals, X0, jac=lambda X: _reprojection_jacobian(X, P), loss=loss, f_scale=f_scale_px,
                           method="trf", x_scale="jac")
    X = result.x
    return X, np.linalg.norm(project(P, X)[0] - uv, axis=-1)


def point_covariance(X, P, uv_sigma_px: float) -> np.ndarray:
    """First-order covariance (3, 3) of a point X (3,) triangulated from views P (V, 3, 4) whose pixels have
    isotropic noise ``uv_sigma_px``: sigma^2 (J^T J)^-1 of the reprojection Jacobian. Nearly parallel rays give
    a covariance long along the rays (the depth is what a short baseline leaves uncertain)."""
    J = _reprojection_jacobian(_finite(X, "X", (3,)), _finite(P, "P", (3, 4)))
    return uv_sigma_px ** 2 * np.linalg.pinv(J.T @ J)


def _reprojection_jacobian(X: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(2V, 3) derivative of the projections of X through P (V, 3, 4) with respect to X."""
    x = P[:, :, :3] @ X + P[:, :, 3]  # (V, 3) homogeneous image points
    z = np.where(np.abs(x[:, 2]) > _MIN_DEPTH, x[:, 2], _MIN_DEPTH)
    J = (P[:, :2, :3] - (x[:, :2] / z[:, None])[:, :, None] * P[:, 2:3, :3]) / z[:, None, None]
    return J.reshape(-1, 3)


def triangulate_tracks(K, T_world_camera, tracks, visible, config: TriangulationConfig | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """3D points of N tracks over F frames of a pinhole camera K with poses T_world_camera (F, 4, 4).

    ``tracks`` (F, N, 2) pixels, ``visible`` (F, N) bool. Per point: RANSAC over pairs of its visible views
    whose rays are at least ``min_parallax_deg`` apart (2-view DLT, in front of both cameras), inliers within
    ``ransac_threshold_px``; the best hypothesis is re-estimated by DLT on its inliers and refined with a
    Huber loss, and the inliers recounted. Returns ``points`` (N, 3) (zeros where not ok), ``inlier`` (F, N),
    ``ok`` (N,): enough inlier views spanning enough parallax, and ``error_px`` (N,): the RMS reprojection
    error over the inliers (inf where not ok).
    """
    config = config or TriangulationConfig()
    P = projection_matrices(K, T_world_camera)
    tracks = np.asarray(tracks, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    F = P.shape[0]
    if tracks.ndim != 3 or tracks.shape[0] != F or tracks.shape[2] != 2 or visible.shape != tracks.shape[:2]:
        raise TriangulationError(f"tracks must be (F, N, 2) and visible (F, N) with F = {F} poses, got "
                                 f"{tracks.shape} and {visible.shape}")
    visible = visible & np.all(np.isfinite(tracks), axis=-1)
    N = tracks.shape[1]
    K_inv = np.linalg.inv(np.asarray(K, dtype=np.float64))
    R_world_camera = np.asarray(T_world_camera, dtype=np.float64)[:, :3, :3]
    rng = np.random.default_rng(config.seed)
    min_cos = math.cos(math.radians(config.min_parallax_deg))

    points = np.zeros((N, 3))
    inlier = np.zeros((F, N), dtype=bool)
    ok = np.zeros(N, dtype=bool)
    error_px = np.full(N, np.inf)
    for n in range(N):
        views = np.flatnonzero(visible[:, n])
        if len(views) < max(config.min_views, 2):
            continue
        uv = tracks[views, n]
        rays = np.einsum("vij,vj->vi", R_world_camera[views],
                         np.c_[uv, np.ones(len(views))] @ K_inv.T)
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        pairs = _parallax_pairs(rays, min_cos, config.ransac_iterations, rng)
        if len(pairs) == 0:
            continue
        hypotheses = _dlt_batch(P[views][pairs], uv[pairs])  # (M, 3)
        pix, depth = project(P[views][None], hypotheses[:, None, :])  # (M, V, 2), (M, V)
        err = np.linalg.norm(pix - uv[None], axis=-1)
        is_in = (err < config.ransac_threshold_px) & (depth > _MIN_DEPTH) & np.all(np.isfinite(hypotheses),
                                                                                 axis=1)[:, None]
        # Most inliers, ties broken by the smaller summed (truncated) error.
        score = is_in.sum(1) - np.where(is_in, err, config.ransac_threshold_px).sum(1) / (
            config.ransac_threshold_px * len(views) + 1.0)
        best = is_in[int(np.argmax(score))]
        if best.sum() < 2:
            continue
        X = _dlt_batch(P[views][best][None], uv[best][None])[0]
        if not np.all(np.isfinite(X)):
            continue
        X, _ = refine_point(X, P[views][best], uv[best], "huber", config.huber_f_scale_px)
        pix, depth = project(P[views], X)
        err = np.linalg.norm(pix - uv, axis=-1)
        final = (err < config.ransac_threshold_px) & (depth > _MIN_DEPTH)
        if final.sum() < config.min_views or _max_parallax_cos(rays[final]) > min_cos:
            continue
        points[n], ok[n] = X, True
        inlier[views[final], n] = True
        error_px[n] = float(np.sqrt(np.mean(err[final] ** 2)))
    return points, inlier, ok, error_px


def rigid_fit(A, B, weights=None) -> np.ndarray:
    """4x4 rigid transform T (rotation + translation, no scale) minimising sum w |T A_i - B_i|^2 (Kabsch).

    A, B: (N, 3) corresponding points, N >= 3 and not collinear for a unique rotation (collinear or fewer
    points raise). ``weights`` (N,) non-negative, default uniform.
    """
    A = _finite(A, "A", (3,))
    B = _finite(B, "B", (3,))
    if A.ndim != 2 or A.shape != B.shape:
        raise TriangulationError(f"A and B must both be (N, 3), got {A.shape} and {B.shape}")
    w = np.ones(len(A)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(A),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise TriangulationError(f"weights must be (N,) = ({len(A)},), finite, >= 0, not all 0")
    w = w / w.sum()
    ca, cb = w @ A, w @ B
    H = (A - ca).T @ (w[:, None] * (B - cb))
    U, S, Vt = np.linalg.svd(H)
    if len(A) < 3 or S[1] <= 1e-12 * max(S[0], 1e-300):
        raise TriangulationError("rigid_fit needs at least 3 points that are not collinear")
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    return geometry.make_transform(R, cb - R @ ca)


def _finite(x, name: str, last_shape: tuple[int, ...] | None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if last_shape is not None and (a.ndim < len(last_shape) or a.shape[a.ndim - len(last_shape):] != last_shape):
        raise TriangulationError(f"{name} must have shape (..., {', '.join(map(str, last_shape))}), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise TriangulationError(f"{name} contains NaN or inf")
    return a


def _dlt_batch(P, uv) -> np.ndarray:
    """DLT of B points at once: P (B, V, 3, 4), uv (B, V, 2) -> (B, 3); NaN rows for points at infinity."""
    centre = uv.mean(axis=1, keepdims=True)
    spread = np.linalg.norm(uv - centre, axis=-1).mean(axis=1)
    scale = math.sqrt(2.0) / np.where(spread > 1e-12, spread, 1.0)
    # Normalised pixels and matching projections: T P with T = [[s, 0, -s cx], [0, s, -s cy], [0, 0, 1]].
    uvn = (uv - centre) * scale[:, None, None]
    Pn = P.copy()
    Pn[..., :2, :] = scale[:, None, None, None] * (P[..., :2, :] - centre[..., None] * P[..., 2:3, :])
    rows = np.concatenate([uvn[..., 0, None] * Pn[..., 2, :] - Pn[..., 0, :],
                           uvn[..., 1, None] * Pn[..., 2, :] - Pn[..., 1, :]], axis=1)  # (B, 2V, 4)
    rows /= np.linalg.norm(rows, axis=-1, keepdims=True) + 1e-300
    Xh = np.linalg.svd(rows)[2][:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        X = Xh[:, :3] / Xh[:, 3:]
    X[np.abs(Xh[:, 3]) < 1e-12 * np.linalg.norm(Xh[:, :3], axis=1)] = np.nan
    return X


def _parallax_pairs(rays: np.ndarray, min_cos: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` distinct view pairs (M, 2) whose unit rays are at least the parallax angle apart."""
    cos = rays @ rays.T
    i, j = np.nonzero(np.triu(cos <= min_cos, k=1))
    if len(i) > count:
        pick = rng.choice(len(i), size=count, replace=False)
        i, j = i[pick], j[pick]
    return np.stack([i, j], axis=1)


def _max_parallax_cos(rays: np.ndarray) -> float:
    """Cosine of the largest angle between any two of the unit rays (1 for fewer than two)."""
    if len(rays) < 2:
        return 1.0
    return float((rays @ rays.T).min())
