"""Multi-scale + flip test-time augmentation with box voting (SRN / S3FD testing).

:class:`AInnoFaceWithTTA` wraps any Detectron2 detector that returns ``[{"instances": Instances}]``
(the AInnoFace meta-architecture, a stock RetinaNet, ...) the way Detectron2's
``GeneralizedRCNNWithTTA`` (``detectron2/modeling/test_time_augmentation.py``) wraps an R-CNN: it
runs the model on several resized and flipped copies of each image, maps the boxes back to the
image and merges them.

The copies follow SRN's official test script (SRN, arXiv 1809.02693, Sec. 4.1 "multi-scale
testing"; AInnoFace, arXiv 1905.01585, uses "the multi-scale testing strategy of S3FD"). With
L = ``MAX_SIDE`` and A the image area (facts in ``PAPER_NOTES.md``):

* A < L^2: the image at scale 1 and its horizontal flip; a ``SHRINK_SCALE`` copy that keeps only
  boxes whose longer side exceeds ``SHRINK_KEEP_MIN_SIDE`` (it sees the big faces); copies enlarged
  by ``ENLARGE_STEP``^t for t = 1..floor(log_{ENLARGE_STEP^2}(L^2/A)) and a last one at
  sqrt(L^2/A), which keep only boxes whose shorter side is below ``ENLARGE_KEEP_MAX_SIDE`` (they
  see the tiny faces). No copy is larger than L^2 pixels, which bounds the memory.
* A >= L^2: the image resized to area L^2 and its flip, and 0.75x and 0.5x copies of that,
  which, like the shrunk copy above, keep only boxes whose longer side exceeds
  ``SHRINK_KEEP_MIN_SIDE`` (SRN's ``tools/test.py`` filters them the same way).

``TEST.AUG.FACE.ENLARGE False`` skips the enlarged copies. SRN uses them to find tiny faces with
a model trained on 1024-px crops of WIDER FACE; on the small built-in-data model they lower the AP
(measured in ``configs/ainnoface_R18_cpu.yaml``).

Box sides are measured in the original image's coordinates as ``x2 - x1`` (Detectron2's
continuous convention, not SRN's ``+1``). The detections of all copies are merged by box voting
(:func:`box_voting`, S3FD's ``bbox_vote``; ``TEST.AUG.FACE.VOTE_IOU_PLUS_ONE`` computes its IoU
with SRN's +1 pixel convention) and the ``TEST.DETECTIONS_PER_IMAGE`` best are kept.

A detector for the face sizes a user asks for (:func:`face_range_copies`, used by
``FaceDetector(min_face=..., max_face=...)``): at scale s the anchors see faces of ``a_min / s``
to ``a_max / s`` original pixels, ``a_min`` and ``a_max`` being the smallest and largest anchor
sizes (8 and 362 px in the paper configs). Besides scale 1, the image runs shrunk until
``max_face`` fits (by ``a_min / a_max`` a step, the last step landing on ``a_max / max_face``)
and enlarged until ``min_face`` does (by ``a_max / a_min`` a step, the last on ``a_min /
min_face``), so the copies' ranges tile [min_face, max_face]. Each face (sqrt(w h)) is kept from
the copy nearest scale 1 that sees it, and each copy runs flipped too, since box voting drops
boxes that only one copy found.

An image pyramid from the scale a model was trained at (:func:`pyramid_copies`, the ``pyramid``
test-size protocol, ``TEST.FACE.PYRAMID``): the first copy is the image fitted into
``BASE_SIZE`` (short x long side; for a model trained on small crops, about their size), then
copies ``STEP`` times larger up to scale 1. A face is kept from the smallest copy in which it is
at least ``MIN_FACE`` pixels, so a model that is reliable only near its training scale sees every
face there, and the larger copies only add the faces too small for the smaller ones. The copies
see disjoint face sizes, so a face found by one copy only is kept (box voting merges the few
found twice at the boundaries). The small built-in-data model (``configs/ainnoface_R18_cpu.yaml``)
is tested this way by default; its figures are in ``MODEL_ZOO.md``.

Worked example, paper config, ``min_face=4, max_face=1000``, a 640 x 480 photo: copies at 2x
(1280 x 960: faces of 4-8 px become 8-16 px; it keeps the faces below 8 px), 1x (keeps 8-362
px) and 0.362x (232 x 174: faces of 362-1000 px become 131-362 px; keeps those above 362 px),
each also flipped: 6 passes over 10.3 times the pixels of the single-scale test. The enlarged
copies are limited to an area of ``MAX_SIDE``^2 pixels (a warning says what that leaves out).
"""

