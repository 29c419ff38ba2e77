"""Rectifier and ImageWarp against projectaria-tools' own calibration and undistortion, on a real Aria frame."""

from pathlib import Path

import numpy as np
import pytest

from humanego_core.camera_models import FISHEYE624, LINEAR, CameraModel, linear_params
from humanego_core.image_warp import ImageWarp, Rectifier, linear_camera

VRS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "aria" / "recording.vrs"
calibration = pytest.importorskip("projectaria_tools.core.calibration")
data_provider = pytest.importorskip("projectaria_tools.core.data_provider")


@pytest.fixture(scope="module")
def aria():
    """(projectaria calibration of camera-rgb, a real 1408x1408 RGB frame)."""
    if not VRS.is_file():
        pytest.skip(f"real Aria sample data not found at {VRS.resolve()}")
    provider = data_provider.create_vrs_data_provider(str(VRS))
    stream = provider.get_stream_id_from_label("camera-rgb")
    return (provider.get_device_calibration().get_camera_calib("camera-rgb"),
            provider.get_image_data_by_index(stream, 3)[0].to_numpy_array())


def projectaria_linear(calib, width, height, focal, rotate):
    """projectaria's pinhole for the published size (before the rotation it is height x width)."""
    size = (height, width) if rotate else (width, height)
    linear = calibration.get_linear_camera_calibration(*size, focal, "camera-rgb", calib.get_transform_device_camera())
    return calibration.rotate_camera_calib_cw90deg(linear) if rotate else linear


@pytest.mark.parametrize("width, height, rotate", [(480, 480, False), (320, 240, False), (240, 320, True)])
def test_rectified_camera_is_projectarias_linear_calibration(aria, width, height, rotate):
    calib, _ = aria
    target = linear_camera(CameraModel.from_projectaria(calib), width, height, rotate_cw90=rotate)
    reference = projectaria_linear(calib, width, height, target.params[0], rotate)
    np.testing.assert_allclose(target.params, reference.get_projection_params(), atol=1e-9)
    assert [target.width, target.height] == list(reference.get_image_size())
    np.testing.assert_allclose(target.T_device_camera, reference.get_transform_device_camera().to_matrix(), atol=1e-12)
    # The same 3D points (device frame) land on the same pixels.
    rng = np.random.default_rng(0)
    points_camera = np.column_stack([rng.uniform(-0.5, 0.5, (20, 2)), rng.uniform(0.8, 2.0, 20)])
    points_device = points_camera @ target.T_device_camera[:3, :3].T + target.T_device_camera[:3, 3]
    T_camera_device = np.linalg.inv(target.T_device_camera)
    ours = target.project_no_checks(points_device @ T_camera_device[:3, :3].T + T_camera_device[:3, 3])
    T_ref = np.linalg.inv(reference.get_transform_device_camera().to_matrix())
    theirs = np.array([reference.project_no_checks(T_ref[:3, :3] @ p + T_ref[:3, 3]) for p in points_device])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # The default focal keeps the recorded angular resolution, scaled like the image.
    assert target.params[0] == pytest.approx(calib.get_projection_params()[0] * width / 1408)


def test_rectified_image_is_projectarias_undistortion(aria):
    calib, image = aria
    rectifier = Rectifier(CameraModel.from_projectaria(calib), 480, 480, antialias=False)
    ours = rectifier(image).astype(int)
    theirs = calibration.distort_by_calibration(image, projectaria_linear(calib, 480, 480, rectifier.target.params[0],
                                                                          False), calib).astype(int)
    assert ours.shape == theirs.shape == (480, 480, 3)
    diff = np.abs(ours - theirs)
    assert diff.mean() < 1.0 and np.percentile(diff, 99.9) <= 2, (diff.mean(), diff.max())


def test_rotated_image_is_the_upright_rectified_image(aria):
    calib, image = aria
    model = CameraModel.from_projectaria(calib)
    upright = Rectifier(model, 240, 320, rotate_cw90=True, antialias=False)(image).astype(int)
    sideways = Rectifier(model, 320, 240, focal=Rectifier(model, 240, 320).target.params[0], antialias=False)(image)
    diff = np.abs(upright - np.rot90(sideways, k=-1).astype(int))
    assert upright.shape == (320, 240, 3) and diff.mean() < 0.5


def test_antialiasing_shrinks_the_source_only_when_it_is_oversampled(aria):
    calib, image = aria
    model = CameraModel.from_projectaria(calib)
    small = Rectifier(model, 240, 240)
    assert small.shrink == 4 and Rectifier(model, 480, 480).shrink == 2 and Rectifier(model, 1408, 1408).shrink == 1
    # Averaging first keeps the image close to the unfiltered one on average but removes sampling noise.
    plain = Rectifier(model, 240, 240, antialias=False)(image).astype(float)
    smooth = small(image).astype(float)
    assert np.abs(smooth - plain).mean() < 6.0
    laplacian = np.abs(np.diff(smooth, 2, axis=0)).mean(), np.abs(np.diff(plain, 2, axis=0)).mean()
    assert laplacian[0] < laplacian[1]


def test_grey_images_and_nearest_interpolation(aria):
    calib, image = aria
    rectifier = Rectifier(CameraModel.from_projectaria(calib), 64, 48)
    grey = image[..., 1].copy()
    assert rectifier(grey).shape == (48, 64)
    labels = (np.arange(1408 * 1408) % 7).reshape(1408, 1408).astype(np.uint8)
    assert set(np.unique(rectifier(labels, "nearest"))) <= set(range(7))


def test_pixels_outside_the_source_are_black_and_errors_name_the_problem():
    source = CameraModel(LINEAR, linear_params(50.0, 100, 100), 100, 100)
    wider = CameraModel(LINEAR, linear_params(20.0, 100, 100), 100, 100)
    warp = ImageWarp(wider, source)
    out = warp(np.full((100, 100), 255, np.uint8))
    assert out[0, 0] == 0 and out[50, 50] == 255 and not warp.valid[0, 0]
    with pytest.raises(ValueError, match="image is 10x10, the source camera is 100x100"):
        warp(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="interpolation must be one of"):
        warp(np.zeros((100, 100), np.uint8), "cubic")
    fisheye = CameraModel(FISHEYE624, np.r_[300.0, 49.5, 49.5, np.zeros(12)], 100, 100)
    with pytest.raises(ValueError, match="output size must be positive"):
        Rectifier(fisheye, 0, 10)
    with pytest.raises(ValueError, match="focal length must be positive"):
        Rectifier(fisheye, 10, 10, focal=-1.0)
