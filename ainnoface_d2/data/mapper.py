"""``FaceDatasetMapper``: turns a WIDER FACE dataset dict into the model's input.

Training applies the SRN / PyramidBox augmentation of :mod:`ainnoface_d2.data.augmentations`
(photometric distortion; data-anchor-sampling or expansion + random square crop; flip; resize to
``INPUT.FACE.TRAIN_SIZE``), keeps the faces whose centre is in the final image, clips them to it
and drops those with a shorter side below ``INPUT.FACE.MIN_FACE_SIZE``. Only annotations with
``iscrowd == 0`` are targets (the converter marks invalid and degenerate WIDER boxes iscrowd=1).

Testing reads the image, resizes it with ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)`` when
``INPUT.MIN_SIZE_TEST > 0`` (else keeps the original size) and, when the dict has annotations,
returns its faces as ``instances`` in the resized image's coordinates.

Output: ``{"image": CHW uint8 tensor in INPUT.FORMAT, "instances": Instances(gt_boxes,
gt_classes), "height", "width" (original size), "file_name", "image_id"}``.
"""

import logging

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, BoxMode, Instances

from .augmentations import (
    DataAnchorSampling,
    FaceSampling,
    LazyAugInput,
    PhotometricDistortion,
    RandomExpand,
    RandomFaceCrop,
    RandomHFlip,
    ResizeSquare,
)

__all__ = ["FaceDatasetMapper", "build_face_train_augmentation", "das_anchor_sizes"]

logger = logging.getLogger(__name__)


def das_anchor_sizes(anchor_generator_sizes):
    """Anchor sizes that data-anchor-sampling aims at: the first size of each pyramid level
    (AInnoFace: 2S for S = 4, ..., 128, i.e. 8, 16, ..., 256), as PyramidBox uses one size per
    level. A single list (Detectron2's "same sizes on every level") is used whole."""
    sizes = [list(level) for level in anchor_generator_sizes]
    if len(sizes) == 1:
        return sorted(float(s) for s in sizes[0])
    return sorted(float(level[0]) for level in sizes)


def _channel_order(image_format):
    return image_format if image_format in ("RGB", "BGR") else None


def build_face_train_augmentation(cfg):
    """The training augmentation list described in :mod:`ainnoface_d2.data.augmentations`."""
    f = cfg.INPUT.FACE
    fill = list(cfg.MODEL.PIXEL_MEAN)  # already in INPUT.FORMAT's channel order
    augs = []
    if f.PHOTOMETRIC:
        augs.append(
            PhotometricDistortion(
                brightness_delta=f.BRIGHTNESS_DELTA,
                contrast_range=tuple(f.CONTRAST_RANGE),
                saturation_range=tuple(f.SATURATION_RANGE),
                hue_delta=f.HUE_DELTA,
                channel_order=_channel_order(cfg.INPUT.FORMAT),
            )
        )
    crop = T.AugmentationList(
        [
            RandomExpand(prob=f.EXPAND_PROB, max_ratio=f.EXPAND_MAX_RATIO, fill=fill),
            RandomFaceCrop(
                scale_range=tuple(f.CROP_SCALE_RANGE),
                max_tries=f.MAX_CROP_TRIES,
                output_size=f.TRAIN_SIZE,
                min_face_size=f.MIN_FACE_SIZE,
            ),
        ]
    )
    das = DataAnchorSampling(
        das_anchor_sizes(cfg.MODEL.ANCHOR_GENERATOR.SIZES), crop_size=f.TRAIN_SIZE, fill=fill
    )
    augs.append(FaceSampling(das, crop, prob=f.DATA_ANCHOR_SAMPLING_PROB))
    augs.append(RandomHFlip(prob=f.FLIP_PROB))
    augs.append(ResizeSquare(f.TRAIN_SIZE))
    return augs


