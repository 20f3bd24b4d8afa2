"""``FaceDatasetMapper``: turns a WIDER FACE dataset dict into the model's input.

Training applies the SRN / PyramidBox augmentation of :mod:`ainnoface_d2.data.augmentations`
(photometric distortion; data-anchor-sampling or expansion + random square crop; flip; resize to
``INPUT.FACE.TRAIN_SIZE``), keeps the faces whose centre is in the final image, clips them to it
and drops those with a shorter side below ``INPUT.FACE.MIN_FACE_SIZE``. Only annotations with
``iscrowd == 0`` are targets (the converter marks invalid and degenerate WIDER boxes iscrowd=1).
With ``INPUT.FACE.IGNORE_REGIONS`` the iscrowd=1 boxes (clipped, where they overlap the final
image) and the faces dropped for their size are kept as ignore boxes instead: they follow the
same transforms and come out with ``gt_ignore`` True, so the model ignores the anchors on them
rather than training them as background.

Testing reads the image, resizes it with ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)`` when
``INPUT.MIN_SIZE_TEST > 0`` (else keeps the original size) and, when the dict has annotations,
returns its faces as ``instances`` in the resized image's coordinates.

Output: ``{"image": CHW uint8 tensor in INPUT.FORMAT, "instances": Instances(gt_boxes,
gt_classes[, gt_ignore]), "height", "width" (original size), "file_name", "image_id"}``.
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
    PhotometricDistortion,
    RandomExpand,
    RandomFaceCrop,
    RandomGrayscale,
    RandomHFlip,
    ResizeSquare,
)
from .deferred_render import LazyAugInput

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
    if f.GRAYSCALE_PROB > 0:
        augs.append(
            RandomGrayscale(f.GRAYSCALE_PROB, channel_order=_channel_order(cfg.INPUT.FORMAT))
        )
    crop = T.AugmentationList(
        [
            RandomExpand(prob=f.EXPAND_PROB, max_ratio=f.EXPAND_MAX_RATIO, fill=fill),
            RandomFaceCrop(
                scale_range=tuple(f.CROP_SCALE_RANGE),
                max_tries=f.MAX_CROP_TRIES,
                output_size=f.TRAIN_SIZE,
                min_face_size=f.MIN_FACE_SIZE,
                full_side_prob=f.CROP_FULL_SIDE_PROB,
            ),
        ]
    )
    das = DataAnchorSampling(
        das_anchor_sizes(cfg.MODEL.ANCHOR_GENERATOR.SIZES),
        crop_size=f.TRAIN_SIZE,
        fill=fill,
        max_upscale=f.DATA_ANCHOR_SAMPLING_MAX_UPSCALE or None,
        bins=f.DATA_ANCHOR_SAMPLING_BINS,
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
    def __init__(
        self, is_train, *, augmentations, image_format, min_face_size=0.0, ignore_regions=False
    ):
        """
        Args:
            is_train (bool): whether the output is for training (sets nothing else by itself).
            augmentations (list[Augmentation or Transform]): applied in order to the image and
                the face boxes.
            image_format (str): as in ``detection_utils.read_image``.
            min_face_size (float): faces whose shorter side (after augmentation) is below this
                are dropped from the targets.
            ignore_regions (bool): keep iscrowd=1 boxes and the faces dropped for their size as
                ignore boxes (``instances.gt_ignore``).
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.min_face_size = float(min_face_size)
        self.ignore_regions = bool(ignore_regions)
        mode = "training" if is_train else "inference"
        logger.info(f"[FaceDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train=True):
        if is_train:
            augs = build_face_train_augmentation(cfg)
            min_face_size = cfg.INPUT.FACE.MIN_FACE_SIZE
            ignore_regions = cfg.INPUT.FACE.IGNORE_REGIONS
        else:
            augs = []
            if cfg.INPUT.MIN_SIZE_TEST > 0:
                augs.append(T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST))
            min_face_size = 0.0
            ignore_regions = False
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "min_face_size": min_face_size,
            "ignore_regions": ignore_regions,
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
    def face_boxes(dataset_dict, iscrowd=0):
        """XYXY_ABS boxes (float64, Nx4) and contiguous class ids of the annotations with
        ``iscrowd`` (0: the faces; 1: the regions to ignore)."""
        annos = [a for a in dataset_dict.get("annotations", ()) if a.get("iscrowd", 0) == iscrowd]
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
        image, boxes, keep, _, _ = self.augment_with_ignored(image, boxes)
        return image, boxes, keep

    def augment_with_ignored(self, image, boxes, ignored=None):
        """:meth:`augment` that also carries ``ignored`` (Mx4 XYXY_ABS regions) through the same
        transforms. The augmentations sample their parameters from the faces only.

        Returns:
            image, boxes, keep as :meth:`augment`; then the ignore boxes (Jx4, clipped to the
            image, non-empty): the ``ignored`` regions that overlap the image and the faces
            dropped for their size; and their sources (J indices into ``ignored`` followed by
            ``boxes``).
        """
        ignored = np.zeros((0, 4)) if ignored is None else np.asarray(ignored, dtype=np.float64)
        aug_input = LazyAugInput(image, boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
        tfm = self.augmentations(aug_input)
        image = aug_input.image
        h, w = image.shape[:2]
        boxes, inside = _clip_centred(aug_input.boxes, w, h)
        side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        big = side >= self.min_face_size
        keep = np.nonzero(inside & big)[0]
        small = np.nonzero(inside & ~big)[0]
        regions = _clip(tfm.apply_box(ignored.reshape(-1, 4)), w, h) if len(ignored) else ignored
        overlap = np.nonzero((regions[:, 2] > regions[:, 0]) & (regions[:, 3] > regions[:, 1]))[0]
        sources = np.concatenate([overlap, len(ignored) + small]).astype(np.int64)
        return image, boxes[keep], keep, np.concatenate([regions[overlap], boxes[small]]), sources

    def __call__(self, dataset_dict):
        return self.map_image(dataset_dict, self.read_image(dataset_dict))

    def map_image(self, dataset_dict, image):
        """The mapper's output for ``dataset_dict`` given its already-read ``image``."""
        orig_h, orig_w = image.shape[:2]
        boxes, classes = self.face_boxes(dataset_dict)
        if self.ignore_regions:
            crowd, crowd_classes = self.face_boxes(dataset_dict, iscrowd=1)
            image, boxes, keep, ignored, sources = self.augment_with_ignored(image, boxes, crowd)
            ignored_classes = np.concatenate([crowd_classes, classes])[sources]
        else:
            image, boxes, keep = self.augment(image, boxes)
        if image.ndim == 2:
            image = image[:, :, None]
        instances = Instances(image.shape[:2])
        classes = classes[keep]
        if self.ignore_regions:
            n = len(boxes)
            boxes = np.concatenate([boxes, ignored])
            classes = np.concatenate([classes, ignored_classes])
            instances.gt_ignore = torch.arange(len(boxes)) >= n
        instances.gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        instances.gt_classes = torch.as_tensor(classes, dtype=torch.int64)
        return {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "instances": instances,
            "height": dataset_dict.get("height", orig_h),
            "width": dataset_dict.get("width", orig_w),
            "file_name": dataset_dict["file_name"],
            "image_id": dataset_dict.get("image_id"),
        }


def _clip(boxes, w, h):
    return np.stack(
        [
            np.clip(boxes[:, 0], 0, w),
            np.clip(boxes[:, 1], 0, h),
            np.clip(boxes[:, 2], 0, w),
            np.clip(boxes[:, 3], 0, h),
        ],
        axis=1,
    ).reshape(-1, 4)


def _clip_centred(boxes, w, h):
    """Boxes clipped to the w x h image, and which of them are faces the image holds: centre
    inside, positive clipped sides, finite."""
    cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
    cy = (boxes[:, 1] + boxes[:, 3]) * 0.5
    clipped = _clip(boxes, w, h)
    side = np.minimum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1])
    ok = (cx >= 0) & (cx <= w) & (cy >= 0) & (cy <= h) & (side > 0)
    return clipped, ok & np.isfinite(clipped).all(axis=1)
