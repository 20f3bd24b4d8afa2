"""What the benchmarks share: Detectron2's stock RetinaNet beside an AInnoFace config, one FLOP
counter, one image-size parser (as Detectron2 keeps its counting in
``detectron2/utils/analysis.py``), the process's peak resident memory, and the size of a WIDER
FACE stand-in image.

The stock model is RetinaNet with ``build_retinanet_resnet_fpn_backbone`` over res2-res5 (FPN
P2-P5 + P6/P7 from res5), head on P2-P7, anchors ``{16..512} x 2^{k/n}`` (``n`` per location)
with aspect ratio 1.25, one class. Its ResNet settings (depth, stride-in-1x1, norm, frozen stages,
widths), FPN width, pixel mean/std, input format and solver come from the AInnoFace config, so
that the two backbones are the same.
"""

import argparse
import math

import numpy as np
import torch
from detectron2.config import get_cfg

__all__ = [
    "WIDER_MIN_HEIGHT",
    "WIDER_WIDTH",
    "count_flops",
    "parse_size",
    "parse_sizes",
    "reset_peak_rss",
    "rss_gb",
    "stand_in_height",
    "stock_retinanet_cfg",
]

# WIDER FACE images are 1024 px wide and at least 683 px tall (a 3:2 landscape); the annotation
# files do not give the heights.
WIDER_WIDTH = 1024
WIDER_MIN_HEIGHT = 683


def stock_retinanet_cfg(face_cfg, anchors_per_location=3, score_thresh=None):
    """A frozen config of stock RetinaNet P2-P7 with ``face_cfg``'s ResNet (see above)."""
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
    cfg.MODEL.BACKBONE.NAME = "build_retinanet_resnet_fpn_backbone"
    for key in ("DEPTH", "RES2_OUT_CHANNELS", "STRIDE_IN_1X1", "NORM", "WIDTH_PER_GROUP"):
        cfg.MODEL.RESNETS[key] = face_cfg.MODEL.RESNETS[key]
    cfg.MODEL.BACKBONE.FREEZE_AT = face_cfg.MODEL.BACKBONE.FREEZE_AT
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = list(cfg.MODEL.RESNETS.OUT_FEATURES)
    cfg.MODEL.FPN.OUT_CHANNELS = face_cfg.MODEL.FPN.OUT_CHANNELS
    cfg.MODEL.RETINANET.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6", "p7"]
    n = anchors_per_location
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [
        [s * 2 ** (k / n) for k in range(n)] for s in (16, 32, 64, 128, 256, 512)
    ]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[1.25]]
    cfg.MODEL.RETINANET.NUM_CLASSES = 1
    if score_thresh is not None:
        cfg.MODEL.RETINANET.SCORE_THRESH_TEST = score_thresh
    cfg.MODEL.PIXEL_MEAN = list(face_cfg.MODEL.PIXEL_MEAN)
    cfg.MODEL.PIXEL_STD = list(face_cfg.MODEL.PIXEL_STD)
    cfg.INPUT.FORMAT = face_cfg.INPUT.FORMAT
    cfg.SOLVER = face_cfg.SOLVER.clone()
    cfg.MODEL.DEVICE = face_cfg.MODEL.DEVICE
    cfg.freeze()
    return cfg


class _DenseNet(torch.nn.Module):
    """Backbone + head of a Detectron2 dense detector, on a preprocessed image tensor."""

    def __init__(self, model):
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        self.in_features = list(model.head_in_features)

    def forward(self, images):
        features = self.backbone(images)
        return self.head([features[f] for f in self.in_features])


def _batched_matmul_flops(inputs, outputs):
    """fvcore handle for ``baddbmm(input, batch1, batch2)``: the multiply-adds of the product."""
    from fvcore.nn.jit_handles import get_shape

    b, n, k = get_shape(inputs[1])
    return b * n * k * get_shape(inputs[2])[-1]


def count_flops(model, width, height):
    """fvcore's count (GFLOPs, one multiply-add = one flop, i.e. GMAC; element-wise ops are not
    counted) of backbone + head on a ``width`` x ``height`` image after the model's own padding:
    ``{"total", "backbone", "head", "padded_input"}``.

    Traced with autograd on: the model then takes the convolutions every device runs (its CPU
    inference paths call NNPACK, which fvcore cannot count)."""
    from fvcore.nn import FlopCountAnalysis

    device = next(model.parameters()).device
    image = torch.zeros(3, height, width, device=device)
    images = model.preprocess_image([{"image": image}]).tensor
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            flops = FlopCountAnalysis(_DenseNet(model), images)
            flops.set_op_handle("aten::baddbmm", _batched_matmul_flops)
            flops.unsupported_ops_warnings(False)
            flops.uncalled_modules_warnings(False)
            by_module = flops.by_module()
            return {
                "total": flops.total() / 1e9,
                "backbone": by_module["backbone"] / 1e9,
                "head": by_module["head"] / 1e9,
                "padded_input": "x".join(str(v) for v in images.shape[-2:][::-1]),
            }
    finally:
        model.train(was_training)


def parse_size(text):
    """``WIDTHxHEIGHT`` as ``(width, height)``; an ``argparse`` type."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"expected a positive WIDTHxHEIGHT, got {text!r}")
    return w, h


def parse_sizes(text):
    """``WxH[,WxH...]`` as a list of ``(w, h)``; an ``argparse`` type."""
    sizes = [parse_size(t) for t in text.split(",") if t.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected WxH[,WxH...], got {text!r}")
    return sizes


def reset_peak_rss():
    """Start a new peak-memory period of this process: ``rss_gb("VmHWM")`` then reports the peak
    from here on (Linux; a no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def rss_gb(field="VmHWM"):
    """This process's resident set in GB: ``VmHWM`` its peak (since the start or the last
    :func:`reset_peak_rss`), ``VmRSS`` now; NaN where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def stand_in_height(boxes_xywh):
    """The height of a ``WIDER_WIDTH``-wide stand-in for a WIDER FACE image with these
    annotated boxes: the smallest that holds every box, at least ``WIDER_MIN_HEIGHT``."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return WIDER_MIN_HEIGHT
    return max(WIDER_MIN_HEIGHT, int(math.ceil((boxes[:, 1] + boxes[:, 3]).max())))
