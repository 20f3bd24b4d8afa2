"""Optimizer choice for AInnoFace configs.

Detectron2 v0.6's ``build_optimizer`` only builds SGD. The paper trains with SGD (momentum 0.9),
which needs ImageNet-pretrained weights to converge in its schedule; the small CPU config trains
from scratch in a few hundred iterations, where AdamW converges far faster. ``SOLVER.OPTIMIZER``
picks one; both use Detectron2's parameter groups (per-parameter weight decay / LR factors) and
gradient clipping (``SOLVER.CLIP_GRADIENTS``).
"""

import torch
from detectron2.solver import build_optimizer as build_d2_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

__all__ = ["build_optimizer"]

# Devices with PyTorch's fused AdamW kernels; elsewhere the for-loop implementation.
_FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        return build_d2_optimizer(cfg, model)
    if name == "ADAMW":
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        # PyTorch's fused AdamW (one kernel over all parameters; the same update): on a 2-core
        # CPU ~14 ms per step of the small config instead of ~40 ms (BENCHMARKS.md).
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
            params,
            lr=cfg.SOLVER.BASE_LR,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            fused=all(p.device.type in _FUSED_DEVICES for p in model.parameters()),
        )
    raise ValueError(f"SOLVER.OPTIMIZER: unknown optimizer {cfg.SOLVER.OPTIMIZER!r} (SGD, ADAMW)")