import logging
import math
from typing import List, NamedTuple, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchvision.ops import box_iou

__all__ = [
    "AInnoFaceWithTTA",
    "TTACopy",
    "face_tta_copies",
    "face_range_copies",
    "pyramid_copies",
    "box_voting",
]

logger = logging.getLogger(__name__)

# Extra downscaled copies for images already at least L^2 pixels large (SRN's test script).
_LARGE_IMAGE_EXTRA_SCALES = (0.75, 0.5)
# Two scales this close are the same copy (the last enlargement can coincide with a power).
_SCALE_EPS = 1e-6
# box_voting computes IoUs this many rows at a time (bounds the float IoU block's memory).
_IOU_BLOCK_ROWS = 1024


class TTACopy(NamedTuple):
    """One augmented copy: resize factor, horizontal flip, and which boxes it contributes.

    ``keep`` is ``"all"``, ``"large"`` (longer side > the shrink threshold), ``"small"``
    (shorter side < the enlarge threshold) or ``"range"`` (sqrt(w h) in [min_size, max_size]).
    """

    scale: float
    flip: bool
    keep: str
    min_size: float = 0.0
    max_size: float = math.inf


def face_tta_copies(
    height: int,
    width: int,
    max_side: float,
    shrink_scale: float = 0.5,
    enlarge_step: float = 1.5,
    flip: bool = True,
    enlarge: bool = True,
) -> List[TTACopy]:
    """The copies SRN's multi-scale test runs for an image of ``height`` x ``width`` pixels.

    See the module docstring for the rule. ``flip=False`` drops the flipped copy and
    ``enlarge=False`` the enlarged ones (for models that were not trained to see faces at those
    scales, e.g. the small built-in-data model, whose AP they lower).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"Image size must be positive, got {height}x{width}.")
    if max_side <= 0:
        raise ValueError(f"TEST.AUG.FACE.MAX_SIDE must be positive, got {max_side}.")
    if enlarge_step <= 1:
        raise ValueError(f"TEST.AUG.FACE.ENLARGE_STEP must be > 1, got {enlarge_step}.")
    ratio = float(max_side) ** 2 / (height * width)
    copies = []
    if ratio > 1:
        copies.append(TTACopy(1.0, False, "all"))
        if flip:
            copies.append(TTACopy(1.0, True, "all"))
        copies.append(TTACopy(float(shrink_scale), False, "large"))
        if not enlarge:
            return copies
        # floor(log_{step^2}(ratio)); the epsilon keeps exact powers (ratio = step^2t) from
        # being floored one too low by rounding.
        num_steps = int(math.floor(math.log(ratio) / math.log(enlarge_step**2) + 1e-9))
        scales = [float(enlarge_step) ** t for t in range(1, num_steps + 1)]
        last = math.sqrt(ratio)
        if not scales or abs(last - scales[-1]) > _SCALE_EPS:
            scales.append(last)
        copies.extend(TTACopy(s, False, "small") for s in scales)
    else:
        base = math.sqrt(ratio)
        copies.append(TTACopy(base, False, "all"))
        if flip:
            copies.append(TTACopy(base, True, "all"))
        copies.extend(TTACopy(base * s, False, "large") for s in _LARGE_IMAGE_EXTRA_SCALES)
    return copies


def face_range_copies(
    height: int,
    width: int,
    anchor_sizes,
    min_face: float | None = None,
    max_face: float | None = None,
    max_side: float | None = None,
    flip: bool = True,
) -> List[TTACopy]:
    """The copies that let a detector with ``anchor_sizes`` find faces from ``min_face`` to
    ``max_face`` pixels (sqrt(w h), original image) in a ``height`` x ``width`` image; see the
    module docstring. ``anchor_sizes`` is ``MODEL.ANCHOR_GENERATOR.SIZES`` (nested or flat);
    None for a bound means the anchors' own. ``max_side`` (L) caps the enlarged copy's area at
    L^2 pixels (a warning says when that leaves the smallest faces out of reach).
    """
    sizes = _flat(anchor_sizes)
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"anchor sizes must be positive, got {anchor_sizes}")
    if height <= 0 or width <= 0:
        raise ValueError(f"Image size must be positive, got {height}x{width}.")
    a_min, a_max = min(sizes), max(sizes)
    min_face = a_min if min_face is None else float(min_face)
    max_face = a_max if max_face is None else float(max_face)
    if not 0 < min_face <= max_face:
        raise ValueError(f"need 0 < min_face <= max_face, got {min_face} and {max_face}")
    # The loops stop on the face sizes, compared with a relative tolerance: the last copy's
    # scale is a_max / max_face (or a_min / min_face), and a_max / (a_max / x) may round to a
    # hair above x (e.g. 454.2 with the paper anchors up to 362.04), which would never end the loop.
    tol = 1.0 + 1e-9
    scales = [1.0]
    while max_face > tol * a_max / scales[0]:  # shrink until the largest face fits the anchors
        scales.insert(0, max(scales[0] * a_min / a_max, a_max / max_face))
    largest = math.inf
    if max_side:
        largest = max(1.0, max_side / math.sqrt(height * width))
    while tol * min_face < a_min / scales[-1] and scales[-1] < largest:  # enlarge: smallest
        scales.append(min(scales[-1] * a_max / a_min, a_min / min_face, largest))
    if tol * min_face < a_min / scales[-1]:
        logger.warning(
            "min_face=%g needs a %.2fx copy of this %dx%d image; capped at %.2fx (area "
            "TEST.AUG.FACE.MAX_SIDE^2): faces below %.1f px may be missed.",
            min_face, a_min / min_face, width, height, scales[-1], a_min / scales[-1],
        )  # fmt: skip
    # Each face goes to the copy nearest scale 1 that sees it: between two shrunk copies the
    # boundary is the larger scale's a_max, between two enlarged ones the smaller scale's a_min.
    bounds = [math.inf]
    for s_a, s_b in zip(scales, scales[1:]):
        bounds.append(a_max / s_b if s_b <= 1 else a_min / s_a)
    bounds.append(0.0)
    copies = []
    for k, scale in enumerate(scales):
        for flipped in (False, True) if flip else (False,):
            copies.append(TTACopy(scale, flipped, "range", bounds[k + 1], bounds[k]))
    return copies


def pyramid_copies(
    height: int,
    width: int,
    base_size: Tuple[float, float],
    step: float = 2.0,
    min_face: float = 16.0,
) -> List[TTACopy]:
    """The copies of the ``pyramid`` protocol for a ``height`` x ``width`` image (module docstring).

    ``base_size`` is (short side, long side) of the first copy's bounding size: the image is
    fitted into it as ``ResizeShortestEdge(short, max_size=long)`` fits it (never enlarged);
    then copies ``step`` times larger, the last at scale 1. Copy k keeps the faces (sqrt(w h),
    original pixels) from ``min_face / s_k`` up to ``min_face / s_(k-1)``: the first keeps every
    face above its bound, the last (scale 1) every face below its bound.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"Image size must be positive, got {height}x{width}.")
    short, long = (float(v) for v in base_size)
    if not 0 < short <= long:
        raise ValueError(f"TEST.FACE.PYRAMID.BASE_SIZE must be 0 < short <= long, got {base_size}")
    if step <= 1:
        raise ValueError(f"TEST.FACE.PYRAMID.STEP must be > 1, got {step}")
    if min_face <= 0:
        raise ValueError(f"TEST.FACE.PYRAMID.MIN_FACE must be positive, got {min_face}")
    scales = [min(1.0, short / min(height, width), long / max(height, width))]
    while scales[-1] < 1.0 - _SCALE_EPS:
        scales.append(min(1.0, scales[-1] * step))
    copies = []
    for k, scale in enumerate(scales):
        low = 0.0 if k == len(scales) - 1 else min_face / scale
        high = math.inf if k == 0 else min_face / scales[k - 1]
        copies.append(TTACopy(scale, False, "range", low, high))
    return copies


