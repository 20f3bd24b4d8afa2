"""Tests for the training augmentation (ainnoface_d2/data/augmentations.py) and the mapper
(ainnoface_d2/data/mapper.py).

Box correctness is checked against the pixels: each face is drawn as a filled rectangle of its
own pure colour, and after augmentation every surviving box must match the extent of its colour
in the output image (found by thresholding each channel at half intensity, which is where
bilinear/area resampling puts the edge of a rectangle on a black background).
"""

import colorsys
import math
import os

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import add_ainnoface_config
from ainnoface_d2.data.augmentations import (
    CropPadTransform,
    DataAnchorSampling,
    GrayscaleTransform,
    PhotometricDistortion,
    PhotometricDistortTransform,
    RandomExpand,
    RandomFaceCrop,
    RandomGrayscale,
    RandomHFlip,
    ResizeSquare,
)
from ainnoface_d2.data.deferred_render import LazyAugInput, render_transforms
from ainnoface_d2.data.mapper import FaceDatasetMapper, das_anchor_sizes

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.structures import BoxMode
from PIL import Image

# Pure colours (BGR); thresholding each channel at 127.5 gives each a distinct bit pattern, and
# both the black background and the pixel-mean fill (all channels < 128) map to 000.
COLOURS = [
    (0, 0, 255),
    (0, 255, 0),
    (255, 0, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
    (255, 255, 255),
]
AINNOFACE_ANCHOR_SIZES = [[2 * s, 2 * math.sqrt(2) * s] for s in (4, 8, 16, 32, 64, 128)]


def make_cfg(train_size=128, **face):
    cfg = get_cfg()
    add_ainnoface_config(cfg)
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = AINNOFACE_ANCHOR_SIZES
    cfg.INPUT.FACE.TRAIN_SIZE = train_size
    for k, v in face.items():
        setattr(cfg.INPUT.FACE, k, v)
    return cfg


def marker_image(h, w, boxes):
    """Black HxW BGR image with box k (integer XYXY) filled with COLOURS[k]."""
    img = np.zeros((h, w, 3), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, int)):
        img[y0:y1, x0:x1] = COLOURS[k]
    return img


def marker_extent(img, k):
    """XYXY extent of the pixels of COLOURS[k], or None when none is visible."""
    bits = img > 127.5
    mask = np.all(bits == (np.array(COLOURS[k]) > 127.5), axis=2)
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def check_boxes_match_markers(img, boxes, keep, tol=2.0):
    for box, k in zip(boxes, keep):
        ext = marker_extent(img, k)
        assert ext is not None, f"face {k} kept as {box} but its colour is not in the image"
        np.testing.assert_allclose(ext, box, atol=tol, err_msg=f"face {k}")


def random_faces(rng, h, w, n, lo, hi):
    """n non-overlapping, non-touching square-ish integer boxes of side in [lo, hi], at least
    2 px from the image border."""
    boxes = []
    for _ in range(1000):
        if len(boxes) == n:
            break
        bw, bh = rng.integers(lo, hi + 1, size=2)
        x0 = rng.integers(2, w - bw - 2)
        y0 = rng.integers(2, h - bh - 2)
        b = np.array([x0, y0, x0 + bw, y0 + bh])
        if all(
            b[0] > o[2] + 3 or o[0] > b[2] + 3 or b[1] > o[3] + 3 or o[1] > b[3] + 3 for o in boxes
        ):
            boxes.append(b)
    return np.array(boxes, float)


def mapper_with(augs, min_face_size=0.0):
    return FaceDatasetMapper(
        True, augmentations=augs, image_format="BGR", min_face_size=min_face_size
    )


# ------------------------------------------------------------------------------------------
# Photometric distortion
# ------------------------------------------------------------------------------------------
def test_photometric_brightness_contrast_formulas():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(8, 9, 3)).astype(np.uint8)
    f = img.astype(np.float64)

    def assert_close_1(out, expected):  # float32 arithmetic may round .5 the other way
        assert out.dtype == np.uint8
        np.testing.assert_allclose(out, expected, atol=1)

    out = PhotometricDistortTransform(brightness=20.0).apply_image(img)
    assert_close_1(out, np.clip(np.rint(f + 20), 0, 255))
    out = PhotometricDistortTransform(contrast=1.3).apply_image(img)
    assert_close_1(out, np.clip(np.rint(f * 1.3), 0, 255))
    # brightness, clip, then contrast, clip
    out = PhotometricDistortTransform(brightness=-30.0, contrast=0.7).apply_image(img)
    assert_close_1(out, np.clip(np.rint(np.clip(f - 30, 0, 255) * 0.7), 0, 255))
    # contrast last: same numbers without colour steps
    out = PhotometricDistortTransform(
        brightness=-30.0, contrast=0.7, contrast_first=False
    ).apply_image(img)
    assert_close_1(out, np.clip(np.rint(np.clip(f - 30, 0, 255) * 0.7), 0, 255))


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_photometric_hue_saturation_against_colorsys(order):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(6, 7, 3)).astype(np.uint8)
    img = rgb if order == "RGB" else rgb[:, :, ::-1].copy()
    hue, sat = -50.0, 0.6
    out = PhotometricDistortTransform(saturation=sat, hue=hue, channel_order=order).apply_image(img)
    out_rgb = out if order == "RGB" else out[:, :, ::-1]
    for y in range(rgb.shape[0]):
        for x in range(rgb.shape[1]):
            h, s, v = colorsys.rgb_to_hsv(*(rgb[y, x] / 255.0))
            r, g, b = colorsys.hsv_to_rgb((h + hue / 360.0) % 1.0, min(s * sat, 1.0), v)
            np.testing.assert_allclose(out_rgb[y, x], np.array([r, g, b]) * 255, atol=1.01)
    # pure red + 120 degrees is pure green; saturation 0 is grey at the max channel (V)
    red = np.zeros((1, 1, 3), np.uint8)
    red[0, 0, 0 if order == "RGB" else 2] = 255
    green = PhotometricDistortTransform(hue=120.0, channel_order=order).apply_image(red)
    assert green[0, 0].tolist() == [0, 255, 0]
    grey = PhotometricDistortTransform(saturation=0.0, channel_order=order).apply_image(rgb)
    np.testing.assert_allclose(grey, np.repeat(rgb.max(axis=2, keepdims=True), 3, 2), atol=1)


