"""ainnoface_d2.data.image_io: which pixel arrays the detector takes, 16-bit files, the size
guard."""

import logging

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
from ainnoface_d2.data import image_io

import cv2
import numpy as np
import pytest
from detectron2.data.detection_utils import read_image as d2_read_image
from PIL import Image


def test_uint8_is_kept_and_greyscale_expanded():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (7, 9, 3)).astype(np.uint8)
    assert image_io.as_uint8_image(image) is image
    grey = rng.randint(0, 256, (7, 9)).astype(np.uint8)
    for g in (grey, grey[:, :, None]):
        out = image_io.as_uint8_image(g)
        assert out.shape == (7, 9, 3) and out.dtype == np.uint8
        for c in range(3):
            np.testing.assert_array_equal(out[:, :, c], grey)


def test_uint16_keeps_its_high_byte():
    values = np.array([[0, 255, 256, 257, 32768, 65280, 65535]], dtype=np.uint16)
    out = image_io.as_uint8_image(values)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 1, 128, 255, 255])
    # Monotone over the whole range, every 8-bit level reached.
    ramp = image_io.as_uint8_image(np.arange(65536, dtype=np.uint16).reshape(256, 256))[..., 0]
    assert (np.diff(ramp.ravel().astype(int)) >= 0).all()
    assert set(np.unique(ramp)) == set(range(256))


@pytest.mark.parametrize(
    "image, message",
    [
        (None, "photo.png is None; expected an HxWx3 uint8 array"),
        (np.zeros((4, 5, 3), np.float32), "float image"),
        (np.full((4, 5, 3), np.nan, np.float64), "float image"),
        (np.zeros((4, 5, 3), bool), "bool"),
        (np.zeros((4, 5, 3), np.int32), "int32"),
        (np.zeros((4, 5, 4), np.uint8), "alpha"),
        (np.zeros((4, 5, 2), np.uint8), r"HxWx3 \(or HxW\)"),
        (np.zeros((2, 4, 5, 3), np.uint8), r"got shape \(2, 4, 5, 3\)"),
        (np.zeros((0, 5, 3), np.uint8), "empty image"),
        (np.uint8(3), r"got shape \(\)"),
    ],
)
def test_refused_images_say_what_was_expected(image, message):
    with pytest.raises(ValueError, match=message):
        image_io.as_uint8_image(image, "photo.png")


def test_refused_image_names_the_caller_s_name():
    with pytest.raises(ValueError, match=r"^images\[3\]: got a float image"):
        image_io.as_uint8_image(np.zeros((4, 5, 3)), "images[3]")
    with pytest.raises(TypeError, match="numpy array, got str"):
        image_io.as_uint8_image("photo.jpg")


def test_pixel_batches():
    batch = np.full((2, 3, 4, 5), 200.0, dtype=np.float64)
    out = image_io.as_pixel_batch(batch)
    assert out.dtype == np.float32 and out.shape == batch.shape
    u16 = np.full((1, 3, 2, 2), 0x8000, dtype=np.uint16)
    np.testing.assert_array_equal(image_io.as_pixel_batch(u16), np.full_like(u16, 128, np.uint8))
    for bad, message in [
        (np.full((1, 3, 2, 2), np.nan, np.float32), "12 NaN or inf"),
        (np.full((1, 3, 2, 2), np.inf, np.float32), "NaN or inf"),
        (np.full((1, 3, 2, 2), 256.0, np.float32), r"\[256, 256\]; expected \[0, 255\]"),
        (np.full((1, 3, 2, 2), -1.0, np.float32), "expected"),
        (np.zeros((1, 3, 2, 2), bool), "bool"),
        (np.zeros((1, 2, 2, 2), np.float32), r"\(N, 3, H, W\)"),
        (np.zeros((0, 3, 2, 2), np.float32), "empty batch"),
    ]:
        with pytest.raises(ValueError, match=message):
            image_io.as_pixel_batch(bad)


def test_read_16_bit_greyscale_png(tmp_path):
    rng = np.random.RandomState(1)
    grey = rng.randint(0, 65536, (30, 40)).astype(np.uint16)
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), grey)
    assert Image.open(path).mode == "I;16"
    out = image_io.read_image(str(path), format="BGR")
    expected = (grey >> 8).astype(np.uint8)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], expected)


def test_read_48_bit_rgb_png_by_the_same_rule(tmp_path):
    rng = np.random.RandomState(2)
    bgr16 = rng.randint(0, 65536, (20, 30, 3)).astype(np.uint16)
    path = tmp_path / "c16.png"
    assert cv2.imwrite(str(path), bgr16)
    np.testing.assert_array_equal(image_io.read_image(str(path), "BGR"), bgr16 >> 8)
    np.testing.assert_array_equal(image_io.read_image(str(path), "RGB"), (bgr16 >> 8)[..., ::-1])


def test_read_8_bit_files_as_detectron2_does(tmp_path):
    rng = np.random.RandomState(3)
    for name in ("a.png", "b.jpg"):
        path = str(tmp_path / name)
        assert cv2.imwrite(path, rng.randint(0, 256, (25, 35, 3)).astype(np.uint8))
        for fmt in ("BGR", "RGB"):
            np.testing.assert_array_equal(
                image_io.read_image(path, fmt), d2_read_image(path, format=fmt)
            )
    path = str(tmp_path / "grey.png")
    assert cv2.imwrite(path, rng.randint(0, 256, (25, 35)).astype(np.uint8))
    np.testing.assert_array_equal(image_io.read_image(path), d2_read_image(path, format="BGR"))


def test_read_refuses_a_decompression_bomb(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    assert cv2.imwrite(str(path), np.zeros((100, 100, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with pytest.raises(Image.DecompressionBombError):
        image_io.read_image(str(path))


def test_fit_into_pixels():
    assert image_io.fit_into_pixels(300, 400, 0) == (300, 400)
    assert image_io.fit_into_pixels(300, 400, 120000) == (300, 400)
    h, w = image_io.fit_into_pixels(8000, 6000, 4096 * 4096)
    assert h * w <= 4096 * 4096 and h * w > 0.999 * 4096 * 4096
    assert abs(h / w - 8000 / 6000) < 1e-3
    assert image_io.fit_into_pixels(10, 100000, 50) == (1, 50)


def test_limit_image_pixels_shrinks_and_says_so(caplog):
    image = np.zeros((300, 400, 3), np.uint8)
    image[100:200, 200:300] = 255
    assert image_io.limit_image_pixels(image, 0) is image
    assert image_io.limit_image_pixels(image, 120000) is image
    with caplog.at_level(logging.WARNING, logger="ainnoface_d2.data.image_io"):
        small = image_io.limit_image_pixels(image, 30000, "photo.jpg")
    assert small.shape == (150, 200, 3) and small.dtype == np.uint8
    # The white square is where it was, at half the size.
    assert small[75, 125].min() == 255 and small[25, 25].max() == 0
    (message,) = caplog.messages
    assert message.startswith("photo.jpg: 400x300 is above TEST.FACE.MAX_IMAGE_PIXELS (30000")
    assert "200x150" in message