def _flat(x) -> List[float]:
    if isinstance(x, list | tuple):
        return [v for item in x for v in _flat(item)]
    return [float(x)]


def box_voting(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    max_detections: int,
    classes: torch.Tensor | None = None,
    plus_one: bool = False,
    keep_single: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Merge overlapping detections by score-weighted voting (S3FD's ``bbox_vote``).

    Greedy: take the best remaining box; its cluster is every remaining box (itself included)
    with IoU >= ``iou_threshold``; the cluster becomes one box whose coordinates are the
    score-weighted mean of the cluster's and whose score is the cluster's maximum; the cluster is
    removed. Clusters of a single box are dropped (a face seen by one copy only is likely a false
    positive) unless ``keep_single``. Boxes of different ``classes`` never vote together.

    The IoUs are computed once, in row blocks with ``torchvision.ops.box_iou`` on the boxes'
    device, and kept as a sparse neighbour list, so the greedy pass costs O(neighbours) per
    cluster instead of one IoU row per cluster (thousands of boxes per image with TTA).

    Args:
        boxes: (N, 4) XYXY.
        scores: (N,).
        iou_threshold: IoU at or above which a box joins the cluster.
        max_detections: at most this many merged boxes are returned.
        classes: optional (N,) integer labels.
        plus_one: IoU with the inclusive-pixel convention of SRN's ``bbox_vote`` (a box covers
            ``x2 - x1 + 1`` pixels), which merges small boxes more readily.
        keep_single: keep clusters of a single box (for copies that see disjoint face sizes,
            where one copy finding a face is the rule).

    Returns:
        boxes (M, 4), scores (M,), classes (M,) or None, sorted by decreasing score, M <=
        ``max_detections``, on the input's device.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(
            f"box_voting needs boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and "
            f"{tuple(scores.shape)}."
        )
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, scores = boxes[order], scores[order]
    classes = classes[order] if classes is not None else None
    iou_boxes = boxes
    if plus_one:
        iou_boxes = torch.cat([boxes[:, :2], boxes[:, 2:] + 1], dim=1)
    if classes is not None and boxes.numel() > 0:
        # Shift each class to its own region, as torchvision's batched_nms does.
        offsets = classes.to(boxes) * (boxes.max() - boxes.min() + 2)
        iou_boxes = iou_boxes + offsets[:, None]
    n = len(boxes)
    indptr, neighbours = _neighbour_lists(iou_boxes, iou_threshold)
    boxes_np = boxes.detach().cpu().double().numpy()
    scores_np = scores.detach().cpu().double().numpy()
    removed = np.zeros(n, dtype=bool)
    keep_idx, merged = [], []
    for i in range(n):
        if len(keep_idx) >= max_detections:
            break
        if removed[i]:
            continue
        nb = neighbours[indptr[i] : indptr[i + 1]]
        # A degenerate (zero-area) box has IoU NaN with itself; it still heads its cluster.
        nb = nb[(nb != i) & ~removed[nb]]
        removed[i] = True
        removed[nb] = True
        if len(nb) == 0 and not keep_single:
            continue
        cluster = np.concatenate([[i], nb])
        weights = scores_np[cluster]
        total = max(weights.sum(), np.finfo(np.float64).tiny)
        merged.append((boxes_np[cluster] * weights[:, None]).sum(axis=0) / total)
        # Boxes are visited best first, so ``i`` is the cluster's best box.
        keep_idx.append(i)
    keep = torch.as_tensor(keep_idx, dtype=torch.int64, device=boxes.device)
    out_boxes = torch.as_tensor(np.array(merged).reshape(-1, 4)).to(boxes)
    out_classes = classes[keep] if classes is not None else None
    return out_boxes, scores[keep], out_classes


