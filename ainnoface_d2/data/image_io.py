"""Images in, as the detector takes them: checked, converted to 8-bit, bounded in size.

The one place where :class:`ainnoface_d2.predictor.FaceDetector`, ``tools/demo.py`` and the
exported graph's runners (:mod:`ainnoface_d2.export.runtimes`) decide what an image may be.

Accepted pixel types (:func:`as_uint8_image`, :func:`as_pixel_batch`):

* ``uint8``: as it is.
* ``uint16`` (16-bit PNG or TIFF, ``cv2.imread(..., cv2.IMREAD_UNCHANGED)``): scaled to 8 bits
  by its high byte, ``v >> 8`` (0 -> 0, 65535 -> 255), which is also what Pillow does when it
  reads a 48-bit RGB PNG. A 16-bit image that only uses the low byte's range (e.g. a 12-bit
  sensor) comes out dark, not wrong in shape.
* ``HxW`` and ``HxWx1`` greyscale: copied to three channels.

Refused, with a message saying what was expected: None, float images (``[0, 1]`` or
``[0, 255]`` cannot be told apart; the caller knows, e.g. ``(x * 255).round().astype(np.uint8)``),
bool, other integer types, 4-channel images (drop the alpha channel first) and empty images. The
graph runners' float32 batches hold pixel values in ``[0, 255]``; NaN, inf or values outside that
range are refused there.

:func:`read_image` reads a file as Detectron2's ``read_image`` does (Pillow, EXIF orientation),
and reads 16-bit greyscale files by the rule above instead of clipping them to white.
:func:`limit_image_pixels` is the size guard (``TEST.FACE.MAX_IMAGE_PIXELS``).
"""

import logging
import math

import numpy as np

__all__ = [
    "as_pixel_batch",
    "as_uint8_image",
    "fit_into_pixels",
    "limit_image_pixels",
    "read_image",
]

logger = logging.getLogger(__name__)

# Pillow modes of 16-bit (and 32-bit integer) greyscale images: converting them to "RGB" clips
# every value above 255 to white.
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _describe(image) -> str:
    return f"{image.dtype} array of shape {image.shape}"


def _to_uint8(image: np.ndarray, what: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype.kind == "f":
        raise ValueError(
            f"{what}: got a float image ({_describe(image)}); expected uint8 (or uint16) pixels. "
            "Convert it yourself, e.g. (x * 255).round().astype(np.uint8) for values in [0, 1]"
        )
    raise ValueError(f"{what}: got a {_describe(image)}; expected uint8 (or uint16) pixels")


def as_uint8_image(image, what: str = "image") -> np.ndarray:
    """``image`` as an ``HxWx3`` uint8 array (module docstring: what is accepted, how it is
    converted); a ValueError or TypeError naming ``what`` otherwise."""
    if image is None:
        raise ValueError(
            f"{what} is None; expected an HxWx3 uint8 array (cv2.imread returns None for a file "
            "it cannot read)"
        )
    if not isinstance(image, np.ndarray):
        if not hasattr(image, "__array__"):
            raise TypeError(f"{what}: expected a numpy array, got {type(image).__name__}")
        image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        hint = "; drop the alpha channel first (image[:, :, :3])" if image.ndim == 3 else ""
        raise ValueError(f"{what}: expected an HxWx3 (or HxW) image, got shape {image.shape}{hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what}: empty image (shape {image.shape})")
    return _to_uint8(image, what)


def as_pixel_batch(batch, what: str = "batch") -> np.ndarray:
    """A runner's input batch ``(N, 3, H, W)`` as uint8 or float32 pixel values in [0, 255]:
    uint8 as it is, uint16 by its high byte, float32/float64 checked (finite, within
    [0, 255]); anything else refused."""
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected a (N, 3, H, W) batch, got shape {batch.shape}")
    if batch.shape[0] == 0:
        raise ValueError("expected at least one image, got an empty batch")
    if batch.dtype.kind != "f":
        return _to_uint8(batch, what)
    if not np.isfinite(batch).all():
        raise ValueError(f"{what}: {np.count_nonzero(~np.isfinite(batch))} NaN or inf pixel(s)")
    low, high = float(batch.min()), float(batch.max())
    if low < 0 or high > 255:
        raise ValueError(
            f"{what}: pixel values in [{low:g}, {high:g}]; expected [0, 255] (the graph "
            "normalises them itself)"
        )
    return batch.astype(np.float32, copy=False)


def read_image(path, format: str = "BGR") -> np.ndarray:
    """An image file as an ``HxWx3`` uint8 array in ``format`` ("BGR" or "RGB").

    Pillow and EXIF orientation as in Detectron2's ``read_image``; 16-bit greyscale by the
    high-byte rule. Raises what Pillow raises for a file it cannot read (OSError, or
    ``PIL.Image.DecompressionBombError`` above twice ``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    from detectron2.data.detection_utils import _apply_exif_orientation, convert_PIL_to_numpy
    from PIL import Image

    with Image.open(path) as image:
        image = _apply_exif_orientation(image)
        if image.mode not in _WIDE_GREY_MODES:
            return np.ascontiguousarray(convert_PIL_to_numpy(image, format))
        pixels = np.asarray(image)
    if pixels.dtype != np.uint16:
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise ValueError(
                f"{path}: {image.mode} pixels in [{pixels.min()}, {pixels.max()}]; expected "
                "8- or 16-bit values"
            )
        pixels = pixels.astype(np.uint16)
    return as_uint8_image(pixels, str(path))


def fit_into_pixels(height: int, width: int, max_pixels: int):
    """The (height, width) of the image shrunk, aspect kept, to at most ``max_pixels`` pixels;
    the size itself when it fits or ``max_pixels`` is 0."""
    if max_pixels <= 0 or height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    new_h, new_w = max(1, int(height * scale)), max(1, int(width * scale))
    # A side rounded up to 1 pixel must not push the area over the limit (a 1-pixel strip).
    new_w = max(1, min(new_w, max_pixels // new_h))
    new_h = max(1, min(new_h, max_pixels // new_w))
    return new_h, new_w


def limit_image_pixels(image: np.ndarray, max_pixels: int, what: str = "image") -> np.ndarray:
    """``image`` (HxWxC uint8) shrunk to at most ``max_pixels`` pixels, with a logged line, or
    itself. Shrunk as Detectron2's ``ResizeTransform`` shrinks (Pillow, bilinear with its
    low-pass filter), as the training images were."""
    height, width = image.shape[:2]
    new_h, new_w = fit_into_pixels(height, width, max_pixels)
    if (new_h, new_w) == (height, width):
        return image
    from detectron2.data.transforms import ResizeTransform

    logger.warning(
        "%s: %dx%d is above TEST.FACE.MAX_IMAGE_PIXELS (%d pixels); detecting on a %dx%d "
        "copy (%.3gx; boxes in the original's pixels)",
        what,
        width,
        height,
        max_pixels,
        new_w,
        new_h,
        new_w / width,
    )
    return ResizeTransform(height, width, new_h, new_w).apply_image(image)
