"""humanego_perception.triangulation against synthetic pinhole cameras with known points, and scipy."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import geometry
from humanego_perception.triangulation import (
    TriangulationConfig,
    TriangulationError,
    project,
    projection_matrices,
    refine_point,
    rigid_fit,
    triangulate_dlt,
    triangulate_tracks,
)

FOCAL = 300.0
K = np.array([[FOCAL, 0.0, 160.0], [0.0, FOCAL, 120.0], [0.0, 0.0, 1.0]])


def look_at(centre, target):
    """T_world_camera of an optical frame (z forward, y down) at ``centre`` looking at ``target`` (world z up)."""
    z = np.asarray(target, float) - centre
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return geometry.make_transform(np.stack([x, y, z], axis=1), centre)


def egocentric_cameras(frames, baseline, seed=0):
    """A head at ~0.7 m from the points drifting over ``baseline`` metres along a wobbly path, looking at them."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0.0, 1.0, frames)
    path = np.stack([baseline * s, 0.02 * np.sin(6 * s), 0.01 * np.cos(4 * s)], axis=1)
    target = np.array([0.7, 0.0, -0.4])
    return np.stack([look_at(p, target + rng.normal(scale=0.01, size=3)) for p in path])


def scene_points(n, seed=1):
    rng = np.random.default_rng(seed)
    return np.array([0.7, 0.0, -0.4]) + rng.uniform(-0.06, 0.06, size=(n, 3))


def test_dlt_is_exact_without_noise():
    T = egocentric_cameras(5, 0.1)
    P = projection_matrices(K, T)
    for X in scene_points(10):
        uv, depth = project(P, X)
        assert np.all(depth > 0)
        np.testing.assert_allclose(triangulate_dlt(P, uv), X, atol=1e-9)


def test_noisy_triangulation_within_the_geometric_bound():
    # Depth error of a ray pair: sigma_z ~ z^2 sigma / (f b); with V views spread over b it shrinks by
    # ~sqrt(V / 2) at best. Allow 3 such sigmas on the 90th percentile (the bound is not reached by chance).
    frames, baseline, sigma = 20, 0.08, 0.3
    T = egocentric_cameras(frames, baseline)
    P = projection_matrices(K, T)
    X = scene_points(200)
    rng = np.random.default_rng(2)
    errors = []
    for x in X:
        uv = project(P, x)[0] + rng.normal(scale=sigma, size=(frames, 2))
        X_hat, residual = refine_point(triangulate_dlt(P, uv), P, uv, loss="linear")
        errors.append(np.linalg.norm(X_hat - x))
        assert residual.shape == (frames,) and np.sqrt(np.mean(residual ** 2)) < 3 * sigma
    z = np.linalg.norm(X - T[0, :3, 3], axis=1).mean()
    sigma_depth = z ** 2 * sigma / (FOCAL * baseline)
    assert np.percentile(errors, 90) < 3 * sigma_depth
    assert np.median(errors) > 0.05 * sigma_depth  # the noise is really there: the bound is not vacuous


def test_huber_refinement_resists_an_outlier_view():
    T = egocentric_cameras(12, 0.1)
    P = projection_matrices(K, T)
    X = scene_points(1)[0]
    uv = project(P, X)[0] + np.random.default_rng(3).normal(scale=0.2, size=(12, 2))
    uv[4] += [25.0, -18.0]
    X_lin, _ = refine_point(triangulate_dlt(P, uv), P, uv, loss="linear")
    X_hub, residual = refine_point(X_lin, P, uv, loss="huber", f_scale_px=1.0)
    assert np.linalg.norm(X_hub - X) < 0.5 * np.linalg.norm(X_lin - X)
    assert np.argmax(residual) == 4 and residual[4] > 20


def test_triangulate_tracks_rejects_outlier_views_and_recovers_points():
    frames, n, sigma = 40, 30, 0.3
    T = egocentric_cameras(frames, 0.1, seed=4)
    P = projection_matrices(K, T)
    X = scene_points(n, seed=5)
    rng = np.random.default_rng(6)
    tracks = project(P[:, None], X[None])[0] + rng.normal(scale=sigma, size=(frames, n, 2))
    visible = rng.random((frames, n)) > 0.1
    outlier = visible & (rng.random((frames, n)) < 0.2)
    tracks[outlier] += rng.uniform(8.0, 30.0, size=(outlier.sum(), 2)) * rng.choice([-1, 1], size=(outlier.sum(), 2))
    tracks[~visible] = np.nan  # never looked at
    points, inlier, ok, error_px = triangulate_tracks(K, T, tracks, visible, TriangulationConfig())
    assert ok.all()
    assert not np.any(inlier & outlier), "an outlier view was kept"
    assert np.mean(inlier[visible & ~outlier]) > 0.95
    assert np.all(error_px < 2 * sigma)
    z = np.linalg.norm(X - T[0, :3, 3], axis=1).mean()
    sigma_depth = z ** 2 * sigma / (FOCAL * 0.1)
    assert np.percentile(np.linalg.norm(points - X, axis=1), 90) < 3 * sigma_depth


