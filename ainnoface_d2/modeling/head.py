"""SRN's shared classification and box subnets (SRN, arXiv 1809.02693, Sec. 3; S3FD max-out).

One classification subnet and one box subnet serve every pyramid level and both steps: 3x3 conv +
ReLU, RFE (optional), 3x3 conv + ReLU, 1x1 predictor. Which features each subnet sees is SRN's
selective design: step-1 classification on the C-features of the two-step-classification (STC)
levels, step-1 regression on the C-features of the two-step-regression (STR) levels, and step-2
classification and regression on every P-feature.

Max-out background label (S3FD, Sec. 3.3): on ``maxout_levels`` a second 1x1 predictor gives
``num_maxout_bg`` background logits per anchor; with a sigmoid head, the face logit becomes
``face - max(background)``, i.e. the face competes with the most confident background.
"""

import math
from typing import List

import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.anchor_generator import build_anchor_generator
from torch import Tensor, nn

from .rfe import RFE

__all__ = ["AInnoFaceHead"]


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that normalises a channels-last CPU tensor in the contiguous layout.

    PyTorch's CPU group norm kernels are several times slower on channels-last input than on
    contiguous input (forward + backward of a 4x64x48x48 map in bf16: ~9.5 vs ~0.9 ms), while
    the copies to and from channels-last cost far less; the result is the same (BENCHMARKS.md,
    "Training step"). Elsewhere (contiguous input, CUDA) this is ``nn.GroupNorm``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or x.is_contiguous() or x.dim() != 4:
            return super().forward(x)
        if not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)


