"""ainnoface_d2/data/mapper.py: ignore boxes through the mapper (iscrowd=1 regions and faces too
small after augmentation)."""

import math

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import add_ainnoface_config
from ainnoface_d2.data.augmentations import ResizeSquare
from ainnoface_d2.data.mapper import FaceDatasetMapper

import cv2
import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.structures import BoxMode

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
