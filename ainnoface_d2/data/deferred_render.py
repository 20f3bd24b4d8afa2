"""Deferred rendering of the augmentation's image transforms (:class:`LazyAugInput`,
:func:`render_transforms`).

Applied one by one, the transforms of :mod:`ainnoface_d2.data.augmentations` would build a canvas
up to 4x the image side (expansion) and, for data-anchor-sampling, up-scale the whole image by up
to ~16x before cropping. :class:`LazyAugInput` is an ``AugInput`` that transforms the boxes at once
but only records the image transforms; :func:`render_transforms` then composes the axis-aligned
crop / pad / ``CropPadTransform`` / resize / flip steps into one scale-and-offset map per axis and
renders only the visible source window with OpenCV (an area-average shrink where it down-scales,
then one bilinear warp). Pixel-wise transforms (``pixelwise = True``, e.g. the photometric
distortion) are applied to that source window only, which is the same as applying them to the
whole image first.
"""

import math

import cv2
import numpy as np
from detectron2.data.transforms import AugInput, ResizeTransform
from fvcore.transforms.transform import (
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    TransformList,
    VFlipTransform,
)

from .augmentations import CropPadTransform, fill_for

__all__ = ["LazyAugInput", "render_transforms"]


def _flatten(transforms):
    if isinstance(transforms, TransformList):
        for t in transforms.transforms:
            yield from _flatten(t)
    elif isinstance(transforms, list | tuple):
        for t in transforms:
            yield from _flatten(t)
    else:
        yield transforms


def _output_hw(tfm, height, width):
    """Output size of a transform of known type, else None."""
    if isinstance(tfm, NoOpTransform | HFlipTransform | VFlipTransform) or getattr(
        tfm, "pixelwise", False
    ):
        return height, width
    if isinstance(tfm, CropTransform | CropPadTransform):
        return tfm.h, tfm.w
    if isinstance(tfm, PadTransform):
        return height + tfm.y0 + tfm.y1, width + tfm.x0 + tfm.x1
    if isinstance(tfm, ResizeTransform):
        return tfm.new_h, tfm.new_w
    if isinstance(tfm, TransformList):
        for t in tfm.transforms:
            hw = _output_hw(t, height, width)
            if hw is None:
                return None
            height, width = hw
        return height, width
    return None


