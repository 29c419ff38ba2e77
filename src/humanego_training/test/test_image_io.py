"""humanego_training.image_io: RGB round trips (PNG exact, JPEG close), grey masks, and errors naming the file."""

import cv2
import numpy as np
import pytest

from humanego_training.image_io import read_rgb, write_image


def rgb_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 255, (48, 64, 3)).astype(np.uint8), (0, 0), 2)


def test_png_round_trip_is_exact_and_keeps_the_channel_order(tmp_path):
    image = rgb_image()
    image[0, 0] = (255, 0, 0)  # red stays red (OpenCV stores BGR)
    write_image(tmp_path / "a.png", image)
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), image)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "a.png"))[0, 0], (0, 0, 255))


def test_jpeg_is_close_and_quality_matters(tmp_path):
    image = rgb_image()
    write_image(tmp_path / "high.jpg", image, jpeg_quality=95)
    write_image(tmp_path / "low.jpeg", image, jpeg_quality=10)
    high, low = (np.abs(read_rgb(tmp_path / f).astype(int) - image).mean() for f in ("high.jpg", "low.jpeg"))
    assert high < 3.0 and low > high
    assert (tmp_path / "low.jpeg").stat().st_size < (tmp_path / "high.jpg").stat().st_size


def test_a_grey_mask_is_written_as_one_channel_and_read_as_rgb(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:20] = 255
    write_image(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED), mask)
    rgb = read_rgb(tmp_path / "m.png")
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 1], mask)


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'absent.png'}: image file not found"):
        read_rgb(tmp_path / "absent.png")
    truncated = tmp_path / "truncated.png"
    write_image(truncated, rgb_image())
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"{truncated}: not a readable image"):
        read_rgb(truncated)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="text.png: not a readable image"):
        read_rgb(tmp_path / "text.png")


def test_bad_writes_are_refused_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"f.png: can only write uint8 .* got float64"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match=r"unsupported image suffix '\.bmp'"):
        write_image(tmp_path / "a.bmp", rgb_image())
    with pytest.raises(OSError, match="no_folder/a.png: could not be written"):
        write_image(tmp_path / "no_folder" / "a.png", rgb_image())