def _neighbour_lists(boxes: torch.Tensor, iou_threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """CSR lists of the boxes each box overlaps at IoU >= ``iou_threshold`` (itself included):
    box i's are ``neighbours[indptr[i] : indptr[i + 1]]``."""
    rows, cols = [torch.zeros(0, dtype=torch.int64)], [torch.zeros(0, dtype=torch.int64)]
    for start in range(0, len(boxes), _IOU_BLOCK_ROWS):
        block = box_iou(boxes[start : start + _IOU_BLOCK_ROWS], boxes) >= iou_threshold
        r, c = torch.nonzero(block, as_tuple=True)
        rows.append((r + start).cpu())
        cols.append(c.cpu())
    # Row-major nonzero() keeps each row's columns together.
    indptr = np.searchsorted(torch.cat(rows).numpy(), np.arange(len(boxes) + 1))
    return indptr, torch.cat(cols).numpy()


def _resize_chw(
    image: torch.Tensor, height: int, width: int, antialias: bool = False
) -> torch.Tensor:
    """Bilinear resize of a CHW image (half-pixel centres, like cv2.INTER_LINEAR in SRN;
    ``antialias``: low-pass filtered when shrinking, like the PIL resize of Detectron2's
    ``ResizeTransform`` that made the training images)."""
    out = F.interpolate(
        image[None].float(),
        size=(height, width),
        mode="bilinear",
        align_corners=False,
        antialias=antialias and height < image.shape[-2],
    )[0]
    if image.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out


class AInnoFaceWithTTA(nn.Module):
    """A detector with SRN's multi-scale + flip testing and box voting.

    Its ``forward`` has the inference interface of a Detectron2 meta-architecture: a list of
    dicts with "image" (CHW tensor) and optional "height"/"width" in, a list of
    ``{"instances": Instances}`` out (boxes in "height" x "width" coordinates when given, as
    ``detector_postprocess`` does). Images are processed one at a time.
    """

    @configurable
    def __init__(
        self,
        *,
        model: nn.Module,
        max_side: float,
        flip: bool = True,
        shrink_scale: float = 0.5,
        shrink_keep_min_side: float = 30.0,
        enlarge_step: float = 1.5,
        enlarge_keep_max_side: float = 100.0,
        enlarge: bool = True,
        vote_iou: float = 0.5,
        max_detections: int = 750,
        vote_plus_one: bool = False,
        face_range: Tuple[float | None, float | None] | None = None,
        anchor_sizes=None,
        pyramid: Tuple[Tuple[float, float], float, float] | None = None,
    ):
        """
        Args:
            model: a Detectron2 detector in eval mode, returning ``[{"instances": ...}]``.
            max_side: L, the side of the largest square area a copy may have.
            flip: also run the horizontally flipped image.
            shrink_scale, shrink_keep_min_side: the shrunk copy and the longer side its boxes
                must exceed (original-image pixels).
            enlarge_step, enlarge_keep_max_side: the enlargement step and the shorter side the
                enlarged copies' boxes must stay below.
            enlarge: run the enlarged copies at all.
            vote_iou: IoU threshold of box voting.
            max_detections: detections kept per image after voting.
            vote_plus_one: box voting's IoU with SRN's +1 pixel convention.
            face_range: (min_face, max_face) in pixels, either may be None: run the copies of
                :func:`face_range_copies` for ``anchor_sizes`` instead of SRN's.
            anchor_sizes: the model's anchor sizes (``MODEL.ANCHOR_GENERATOR.SIZES``).
            pyramid: (base_size, step, min_face): run the copies of :func:`pyramid_copies`
                instead of SRN's, merged keeping single boxes (``TEST.FACE.PYRAMID``).
        """
        super().__init__()
        if isinstance(model, DistributedDataParallel):
            model = model.module
        self.model = model
        self.max_side = max_side
        self.flip = flip
        self.shrink_scale = shrink_scale
        self.shrink_keep_min_side = shrink_keep_min_side
        self.enlarge_step = enlarge_step
        self.enlarge_keep_max_side = enlarge_keep_max_side
        self.enlarge = enlarge
        self.vote_iou = vote_iou
        self.max_detections = max_detections
        self.vote_plus_one = vote_plus_one
        if face_range is not None and anchor_sizes is None:
            raise ValueError("face_range needs the model's anchor_sizes")
        self.face_range = face_range
        self.anchor_sizes = anchor_sizes
        if pyramid is not None and face_range is not None:
            raise ValueError("face_range and pyramid both choose the copies; pass one")
        self.pyramid = pyramid

    @classmethod
    def from_config(cls, cfg, model):
        aug = cfg.TEST.AUG.FACE
        return {
            "model": model,
            "max_side": aug.MAX_SIDE,
            "flip": cfg.TEST.AUG.FLIP,
            "shrink_scale": aug.SHRINK_SCALE,
            "shrink_keep_min_side": aug.SHRINK_KEEP_MIN_SIDE,
            "enlarge_step": aug.ENLARGE_STEP,
            "enlarge_keep_max_side": aug.ENLARGE_KEEP_MAX_SIDE,
            "enlarge": aug.ENLARGE,
            "vote_iou": aug.VOTE_IOU,
            "max_detections": cfg.TEST.DETECTIONS_PER_IMAGE,
            "vote_plus_one": aug.VOTE_IOU_PLUS_ONE,
            "anchor_sizes": cfg.MODEL.ANCHOR_GENERATOR.SIZES,
        }

    def copies(self, height: int, width: int) -> List[TTACopy]:
        """The augmented copies run for an image of this size."""
        if self.pyramid is not None:
            return pyramid_copies(height, width, *self.pyramid)
        if self.face_range is not None:
            return face_range_copies(
                height, width, self.anchor_sizes, *self.face_range, self.max_side, self.flip
            )
        return face_tta_copies(
            height,
            width,
            self.max_side,
            self.shrink_scale,
            self.enlarge_step,
            self.flip,
            self.enlarge,
        )

    def forward(self, batched_inputs):
        if self.model.training:
            raise RuntimeError(
                "AInnoFaceWithTTA is for inference; call model.eval() before wrapping it."
            )
        with torch.no_grad():
            return [{"instances": self._inference_one(x)} for x in batched_inputs]

    def _inference_one(self, inputs) -> Instances:
        image = inputs["image"]
        height, width = image.shape[-2:]
        all_boxes, all_scores, all_classes = [], [], []
        copies = self.copies(height, width)
        logger.debug("TTA on a %dx%d image: scales %s", height, width, [c.scale for c in copies])
        for copy in copies:
            boxes, scores, classes = self.detect_copy(image, copy)
            all_boxes.append(boxes)
            all_scores.append(scores)
            all_classes.append(classes)
        boxes, scores, classes = box_voting(
            torch.cat(all_boxes),
            torch.cat(all_scores),
            self.vote_iou,
            self.max_detections,
            torch.cat(all_classes),
            plus_one=self.vote_plus_one,
            keep_single=self.pyramid is not None,
        )
        result = Instances((height, width))
        result.pred_boxes = Boxes(boxes)
        result.scores = scores
        result.pred_classes = classes
        return detector_postprocess(
            result, inputs.get("height", height), inputs.get("width", width)
        )

    def detect_copy(self, image: torch.Tensor, copy: TTACopy):
        """Run the model on one copy; boxes come back in ``image``'s coordinates, filtered."""
        height, width = image.shape[-2:]
        new_h = max(1, int(round(height * copy.scale)))
        new_w = max(1, int(round(width * copy.scale)))
        resized = image
        if (new_h, new_w) != (height, width):
            # SRN's copies as SRN resizes them; the pyramid's as the training images were.
            resized = _resize_chw(image, new_h, new_w, antialias=self.pyramid is not None)
        if copy.flip:
            resized = resized.flip(-1)
        out = self.model([{"image": resized, "height": new_h, "width": new_w}])[0]["instances"]
        boxes = out.pred_boxes.tensor.clone()
        if copy.flip:
            boxes[:, [0, 2]] = new_w - boxes[:, [2, 0]]
        # The true per-axis factors, since the resized size was rounded to whole pixels.
        boxes[:, 0::2] *= width / new_w
        boxes[:, 1::2] *= height / new_h
        sides = boxes[:, 2:] - boxes[:, :2]
        if copy.keep == "large":
            keep = sides.max(dim=1).values > self.shrink_keep_min_side
        elif copy.keep == "small":
            keep = sides.min(dim=1).values < self.enlarge_keep_max_side
        elif copy.keep == "range":
            size = sides.clamp(min=0).prod(dim=1).sqrt()
            keep = (size >= copy.min_size) & (size <= copy.max_size)
        else:
            keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
        if out.has("pred_classes"):
            classes = out.pred_classes
        else:
            classes = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
        return boxes[keep], out.scores[keep], classes[keep]
