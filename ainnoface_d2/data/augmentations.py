"""Training augmentation for face detection (SRN / S3FD / PyramidBox), as Detectron2 augmentations.

The chain the mapper (:mod:`ainnoface_d2.data.mapper`) builds from ``cfg.INPUT.FACE``:

1. :class:`PhotometricDistortion` -- SSD's photometric distortion: brightness, contrast (before or
   after the colour steps, at random), saturation and hue, each with probability 0.5, on a float
   image clipped to [0, 255]; then, with probability ``GRAYSCALE_PROB`` (0 unless a config asks),
   :class:`RandomGrayscale` -- the image's luma in every channel.
2. :class:`FaceSampling` -- with probability ``DATA_ANCHOR_SAMPLING_PROB``,
   :class:`DataAnchorSampling` (PyramidBox, Tang et al., ECCV 2018, arXiv 1803.07737; used
   by AInnoFace);
   otherwise :class:`RandomExpand` (SSD's zoom-out onto a mean-filled canvas) followed by
   :class:`RandomFaceCrop` (SRN's random square crop keeping the faces whose centre it contains).
3. :class:`RandomHFlip`, then :class:`ResizeSquare` to ``TRAIN_SIZE`` x ``TRAIN_SIZE``.

Every geometric step returns standard Detectron2/fvcore ``Transform`` objects (``CropTransform``,
``ResizeTransform``, ``HFlipTransform``) or :class:`CropPadTransform` (a crop window that may
extend past the image, filled with the pixel mean), so boxes follow through ``apply_box``.

Speed: the mapper feeds these augmentations a :class:`LazyAugInput`, which transforms the boxes at
once and renders all image transforms together when the image is read
(:mod:`ainnoface_d2.data.deferred_render`, re-exported here).
"""

import logging
import math

import cv2
import numpy as np
from detectron2.data.transforms import Augmentation, ResizeTransform
from fvcore.transforms.transform import (
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    Transform,
    TransformList,
)

__all__ = [
    "PhotometricDistortTransform",
    "CropPadTransform",
    "PhotometricDistortion",
    "GrayscaleTransform",
    "RandomGrayscale",
    "RandomExpand",
    "RandomFaceCrop",
    "DataAnchorSampling",
    "FaceSampling",
    "RandomHFlip",
    "ResizeSquare",
    "fill_for",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Transforms
# ----------------------------------------------------------------------------------------------
class _PixelwiseTransform(Transform):
    """A transform of the pixel values alone: boxes, coordinates and masks are unchanged, and the
    lazy renderer applies it to the visible source window (``pixelwise``)."""

    pixelwise = True

    def apply_coords(self, coords):
        return coords

    def apply_segmentation(self, segmentation):
        return segmentation

    def inverse(self):
        return NoOpTransform()


class PhotometricDistortTransform(_PixelwiseTransform):
    """SSD-style photometric distortion with fixed parameters (sampled by
    :class:`PhotometricDistortion`). Pixel-wise: boxes are unchanged.

    Args:
        brightness (float or None): added to every channel.
        contrast (float or None): every channel is multiplied by it.
        contrast_first (bool): apply brightness and contrast before the colour steps (else
            brightness first, contrast last).
        saturation (float or None): the HSV saturation is multiplied by it (clipped to [0, 1]).
        hue (float or None): degrees added to the HSV hue (wrapping around).
        channel_order (str or None): "RGB" or "BGR"; None (e.g. grayscale) skips the colour steps.
    """

    def __init__(
        self,
        brightness=None,
        contrast=None,
        contrast_first=True,
        saturation=None,
        hue=None,
        channel_order="BGR",
    ):
        super().__init__()
        if channel_order is None:
            saturation = hue = None
        elif channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB', 'BGR' or None, got {channel_order!r}")
        self._set_attributes(locals())

    def apply_image(self, img):
        dtype = img.dtype
        x = img.astype(np.float32)
        if self.contrast_first:
            x = self._brightness_contrast(x, self.brightness, self.contrast)
        else:
            x = self._brightness_contrast(x, self.brightness, None)
        if self.saturation is not None or self.hue is not None:
            to_hsv, from_hsv = (
                (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB)
                if self.channel_order == "RGB"
                else (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR)
            )
            # Float HSV in OpenCV: H in degrees [0, 360), S in [0, 1], V on the input's scale;
            # HSV2RGB wraps H itself, so the hue shift needs no modulo.
            hsv = cv2.cvtColor(x, to_hsv)
            if self.saturation is not None:
                s = hsv[..., 1]
                np.multiply(s, self.saturation, out=s)
                np.minimum(s, 1.0, out=s)
            if self.hue is not None:
                hsv[..., 0] += self.hue
            x = cv2.cvtColor(hsv, from_hsv)
            np.clip(x, 0.0, 255.0, out=x)
        if not self.contrast_first:
            x = self._brightness_contrast(x, None, self.contrast)
        if dtype == np.uint8:
            return np.rint(x, out=x).astype(np.uint8)
        return x.astype(dtype, copy=False)

    @staticmethod
    def _brightness_contrast(x, brightness, contrast):
        if brightness is None and contrast is None:
            return x
        if brightness is not None:
            x += brightness
            if contrast is not None:
                # SSD clips nothing in between; clipping here keeps every step in [0, 255].
                np.clip(x, 0.0, 255.0, out=x)
        if contrast is not None:
            x *= contrast
        np.clip(x, 0.0, 255.0, out=x)
        return x


class GrayscaleTransform(_PixelwiseTransform):
    """The image's luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B, OpenCV's ``*2GRAY``) in each
    of its three channels. Pixel-wise: boxes are unchanged.

    Args:
        channel_order (str): "RGB" or "BGR", the order of the image's channels.
    """

    def __init__(self, channel_order="BGR"):
        super().__init__()
        if channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        self._set_attributes(locals())

    def apply_image(self, img):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"GrayscaleTransform needs an HxWx3 image, got shape {img.shape}")
        code = cv2.COLOR_RGB2GRAY if self.channel_order == "RGB" else cv2.COLOR_BGR2GRAY
        # cv2 converts uint8, uint16 and float32 images; other dtypes go through float32.
        x = img if img.dtype in (np.uint8, np.uint16, np.float32) else img.astype(np.float32)
        gray = cv2.cvtColor(np.ascontiguousarray(x), code)
        return np.repeat(gray[..., None], 3, axis=2).astype(img.dtype, copy=False)