def test_photometric_sampling_probabilities_and_ranges():
    aug = PhotometricDistortion(32.0, (0.5, 1.5), (0.6, 1.4), 18.0, "BGR")
    np.random.seed(0)
    n = 2000
    counts = dict.fromkeys(["brightness", "contrast", "saturation", "hue"], 0)
    for _ in range(n):
        t = aug.get_transform()
        if not isinstance(t, PhotometricDistortTransform):
            continue
        for k in counts:
            v = getattr(t, k)
            if v is not None:
                counts[k] += 1
        assert t.brightness is None or -32 <= t.brightness <= 32
        assert t.contrast is None or 0.5 <= t.contrast <= 1.5
        assert t.saturation is None or 0.6 <= t.saturation <= 1.4
        assert t.hue is None or -18 <= t.hue <= 18
    # each step with probability 0.5: 1000 +- 4.5 sigma (sigma = sqrt(n / 4) ~ 22)
    for k, c in counts.items():
        assert abs(c - n / 2) < 100, (k, c)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_grayscale_is_the_luma_in_every_channel(order):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(6, 7, 3)).astype(np.uint8)
    img = rgb if order == "RGB" else rgb[:, :, ::-1].copy()
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601
    out = GrayscaleTransform(order).apply_image(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    for c in range(3):
        np.testing.assert_allclose(out[..., c], luma, atol=0.51)
    # float images keep their dtype and values
    out = GrayscaleTransform(order).apply_image(img.astype(np.float64))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[..., 1], luma, atol=1e-3)
    boxes = np.array([[1.0, 2.0, 5.0, 6.0]])
    np.testing.assert_array_equal(GrayscaleTransform(order).apply_box(boxes), boxes)
    with pytest.raises(ValueError, match="HxWx3"):
        GrayscaleTransform(order).apply_image(rgb[..., 0])


def test_random_grayscale_probability_and_no_colour_channels():
    np.random.seed(0)
    n = 2000
    aug = RandomGrayscale(0.1, "BGR")
    grey = sum(isinstance(aug.get_transform(), GrayscaleTransform) for _ in range(n))
    assert abs(grey - 0.1 * n) < 60, grey  # sigma = sqrt(n 0.1 0.9) ~ 13.4
    assert all(
        isinstance(RandomGrayscale(1.0, None).get_transform(), T.NoOpTransform) for _ in range(10)
    )
    with pytest.raises(ValueError, match="prob"):
        RandomGrayscale(1.5)


def test_config_grayscale_prob_adds_the_step_after_the_photometric_distortion():
    from ainnoface_d2.data.mapper import build_face_train_augmentation

    cfg = get_cfg()
    add_ainnoface_config(cfg)
    names = [type(a).__name__ for a in build_face_train_augmentation(cfg)]
    assert "RandomGrayscale" not in names  # the papers' recipe: no step, no random draw
    cfg.INPUT.FACE.GRAYSCALE_PROB = 1.0
    # crops inside the image only (expansion and data-anchor-sampling pad with the pixel mean)
    cfg.INPUT.FACE.EXPAND_PROB = 0.0
    cfg.INPUT.FACE.DATA_ANCHOR_SAMPLING_PROB = 0.0
    augs = build_face_train_augmentation(cfg)
    assert [type(a).__name__ for a in augs[:2]] == ["PhotometricDistortion", "RandomGrayscale"]
    # through the lazy renderer, as the mapper runs it: every channel equal
    np.random.seed(3)
    img = smooth_image(80, 100)[:, :, ::-1].copy()  # cfg.INPUT.FORMAT is BGR by default
    lazy = LazyAugInput(img, boxes=np.array([[10.0, 10.0, 40.0, 40.0]]))
    T.AugmentationList(augs)(lazy)
    out = lazy.image.astype(int)
    assert out.shape == (cfg.INPUT.FACE.TRAIN_SIZE, cfg.INPUT.FACE.TRAIN_SIZE, 3)
    assert np.abs(out[..., 0] - out[..., 1]).max() <= 1
    assert np.abs(out[..., 0] - out[..., 2]).max() <= 1