def _norm(norm, channels):
    if norm == "GN":
        # Detectron2's GN has 32 groups. Below 64 channels a group would hold one channel, which
        # on a 1x1 map (P7 of a small image) normalises to a constant (torch refuses it): keep
        # at least two channels per group.
        return GroupNorm(32 if channels >= 64 else max(1, channels // 2), channels)
    return get_norm(norm, channels)


def _conv_block(channels, norm):
    """3x3 conv (+ norm) + ReLU. The norm layer is shared by every level, as in FCOS."""
    layers = [Conv2d(channels, channels, 3, padding=1, bias=not norm)]
    if norm:
        layers.append(_norm(norm, channels))
    return layers + [nn.ReLU(inplace=True)]


def _subnet(channels, use_rfe, rfe_branch_channels, norm=""):
    layers = _conv_block(channels, norm)
    if use_rfe:
        layers.append(RFE(channels, rfe_branch_channels))
    layers += _conv_block(channels, norm)
    return nn.Sequential(*layers)


class AInnoFaceHead(nn.Module):
    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        num_levels: int,
        stc_levels: List[int],
        str_levels: List[int],
        maxout_levels: List[int],
        num_maxout_bg: int = 3,
        use_rfe: bool = True,
        rfe_branch_channels: int = 64,
        prior_prob: float = 0.01,
        norm: str = "",
    ):
        """
        Args:
            in_channels: width of every input feature.
            num_anchors: anchors per location (the same on every level).
            num_classes: foreground classes (1 for faces).
            num_levels: number of pyramid levels (C and P streams each have this many).
            stc_levels / str_levels: level indices with two-step classification / regression.
            maxout_levels: level indices with the max-out background label (if num_maxout_bg > 0).
            norm: normalisation after the subnets' 3x3 convs ("" = none, as in SRN; "GN" helps
                training from scratch).
        """
        super().__init__()
        self.num_anchors = num_anchors
        self.num_classes = num_classes
        self.num_levels = num_levels
        self.stc_levels = list(stc_levels)
        self.str_levels = list(str_levels)
        self.num_maxout_bg = num_maxout_bg
        self.maxout_levels = set(maxout_levels) if num_maxout_bg > 0 else set()

        self.cls_subnet = _subnet(in_channels, use_rfe, rfe_branch_channels, norm)
        self.bbox_subnet = _subnet(in_channels, use_rfe, rfe_branch_channels, norm)
        self.cls_score = nn.Conv2d(in_channels, num_anchors * num_classes, 1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1)
        self.maxout_score = (
            nn.Conv2d(in_channels, num_anchors * num_maxout_bg, 1) if self.maxout_levels else None
        )

        # Whether each image's outputs depend on that image alone (see _both_steps).
        self._per_image = not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules()
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.0)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        num_anchors = build_anchor_generator(cfg, input_shape).num_cell_anchors
        if len(set(num_anchors)) != 1:
            raise ValueError(f"the shared head needs the same anchors per level, got {num_anchors}")
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"the shared head needs one feature width, got {sorted(channels)}")
        a = cfg.MODEL.AINNOFACE
        return {
            "in_channels": channels.pop(),
            "num_anchors": num_anchors[0],
            "num_classes": a.NUM_CLASSES,
            "num_levels": len(a.IN_FEATURES),
            "stc_levels": a.STC_LEVELS,
            "str_levels": a.STR_LEVELS,
            "maxout_levels": a.MAXOUT_LEVELS,
            "num_maxout_bg": a.MAXOUT_BG,
            "use_rfe": a.USE_RFE,
            "rfe_branch_channels": a.RFE_BRANCH_CHANNELS,
            "prior_prob": a.PRIOR_PROB,
            "norm": a.HEAD_NORM,
        }

    def classify(self, x: Tensor, level: int) -> Tensor:
        """Face logits (N, A*K, H, W) of one feature map on pyramid level ``level``."""
        h = self.cls_subnet(x)
        logits = self.cls_score(h)
        if level in self.maxout_levels:
            n, _, hh, ww = logits.shape
            bg = self.maxout_score(h).view(n, self.num_anchors, self.num_maxout_bg, hh, ww)
            logits = logits.view(n, self.num_anchors, self.num_classes, hh, ww)
            logits = (logits - bg.amax(dim=2, keepdim=True)).view(n, -1, hh, ww)
        return logits

    def regress(self, x: Tensor) -> Tensor:
        """Box deltas (N, A*4, H, W) of one feature map."""
        return self.bbox_pred(self.bbox_subnet(x))

    def forward(self, features: List[Tensor]):
        """
        Args:
            features: the C-features of every level followed by the P-features of every level
                (2 * num_levels maps, shallowest first in each half).

        Returns:
            step1_logits (list[Tensor]): per STC level, logits from the C-feature.
            step2_logits (list[Tensor]): per level, logits from the P-feature.
            step1_deltas (list[Tensor]): per STR level, deltas from the C-feature.
            step2_deltas (list[Tensor]): per level, deltas from the P-feature.
        """
        if len(features) != 2 * self.num_levels:
            raise ValueError(f"expected {2 * self.num_levels} features, got {len(features)}")
        c_feats, p_feats = features[: self.num_levels], features[self.num_levels :]
        step1_logits, step2_logits = self._both_steps(
            self.classify, c_feats, p_feats, self.stc_levels
        )
        step1_deltas, step2_deltas = self._both_steps(
            lambda x, i: self.regress(x), c_feats, p_feats, self.str_levels
        )
        return step1_logits, step2_logits, step1_deltas, step2_deltas

    def _both_steps(self, subnet, c_feats, p_feats, two_step_levels):
        """``subnet`` on the C-features of ``two_step_levels`` and on every P-feature.

        On a two-step level the C- and P-feature maps have the same shape and pass through the
        subnet as one batch (fewer, larger convolutions: ~10 % off a CPU training step of the
        small config). Every layer of the subnets works on each image alone (no norm, or group
        norm), so this computes exactly what two passes do; with a batch norm it takes two.
        """
        first, second = [], []
        for i, p in enumerate(p_feats):
            if i not in two_step_levels:
                second.append(subnet(p, i))
            elif self._per_image:
                n = p.shape[0]
                both = subnet(torch.cat([c_feats[i], p]), i)
                first.append(both[:n])
                second.append(both[n:])
            else:
                first.append(subnet(c_feats[i], i))
                second.append(subnet(p, i))
        return first, second