class _AxisMap:
    """A pending composition of axis-aligned geometric transforms: output coordinate =
    s * source coordinate + t on each axis (continuous pixel-edge coordinates), output size
    (h, w), and the fill of the area outside the source."""

    def __init__(self, height, width):
        self.h0, self.w0 = height, width
        self.h, self.w = height, width
        self.sx, self.tx, self.sy, self.ty = 1.0, 0.0, 1.0, 0.0
        self.fill = None

    def is_identity(self):
        return (
            (self.h, self.w) == (self.h0, self.w0)
            and self.sx == 1.0
            and self.sy == 1.0
            and self.tx == 0.0
            and self.ty == 0.0
        )

    def _set_fill(self, fill):
        fill = np.asarray(fill, dtype=np.float64).reshape(-1)
        if self.fill is not None and (
            self.fill.shape != fill.shape or not np.allclose(self.fill, fill)
        ):
            return False
        self.fill = fill
        return True

    def add(self, t):
        """Compose ``t``; False when it is not a type this class can compose."""
        if isinstance(t, NoOpTransform):
            return True
        if isinstance(t, CropTransform):
            if t.x0 < 0 or t.y0 < 0 or t.x0 + t.w > self.w or t.y0 + t.h > self.h:
                return False  # numpy slicing would shrink the output: let it run eagerly
            self.tx -= t.x0
            self.ty -= t.y0
            self.h, self.w = t.h, t.w
            return True
        if isinstance(t, CropPadTransform):
            if (t.orig_h, t.orig_w) != (self.h, self.w) or not self._set_fill(t.fill):
                return False
            self.tx -= t.x0
            self.ty -= t.y0
            self.h, self.w = t.h, t.w
            return True
        if isinstance(t, PadTransform):
            if not self._set_fill(t.pad_value):
                return False
            self.tx += t.x0
            self.ty += t.y0
            self.h += t.y0 + t.y1
            self.w += t.x0 + t.x1
            return True
        if isinstance(t, ResizeTransform):
            if (t.h, t.w) != (self.h, self.w):
                return False
            fx, fy = t.new_w / t.w, t.new_h / t.h
            self.sx, self.tx, self.sy, self.ty = (
                self.sx * fx,
                self.tx * fx,
                self.sy * fy,
                self.ty * fy,
            )
            self.h, self.w = t.new_h, t.new_w
            return True
        if isinstance(t, HFlipTransform):
            if t.width != self.w:
                return False
            self.sx, self.tx = -self.sx, self.w - self.tx
            return True
        if isinstance(t, VFlipTransform):
            if t.height != self.h:
                return False
            self.sy, self.ty = -self.sy, self.h - self.ty
            return True
        return False

    def render(self, image, pre_ops):
        """Apply ``pre_ops`` (pixel-wise transforms) and the composed map to ``image``."""
        if self.is_identity():
            for op in pre_ops:
                image = op.apply_image(image)
            return image
        squeeze = image.ndim == 2
        if squeeze:
            image = image[:, :, None]
        channels = image.shape[2]
        # Output pixels whose centre falls on the source image, per axis.
        dx0, dx1, rx0, rx1 = _axis_ranges(self.sx, self.tx, self.w0, self.w)
        dy0, dy1, ry0, ry1 = _axis_ranges(self.sy, self.ty, self.h0, self.h)
        fill = fill_for(self.fill if self.fill is not None else 0.0, image)
        if dx0 >= dx1 or dy0 >= dy1:  # the source is entirely outside the output
            out = np.empty((self.h, self.w, channels), dtype=image.dtype)
            out[...] = fill
        else:
            region = image[ry0:ry1, rx0:rx1]
            for op in pre_ops:
                region = op.apply_image(region)
            out = _warp_region(
                region,
                self.sx,
                self.tx + self.sx * rx0 - dx0,
                self.sy,
                self.ty + self.sy * ry0 - dy0,
                dx1 - dx0,
                dy1 - dy0,
            )
            if (dx0, dx1, dy0, dy1) != (0, self.w, 0, self.h):
                # One pass that copies the patch and fills the rest (numpy's broadcast fill of
                # a 3-channel canvas is several times slower).
                out = cv2.copyMakeBorder(
                    out,
                    dy0,
                    self.h - dy1,
                    dx0,
                    self.w - dx1,
                    cv2.BORDER_CONSTANT,
                    value=[float(v) for v in np.broadcast_to(fill, (channels,))],
                )
                if out.ndim == 2:
                    out = out[:, :, None]
        return out[:, :, 0] if squeeze else out


def _axis_ranges(s, t, src_len, out_len):
    """For the map out = s * src + t: the output pixels [d0, d1) whose centres fall on the
    source [0, src_len), and the source pixels [r0, r1) that bilinear sampling of them reads
    (with a margin so that an area-average shrink sees whole neighbourhoods)."""
    lo, hi = sorted((t, t + s * src_len))
    d0 = max(0, math.ceil(lo - 0.5 - 1e-6))
    d1 = min(out_len, math.floor(hi - 0.5 + 1e-6) + 1)
    if d0 >= d1:
        return 0, 0, 0, 0
    a, b = sorted(((d0 + 0.5 - t) / s, (d1 - 0.5 - t) / s))
    margin = 2 + math.ceil(1.0 / abs(s))
    r0 = max(0, math.floor(a - 0.5) - margin)
    r1 = min(src_len, math.ceil(b - 0.5) + 1 + margin)
    return d0, d1, r0, r1