# ------------------------------------------------------------------------------------------
# Deferred rendering == applying the transforms one by one
# ------------------------------------------------------------------------------------------
def smooth_image(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [127 + 100 * np.sin(x / 23.0 + c) * np.cos(y / 31.0 - c) for c in (0.0, 1.0, 2.0)]
    return np.clip(np.stack(chans, axis=2), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", range(12))
def test_render_matches_eager(seed):
    np.random.seed(seed)
    img = smooth_image(120, 160)
    boxes = np.array([[30.0, 40.0, 60.0, 70.0], [100.0, 20.0, 110.0, 35.0]])
    fill = [90.0, 100.0, 110.0]
    augs = [
        PhotometricDistortion(32.0, (0.5, 1.5), (0.5, 1.5), 18.0, "BGR", prob=1.0),
        [
            T.AugmentationList(
                [RandomExpand(1.0, 3.0, fill), RandomFaceCrop((0.3, 1.0), 50, 96, 0.0)]
            ),
            DataAnchorSampling([8, 16, 32, 64], crop_size=96, fill=fill),
        ][seed % 2],
        RandomHFlip(0.5),
        ResizeSquare(96),
    ]
    lazy = LazyAugInput(img, boxes=boxes)
    tfms = T.AugmentationList(augs)(lazy)
    fused = lazy.image
    eager = img
    for t in tfms.transforms:
        eager = t.apply_image(eager)
    assert fused.shape == eager.shape == (96, 96, 3)
    np.testing.assert_allclose(lazy.boxes, tfms.apply_box(boxes))
    diff = np.abs(fused.astype(int) - eager.astype(int))
    # Resampling differs (PIL's bilinear vs OpenCV area + bilinear) only by small amounts on a
    # smooth image; the fill/image border may shift by a pixel.
    assert diff.mean() < 4.0, diff.mean()
    assert np.percentile(diff, 95) < 16, np.percentile(diff, 95)


def test_lazy_input_with_pixel_reading_detectron2_augmentations():
    # RandomSaturation reads the pixels (for its grayscale blend): the lazy input must hand it
    # the rendered image, and the result must equal detectron2's own AugInput.
    img = smooth_image(60, 80)
    boxes = np.array([[10.0, 10.0, 30.0, 40.0]])
    augs = [
        RandomExpand(1.0, 2.0, [50, 60, 70]),
        T.RandomSaturation(0.2, 0.3),
        T.RandomFlip(1.0),
        ResizeSquare(60),
    ]
    results = []
    for cls in (LazyAugInput, T.AugInput):
        np.random.seed(5)
        inp = cls(img, boxes=boxes)
        T.AugmentationList(augs)(inp)
        results.append((inp.image, inp.boxes))
    (lazy_img, lazy_boxes), (ref_img, ref_boxes) = results
    np.testing.assert_allclose(lazy_boxes, ref_boxes)
    assert lazy_img.shape == ref_img.shape == (60, 60, 3)
    assert np.abs(lazy_img.astype(int) - ref_img.astype(int)).mean() < 3.0


def test_render_shrink_averages_areas():
    # A one-pixel checkerboard shrunk 4x must average to mid-grey, not alias to black/white.
    board = ((np.indices((256, 256)).sum(0) % 2) * 255).astype(np.uint8)[:, :, None]
    board = np.repeat(board, 3, axis=2)
    out = render_transforms(board, T.ResizeTransform(256, 256, 64, 64))
    np.testing.assert_allclose(out, 127.5, atol=1.0)


def test_render_exact_for_crop_pad_flip():
    img = np.random.default_rng(3).integers(0, 256, size=(30, 40, 3)).astype(np.uint8)
    tfms = T.TransformList(
        [
            CropPadTransform(-5, -7, 60, 50, 40, 30, fill=[1, 2, 3]),
            T.CropTransform(3, 4, 50, 40),
            T.HFlipTransform(50),
        ]
    )
    expected = np.full((50, 60, 3), [1, 2, 3], np.uint8)
    expected[7:37, 5:45] = img
    expected = expected[4:44, 3:53][:, ::-1]
    np.testing.assert_array_equal(render_transforms(img, tfms), expected)
    np.testing.assert_array_equal(tfms.apply_image(img), expected)


# ------------------------------------------------------------------------------------------
# Boxes follow the pixels
# ------------------------------------------------------------------------------------------
def run_marker_check(mapper, seeds, h=256, w=256, n_faces=6, lo=12, hi=60, tol=2.0):
    kept_total = 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        boxes = random_faces(rng, h, w, n_faces, lo, hi)
        img = marker_image(h, w, boxes)
        np.random.seed(seed)
        out, out_boxes, keep = mapper.augment(img, boxes)
        assert out.dtype == np.uint8 and out.ndim == 3
        assert np.all(out_boxes[:, 2] > out_boxes[:, 0]) and np.all(
            out_boxes[:, 3] > out_boxes[:, 1]
        )
        check_boxes_match_markers(out, out_boxes, keep, tol)
        kept_total += len(keep)
    assert kept_total > 0


def test_full_chain_boxes_match_pixels():
    cfg = make_cfg(train_size=128, PHOTOMETRIC=False)
    run_marker_check(FaceDatasetMapper(cfg, is_train=True), range(60))


def test_crop_alone_boxes_match_pixels():
    run_marker_check(mapper_with([RandomFaceCrop((0.3, 1.0), 50)]), range(25))


def test_expand_alone_boxes_match_pixels():
    fill = [103.53, 116.28, 123.675]
    run_marker_check(mapper_with([RandomExpand(1.0, 4.0, fill), ResizeSquare(160)]), range(20))


def test_das_alone_boxes_match_pixels():
    das = DataAnchorSampling(das_anchor_sizes(AINNOFACE_ANCHOR_SIZES), 128, [100, 110, 120])
    run_marker_check(mapper_with([das]), range(30))


def test_flip_alone_boxes_match_pixels():
    run_marker_check(mapper_with([RandomHFlip(1.0)]), range(3))
    # and by hand: x -> W - x
    boxes = np.array([[10.0, 20.0, 40.0, 50.0]])
    _, out, _ = mapper_with([RandomHFlip(1.0)]).augment(marker_image(64, 100, boxes), boxes)
    np.testing.assert_allclose(out, [[60.0, 20.0, 90.0, 50.0]])


# ------------------------------------------------------------------------------------------
# Data-anchor-sampling statistics
# ------------------------------------------------------------------------------------------
def test_das_anchor_sizes_from_config():
    assert das_anchor_sizes(AINNOFACE_ANCHOR_SIZES) == [8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
    assert das_anchor_sizes([[32, 64, 128]]) == [32.0, 64.0, 128.0]


@pytest.mark.parametrize(
    "face_side, expected_ranges",
    [
        # s = 40: nearest size 32 (i = 2), j in {0..3}: [4, 16], [8, 32], [16, 64], [32, 128]
        (40, [(4, 16), (8, 32), (16, 64), (32, 128)]),
        # s = 23: nearest 16 (i = 1; on a log scale 32 would be nearer), j in {0, 1, 2}
        (23, [(4, 16), (8, 32), (16, 64)]),
        # s = 6: nearest 8 (i = 0), j in {0, 1}
        (6, [(4, 16), (8, 32)]),
        # s = 300: nearest 256 (i = 5 = L - 1), j in {0..5}
        (300, [(4, 16), (8, 32), (16, 64), (32, 128), (64, 256), (128, 512)]),
    ],
)
def test_das_target_scale_distribution(face_side, expected_ranges):
    h = w = 400
    x0 = (w - face_side) / 2
    boxes = np.array([[x0, x0, x0 + face_side, x0 + face_side]])
    img = np.zeros((h, w, 3), np.uint8)
    das = DataAnchorSampling([8, 16, 32, 64, 128, 256], crop_size=600, fill=0)
    mapper = mapper_with([das])
    n = 400
    sizes = []
    for seed in range(n):
        np.random.seed(seed)
        lazy = LazyAugInput(img, boxes=boxes)
        T.AugmentationList([das])(lazy)  # boxes only: the image is never rendered
        b = lazy.boxes[0]
        assert lazy.image_shape[:2] == (600, 600)
        # the face is inside the crop
        assert b[0] >= -1e-6 and b[1] >= -1e-6 and b[2] <= 600 + 1e-6 and b[3] <= 600 + 1e-6
        sizes.append(math.sqrt((b[2] - b[0]) * (b[3] - b[1])))
    sizes = np.array(sizes)
    lo, hi = expected_ranges[0][0], expected_ranges[-1][1]
    # the image resize rounds its size to whole pixels: allow 0.5 px in 400
    assert sizes.min() >= lo * (1 - 2e-3) and sizes.max() <= hi * (1 + 2e-3)

    # P(target < t) = mean over j of the uniform CDF on [a_j, b_j]
    def cdf(t):
        return np.mean([np.clip((t - a) / (b - a), 0, 1) for a, b in expected_ranges])

    for t in (8, 16, 32, 64, 128):
        expected = cdf(t)
        sigma = math.sqrt(max(expected * (1 - expected), 1e-3) / n)
        assert abs(np.mean(sizes < t) - expected) < 4.5 * sigma + 0.01, (t, expected)
    # a full mapper call with the face kept and rendered at that size
    np.random.seed(0)
    out, out_boxes, keep = mapper.augment(img, boxes)
    assert out.shape == (600, 600, 3) and list(keep) == [0]


def test_das_face_larger_than_crop_and_small_image_padding():
    # Resized image smaller than the crop: the window covers it whole, the rest is the fill.
    img = np.full((50, 60, 3), 200, np.uint8)
    boxes = np.array([[20.0, 20.0, 28.0, 28.0]])  # s = 8 -> j in {0, 1}, scale in [0.5, 4]
    das = DataAnchorSampling([8, 16, 32, 64], crop_size=256, fill=[1, 2, 3])
    for seed in range(20):
        np.random.seed(seed)
        out, b, keep = mapper_with([das]).augment(img, boxes)
        assert out.shape == (256, 256, 3) and list(keep) == [0]
        n_image = np.all(out == 200, axis=2).sum()
        n_fill = np.all(out == [1, 2, 3], axis=2).sum()
        assert n_image + n_fill >= 256 * 256 - 4 * 256  # only the border pixels are blended
        assert n_fill > 0
    # Face larger than the crop (crop 32, face 40 -> target up to 2 * 64 = 128): the window lies
    # inside the face, so the clipped box covers the whole output.
    img = np.zeros((200, 200, 3), np.uint8)
    boxes = np.array([[80.0, 80.0, 120.0, 120.0]])
    das = DataAnchorSampling([8, 16, 32, 64], crop_size=32, fill=0)
    seen_large = False
    for seed in range(40):
        np.random.seed(seed)
        _, b, keep = mapper_with([das]).augment(img, boxes)
        assert list(keep) == [0]
        lazy = LazyAugInput(img, boxes=boxes)
        np.random.seed(seed)
        T.AugmentationList([das])(lazy)
        side = lazy.boxes[0, 2] - lazy.boxes[0, 0]
        if side > 32:
            seen_large = True
            np.testing.assert_allclose(b[0], [0, 0, 32, 32])
    assert seen_large


# ------------------------------------------------------------------------------------------
# Crop validity, min-face-size, empty images
# ------------------------------------------------------------------------------------------
def test_crop_path_never_loses_all_faces():
    cfg = make_cfg(
        train_size=128, PHOTOMETRIC=False, DATA_ANCHOR_SAMPLING_PROB=0.0, EXPAND_PROB=0.5
    )
    mapper = FaceDatasetMapper(cfg, is_train=True)
    for seed in range(150):
        rng = np.random.default_rng(seed)
        boxes = random_faces(rng, 256, 256, int(rng.integers(1, 4)), 30, 60)
        img = marker_image(256, 256, boxes)
        np.random.seed(seed)
        _, out_boxes, keep = mapper.augment(img, boxes)
        assert len(keep) >= 1, seed
        assert np.all(
            np.minimum(out_boxes[:, 2] - out_boxes[:, 0], out_boxes[:, 3] - out_boxes[:, 1]) >= 6.0
        )


def test_random_face_crop_keeps_centre_faces_and_falls_back():
    # One face: every accepted crop contains its centre (50, 50).
    crop = RandomFaceCrop((0.3, 1.0), max_tries=50)
    boxes = np.array([[40.0, 40.0, 60.0, 60.0]])
    img = np.zeros((200, 300, 3), np.uint8)
    for seed in range(100):
        np.random.seed(seed)
        t = crop.get_transform(img, boxes)
        if isinstance(t, T.CropTransform):
            assert t.w == t.h and 60 <= t.w <= 200
            assert t.x0 <= 50 <= t.x0 + t.w and t.y0 <= 50 <= t.y0 + t.h
    # A face no crop can keep at this min size: the image is left uncropped.
    crop = RandomFaceCrop((0.3, 1.0), max_tries=5, output_size=100, min_face_size=50)
    tiny = np.array([[10.0, 10.0, 12.0, 12.0]])  # 2 px * 100 / 60 < 50
    np.random.seed(0)
    assert isinstance(crop.get_transform(img, tiny), T.NoOpTransform)


def test_min_face_size_filter():
    # 200x200 -> ResizeSquare(100) halves everything; min size 6: sides 10 -> 5 (dropped),
    # 14 -> 7 (kept), a 30x11 box -> 15x5.5 (dropped: shorter side).
    boxes = np.array(
        [[10.0, 10.0, 20.0, 20.0], [50.0, 50.0, 64.0, 64.0], [100.0, 100.0, 130.0, 111.0]]
    )
    img = marker_image(200, 200, boxes)
    out, out_boxes, keep = mapper_with([ResizeSquare(100)], min_face_size=6.0).augment(img, boxes)
    assert out.shape == (100, 100, 3)
    assert list(keep) == [1]
    np.testing.assert_allclose(out_boxes, [[25.0, 25.0, 32.0, 32.0]])


def test_empty_image_full_chain(tmp_path):
    cfg = make_cfg(train_size=128, DATA_ANCHOR_SAMPLING_PROB=1.0)
    mapper = FaceDatasetMapper(cfg, is_train=True)
    path = tmp_path / "empty.png"
    cv2.imwrite(str(path), smooth_image(150, 200))
    d = {"file_name": str(path), "image_id": 7, "height": 150, "width": 200, "annotations": []}
    for seed in range(10):
        np.random.seed(seed)
        out = mapper(d)
        assert out["image"].shape == (3, 128, 128) and out["image"].dtype == torch.uint8
        assert len(out["instances"]) == 0
        assert out["instances"].gt_boxes.tensor.shape == (0, 4)
        assert (out["height"], out["width"], out["image_id"]) == (150, 200, 7)


# ------------------------------------------------------------------------------------------
# The mapper end to end
# ------------------------------------------------------------------------------------------
def test_mapper_train_call_uses_only_non_crowd_faces(tmp_path):
    boxes = np.array([[10.0, 20.0, 50.0, 60.0], [100.0, 80.0, 140.0, 130.0]])
    img = marker_image(160, 200, boxes)
    path = tmp_path / "faces.png"
    cv2.imwrite(str(path), img)
    annos = [
        {
            "bbox": [10.0, 20.0, 40.0, 40.0],
            "bbox_mode": BoxMode.XYWH_ABS,
            "iscrowd": 0,
            "category_id": 0,
        },
        {
            "bbox": [0.0, 0.0, 200.0, 160.0],
            "bbox_mode": BoxMode.XYWH_ABS,
            "iscrowd": 1,
            "category_id": 0,
        },
        {"bbox": [100.0, 80.0, 40.0, 50.0], "iscrowd": 0, "category_id": 0},
    ]
    d = {"file_name": str(path), "image_id": 3, "height": 160, "width": 200, "annotations": annos}
    # deterministic chain: 200x160 -> 100x100, x * 0.5, y * 0.625
    out = mapper_with([ResizeSquare(100)])(d)
    np.testing.assert_allclose(
        out["instances"].gt_boxes.tensor.numpy(),
        [[5.0, 12.5, 25.0, 37.5], [50.0, 50.0, 70.0, 81.25]],
    )
    assert out["instances"].gt_classes.tolist() == [0, 0]
    assert out["instances"].image_size == (100, 100)
    assert set(out) == {"image", "instances", "height", "width", "file_name", "image_id"}
    assert (out["height"], out["width"]) == (160, 200)
    # random full chain without ignore regions: the crowd box never appears, the chain output is
    # consistent
    cfg = make_cfg(train_size=128, PHOTOMETRIC=True, IGNORE_REGIONS=False)
    mapper = FaceDatasetMapper(cfg, is_train=True)
    for seed in range(20):
        np.random.seed(seed)
        out = mapper(d)
        assert out["image"].shape == (3, 128, 128)
        assert len(out["instances"]) <= 2
        t = out["instances"].gt_boxes.tensor
        assert torch.all(t >= 0) and torch.all(t <= 128)


def test_mapper_test_mode(tmp_path):
    img = smooth_image(200, 256)
    path = tmp_path / "t.png"
    cv2.imwrite(str(path), img)
    annos = [
        {
            "bbox": [10.0, 20.0, 40.0, 50.0],
            "bbox_mode": BoxMode.XYWH_ABS,
            "iscrowd": 0,
            "category_id": 0,
        }
    ]
    d = {"file_name": str(path), "image_id": 1, "height": 200, "width": 256, "annotations": annos}
    cfg = make_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 0
    out = FaceDatasetMapper(cfg, is_train=False)(d)
    np.testing.assert_array_equal(out["image"].numpy().transpose(1, 2, 0), img)
    np.testing.assert_allclose(out["instances"].gt_boxes.tensor.numpy(), [[10, 20, 50, 70]])
    # short side 200 -> 128: scale 0.64, width 256 * 0.64 = 163.84 -> 164
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 128, 1000
    out = FaceDatasetMapper(cfg, is_train=False)(d)
    assert out["image"].shape == (3, 128, 164)
    np.testing.assert_allclose(
        out["instances"].gt_boxes.tensor.numpy(),
        [[10 * 164 / 256, 20 * 0.64, 50 * 164 / 256, 70 * 0.64]],
        rtol=1e-5,
    )
    assert (out["height"], out["width"]) == (200, 256)


# ------------------------------------------------------------------------------------------
# Image reading
# ------------------------------------------------------------------------------------------
def read_with_mapper(path, height, width):
    cfg = make_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 0
    mapper = FaceDatasetMapper(cfg, is_train=False)
    d = {"file_name": str(path), "image_id": 0, "height": height, "width": width}
    return mapper(d)["image"].numpy().transpose(1, 2, 0)  # HWC, BGR


def test_read_grayscale_rgba_cmyk(tmp_path):
    gray = np.full((20, 30), 100, np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.jpg", quality=95)
    out = read_with_mapper(tmp_path / "g.jpg", 20, 30)
    assert out.shape == (20, 30, 3)
    np.testing.assert_allclose(out, 100, atol=2)

    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[...] = (10, 20, 30, 0)  # fully transparent: the colour is still kept (alpha dropped)
    rgba[:, 15:] = (200, 100, 50, 255)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_with_mapper(tmp_path / "a.png", 20, 30)
    assert out.shape == (20, 30, 3)
    assert out[0, 0].tolist() == [30, 20, 10] and out[0, 20].tolist() == [50, 100, 200]

    # CMYK (0, 255, 255, 0) is red: RGB = 255 - C, 255 - M, 255 - Y (K = 0)
    cmyk = np.zeros((20, 30, 4), np.uint8)
    cmyk[...] = (0, 255, 255, 0)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=95)
    out = read_with_mapper(tmp_path / "c.jpg", 20, 30)
    assert out.shape == (20, 30, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), [0, 0, 255], atol=6)


def test_read_exif_orientation(tmp_path):
    # Stored 40 wide x 20 high with a red block at the top-left; EXIF orientation 6 means
    # "rotate 90 degrees clockwise to display": displayed 20 wide x 40 high, block top-right.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "e.jpg", exif=exif, quality=95)
    out = read_with_mapper(tmp_path / "e.jpg", 40, 20)
    assert out.shape == (40, 20, 3)
    assert out[2, 17, 2] > 200 and out[2, 2, 2] < 50  # BGR: red is channel 2
    with pytest.raises(SizeMismatchError, match="e.jpg"):
        read_with_mapper(tmp_path / "e.jpg", 20, 40)


def test_unreadable_images_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(OSError, match="corrupt.jpg"):
        read_with_mapper(bad, 10, 10)
    with pytest.raises(OSError, match="missing.jpg"):
        read_with_mapper(tmp_path / "missing.jpg", 10, 10)
    good = tmp_path / "truncated.jpg"
    Image.fromarray(smooth_image(64, 64)).save(good, quality=95)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="truncated.jpg"):
        read_with_mapper(good, 64, 64)


# ------------------------------------------------------------------------------------------
# SRN's crop rule and PyramidBox's capped data-anchor-sampling. Where ../shared/widerface holds
# the real WIDER FACE train boxes, the capped sampling is also checked on them (skipped elsewhere).
# ------------------------------------------------------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDER_TRAIN = os.path.join(
    REPO, "..", "shared", "widerface", "wider_face_split", "wider_face_train_bbx_gt.txt"
)
ANCHORS = [8.0, 16.0, 32.0, 64.0, 128.0, 256.0]


