"""AInnoFace's regression losses.

AInnoFace (arXiv 1905.01585) replaces SRN's smooth-L1 on box deltas with the IoU loss of UnitBox
(Yu et al., ACM MM 2016): ``L = -ln(IoU(pred, gt))`` on decoded boxes, which is invariant to box
scale and treats the four coordinates jointly. Classification uses fvcore's sigmoid focal loss.
"""

import torch

__all__ = ["iou_loss"]


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