class CropPadTransform(Transform):
    """Take the window ``[x0, x0 + w) x [y0, y0 + h)`` of the image; parts of the window outside
    the image are filled with ``fill`` (one value per channel, e.g. the pixel mean). With negative
    offsets and a window larger than the image this is SSD's expansion; inside the image it is a
    crop.

    Args:
        x0, y0 (int): top-left corner of the window in image coordinates (may be negative).
        w, h (int): window size (the output size).
        orig_w, orig_h (int): size of the input image.
        fill (float or sequence of float): fill value, a scalar or one per channel.
    """

    def __init__(self, x0, y0, w, h, orig_w, orig_h, fill=0.0):
        super().__init__()
        x0, y0, w, h, orig_w, orig_h = (int(v) for v in (x0, y0, w, h, orig_w, orig_h))
        if w <= 0 or h <= 0:
            raise ValueError(f"CropPadTransform window must be non-empty, got w={w}, h={h}")
        fill = np.asarray(fill, dtype=np.float64).reshape(-1)
        self._set_attributes(locals())

    def apply_image(self, img):
        assert img.shape[:2] == (self.orig_h, self.orig_w), (img.shape, self.orig_h, self.orig_w)
        out = np.empty((self.h, self.w) + img.shape[2:], dtype=img.dtype)
        out[...] = fill_for(self.fill, img)
        sx0, sx1 = max(self.x0, 0), min(self.x0 + self.w, self.orig_w)
        sy0, sy1 = max(self.y0, 0), min(self.y0 + self.h, self.orig_h)
        if sx0 < sx1 and sy0 < sy1:
            out[sy0 - self.y0 : sy1 - self.y0, sx0 - self.x0 : sx1 - self.x0] = img[
                sy0:sy1, sx0:sx1
            ]
        return out

    def apply_coords(self, coords):
        coords[:, 0] -= self.x0
        coords[:, 1] -= self.y0
        return coords

    def apply_segmentation(self, segmentation):
        return CropPadTransform(
            self.x0, self.y0, self.w, self.h, self.orig_w, self.orig_h, fill=0
        ).apply_image(segmentation)

    def inverse(self):
        return CropPadTransform(-self.x0, -self.y0, self.orig_w, self.orig_h, self.w, self.h, 0)