def test_srn_crop_side_rule():
    """SRN: the shorter side with probability 0.5, else U[0.5, 1] of it (uniform)."""
    crop = RandomFaceCrop((0.5, 1.0), max_tries=1, full_side_prob=0.5)
    img = np.zeros((300, 400, 3), np.uint8)
    sides = []
    for seed in range(2000):
        np.random.seed(seed)
        t = crop.get_transform(img, np.zeros((0, 4)))  # no faces: the first crop is taken
        assert isinstance(t, T.CropTransform) and t.w == t.h
        assert 0 <= t.x0 <= 400 - t.w and 0 <= t.y0 <= 300 - t.h
        sides.append(t.w)
    sides = np.array(sides)
    full = np.mean(sides == 300)
    assert abs(full - 0.5) < 4 * math.sqrt(0.25 / 2000)
    partial = sides[sides < 300] / 300
    assert partial.min() >= 0.5 - 1 / 300
    # uniform on [0.5, 1): mean 0.75, a quarter below 0.625
    assert abs(partial.mean() - 0.75) < 0.01
    assert abs(np.mean(partial < 0.625) - 0.25) < 0.04
    # the earlier rule stays available: U[0.3, 1], never forced to the full side
    old = RandomFaceCrop((0.3, 1.0), max_tries=1)
    np.random.seed(0)
    old_sides = [old.get_transform(img, np.zeros((0, 4))).w for _ in range(500)]
    assert min(old_sides) < 0.4 * 300 and np.mean(np.array(old_sides) == 300) < 0.02
    with pytest.raises(ValueError, match="full_side_prob"):
        RandomFaceCrop(full_side_prob=1.5)