class FaceDatasetMapper:
    """Map a dataset dict (Detectron2 format, ``bbox`` in XYWH_ABS) to the model's input; see
    the module docstring. Randomness comes from numpy's global RNG, which Detectron2 seeds per
    data-loader worker."""

    @configurable
    def __init__(self, is_train, *, augmentations, image_format, min_face_size=0.0):
        """
        Args:
            is_train (bool): whether the output is for training (sets nothing else by itself).
            augmentations (list[Augmentation or Transform]): applied in order to the image and
                the face boxes.
            image_format (str): as in ``detection_utils.read_image``.
            min_face_size (float): faces whose shorter side (after augmentation) is below this
                are dropped from the targets.
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.min_face_size = float(min_face_size)
        mode = "training" if is_train else "inference"
        logger.info(f"[FaceDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train=True):
        if is_train:
            augs = build_face_train_augmentation(cfg)
            min_face_size = cfg.INPUT.FACE.MIN_FACE_SIZE
        else:
            augs = []
            if cfg.INPUT.MIN_SIZE_TEST > 0:
                augs.append(T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST))
            min_face_size = 0.0
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "min_face_size": min_face_size,
        }

    def read_image(self, dataset_dict):
        """Read ``dataset_dict["file_name"]`` in ``image_format`` (EXIF orientation applied) and
        check its size against the dict's height/width."""
        file_name = dataset_dict["file_name"]
        try:
            image = utils.read_image(file_name, format=self.image_format)
        except Exception as e:
            raise OSError(f"cannot read image {file_name}: {e}") from e
        utils.check_image_size(dataset_dict, image)
        return image

    @staticmethod
    def face_boxes(dataset_dict):
        """XYXY_ABS boxes (float64, Nx4) and contiguous class ids of the annotations with
        iscrowd == 0."""
        annos = [a for a in dataset_dict.get("annotations", ()) if a.get("iscrowd", 0) == 0]
        if not annos:
            return np.zeros((0, 4), dtype=np.float64), np.zeros((0,), dtype=np.int64)
        boxes = np.array(
            [
                BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS)
                for a in annos
            ],
            dtype=np.float64,
        ).reshape(-1, 4)
        classes = np.array([a.get("category_id", 0) for a in annos], dtype=np.int64)
        return boxes, classes

    def augment(self, image, boxes):
        """Apply the augmentations to an HWC image and Nx4 XYXY_ABS boxes.

        Returns:
            image (ndarray), boxes (Kx4 float64, clipped to the image), keep (K indices into the
            input boxes): the faces whose centre is inside the augmented image and whose
            shorter side is at least ``min_face_size``.
        """
        aug_input = LazyAugInput(image, boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
        self.augmentations(aug_input)
        image = aug_input.image
        boxes = aug_input.boxes
        h, w = image.shape[:2]
        cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
        cy = (boxes[:, 1] + boxes[:, 3]) * 0.5
        boxes = np.stack(
            [
                np.clip(boxes[:, 0], 0, w),
                np.clip(boxes[:, 1], 0, h),
                np.clip(boxes[:, 2], 0, w),
                np.clip(boxes[:, 3], 0, h),
            ],
            axis=1,
        )
        side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        ok = (cx >= 0) & (cx <= w) & (cy >= 0) & (cy <= h) & (side > 0)
        ok &= side >= self.min_face_size
        ok &= np.isfinite(boxes).all(axis=1)
        keep = np.nonzero(ok)[0]
        return image, boxes[keep], keep

    def __call__(self, dataset_dict):
        return self.map_image(dataset_dict, self.read_image(dataset_dict))

    def map_image(self, dataset_dict, image):
        """The mapper's output for ``dataset_dict`` given its already-read ``image``."""
        orig_h, orig_w = image.shape[:2]
        boxes, classes = self.face_boxes(dataset_dict)
        image, boxes, keep = self.augment(image, boxes)
        if image.ndim == 2:
            image = image[:, :, None]
        h, w = image.shape[:2]
        instances = Instances((h, w))
        instances.gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        instances.gt_classes = torch.as_tensor(classes[keep], dtype=torch.int64)
        return {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "instances": instances,
            "height": dataset_dict.get("height", orig_h),
            "width": dataset_dict.get("width", orig_w),
            "file_name": dataset_dict["file_name"],
            "image_id": dataset_dict.get("image_id"),
        }
