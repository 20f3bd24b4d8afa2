"""Receptive-field-enhancement block (SRN, arXiv 1809.02693, Sec. 3.3).

Faces are taller than wide and vary in aspect ratio, while a 3x3 head sees a square window. RFE
adds four branches with rectangular receptive fields, 1x1 -> {1x5, 5x1, 1x3, 3x1} -> 1x1, each conv
followed by ReLU, concatenates them back to the input width, mixes them with a 1x1 conv + ReLU
(``fuse``) and adds the block's input (residual). The module is written exactly so: one
``nn.Sequential`` per branch.
"""

import torch
from torch import nn

__all__ = ["RFE"]

_KERNELS = ((1, 5), (5, 1), (1, 3), (3, 1))


def _branch(channels, branch_channels, kernel):
    kh, kw = kernel
    return nn.Sequential(
        nn.Conv2d(channels, branch_channels, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(branch_channels, branch_channels, kernel, padding=(kh // 2, kw // 2)),
        nn.ReLU(inplace=True),
        nn.Conv2d(branch_channels, branch_channels, 1),
        nn.ReLU(inplace=True),
    )


class RFE(nn.Module):
    def __init__(self, channels, branch_channels=64):
        super().__init__()
        n = len(_KERNELS)
        if branch_channels * n != channels:
            raise ValueError(
                f"RFE concatenates {n} branches of {branch_channels} channels; this "
                f"must equal the input width {channels} for the residual add"
            )
        self.branches = nn.ModuleList(_branch(channels, branch_channels, k) for k in _KERNELS)
        self.fuse = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = torch.cat([branch(x) for branch in self.branches], dim=1)
        return x + torch.relu(self.fuse(y))