def test_crop_accepts_a_window_only_by_the_face_centre():
    """A crop keeps a face when it contains the face's centre, whatever the overlap: a window
    holding 49% of a face but not its centre is rejected, one holding 10% and the centre is
    accepted."""
    img = np.zeros((100, 200, 3), np.uint8)
    face = np.array([[0.0, 0.0, 100.0, 100.0]])  # centre (50, 50); crops are 50 x 50 here
    crop = RandomFaceCrop((0.5, 0.5), max_tries=1)
    accepted = 0
    for seed in range(400):
        np.random.seed(seed)
        t = crop.get_transform(img, face)
        np.random.seed(seed)  # the window it drew: side, then x0, then y0
        np.random.uniform(0.5, 0.5)
        x0, y0 = np.random.randint(0, 151), np.random.randint(0, 51)
        contains = x0 <= 50 <= x0 + 50 and y0 <= 50 <= y0 + 50
        assert isinstance(t, T.CropTransform) == contains, (x0, y0)
        accepted += contains
    assert 0 < accepted < 400
    assert not _keeps(face, 0, 0, 49, 100) and _keeps(face, 50, 0, 10, 100)
    assert _keeps(face, 0, 0, 50, 100)  # the centre on the window's edge counts as inside


def _keeps(boxes, x0, y0, w, h):
    from ainnoface_d2.data.augmentations import _kept_by_window

    return bool(_kept_by_window(boxes, x0, y0, w, h, 1.0, 0.0).any())