def test_too_little_parallax_is_not_triangulated():
    # A camera that only rotates (or moves a millimetre) sees every point along (almost) one ray.
    frames, n = 30, 5
    T = egocentric_cameras(frames, 0.001)
    T[:, :3, 3] = T[0, :3, 3] + np.linspace(0, 0.001, frames)[:, None]
    P = projection_matrices(K, T)
    X = scene_points(n)
    tracks = project(P[:, None], X[None])[0]
    config = TriangulationConfig(min_parallax_deg=1.0)
    points, inlier, ok, error_px = triangulate_tracks(K, T, tracks, np.ones((frames, n), bool), config)
    assert not ok.any() and not inlier.any() and np.all(np.isinf(error_px)) and np.all(points == 0)


def test_points_with_too_few_views_are_not_ok():
    T = egocentric_cameras(10, 0.1)
    P = projection_matrices(K, T)
    X = scene_points(2)
    tracks = project(P[:, None], X[None])[0]
    visible = np.zeros((10, 2), bool)
    visible[[0, 9], 0] = True  # two views only, min_views 3
    visible[:, 1] = True
    points, inlier, ok, _ = triangulate_tracks(K, T, tracks, visible, TriangulationConfig(min_views=3))
    assert ok.tolist() == [False, True]
    np.testing.assert_allclose(points[1], X[1], atol=1e-6)


def test_rigid_fit_matches_scipy():
    rng = np.random.default_rng(7)
    R = Rotation.random(random_state=8)
    t = rng.normal(size=3)
    A = rng.normal(size=(20, 3))
    B = R.apply(A) + t
    T = rigid_fit(A, B)
    np.testing.assert_allclose(T[:3, :3], R.as_matrix(), atol=1e-9)
    np.testing.assert_allclose(T[:3, 3], t, atol=1e-9)
    # Noisy, weighted: the rotation equals scipy's weighted align_vectors of the centred sets.
    B_noisy = B + rng.normal(scale=0.05, size=B.shape)
    w = rng.uniform(0.1, 2.0, size=20)
    T = rigid_fit(A, B_noisy, w)
    ca, cb = (w @ A) / w.sum(), (w @ B_noisy) / w.sum()
    R_scipy, _ = Rotation.align_vectors(B_noisy - cb, A - ca, weights=w)
    np.testing.assert_allclose(T[:3, :3], R_scipy.as_matrix(), atol=1e-9)
    np.testing.assert_allclose(T[:3, 3], cb - R_scipy.apply(ca), atol=1e-8)


def test_rigid_fit_never_returns_a_reflection():
    A = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    B = A * [1, 1, -1]  # mirror image: the best rotation, not the reflection
    T = rigid_fit(A, B)
    assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)


@pytest.mark.parametrize("call", [
    lambda: triangulate_dlt(np.zeros((1, 3, 4)), np.zeros((1, 2))),
    lambda: triangulate_dlt(np.full((2, 3, 4), np.nan), np.zeros((2, 2))),
    lambda: refine_point([0, 0, math.inf], np.zeros((2, 3, 4)), np.zeros((2, 2))),
    lambda: rigid_fit(np.zeros((3, 3)), np.zeros((4, 3))),
    lambda: rigid_fit([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 0, 0], [1, 0, 0], [2, 0, 0]]),
    lambda: triangulate_tracks(K, np.tile(np.eye(4), (3, 1, 1)), np.zeros((2, 1, 2)), np.ones((2, 1), bool)),
])
def test_bad_input_raises(call):
    with pytest.raises(TriangulationError):
        call()


def test_parallel_rays_are_a_point_at_infinity():
    T = np.tile(np.eye(4), (2, 1, 1))
    T[1, 0, 3] = 0.1
    P = projection_matrices(K, T)
    with pytest.raises(TriangulationError, match="infinity"):
        triangulate_dlt(P, np.array([[160.0, 120.0], [160.0, 120.0]]))
