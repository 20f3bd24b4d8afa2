"""One exportable graph of a trained AInnoFace, from a batch of images to its detections.

:class:`AInnoFaceGraph` wraps the model's own modules (no second copy of the model): pixel
normalisation, zero padding to the backbone's size divisibility (as Detectron2's ``ImageList``
pads), the backbone, both steps of both subnets, the anchors of the actual feature sizes (the
model's ``anchor_generator``), and :meth:`AInnoFace.detect`, the tensor-only post-processing that
eager inference uses too (two-step filtering and decoding, per-level top-k, score threshold,
class-agnostic NMS, at most ``TEST.DETECTIONS_PER_IMAGE`` detections per image).

Input ``images`` (N, 3, H, W), N, H and W dynamic, uint8 or float32 pixel values in the channel
order of the config's ``INPUT.FORMAT``. Outputs in TensorRT's EfficientNMS layout:
``num_detections`` int32 (N), ``detection_boxes`` float32 (N, D, 4) XYXY in input pixels (clipped
to the input), ``detection_scores`` float32 (N, D), ``detection_classes`` int32 (N, D).

:func:`export_onnx` and :func:`export_torchscript` trace it (``torch.onnx.export`` with the
TorchScript-based exporter, opset 17; ``torch.jit.trace``); :func:`export_model` writes either
plus, beside it, ``<graph file>.json`` (``model.onnx.json``, ``model.ts.json``) with what a
runtime needs (:func:`runtime_metadata`): each format keeps its own, so that exports of both
formats into one folder do not overwrite each other's.
"""

import json
import logging
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..file_io import atomic_path, atomic_write

__all__ = [
    "OUTPUT_NAMES",
    "AInnoFaceGraph",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "runtime_metadata",
]

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAMES = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
ONNX_OPSET = 17
FORMATS = {"onnx": "model.onnx", "torchscript": "model.ts"}


class AInnoFaceGraph(nn.Module):
    """``images (N, 3, H, W) -> (num_detections, boxes, scores, classes)``; see the module doc."""

    def __init__(self, model):
        super().__init__()
        if not hasattr(model, "detect"):
            raise TypeError(f"expected an AInnoFace model, got {type(model).__name__}")
        self.model = model
        self.eval()  # exporters restore the wrapper's mode, and with it the model's

    def forward(self, images):
        m = self.model
        x = (images.to(torch.float32) - m.pixel_mean) / m.pixel_std
        h, w = x.shape[-2], x.shape[-1]
        d = m.backbone.size_divisibility
        x = F.pad(x, (0, (d - w % d) % d, 0, (d - h % d) % d))
        features = m.backbone(x)
        features = [features[f] for f in m.head_in_features]
        predictions = m.head(features)
        anchors = m.anchor_generator(features[m.num_levels :])
        image_hw = (
            torch.stack([torch.tensor(h), torch.tensor(w)]).to(x.device).expand(x.shape[0], 2)
        )
        return m.detect(predictions, anchors, image_hw)


def runtime_metadata(cfg, fmt, input_dtype="float32"):
    """What a runtime needs besides the graph (written as ``<graph file>.json``)."""
    return {
        "format": fmt,
        "file": FORMATS[fmt],
        "input_name": INPUT_NAME,
        "input_layout": "NCHW",
        "input_dtype": input_dtype,
        "input_format": cfg.INPUT.FORMAT,
        "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
        "pixel_std": list(cfg.MODEL.PIXEL_STD),
        "normalization_in_graph": True,
        "size_divisibility_in_graph": True,
        "output_names": list(OUTPUT_NAMES),
        "boxes": "XYXY, input pixels, clipped to the input",
        "score_thresh": cfg.MODEL.AINNOFACE.SCORE_THRESH_TEST,
        "nms_thresh": cfg.MODEL.AINNOFACE.NMS_THRESH_TEST,
        "topk_candidates": cfg.MODEL.AINNOFACE.TOPK_CANDIDATES_TEST,
        "max_detections": cfg.TEST.DETECTIONS_PER_IMAGE,
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
        "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
    }


def _sample(input_dtype, size=(2, 3, 96, 128)):
    x = torch.rand(size) * 255
    return x.to(torch.uint8) if input_dtype == "uint8" else x


def export_onnx(model, path, input_dtype="float32"):
    """Trace ``AInnoFaceGraph(model)`` to an ONNX file with dynamic N, H, W."""
    graph = AInnoFaceGraph(model)
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    axes.update({name: {0: "batch"} for name in OUTPUT_NAMES})
    with torch.no_grad(), warnings.catch_warnings(), atomic_path(path) as tmp:
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic
        torch.onnx.export(
            graph,
            (_sample(input_dtype).to(model.pixel_mean.device),),
            tmp,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
        )
    return path


def export_torchscript(model, path, input_dtype="float32"):
    """Trace ``AInnoFaceGraph(model)`` with ``torch.jit.trace``; the file loads with
    ``torch.jit.load`` where torch and torchvision (for ``torchvision::nms``) are installed."""
    graph = AInnoFaceGraph(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = _sample(input_dtype).to(model.pixel_mean.device)
        traced = torch.jit.trace(graph, (sample,), check_trace=False)
    with atomic_path(path) as tmp:
        traced.save(tmp)
    return path


def export_model(cfg, model, output_dir, fmt="onnx", input_dtype="float32"):
    """Write ``output_dir/model.onnx`` (or ``model.ts``) and its metadata
    (:func:`metadata_path`)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if input_dtype not in ("float32", "uint8"):
        raise ValueError(f"input_dtype must be 'float32' or 'uint8', got {input_dtype!r}")
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, FORMATS[fmt])
    metadata = json.dumps(runtime_metadata(cfg, fmt, input_dtype), indent=2)
    # Both files are complete before either replaces its previous version: a failed export
    # leaves the previous pair, never a graph beside another graph's metadata.
    with atomic_write(metadata_path(path)) as f, atomic_path(path) as tmp:
        f.write(metadata + "\n")
        (export_onnx if fmt == "onnx" else export_torchscript)(model, tmp, input_dtype)
    logger.info("wrote %s and %s", path, metadata_path(path))
    return path


def metadata_path(graph_path):
    """The metadata file of an exported graph: ``<graph file>.json``."""
    return graph_path + ".json"