def _das_scales(das, side, n, image=400):
    x0 = (image - side) / 2
    boxes = np.array([[x0, x0, x0 + side, x0 + side]])
    scales = []
    for seed in range(n):
        np.random.seed(seed)
        tfm = das.get_transform(np.zeros((image, image, 3), np.uint8), boxes)
        scales.append(tfm.transforms[0].new_w / image)
    return np.array(scales)


@pytest.mark.parametrize("side", [5.0, 10.0, 23.0, 40.0, 100.0, 300.0])
def test_das_cap_bounds_the_upscaling(side):
    capped = DataAnchorSampling(ANCHORS, crop_size=256, max_upscale=2.0)
    free = DataAnchorSampling(ANCHORS, crop_size=256)
    s_cap, s_free = _das_scales(capped, side, 300), _das_scales(free, side, 300)
    # the target is at most max(a_j / 2, 2 s): up-scaling <= 2 unless a bin's lower end is above
    lowest_floor = ANCHORS[0] / 2 / side
    assert s_cap.max() <= max(2.0, ANCHORS[1] / 2 / side) * (1 + 2e-3)
    if lowest_floor < 2:
        # some targets of the bin above the nearest one exceed 2x without the cap
        assert (s_free > 2.0 * 1.01).any() == (2 * ANCHORS[min(5, _nearest(side) + 1)] > 2 * side)
    assert np.mean(s_cap <= 1.0) >= np.mean(s_free <= 1.0)


