"""AInnoFace's regression losses.

AInnoFace (arXiv 1905.01585) replaces SRN's smooth-L1 on box deltas with the IoU loss of UnitBox
(Yu et al., ACM MM 2016): ``L = -ln(IoU(pred, gt))`` on decoded boxes, which is invariant to box
scale and treats the four coordinates jointly. Classification uses fvcore's sigmoid focal loss.
"""

import torch
from fvcore.nn import giou_loss, smooth_l1_loss

__all__ = ["iou_loss", "box_regression_loss"]


def iou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, reduction="sum"):
    """UnitBox loss ``-ln(IoU)`` between paired XYXY boxes (N, 4) and (N, 4).

    IoU is clamped at ``eps`` so that a prediction that misses its target entirely costs
    ``-ln(eps)`` instead of infinity.
    """
    x1 = torch.max(pred[:, 0], target[:, 0])
    y1 = torch.max(pred[:, 1], target[:, 1])
    x2 = torch.min(pred[:, 2], target[:, 2])
    y2 = torch.min(pred[:, 3], target[:, 3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    area_p = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    area_t = (target[:, 2] - target[:, 0]).clamp(min=0) * (target[:, 3] - target[:, 1]).clamp(min=0)
    iou = inter / (area_p + area_t - inter).clamp(min=eps)
    loss = -torch.log(iou.clamp(min=eps))
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def box_regression_loss(
    loss_type, box2box_transform, anchors, pred_deltas, gt_boxes, smooth_l1_beta=0.0
):
    """Summed regression loss of positive anchors.

    Args:
        loss_type: "iou" (UnitBox, AInnoFace), "giou", or "smooth_l1" (on deltas, as SRN).
        anchors, pred_deltas, gt_boxes: (P, 4) tensors of the positive anchors (XYXY), their
            predicted deltas and their matched ground-truth boxes (XYXY).
    """
    if loss_type == "smooth_l1":
        target = box2box_transform.get_deltas(anchors, gt_boxes)
        return smooth_l1_loss(pred_deltas, target, beta=smooth_l1_beta, reduction="sum")
    pred_boxes = box2box_transform.apply_deltas(pred_deltas, anchors)
    if loss_type == "iou":
        return iou_loss(pred_boxes, gt_boxes, reduction="sum")
    if loss_type == "giou":
        return giou_loss(pred_boxes, gt_boxes, reduction="sum")
    raise ValueError(f"MODEL.AINNOFACE.BBOX_REG_LOSS_TYPE: unknown loss {loss_type!r}")