def fill_for(fill, img):
    """``fill`` broadcastable to ``img``'s last axis, in its dtype."""
    fill = np.asarray(fill, dtype=np.float64).reshape(-1)
    channels = img.shape[2] if img.ndim == 3 else 1
    if fill.size not in (1, channels):
        raise ValueError(f"fill has {fill.size} values but the image has {channels} channels")
    if img.dtype == np.uint8:
        fill = np.clip(np.rint(fill), 0, 255)
    if img.ndim == 2:
        fill = fill[:1]
    return fill.astype(img.dtype)


# ----------------------------------------------------------------------------------------------
# Augmentations
# ----------------------------------------------------------------------------------------------
class _ShapeAugmentation(Augmentation):
    """An augmentation that needs only the image size and the boxes.

    ``get_transform(image, boxes)`` works with any ``AugInput``; ``__call__`` reads
    ``aug_input.image_shape`` when the input has it (:class:`LazyAugInput`), so that sampling
    parameters does not force the pending image transforms to be rendered.
    """

    def _sample(self, height, width, boxes):
        raise NotImplementedError

    def get_transform(self, image, boxes=None):
        return self._sample(image.shape[0], image.shape[1], _as_boxes(boxes))

    def __call__(self, aug_input):
        shape = getattr(aug_input, "image_shape", None)
        if shape is None:
            shape = aug_input.image.shape
        tfm = self._sample(shape[0], shape[1], _as_boxes(getattr(aug_input, "boxes", None)))
        aug_input.transform(tfm)
        return tfm


def _as_boxes(boxes):
    if boxes is None:
        return np.zeros((0, 4), dtype=np.float64)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _uniform(low, high):
    return float(np.random.uniform(low, high))