@pytest.mark.parametrize("side", [10.0, 40.0, 300.0])
def test_das_crop_bins_spread_every_face_over_the_crop(side):
    """bins="crop": the bin is uniform over the anchors that fit the crop (a_j <= 192: 8, 16, 32,
    64, 128) whatever the face's size, and the target uniform in [a_j / 2, min(2 a_j, 192)], so
    P(target > 64 px) = P(j = 3) * (128 - 64) / (128 - 32) + P(j = 4) = 1/5 * 2/3 + 1/5 = 1/3
    for a face of any size. PyramidBox's rule keeps a 10-px face at <= 2 * 16 px."""
    crop = 192
    das = DataAnchorSampling(ANCHORS, crop_size=crop, bins="crop")
    targets = _das_scales(das, side, 600, image=4000) * side  # large: fine resize steps
    assert targets.min() >= ANCHORS[0] / 2 * (1 - 2e-3)
    assert targets.max() <= crop * (1 + 2e-3)
    assert np.mean(targets > 64) == pytest.approx(1 / 3, abs=0.06)
    assert np.mean(targets < 8) == pytest.approx(1 / 5 * 4 / 12, abs=0.04)  # j = 0: [4, 16]
    if side == 10.0:
        assert (_das_scales(DataAnchorSampling(ANCHORS, crop), side, 300) * side).max() <= 32.1
    with pytest.raises(ValueError, match="bins"):
        DataAnchorSampling(ANCHORS, crop, bins="all")