def _warp_region(region, sx, tx, sy, ty, out_w, out_h):
    """Render out = s * src + t (pixel-edge coordinates) of ``region`` into an
    ``out_h`` x ``out_w`` patch: area-average shrink where |s| < 1, then bilinear warp."""
    rh, rw = region.shape[:2]
    nw = max(1, int(round(abs(sx) * rw))) if abs(sx) < 1 else rw
    nh = max(1, int(round(abs(sy) * rh))) if abs(sy) < 1 else rh
    if (nw, nh) != (rw, rh):
        region = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
        if region.ndim == 2:
            region = region[:, :, None]
        sx, sy = sx * rw / nw, sy * rh / nh
    # Pixel-centre convention: out_c + 0.5 = s * (src_c + 0.5) + t.
    ox = tx + 0.5 * sx - 0.5
    oy = ty + 0.5 * sy - 0.5
    if (
        sx == 1.0
        and sy == 1.0
        and float(ox).is_integer()
        and float(oy).is_integer()
        and -ox >= 0
        and -oy >= 0
        and -ox + out_w <= region.shape[1]
        and -oy + out_h <= region.shape[0]
    ):
        x, y = int(-ox), int(-oy)
        return np.ascontiguousarray(region[y : y + out_h, x : x + out_w])
    m = np.array([[sx, 0.0, ox], [0.0, sy, oy]], dtype=np.float64)
    patch = cv2.warpAffine(
        region,
        m,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if patch.ndim == 2:
        patch = patch[:, :, None]
    return patch


def render_transforms(image, transforms):
    """``transforms.apply_image(image)``, with every run of crop / pad / ``CropPadTransform`` /
    resize / flip transforms composed and rendered at once (see the module docstring).
    Pixel-wise transforms (``pixelwise = True``) at the start of a run are applied to the visible
    source window only. Transforms of other types run eagerly, in order."""
    pending = _AxisMap(*image.shape[:2])
    pre_ops = []
    for t in _flatten(transforms):
        if getattr(t, "pixelwise", False):
            if not pending.is_identity():
                image = pending.render(image, pre_ops)
                pre_ops, pending = [], _AxisMap(*image.shape[:2])
            pre_ops.append(t)
            continue
        if pending.add(t):
            continue
        image = pending.render(image, pre_ops)
        pre_ops, pending = [], _AxisMap(*image.shape[:2])
        if not pending.add(t):
            image = t.apply_image(image)
            pending = _AxisMap(*image.shape[:2])
    return pending.render(image, pre_ops)


class LazyAugInput(AugInput):
    """An ``AugInput`` that transforms ``boxes`` at once but defers the image transforms, which
    :func:`render_transforms` renders together when ``image`` is read.

    Augmentations that need only the image size read ``image_shape`` (see
    :class:`_ShapeAugmentation`); any other augmentation reads ``image`` and gets the real,
    rendered pixels, so every Detectron2 augmentation still works with this input.
    """

    def __init__(self, image, *, boxes=None, sem_seg=None):
        if sem_seg is not None:
            raise ValueError("LazyAugInput does not support sem_seg; use detectron2's AugInput")
        super().__init__(image, boxes=boxes)
        self._pending = []
        self.image_shape = image.shape

    @property
    def image(self):
        if self._pending:
            self._image = render_transforms(self._image, self._pending)
            self._pending = []
            assert self._image.shape[:2] == self.image_shape[:2], (
                self._image.shape,
                self.image_shape,
            )
        return self._image

    @image.setter
    def image(self, value):
        self._image = value
        self._pending = []
        self.image_shape = value.shape

    def transform(self, tfm):
        hw = _output_hw(tfm, *self.image_shape[:2])
        if hw is None:
            self.image = tfm.apply_image(self.image)
        else:
            self._pending.append(tfm)
            self.image_shape = tuple(hw) + tuple(self.image_shape[2:])
        if self.boxes is not None:
            self.boxes = tfm.apply_box(self.boxes)
