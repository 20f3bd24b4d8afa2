"""SRN's training data rules: the square crop, its centre rule, the capped data-anchor-sampling,
and ignore boxes through the mapper (iscrowd=1 regions and faces too small after augmentation).
Where ``../shared/widerface`` holds the real WIDER FACE train boxes, the capped sampling is also
checked on them (skipped elsewhere)."""

import math
import os

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import add_ainnoface_config
from ainnoface_d2.data.augmentations import DataAnchorSampling, RandomFaceCrop, ResizeSquare
from ainnoface_d2.data.mapper import FaceDatasetMapper

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

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


# ---------------------------------------------------------------- ignore boxes in the mapper


def _cfg(**face):
    cfg = get_cfg()
    add_ainnoface_config(cfg)
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[2 * s, 2 * math.sqrt(2) * s] for s in (4, 8, 16)]
    cfg.INPUT.FACE.TRAIN_SIZE = 128
    for k, v in face.items():
        setattr(cfg.INPUT.FACE, k, v)
    return cfg


def _dataset_dict(tmp_path):
    img = np.zeros((160, 200, 3), np.uint8)
    path = tmp_path / "faces.png"
    cv2.imwrite(str(path), img)

    def anno(x, y, w, h, crowd):
        return {"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS, "iscrowd": crowd}

    annos = [
        anno(10.0, 20.0, 40.0, 40.0, 0),  # a face
        anno(120.0, 10.0, 8.0, 8.0, 0),  # a face that the resize makes 4 x 5 px: too small
        anno(150.0, 100.0, 30.0, 30.0, 1),  # an invalid face (iscrowd=1)
        anno(-50.0, -50.0, 20.0, 20.0, 1),  # an invalid box outside the image
    ]
    return {
        "file_name": str(path),
        "image_id": 1,
        "height": 160,
        "width": 200,
        "annotations": annos,
    }


def test_mapper_keeps_ignore_boxes(tmp_path):
    d = _dataset_dict(tmp_path)
    # 200 x 160 -> 100 x 100: x * 0.5, y * 0.625; min face 6 drops the 4 x 5 face
    mapper = FaceDatasetMapper(
        True,
        augmentations=[ResizeSquare(100)],
        image_format="BGR",
        min_face_size=6.0,
        ignore_regions=True,
    )
    inst = mapper(d)["instances"]
    np.testing.assert_allclose(
        inst.gt_boxes.tensor.numpy(),
        [[5.0, 12.5, 25.0, 37.5], [75.0, 62.5, 90.0, 81.25], [60.0, 6.25, 64.0, 11.25]],
    )
    assert inst.gt_ignore.tolist() == [False, True, True]
    assert inst.gt_classes.tolist() == [0, 0, 0]
    # off (the default): only the face, no gt_ignore field
    mapper.ignore_regions = False
    inst = mapper(d)["instances"]
    assert len(inst) == 1 and not inst.has("gt_ignore")


def test_mapper_ignore_boxes_follow_random_augmentation(tmp_path):
    """Through the random chain the ignore boxes follow the same transforms as the faces: the
    image's marker colours must sit exactly under them."""
    img = np.zeros((160, 200, 3), np.uint8)
    img[20:60, 10:50] = (0, 0, 255)  # the face
    img[100:130, 150:180] = (0, 255, 0)  # the invalid face
    path = tmp_path / "marked.png"
    cv2.imwrite(str(path), img)
    d = _dataset_dict(tmp_path)
    d["file_name"] = str(path)
    d["annotations"] = d["annotations"][::2]  # the face and the invalid face
    cfg = _cfg(PHOTOMETRIC=False, IGNORE_REGIONS=True, MIN_FACE_SIZE=2.0)
    mapper = FaceDatasetMapper(cfg, is_train=True)
    seen = 0
    for seed in range(30):
        np.random.seed(seed)
        out = mapper(d)
        inst, image = out["instances"], out["image"].numpy().transpose(1, 2, 0)
        for box, ignore in zip(inst.gt_boxes.tensor.numpy(), inst.gt_ignore.tolist()):
            channel = 1 if ignore else 2
            mask = image[:, :, channel] > 127
            ys, xs = np.nonzero(mask)
            if not ignore:
                assert not inst.gt_ignore[0]  # faces come first
            assert abs(xs.min() - box[0]) <= 2 and abs(xs.max() + 1 - box[2]) <= 2
            assert abs(ys.min() - box[1]) <= 2 and abs(ys.max() + 1 - box[3]) <= 2
            seen += ignore
    assert seen > 5


def test_ignore_boxes_do_not_steer_the_crop(tmp_path):
    """The crop and data-anchor-sampling sample from the faces only: with one face and a large
    ignore region elsewhere, every sample still contains the face."""
    d = _dataset_dict(tmp_path)
    d["annotations"] = [d["annotations"][0], d["annotations"][2]]
    cfg = _cfg(PHOTOMETRIC=False, IGNORE_REGIONS=True, DATA_ANCHOR_SAMPLING_PROB=0.5)
    mapper = FaceDatasetMapper(cfg, is_train=True)
    for seed in range(40):
        np.random.seed(seed)
        inst = mapper(d)["instances"]
        assert (~inst.gt_ignore).sum() == 1, seed
        assert torch.all(inst.gt_boxes.tensor >= 0) and torch.all(inst.gt_boxes.tensor <= 128)