def _nearest(side):
    return int(np.argmin(np.abs(np.array(ANCHORS) - side)))


def _wider_train_sides(limit=20000):
    sides = []
    with open(WIDER_TRAIN) as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines) and len(sides) < limit:
        if not lines[i].strip():
            break
        n = int(lines[i + 1])
        for row in lines[i + 2 : i + 2 + n]:
            v = row.split()
            w, h, invalid = float(v[2]), float(v[3]), int(v[7])
            if w > 0 and h > 0 and not invalid:
                sides.append(math.sqrt(w * h))
        i += 2 + max(n, 1)
    return np.array(sides)


@pytest.mark.skipif(not os.path.isfile(WIDER_TRAIN), reason="needs ../shared/widerface")
def test_das_cap_on_real_wider_train_faces():
    """On real WIDER FACE train faces (one drawn per sample, as data-anchor-sampling picks one),
    the uncapped rule enlarges some faces more than 4x; the cap never does beyond the bins'
    lower ends (faces under 4 px, for which even the smallest bin's a_0 / 2 = 4 px is > 2x)."""
    sides = _wider_train_sides()
    rng = np.random.default_rng(0)
    picked = rng.choice(sides, 3000)
    results = {}
    for name, cap in (("free", None), ("capped", 2.0)):
        das = DataAnchorSampling(ANCHORS, crop_size=1024, max_upscale=cap)
        scales = []
        for k, side in enumerate(picked):
            np.random.seed(k)
            face = np.array([[100.0, 100.0, 100.0 + side, 100.0 + side]])
            tfm = das.get_transform(np.zeros((2000, 2000, 3), np.uint8), face)
            scales.append(tfm.transforms[0].new_w / 2000)
        results[name] = np.array(scales)
    assert np.mean(results["free"] > 4) > 0.005
    tiny = picked < 4
    assert np.all(results["capped"][~tiny] <= 2.0 * (1 + 2e-3))
    assert np.mean(results["capped"] > 4) <= np.mean(tiny)
