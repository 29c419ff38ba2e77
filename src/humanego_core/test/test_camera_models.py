"""humanego_core.camera_models against projectaria_tools' own CameraCalibration on the real VRS calibration."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from humanego_core import camera_models as cm

ARIA_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "aria"
VRS = ARIA_DATA / "recording.vrs"
N = 3000

calibration = pytest.importorskip("projectaria_tools.core.calibration")
data_provider = pytest.importorskip("projectaria_tools.core.data_provider")


@pytest.fixture(scope="module")
def provider():
    if not VRS.is_file():
        pytest.skip(f"real Aria sample data not found at {VRS.resolve()}")
    return data_provider.create_vrs_data_provider(str(VRS))


@pytest.fixture(scope="module")
def device_calib(provider):
    return provider.get_device_calibration()


@pytest.fixture(scope="module")
def rgb(device_calib):
    return device_calib.get_camera_calib("camera-rgb")


def rescaled_variants(rgb):
    """(name, projectaria calibration, our model) for the full image, a binned one, an odd scale and a crop."""
    ours = cm.CameraModel.from_projectaria(rgb)
    out = [("1408", rgb, ours)]
    for w, s, off in [(704, 0.5, 0.0), (512, 512 / 1408, 0.0), (1024, 1.0, 192.0), (480, 0.5, 224.0)]:
        out.append((f"{w}", rgb.rescale(np.array([w, w]), s, np.array([off, off])), ours.rescale(w, w, s, (off, off))))
    return out


def random_points_in_cone(n, max_angle, seed):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, max_angle, n)
    phi = rng.uniform(-math.pi, math.pi, n)
    depth = rng.uniform(0.05, 5.0, n)
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1) * depth[:, None]


def angle_between(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1))


def test_model_read_from_projectaria_is_the_vrs_rgb_camera(rgb):
    ours = cm.CameraModel.from_projectaria(rgb)
    assert ours.model == cm.FISHEYE624 and (ours.width, ours.height) == (1408, 1408)
    np.testing.assert_array_equal(ours.params, rgb.get_projection_params())
    assert ours.valid_radius == rgb.get_valid_radius() == 707.5
    assert ours.max_solid_angle == rgb.get_max_solid_angle()
    np.testing.assert_array_equal(ours.T_device_camera, rgb.get_transform_device_camera().to_matrix())


def test_model_read_from_calibration_json_equals_projectaria(device_calib, rgb):
    text = calibration.device_calibration_to_json_string(device_calib)
    ours = cm.CameraModel.from_calibration_json(text, "camera-rgb")
    np.testing.assert_array_equal(ours.params, rgb.get_projection_params())
    np.testing.assert_allclose(ours.T_device_camera, rgb.get_transform_device_camera().to_matrix(), atol=1e-12)
    assert (ours.width, ours.height, ours.valid_radius, ours.max_solid_angle) == (1408, 1408, 707.5, 1.0)


@pytest.mark.parametrize("variant", range(5))
def test_project_matches_projectaria(rgb, variant):
    name, theirs, ours = rescaled_variants(rgb)[variant]
    # Beyond the 1.0 rad cone too, to exercise the visibility checks.
    points = random_points_in_cone(N, 1.3, seed=variant)
    uv, visible = ours.project(points)
    expected = [theirs.project(p) for p in points]
    assert visible.tolist() == [e is not None for e in expected], name
    assert 0.3 * N < visible.sum() < N, name
    ref = np.array([e for e in expected if e is not None])
    assert np.abs(uv[visible] - ref).max() < 1e-6, name
    no_checks = np.array([theirs.project_no_checks(p) for p in points[:200]])
    np.testing.assert_allclose(ours.project_no_checks(points[:200]), no_checks, atol=1e-6)


@pytest.mark.parametrize("variant", range(5))
def test_unproject_matches_projectaria(rgb, variant):
    name, theirs, ours = rescaled_variants(rgb)[variant]
    rng = np.random.default_rng(100 + variant)
    pixels = rng.uniform(-2.0, ours.width + 1.0, (N, 2))
    rays, visible = ours.unproject(pixels)
    expected = [theirs.unproject(p) for p in pixels]
    assert visible.tolist() == [e is not None for e in expected], name
    assert visible.sum() > 0.5 * N, name
    ref = np.array([e for e in expected if e is not None])
    assert angle_between(rays[visible], ref).max() < 1e-6, name
    np.testing.assert_allclose(rays[..., 2], 1.0)


def test_unproject_then_project_is_identity_up_to_the_image_corners(rgb):
    ours = cm.CameraModel.from_projectaria(rgb)
    grid = ours.pixel_grid()[::7, ::7].reshape(-1, 2)
    rays = ours.unproject_no_checks(grid)
    np.testing.assert_allclose(ours.project_no_checks(rays), grid, atol=1e-8)
    np.testing.assert_allclose(ours.unproject_no_checks(ours.principal_point), [0.0, 0.0, 1.0], atol=1e-15)


def test_rescale_matches_projectaria_parameters(rgb):
    for name, theirs, ours in rescaled_variants(rgb):
        np.testing.assert_allclose(ours.params, theirs.get_projection_params(), rtol=1e-15, atol=1e-12, err_msg=name)
        assert (ours.width, ours.height) == tuple(theirs.get_image_size()), name
        assert ours.valid_radius == pytest.approx(theirs.get_valid_radius(), rel=1e-15), name
    with pytest.raises(ValueError, match="is not"):
        cm.CameraModel.from_projectaria(rgb).rescale(700, 700, 0.5)


def test_linear_model_matches_projectaria():
    theirs = calibration.get_linear_camera_calibration(640, 480, 300.0)
    ours = cm.CameraModel(cm.LINEAR, cm.linear_params(300.0, 640, 480), 640, 480)
    np.testing.assert_array_equal(ours.params, theirs.get_projection_params())
    points = random_points_in_cone(500, 1.2, seed=7)
    uv, visible = ours.project(points)
    expected = [theirs.project(p) for p in points]
    assert visible.tolist() == [e is not None for e in expected]
    np.testing.assert_allclose(uv[visible], [e for e in expected if e is not None], atol=1e-9)
    pixels = np.random.default_rng(8).uniform(0, 479, (500, 2))
    np.testing.assert_allclose(ours.unproject(pixels)[0], [theirs.unproject(p) for p in pixels], atol=1e-12)
    half = ours.rescale(320, 240, 0.5)
    np.testing.assert_allclose(half.params, theirs.rescale(np.array([320, 240]), 0.5).get_projection_params())


def test_undistortion_maps_match_projectaria_distort_by_calibration(provider, rgb):
    """remap_tables + cv2.remap undistorts a real RGB frame like projectaria's own warping."""
    cv2 = pytest.importorskip("cv2")
    stream = provider.get_stream_id_from_label("camera-rgb")
    image = provider.get_image_data_by_index(stream, 0)[0].to_numpy_array()
    fisheye = cm.CameraModel.from_projectaria(rgb)
    size, focal = 512, 250.0
    pinhole = cm.CameraModel(cm.LINEAR, cm.linear_params(focal, size, size), size, size)
    map_x, map_y, valid = cm.remap_tables(pinhole, fisheye)
    ours = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    theirs = calibration.distort_by_calibration(
        image, calibration.get_linear_camera_calibration(size, size, focal), rgb)
    assert valid.mean() > 0.95
    # Same sampling positions: the two bilinear implementations differ only in rounding (a 0.3 px
    # shift of the maps already gives a mean difference above 0.5).
    diff = np.abs(ours.astype(int) - theirs.astype(int))[valid]
    assert diff.max() <= 1 and diff.mean() < 0.5


