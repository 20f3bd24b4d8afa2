"""Tensor-only post-processing of a dense face detector: one function for eager inference and for
the exported graph (ONNX, TorchScript).

:func:`decode_detections` takes per-level face scores, box deltas and anchors of a whole batch and
returns padded, fixed-shape outputs in the layout of TensorRT's EfficientNMS plugin
(``num_detections``, ``detection_boxes``, ``detection_scores``, ``detection_classes``). It uses
no Python control flow on tensor values or shapes, so tracing it gives a graph that is valid for
any batch size and image size:

* per level, the ``topk`` best (anchor, class) scores above the score threshold (a constant
  ``k``: the scores are padded with ``k`` invalid entries, so levels with fewer candidates need
  no ``min``);
* SRN's rule for small maps (SRN's official test code; a deviation from Detectron2's RetinaNet):
  on a level with fewer than ``small_map_locations`` (120) locations the 0.05 score threshold is
  not applied (every score > 0 is a candidate), because such levels hold the few anchors of the
  largest faces, whose scores are often lower;
* box decoding with Detectron2's ``Box2BoxTransform``;
* class-agnostic NMS over the whole batch in one ``torchvision.ops.nms`` call (the images' boxes
  are shifted apart first, as ``torchvision.ops.batched_nms`` does), which exports to ONNX's
  ``NonMaxSuppression``;
* at most ``max_detections`` per image, scattered into (N, D) slots by descending score;
* optionally, boxes clipped to each image's (height, width) after NMS, as Detectron2's
  ``detector_postprocess`` clips them (the exported graph clips; eager inference leaves it to
  ``detector_postprocess``).
"""

from typing import List

import torch
from torch import Tensor
from torchvision.ops import nms

__all__ = ["SMALL_MAP_LOCATIONS", "decode_detections"]

SMALL_MAP_LOCATIONS = 120


def _level_candidates(scores, deltas, anchors, num_anchors, box2box, score_thresh, topk, small):
    """The best ``topk`` candidates of one level: boxes (N, k, 4), scores, classes, valid."""
    n, r, k_cls = scores.shape
    flat = scores.float().reshape(n, r * k_cls)
    locations = torch.tensor(r // num_anchors)
    thresh = torch.where(locations < small, 0.0, float(score_thresh))
    padded = torch.cat([flat, flat.new_full((n, topk), -1.0)], dim=1)
    top_scores, top_idx = padded.topk(topk, dim=1)
    valid = top_scores > thresh
    top_idx = torch.where(valid, top_idx, torch.zeros_like(top_idx))
    anchor_idx = torch.div(top_idx, k_cls, rounding_mode="floor")
    classes = top_idx - anchor_idx * k_cls
    gather = anchor_idx.unsqueeze(2).expand(n, topk, 4)
    lvl_deltas = deltas.float().gather(1, gather)
    if anchors.dim() == 2:
        anchors = anchors.unsqueeze(0).expand(n, r, 4)
    lvl_anchors = anchors.float().gather(1, gather)
    boxes = box2box.apply_deltas(lvl_deltas.reshape(-1, 4), lvl_anchors.reshape(-1, 4))
    return boxes.view(n, topk, 4), top_scores, classes, valid


def decode_detections(
    scores: List[Tensor],
    deltas: List[Tensor],
    anchors: List[Tensor],
    box2box_transform,
    image_hw: Tensor | None = None,
    *,
    num_anchors: List[int],
    score_thresh: float,
    topk: int,
    nms_thresh: float,
    max_detections: int,
    small_map_locations: int = SMALL_MAP_LOCATIONS,
):
    """Detections of a batch from the per-level predictions.

    Args:
        scores: per level, (N, R_l, K) face probabilities (already two-step filtered).
        deltas: per level, (N, R_l, 4) box deltas.
        anchors: per level, (R_l, 4) anchors or (N, R_l, 4) per-image (refined) anchors.
        box2box_transform: Detectron2's ``Box2BoxTransform`` of the model.
        image_hw: (N, 2) height and width of every image to clip the boxes to; None: no clipping
            (eager inference leaves it to Detectron2's ``detector_postprocess``).
        num_anchors: anchors per location of every level.
        score_thresh, topk, nms_thresh, max_detections: as ``MODEL.AINNOFACE.*_TEST`` and
            ``TEST.DETECTIONS_PER_IMAGE``; ``small_map_locations``: see the module doc.

    Returns:
        num_detections (N,) int32; detection_boxes (N, D, 4) float32 XYXY;
        detection_scores (N, D) float32; detection_classes (N, D) int32; with D =
        ``max_detections`` and the slots past ``num_detections`` zero.
    """
    levels = [
        _level_candidates(s, d, a, na, box2box_transform, score_thresh, topk, small_map_locations)
        for s, d, a, na in zip(scores, deltas, anchors, num_anchors)
    ]
    boxes, cand_scores, classes, valid = (torch.cat(x, dim=1) for x in zip(*levels))
    n, m = cand_scores.shape
    # Shift every image's boxes into a range of its own, then one NMS for the batch.
    flat_idx = valid.reshape(-1).nonzero().squeeze(1)
    image_idx = torch.div(flat_idx, m, rounding_mode="floor")
    cand_boxes = boxes.reshape(-1, 4)[flat_idx]
    spacing = boxes.abs().amax() * 2 + 1
    shifted = cand_boxes + (image_idx.to(cand_boxes.dtype) * spacing).unsqueeze(1)
    keep = nms(shifted, cand_scores.reshape(-1)[flat_idx], nms_thresh)
    kept_image = image_idx[keep]
    one_hot = (
        kept_image.unsqueeze(1) == torch.arange(n, device=kept_image.device).unsqueeze(0)
    ).to(torch.int64)
    rank = (one_hot.cumsum(0) * one_hot).sum(1) - 1
    take = rank < max_detections
    slot = (kept_image * max_detections + rank)[take]
    src = flat_idx[keep][take]
    d = max_detections
    out_boxes = boxes.new_zeros((n * d, 4)).scatter(
        0, slot.unsqueeze(1).expand(-1, 4), boxes.reshape(-1, 4)[src]
    )
    out_scores = cand_scores.new_zeros((n * d,)).scatter(0, slot, cand_scores.reshape(-1)[src])
    out_classes = classes.new_zeros((n * d,)).scatter(0, slot, classes.reshape(-1)[src])
    num = (one_hot * take.to(torch.int64).unsqueeze(1)).sum(0)
    out_boxes = out_boxes.view(n, d, 4)
    if image_hw is not None:
        limit = image_hw.to(out_boxes.dtype).flip(1).repeat(1, 2).unsqueeze(1)
        out_boxes = torch.minimum(out_boxes.clamp(min=0), limit)
    return (
        num.to(torch.int32),
        out_boxes,
        out_scores.view(n, d),
        out_classes.view(n, d).to(torch.int32),
    )