class PhotometricDistortion(Augmentation):
    """Samples a :class:`PhotometricDistortTransform`: each of brightness (delta uniform in
    [-brightness_delta, brightness_delta]), contrast, saturation (factors uniform in the ranges)
    and hue (delta uniform in [-hue_delta, hue_delta] degrees) with probability ``prob``; contrast
    goes before or after the colour steps with probability 0.5 (SSD)."""

    def __init__(
        self,
        brightness_delta=32.0,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18.0,
        channel_order="BGR",
        prob=0.5,
    ):
        super().__init__()
        self._init(locals())

    def get_transform(self):
        def maybe(sample):
            return sample() if np.random.rand() < self.prob else None

        brightness = maybe(lambda: _uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = bool(np.random.rand() < 0.5)
        contrast = maybe(lambda: _uniform(*self.contrast_range))
        saturation = maybe(lambda: _uniform(*self.saturation_range))
        hue = maybe(lambda: _uniform(-self.hue_delta, self.hue_delta))
        if self.channel_order is None:
            saturation = hue = None
        if all(v is None for v in (brightness, contrast, saturation, hue)):
            return NoOpTransform()
        return PhotometricDistortTransform(
            brightness, contrast, contrast_first, saturation, hue, self.channel_order
        )


class RandomGrayscale(Augmentation):
    """With probability ``prob``, a :class:`GrayscaleTransform` (photographs in black and white);
    a no-op for images without colour channels (``channel_order`` None)."""

    def __init__(self, prob=0.1, channel_order="BGR"):
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self._init(locals())

    def get_transform(self):
        if self.channel_order is None or not np.random.rand() < self.prob:
            return NoOpTransform()
        return GrayscaleTransform(self.channel_order)


class RandomExpand(_ShapeAugmentation):
    """With probability ``prob``, place the image at a random position on a canvas ``ratio``
    times its size (ratio uniform in [1, max_ratio]) filled with ``fill`` (SSD's zoom-out)."""

    def __init__(self, prob=0.5, max_ratio=4.0, fill=0.0):
        super().__init__()
        if max_ratio < 1:
            raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
        self._init(locals())

    def _sample(self, height, width, boxes):
        if self.max_ratio <= 1 or np.random.rand() >= self.prob:
            return NoOpTransform()
        ratio = _uniform(1.0, self.max_ratio)
        new_w, new_h = int(width * ratio), int(height * ratio)
        left = np.random.randint(0, new_w - width + 1)
        top = np.random.randint(0, new_h - height + 1)
        return CropPadTransform(-left, -top, new_w, new_h, width, height, self.fill)


def _kept_by_window(boxes, x0, y0, w, h, scale, min_size):
    """Boxes whose centre lies in the window and that, clipped to it and multiplied by
    ``scale``, have a shorter side >= min_size."""
    cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
    cy = (boxes[:, 1] + boxes[:, 3]) * 0.5
    inside = (cx >= x0) & (cx <= x0 + w) & (cy >= y0) & (cy <= y0 + h)
    cw = np.minimum(boxes[:, 2], x0 + w) - np.maximum(boxes[:, 0], x0)
    ch = np.minimum(boxes[:, 3], y0 + h) - np.maximum(boxes[:, 1], y0)
    return inside & (np.minimum(cw, ch) * scale >= min_size)


class RandomFaceCrop(_ShapeAugmentation):
    """SRN's random square crop at a uniformly random position. Its side is the shorter image
    side with probability ``full_side_prob``, else uniform(scale_range) x the shorter side.
    SRN's paper crops two square patches, one with the shorter side and one with U[0.5, 1]
    of it, and trains on one of them at random: ``scale_range=(0.5, 1), full_side_prob=0.5``.
    ``(0.3, 1)`` with probability 0 (the small CPU config's crop) zooms in up to 3.3x.

    A crop is accepted when it keeps at least one face, i.e. a box whose centre it contains and
    whose clipped shorter side, after the final resize of the crop to ``output_size``, is at
    least ``min_face_size``. After ``max_tries`` rejected crops the image is left uncropped (a
    warning-free fallback: the sample stays valid). Images without boxes take the first crop.
    """

    def __init__(
        self,
        scale_range=(0.3, 1.0),
        max_tries=50,
        output_size=None,
        min_face_size=0.0,
        full_side_prob=0.0,
    ):
        super().__init__()
        lo, hi = scale_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale_range must satisfy 0 < low <= high <= 1, got {scale_range}")
        if not 0 <= full_side_prob <= 1:
            raise ValueError(f"full_side_prob must be in [0, 1], got {full_side_prob}")
        self._init(locals())

    def _sample(self, height, width, boxes):
        short = min(height, width)
        for _ in range(max(1, self.max_tries)):
            if self.full_side_prob > 0 and np.random.rand() < self.full_side_prob:
                side = short
            else:
                side = max(1, int(_uniform(*self.scale_range) * short))
            x0 = np.random.randint(0, width - side + 1)
            y0 = np.random.randint(0, height - side + 1)
            if len(boxes) == 0:
                return CropTransform(x0, y0, side, side, width, height)
            scale = self.output_size / side if self.output_size else 1.0
            if _kept_by_window(boxes, x0, y0, side, side, scale, self.min_face_size).any():
                return CropTransform(x0, y0, side, side, width, height)
        return NoOpTransform()


class DataAnchorSampling(_ShapeAugmentation):
    """PyramidBox's data-anchor-sampling (Tang et al., ECCV 2018) for a detector with anchor
    sizes ``anchor_sizes`` (ascending, one per pyramid level).

    Pick a face at random, of size s = sqrt(w h); let i be the index of the anchor size nearest
    s; pick j uniformly from {0, ..., min(L - 1, i + 1)}; draw a target size uniformly in
    [anchor_sizes[j] / 2, 2 anchor_sizes[j]]; resize the image by target / s and take a
    ``crop_size`` x ``crop_size`` window containing that face, inside the resized image where it
    is large enough, else covering it whole with ``fill`` around it.

    ``max_upscale``: PyramidBox's official code draws bins only up to the face's own one and caps
    that bin's target at twice the face, so it never enlarges a face more than 2x (unless a
    bin's lower end a_j / 2 is itself above that). With ``max_upscale=2`` every bin's interval
    here becomes [a_j / 2, max(a_j / 2, min(2 a_j, 2 s))]; None keeps the uncapped rule, under
    which the bin above the nearest one enlarges a face up to 4 a_i / s.

    ``bins``: ``"pyramidbox"`` (the rule above, j <= i + 1) or ``"crop"``: j uniform over every
    bin whose anchor fits the crop (a_j <= ``crop_size``), whatever the face's own size, and the
    target at most ``crop_size``, so that a face of any size can come out at any size the crop
    holds whole. PyramidBox's rule keeps small faces small: on data where most faces are tiny,
    few training faces come out larger than a few anchors (the CPU config's reason for "crop").

    Returns ``TransformList([ResizeTransform, CropPadTransform])``. Images without boxes get
    ``NoOpTransform`` (:class:`FaceSampling` sends them to the crop path instead).
    """

    BINS = ("pyramidbox", "crop")

    def __init__(self, anchor_sizes, crop_size, fill=0.0, max_upscale=None, bins="pyramidbox"):
        super().__init__()
        anchor_sizes = tuple(sorted(float(a) for a in anchor_sizes))
        if not anchor_sizes or anchor_sizes[0] <= 0:
            raise ValueError(f"anchor_sizes must be positive, got {anchor_sizes}")
        if max_upscale is not None and max_upscale <= 0:
            raise ValueError(f"max_upscale must be positive or None, got {max_upscale}")
        if bins not in self.BINS:
            raise ValueError(f"bins must be one of {self.BINS}, got {bins!r}")
        if bins == "crop" and anchor_sizes[0] > crop_size:
            raise ValueError(f"bins='crop': no anchor size of {anchor_sizes} fits {crop_size}")
        self._init(locals())

    def _sample(self, height, width, boxes):
        sides = np.sqrt(
            np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
            * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
        )
        candidates = np.nonzero(sides > 0)[0]
        if len(candidates) == 0:
            return NoOpTransform()
        k = candidates[np.random.randint(len(candidates))]
        face_side = sides[k]
        sizes = np.asarray(self.anchor_sizes)
        if self.bins == "crop":
            j = np.random.randint(0, int(np.sum(sizes <= self.crop_size)))
            high = min(sizes[j] * 2.0, float(self.crop_size))
        else:
            i = int(np.argmin(np.abs(sizes - face_side)))
            j = np.random.randint(0, min(len(sizes) - 1, i + 1) + 1)
            high = sizes[j] * 2.0
        if self.max_upscale is not None:
            high = max(sizes[j] / 2.0, min(high, self.max_upscale * face_side))
        target = _uniform(sizes[j] / 2.0, high)
        scale = target / face_side
        new_w = max(1, int(round(width * scale)))
        new_h = max(1, int(round(height * scale)))
        resize = ResizeTransform(height, width, new_h, new_w)
        face = boxes[k] * np.array([new_w / width, new_h / height] * 2)
        x0 = self._window_start(face[0], face[2], new_w)
        y0 = self._window_start(face[1], face[3], new_h)
        crop = CropPadTransform(x0, y0, self.crop_size, self.crop_size, new_w, new_h, self.fill)
        return TransformList([resize, crop])

    def _window_start(self, a, b, length):
        """Start of a window of ``crop_size`` on an axis of ``length`` that contains [a, b]."""
        size = self.crop_size
        if length <= size:
            lo, hi = length - size, 0  # the window covers the whole axis: the face is in it
        elif b - a <= size:
            lo, hi = max(math.ceil(b - size), 0), min(math.floor(a), length - size)
        else:
            # A face larger than the window: keep the window inside the face and on its centre
            # (the mapper keeps faces by their centre).
            c = (a + b) / 2
            lo, hi = math.ceil(max(a, c - size)), math.floor(min(b - size, c))
        if lo > hi:  # only from rounding a face that exactly fills the window
            lo = hi = int(round((a + b - size) / 2))
        return np.random.randint(lo, hi + 1)


class FaceSampling(Augmentation):
    """With probability ``prob``, ``data_anchor_sampling``; otherwise ``crop`` (e.g. an
    ``AugmentationList`` of :class:`RandomExpand` and :class:`RandomFaceCrop`). Images without
    boxes always take ``crop``, since data-anchor-sampling needs a face."""

    def __init__(self, data_anchor_sampling, crop, prob=0.5):
        super().__init__()
        self._init(locals())

    def __call__(self, aug_input):
        boxes = getattr(aug_input, "boxes", None)
        has_faces = boxes is not None and len(boxes) > 0
        if has_faces and np.random.rand() < self.prob:
            return self.data_anchor_sampling(aug_input)
        return self.crop(aug_input)

    def get_transform(self, *args):
        raise NotImplementedError("FaceSampling chains augmentations: call it on an AugInput")


class RandomHFlip(_ShapeAugmentation):
    """Horizontal flip with probability ``prob`` (reads only the image size)."""

    def __init__(self, prob=0.5):
        super().__init__()
        self._init(locals())

    def _sample(self, height, width, boxes):
        if np.random.rand() < self.prob:
            return HFlipTransform(width)
        return NoOpTransform()


class ResizeSquare(_ShapeAugmentation):
    """Resize to ``size`` x ``size`` (reads only the image size)."""

    def __init__(self, size):
        super().__init__()
        self._init(locals())

    def _sample(self, height, width, boxes):
        if (height, width) == (self.size, self.size):
            return NoOpTransform()
        return ResizeTransform(height, width, self.size, self.size)