def test_fisheye_remap_tables_mark_rays_outside_the_source_cone_invalid(rgb):
    fisheye = cm.CameraModel.from_projectaria(rgb).rescale(704, 704, 0.5)
    pinhole = cm.CameraModel(cm.LINEAR, cm.linear_params(300.0, 600, 600), 600, 600, max_solid_angle=math.radians(40))
    map_x, map_y, valid = cm.remap_tables(fisheye, pinhole)
    rays, visible = fisheye.unproject(fisheye.pixel_grid())
    angle = np.arctan(np.hypot(rays[..., 0], rays[..., 1]))
    np.testing.assert_array_equal(valid, visible & (angle <= math.radians(40)))
    assert np.all(map_x[~valid] < -10) and np.all(map_y[~valid] < -10)
    uv = np.stack([map_x[valid], map_y[valid]], -1)
    assert uv.min() >= -0.5 and uv.max() <= 599.5


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="15 parameters"):
        cm.fisheye624_project(np.ones((2, 3)), np.ones(14))
    with pytest.raises(ValueError, match=r"points must have shape \(\.\.\., 3\)"):
        cm.fisheye624_project(np.ones((2, 2)), np.ones(15))
    with pytest.raises(ValueError, match="unknown camera model"):
        cm.CameraModel("kb3", np.ones(8), 10, 10)
    calib = {"CameraCalibrations": [{"Label": "camera-et-left", "Projection": {"Name": "KannalaBrandtK3"}}]}
    with pytest.raises(ValueError, match="no camera 'camera-rgb'.*camera-et-left"):
        cm.CameraModel.from_calibration_json(json.dumps(calib))
    with pytest.raises(ValueError, match="'KannalaBrandtK3' is not supported"):
        cm.CameraModel.from_calibration_json(calib, "camera-et-left")
    broken = {"CameraCalibrations": [{"Label": "camera-rgb", "Projection": {"Name": "Linear", "Params": [1, 1, 0, 0]}}]}
    with pytest.raises(ValueError, match="malformed.*ConfigData"):
        cm.CameraModel.from_calibration_json(broken)


def test_intrinsic_matrix_projects_like_a_pinhole():
    camera = cm.CameraModel(cm.LINEAR, [300.0, 310.0, 159.5, 119.5], 320, 240)
    X = np.array([0.1, -0.05, 0.8])
    uvw = camera.intrinsic_matrix() @ X
    np.testing.assert_allclose(uvw[:2] / uvw[2], camera.project_no_checks(X), atol=1e-12)
