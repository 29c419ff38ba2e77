"""humanego_perception.inpaint: pixels outside the (grown) hole untouched, smooth gradients filled close to the
gradient, the crop identical to OpenCV on the whole image, and LaMa on a small ONNX model with Carve's
LaMa-ONNX signature."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from humanego_perception.arm_mask import dilate_mask
from humanego_perception.inpaint import LamaInpainter, OpenCVInpainter
from humanego_perception.onnx_model import OnnxModelError

from .conftest import LAMA_TEST_FILL, make_lama_model


def gradient_image() -> np.ndarray:
    y, x = np.mgrid[0:240, 0:320]
    return np.stack([40 + 0.5 * x, 60 + 0.6 * y, 100 + 0.25 * x + 0.2 * y], axis=-1).round().astype(np.uint8)


def disc(centre=(160, 120), radius=30, shape=(240, 320)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, centre, radius, 1, -1)
    return mask > 0


def textured_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3)).astype(np.uint8), (0, 0), 3)


@pytest.mark.parametrize("method", ["telea", "ns"])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_outside_the_grown_mask_nothing_changes(method, scale):
    image, mask = textured_image(), disc((60, 200), 25)
    out = OpenCVInpainter(method, 5, 3, scale).inpaint(image, mask)
    hole = dilate_mask(mask, 3)
    np.testing.assert_array_equal(out[~hole], image[~hole])
    assert (out[mask] != image[mask]).any()
    assert out.dtype == np.uint8 and out.shape == image.shape


@pytest.mark.parametrize("method", ["telea", "ns"])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_a_hole_in_a_smooth_gradient_is_filled_close_to_the_gradient(method, scale):
    image, mask = gradient_image(), disc()
    out = OpenCVInpainter(method, 5, 2, scale).inpaint(image, mask)
    hole = dilate_mask(mask, 2)
    error = np.abs(out.astype(int) - image.astype(int))[hole]
    flat = np.abs(image[hole].astype(int) - image[hole].mean(axis=0).round().astype(int))  # the hole's mean colour
    # measured: mean 2.5-3.6, max 12-17 grey levels; a flat fill with the true mean colour errs 7.5 on average
    assert error.mean() < 5 and error.max() < 30
    assert error.mean() < 0.6 * flat.mean()


@pytest.mark.parametrize("method, flag", [("telea", cv2.INPAINT_TELEA), ("ns", cv2.INPAINT_NS)])
def test_the_crop_gives_what_opencv_gives_on_the_whole_image(method, flag):
    image = textured_image()
    mask = np.zeros((240, 320), np.uint8)
    cv2.ellipse(mask, (200, 100), (40, 20), 30, 0, 360, 1, -1)
    out = OpenCVInpainter(method, 5, 2).inpaint(image, mask > 0)
    np.testing.assert_array_equal(out, cv2.inpaint(image, dilate_mask(mask > 0, 2).astype(np.uint8), 5, flag))


def test_hole_at_the_image_border_and_empty_mask():
    image = textured_image()
    mask = np.zeros((240, 320), bool)
    np.testing.assert_array_equal(OpenCVInpainter().inpaint(image, mask), image)
    mask[200:, 280:] = True  # the corner: the crop is clipped to the image
    out = OpenCVInpainter("ns", 5, 0, 0.5).inpaint(image, mask)
    np.testing.assert_array_equal(out[~mask], image[~mask])


def test_bad_arguments_are_refused():
    image = textured_image()
    with pytest.raises(ValueError, match="method"):
        OpenCVInpainter("lama")
    with pytest.raises(ValueError, match="scale"):
        OpenCVInpainter("telea", 5, 2, 0.0)
    with pytest.raises(ValueError, match="mask is"):
        OpenCVInpainter().inpaint(image, np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="bool"):
        OpenCVInpainter().inpaint(image, np.zeros((240, 320), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        OpenCVInpainter().inpaint(image.astype(np.float32), np.zeros((240, 320), bool))


# ----- LaMa -----
def test_lama_fills_the_hole_with_the_models_answer_and_keeps_the_rest(lama_model):
    image, mask = textured_image(), disc((100, 150), 20)
    out = LamaInpainter(str(lama_model), dilate_px=2).inpaint(image, mask)
    hole = dilate_mask(mask, 2)
    np.testing.assert_array_equal(out[~hole], image[~hole])
    # the test model paints the hole LAMA_TEST_FILL (0..1, answered in 0..255); resizing blurs the hole's edge
    inner = ~dilate_mask(~dilate_mask(mask, 2), 6)
    np.testing.assert_allclose(out[inner], np.broadcast_to(np.array(LAMA_TEST_FILL) * 255, out[inner].shape),
                               atol=1.0)


def test_lama_output_range_mismatch_is_explained(tmp_path):
    model = make_lama_model(tmp_path / "lama01.onnx", output_max=1.0)
    image, mask = textured_image(), disc((100, 150), 20)
    with pytest.raises(ValueError, match="lama_output_max: 1.0"):
        LamaInpainter(str(model)).inpaint(image, mask)
    out = LamaInpainter(str(model), dilate_px=0, output_max=1.0).inpaint(image, mask)
    np.testing.assert_allclose(out[150, 100], np.array(LAMA_TEST_FILL) * 255, atol=1.0)  # the centre (x 100, y 150)


def test_lama_files_are_checked(tmp_path, sam2_models):
    with pytest.raises(OnnxModelError) as info:
        LamaInpainter(str(tmp_path / "absent.onnx"), what="LaMa inpainting model (config key inpaint.lama_model)")
    message = str(info.value)
    assert "absent.onnx: does not exist" in message and "inpaint.lama_model" in message
    assert "expected inputs: image [1, 3, 512, 512] float32; mask [1, 1, 512, 512] float32" in message
    with pytest.raises(OnnxModelError, match="no input named 'mask'"):
        LamaInpainter(str(sam2_models[0]))
