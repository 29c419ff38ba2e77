"""humanego_core.geometry against scipy and hand-computed cases."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import geometry as g


def random_transforms(n, seed=0):
    rng = np.random.default_rng(seed)
    R = Rotation.random(n, random_state=seed).as_matrix()
    return g.make_transform(R, rng.normal(size=(n, 3)))


def test_hand_computed_compose_and_invert():
    # 90 deg about z then a translation: the point (1, 0, 0) lands on (1, 1, 0) + (0, 0, 2).
    Rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    T = g.make_transform(Rz, [1.0, 0.0, 2.0])
    np.testing.assert_allclose(g.transform_points(T, [[1.0, 0.0, 0.0]]), [[1.0, 1.0, 2.0]])
    T_inv = g.invert(T)
    np.testing.assert_allclose(T_inv[:3, 3], [0.0, 1.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(g.compose(T, T_inv), np.eye(4), atol=1e-12)


def test_batched_invert_matches_numpy_inverse():
    T = random_transforms(50)
    np.testing.assert_allclose(g.invert(T), np.linalg.inv(T), atol=1e-10)


def test_compose_broadcasts_single_with_batch():
    T = random_transforms(7)
    A = random_transforms(1, seed=3)[0]
    out = g.compose(A, T)
    assert out.shape == (7, 4, 4)
    np.testing.assert_allclose(out[4], A @ T[4])


def test_relative_is_pose_in_other_frame():
    T_w_a, T_w_b = random_transforms(2, seed=5)
    T_a_b = g.relative(T_w_a, T_w_b)
    np.testing.assert_allclose(g.compose(T_w_a, T_a_b), T_w_b, atol=1e-12)


def test_pos_quat_round_trip_and_scipy_agreement():
    T = random_transforms(20, seed=1)
    p, q = g.pos_quat_from_transform(T)
    assert np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), T[:, :3, :3], atol=1e-12)
    np.testing.assert_allclose(g.transform_from_pos_quat(p, q), T, atol=1e-12)


def test_non_unit_quaternion_is_normalised():
    T = g.transform_from_pos_quat([0, 0, 0], [0.0, 0.0, 2.0, 2.0])  # 90 deg about z, scaled by 2*sqrt(2)
    np.testing.assert_allclose(T[:3, :3], Rotation.from_euler("z", 90, degrees=True).as_matrix(), atol=1e-12)
    g.check_transform(T)


def test_zero_quaternion_is_a_clear_error():
    with pytest.raises(g.GeometryError, match="zero norm"):
        g.transform_from_pos_quat([0, 0, 0], [0, 0, 0, 0])


def test_nan_input_is_refused():
    with pytest.raises(g.GeometryError, match="NaN"):
        g.invert(np.full((4, 4), np.nan))


def test_rot6d_layout_is_humanego():
    R = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    d6 = g.rot6d_from_matrix(R)
    np.testing.assert_allclose(d6, [R[0, 0], R[0, 1], R[1, 0], R[1, 1], R[2, 0], R[2, 1]])


def test_rot6d_round_trip_batch():
    R = Rotation.random(100, random_state=2).as_matrix().reshape(10, 10, 3, 3)
    np.testing.assert_allclose(g.matrix_from_rot6d(g.rot6d_from_matrix(R)), R, atol=1e-12)


def test_rot6d_decode_orthonormalises_noisy_input():
    R = Rotation.random(30, random_state=4).as_matrix()
    noisy = g.rot6d_from_matrix(R) * 3.0 + np.random.default_rng(0).normal(scale=0.05, size=(30, 6))
    out = g.matrix_from_rot6d(noisy)
    np.testing.assert_allclose(out @ np.swapaxes(out, -1, -2), np.broadcast_to(np.eye(3), out.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(out), 1.0, atol=1e-12)
    # Gram-Schmidt keeps the direction of the first column exactly.
    first = noisy.reshape(30, 3, 2)[..., 0]
    np.testing.assert_allclose(out[..., 0], first / np.linalg.norm(first, axis=-1, keepdims=True), atol=1e-12)


@pytest.mark.parametrize("d6", [
    [0, 0, 0, 1, 0, 0],            # zero first column
    [1, 2, 0, 0, 0, 0],            # parallel columns (both along x)
    [1, 1 + 1e-13, 1, 1, 1, 1],    # near-parallel
])
def test_rot6d_degenerate_is_a_clear_error(d6):
    with pytest.raises(g.GeometryError, match="rot6d"):
        g.matrix_from_rot6d(d6)


def test_interpolate_endpoints_and_midpoint():
    T0 = g.make_transform(np.eye(3), [0.0, 0.0, 0.0])
    T1 = g.make_transform(Rotation.from_euler("z", 90, degrees=True).as_matrix(), [2.0, 0.0, 0.0])
    np.testing.assert_allclose(g.interpolate(T0, T1, 0.0), T0, atol=1e-12)
    np.testing.assert_allclose(g.interpolate(T0, T1, 1.0), T1, atol=1e-12)
    mid = g.interpolate(T0, T1, 0.5)
    np.testing.assert_allclose(mid[:3, 3], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(mid[:3, :3], Rotation.from_euler("z", 45, degrees=True).as_matrix(), atol=1e-12)
    with pytest.raises(g.GeometryError, match="alpha"):
        g.interpolate(T0, T1, 1.5)


def test_batched_interpolate_matches_scipy_slerp():
    from scipy.spatial.transform import Slerp
    A, B = random_transforms(8, seed=6), random_transforms(8, seed=7)
    alpha = np.linspace(0.1, 0.9, 8)
    out = g.interpolate(A, B, alpha)
    for k in range(8):
        slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([A[k, :3, :3], B[k, :3, :3]])))
        np.testing.assert_allclose(out[k, :3, :3], slerp(alpha[k]).as_matrix(), atol=1e-10)
        np.testing.assert_allclose(out[k, :3, 3], (1 - alpha[k]) * A[k, :3, 3] + alpha[k] * B[k, :3, 3])


def test_interpolate_trajectory_samples_and_clamps():
    T = random_transforms(5, seed=8)
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    out = g.interpolate_trajectory(times, T, [-1.0, 0.0, 2.5, 9.0])
    np.testing.assert_allclose(out[0], T[0], atol=1e-12)
    np.testing.assert_allclose(out[1], T[0], atol=1e-12)
    np.testing.assert_allclose(out[2], g.interpolate(T[2], T[3], 0.5), atol=1e-10)
    np.testing.assert_allclose(out[3], T[4], atol=1e-12)
    with pytest.raises(g.GeometryError, match="same length"):
        g.interpolate_trajectory([0.0, 1.0], T[:3], [0.0])
    with pytest.raises(g.GeometryError, match="at least two strictly increasing"):
        g.interpolate_trajectory([], np.zeros((0, 4, 4)), [0.0])
    with pytest.raises(g.GeometryError, match="strictly increasing"):
        g.interpolate_trajectory([0.0, 0.0], T[:2], [0.0])


def test_check_transform_names_the_problem():
    T = np.eye(4)
    T[0, 0] = -1.0  # reflection
    with pytest.raises(g.GeometryError, match="determinant"):
        g.check_transform(T, "T_cam_base")
    T = np.eye(4)
    T[3, 0] = 1.0
    with pytest.raises(g.GeometryError, match="T_x: bottom row"):
        g.check_transform(T, "T_x")


def test_geodesic_angle_hand_computed():
    R = Rotation.from_rotvec([0.0, 0.3, 0.0]).as_matrix()
    assert g.geodesic_angle(np.eye(3), R) == pytest.approx(0.3)
    assert g.geodesic_angle(R, R) == pytest.approx(0.0, abs=1e-7)


def test_shape_errors_name_the_argument():
    with pytest.raises(g.GeometryError, match=r"translation must have shape \(\.\.\., 3\)"):
        g.make_transform(np.eye(3), [1.0, 2.0])
