"""Anchor matching whose memory does not grow with ground truth x anchors.

Detectron2's :class:`~detectron2.modeling.matcher.Matcher` takes the full (G, R) IoU matrix: on a
crowded WIDER FACE image (about 2,000 faces x 175,000 anchors at 1024 px) that matrix and the
(G, R, 2) temporaries of ``pairwise_iou`` take gigabytes. :func:`match_anchors` gives the same
matches and labels as that Matcher on the full matrix, bit for bit, from chunks of anchors: each
chunk is compared only with the boxes that overlap the chunk's bounding box (every other box has
IoU 0 with all of the chunk's anchors), and each box's best IoU is gathered over the chunks before
the low-quality matches are set.
"""

from typing import NamedTuple

import torch
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, pairwise_ioa, pairwise_iou
from torch import Tensor

__all__ = ["AnchorMatches", "match_anchors"]

# Box-anchor pairs per chunk: bounds the IoU temporaries to some tens of MB; narrow chunks
# (bands of the image) overlap few boxes.
PAIRS_PER_CHUNK = 1 << 20


class AnchorMatches(NamedTuple):
    """``Matcher``'s outputs on the full IoU matrix, and the ignore boxes' coverage."""

    matched_idxs: Tensor  # (R,) int64: index of each anchor's best box
    match_labels: Tensor  # (R,) int8: the matcher's label of each anchor
    iof: Tensor | None  # (R,) largest intersection / anchor area with an ignore box, or None


def match_anchors(
    matcher: Matcher,
    boxes: Tensor,
    anchors: Tensor,
    num_ignored: int = 0,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
) -> AnchorMatches:
    """Match ``anchors`` (R, 4) to ``boxes`` (G, 4) as ``matcher(pairwise_iou(boxes, anchors))``
    does, and give each anchor's largest intersection-over-anchor-area with the last
    ``num_ignored`` boxes (the ignore boxes), as ``pairwise_ioa(...).amax(dim=0)`` does."""
    num_boxes, num_anchors = len(boxes), len(anchors)
    iof = anchors.new_zeros(num_anchors) if num_ignored else None
    if num_boxes == 0 or num_anchors == 0:
        matched = torch.zeros(num_anchors, dtype=torch.int64, device=anchors.device)
        labels = torch.full_like(matched, matcher.labels[0], dtype=torch.int8)
        return AnchorMatches(matched, labels, iof)
    best_val = anchors.new_zeros(num_anchors)
    matched = torch.zeros(num_anchors, dtype=torch.int64, device=anchors.device)
    box_best = boxes.new_zeros(num_boxes)
    chunks = []
    step = max(1, pairs_per_chunk // num_boxes)
    for start in range(0, num_anchors, step):
        sl = slice(start, min(start + step, num_anchors))
        rows, iou = _chunk_iou(boxes, anchors[sl])
        if iou is None:
            continue
        val, idx = iou.max(dim=0)
        row_best = iou.max(dim=1).values
        chunks.append((sl, rows, row_best))
        # Boxes outside the chunk have IoU 0: where the best IoU is 0, the full matrix's first
        # maximum is box 0; elsewhere it is the first maximum among the rows kept (in order).
        best_val[sl] = val
        matched[sl] = torch.where(val > 0, rows[idx], torch.zeros_like(idx))
        box_best[rows] = torch.maximum(box_best[rows], row_best)
        if num_ignored:
            ign = rows >= num_boxes - num_ignored
            if ign.any():
                ioa = pairwise_ioa(Boxes(boxes[rows[ign]]), Boxes(anchors[sl]))
                iof[sl] = ioa.amax(dim=0)
    labels = _threshold_labels(matcher, best_val)
    if matcher.allow_low_quality_matches:
        _set_low_quality_matches(labels, boxes, anchors, box_best, chunks)
    return AnchorMatches(matched, labels, iof)


def _chunk_iou(boxes: Tensor, anchors: Tensor):
    """(rows, IoU of those rows with ``anchors``): the boxes that may overlap the chunk."""
    lo = anchors[:, :2].amin(dim=0)
    hi = anchors[:, 2:].amax(dim=0)
    near = (boxes[:, :2] <= hi).all(dim=1) & (boxes[:, 2:] >= lo).all(dim=1)
    rows = near.nonzero().squeeze(1)
    if len(rows) == 0:
        return rows, None
    return rows, pairwise_iou(Boxes(boxes[rows]), Boxes(anchors))


def _threshold_labels(matcher: Matcher, best_val: Tensor) -> Tensor:
    labels = torch.ones(len(best_val), dtype=torch.int8, device=best_val.device)
    for lab, low, high in zip(matcher.labels, matcher.thresholds[:-1], matcher.thresholds[1:]):
        labels[(best_val >= low) & (best_val < high)] = lab
    return labels


def _set_low_quality_matches(labels, boxes, anchors, box_best, chunks) -> None:
    """Label 1 every anchor at some box's highest IoU, ties included (Matcher's rule)."""
    if bool((box_best == 0).any()):
        # A box that overlaps no anchor has its highest IoU, 0, at every anchor.
        labels[:] = 1
        return
    for sl, rows, row_best in chunks:
        # Only the boxes whose highest IoU lies in this chunk can label its anchors.
        rows = rows[row_best == box_best[rows]]
        if len(rows):
            iou = pairwise_iou(Boxes(boxes[rows]), Boxes(anchors[sl]))
            labels[sl][(iou == box_best[rows, None]).any(dim=0)] = 1
