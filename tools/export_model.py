#!/usr/bin/env python
"""Export a trained AInnoFace as one graph, from images to detections (ONNX or TorchScript).

In the style of Detectron2's ``tools/deploy/export_model.py``::

    python tools/export_model.py --config-file configs/ainnoface_R50.yaml --format onnx \\
        --output exported/ MODEL.WEIGHTS output/ainnoface_R50/model_final.pth
    python tools/export_model.py --config-file configs/ainnoface_R18_cpu.yaml --format onnx \\
        --int8 --output exported/ MODEL.WEIGHTS output/ainnoface_R18_cpu/model_final.pth

writes ``exported/model.onnx`` (or ``model.ts``) and its metadata, ``exported/model.onnx.json``
(or ``model.ts.json``; input name, layout, dtype and channel order, normalisation, thresholds,
maximum detections). The graph
(:mod:`ainnoface_d2.export.graph`) takes ``images`` (N, 3, H, W), N/H/W dynamic, and returns
``num_detections``, ``detection_boxes``, ``detection_scores``, ``detection_classes``.
``--int8`` also writes ``model_int8.onnx`` and ``model_int8.onnx.json`` (the fp32 metadata, with
the quantization scheme): static int8 quantization calibrated on
``--calibration-images`` images (default 64) spread evenly over the config's first
``DATASETS.TRAIN`` set (or ``--calibration-dataset``), preprocessed as at inference.
"""

import argparse
import logging
import os
import sys

import ainnoface_d2  # noqa: F401  (compat shims, registries)
from ainnoface_d2.cli import run_cli
from ainnoface_d2.export.graph import export_model
from ainnoface_d2.export.runtimes import quantize_onnx
from ainnoface_d2.predictor import FaceDetector

logger = logging.getLogger("ainnoface_d2.export_model")


def get_parser():
    parser = argparse.ArgumentParser(description="Export AInnoFace to ONNX or TorchScript.")
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("--output", required=True, metavar="DIR")
    parser.add_argument(
        "--input-dtype",
        choices=["float32", "uint8"],
        default="float32",
        help="dtype of the graph's input pixels",
    )
    parser.add_argument("--int8", action="store_true", help="also write model_int8.onnx")
    parser.add_argument("--calibration-dataset", help="registered dataset for --int8")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth "
        "(an optional leading --opts is accepted)",
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    opts = args.opts[1:] if args.opts[:1] == ["--opts"] else args.opts
    if not os.path.isfile(args.config_file):
        raise SystemExit(f"--config-file: no such file: {args.config_file}")
    if args.int8 and (args.format != "onnx" or args.input_dtype != "float32"):
        raise SystemExit("--int8 needs --format onnx and --input-dtype float32")
    # FaceDetector builds the config and loads the weights as the demo does.
    detector = FaceDetector(args.config_file, device="cpu", opts=opts)
    path = export_model(detector.cfg, detector.network, args.output, args.format, args.input_dtype)
    print(f"wrote {path}")
    if args.int8:
        images = detector.calibration_images(args.calibration_dataset, args.calibration_images)
        batches = [detector.to_batch([image])[0] for image in images]
        int8 = quantize_onnx(path, os.path.join(args.output, "model_int8.onnx"), batches)
        print(f"wrote {int8} (calibrated on {len(batches)} images)")
    return 0


if __name__ == "__main__":
    from detectron2.utils.logger import setup_logger

    setup_logger(name="ainnoface_d2")
    logging.getLogger("ainnoface_d2").setLevel(logging.INFO)
    sys.exit(run_cli(main))
