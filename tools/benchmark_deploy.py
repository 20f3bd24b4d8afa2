#!/usr/bin/env python
"""Deployment benchmark: every backend x precision of AInnoFace, in one process, one table.

For each config (default: the R50 config and the small R18 config), one route per row:
PyTorch fp32 and bf16 (autocast + channels-last), ONNX Runtime fp32 and int8, OpenVINO fp32,
bf16 and int8 (routes whose runtime is missing are skipped with a note), plus Detectron2's stock
RetinaNet fp32 with the same ResNet (P2-P7, 3 anchors per location, one class) beside them. Every
route goes through the same measuring loop and runs end to end: normalisation, backbone, heads,
decoding and NMS (the exported graph; the Detectron2 model's ``forward`` for PyTorch). Printed:
median latency at batch 1 (``--size``, default 640x480), throughput at batch ``--batch`` (8),
the ratios to PyTorch fp32 and to stock RetinaNet fp32, fvcore's GMAC of backbone + heads, and
the agreement with PyTorch fp32 (fraction of its detections with score >= ``--parity-score``
that the route finds at IoU >= 0.9, on the batch-1 input). ``--device cuda`` measures the GPU
routes instead: PyTorch fp32 and fp16 (autocast), ONNX Runtime fp32 (CUDA execution provider)
and fp16 (TensorRT execution provider with ``trt_fp16_enable``; needs ``onnxruntime-gpu`` built
with TensorRT, else skipped with the reason).

Weights are random unless ``--weights`` (one per config) are given; the int8 routes are then
calibrated on random images (``--calibration DATASET`` calibrates on that dataset's images).
``--ap-dataset builtin_faces_val --weights ... model_final.pth`` (the quickstart model, with
``--configs configs/ainnoface_R18_cpu.yaml``) adds the easy / medium / hard AP of every route
(official protocol).

    python tools/benchmark_deploy.py --threads 2              # R50 + R18, all routes
    python tools/benchmark_deploy.py --quick                  # a few repetitions, batch 2
"""

import argparse
import contextlib
import copy
import json
import math
import os
import statistics
import sys
import tempfile
import time

import ainnoface_d2  # noqa: F401  (compat shims, registries)
from ainnoface_d2 import FaceDetector
from ainnoface_d2.analysis import count_flops, parse_size, stock_retinanet_cfg
from ainnoface_d2.export import runtimes
from ainnoface_d2.export.graph import export_onnx
from ainnoface_d2.runtime import cpu_bf16_native

import numpy as np
import torch
from detectron2.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [
    os.path.join(REPO, "configs", c) for c in ("ainnoface_R50.yaml", "ainnoface_R18_cpu.yaml")
]
ROUTES = [
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
]

GPU_ROUTES = ["torch:fp32", "torch:fp16", "onnxruntime:fp32", "onnxruntime:fp16"]


def torch_route(model, precision, device="cpu"):
    """``batch (N, 3, H, W) float32 -> [(boxes, scores)]`` through the Detectron2 model's
    forward (bf16: CPU autocast + channels-last; fp16: CUDA autocast)."""
    autocast = contextlib.nullcontext
    kind = device.split(":")[0]
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        if kind == "cpu":
            model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        autocast = lambda: torch.autocast(kind, dtype=dtype)  # noqa: E731

    def run(batch):
        with torch.no_grad(), autocast():
            out = model([{"image": torch.from_numpy(x).to(device)} for x in batch])
        if kind == "cuda":
            torch.cuda.synchronize()
        return [(o["instances"].pred_boxes.tensor, o["instances"].scores) for o in out]

    return run


def graph_route(runner):
    """``batch -> [(boxes, scores)]`` through an exported-graph runtime."""

    def run(batch):
        num, boxes, scores = runner(batch)[:3]
        return [
            (torch.as_tensor(boxes[i, :n]).float(), torch.as_tensor(scores[i, :n]).float())
            for i, n in enumerate(np.asarray(num).tolist())
        ]

    return run


def agreement(ref, got, min_score, min_iou=0.9):
    """Fraction of the reference detections (score >= min_score) that ``got`` has at IoU >=
    ``min_iou`` (NaN when there are none)."""
    from torchvision.ops import box_iou

    found, total = 0, 0
    for (rb, rs), (gb, _) in zip(ref, got):
        rb = rb[rs.float() >= min_score].float().cpu()
        total += len(rb)
        if len(rb) and len(gb):
            found += int((box_iou(rb, gb.float().cpu()).max(dim=1).values >= min_iou).sum())
    return found / total if total else float("nan")


def build_routes(detector, routes, tmp, calibration, device):
    """Each available route as a callable on a float32 batch, or the reason it is skipped."""
    try:
        onnx = export_onnx(detector.network, os.path.join(tmp, "model.onnx"))
    except Exception as e:  # e.g. no onnx exporter dependencies: the graph routes are skipped
        onnx = f"ONNX export failed: {e}"
    int8 = None
    built = {}
    for backend, precision in routes:
        try:
            if backend != "torch" and not os.path.isfile(onnx):
                raise RuntimeError(onnx)
            if backend == "torch":
                runtimes.resolve_precision(backend, precision, device)
                built[(backend, precision)] = torch_route(detector.network, precision, device)
                continue
            runtimes.resolve_precision(backend, precision, device)
            path = onnx
            if precision == "int8":
                int8 = int8 or runtimes.quantize_onnx(
                    onnx, os.path.join(tmp, "int8.onnx"), calibration
                )
                path = int8
            cls = {"onnxruntime": runtimes.OnnxRuntimeRunner, "openvino": runtimes.OpenVINORunner}
            built[(backend, precision)] = graph_route(cls[backend](path, precision, device))
        except (ImportError, ValueError, RuntimeError) as e:
            built[(backend, precision)] = f"skipped: {e}"
    return built


def measure(run, batch, reps, warmup=1):
    """Median seconds of ``run(batch)`` over ``reps`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        run(batch)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def route_ap(detector_kwargs, backend, precision, dataset):
    """Easy / medium / hard AP (official protocol) of one route on a registered WIDER split."""
    from ainnoface_d2.data.wider_face_format import image_key
    from ainnoface_d2.evaluation import evaluate, gt_from_dataset_dicts

    from detectron2.data import DatasetCatalog
    from detectron2.data.detection_utils import read_image

    dicts = DatasetCatalog.get(dataset)
    det = FaceDetector(
        confidence_threshold=0.0, backend=backend, precision=precision, **detector_kwargs
    )
    preds = {}
    for d in dicts:
        out = det(read_image(d["file_name"], format="BGR"))
        b = out["boxes"]
        xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2], out["scores"][:, None]], axis=1)
        preds[image_key(d["file_name"])] = xywh
    res = evaluate(preds, gt_from_dataset_dicts(dicts, dataset))
    return [100 * res[s] for s in ("easy", "medium", "hard")]


def bench_config(config, weights, args):
    """All routes of one config: rows of the table."""
    w, h = args.size
    opts = ["INPUT.MIN_SIZE_TEST", "0"]
    detector = FaceDetector(
        config, weights or "", device=args.device, opts=opts, protocol="original"
    )
    rng = np.random.RandomState(0)
    one = (rng.rand(1, 3, h, w) * 255).astype(np.float32)
    many = (rng.rand(args.batch, 3, h, w) * 255).astype(np.float32)
    if args.calibration:
        calib = [detector.to_batch([im])[0] for im in detector.calibration_images(args.calibration)]
    else:
        calib = [(rng.rand(1, 3, h, w) * 255).astype(np.float32) for _ in range(4)]
    rows = []
    name = os.path.basename(config)
    with tempfile.TemporaryDirectory() as tmp:
        routes = build_routes(detector, args.routes, tmp, calib, args.device)
        stock = build_model(stock_retinanet_cfg(detector.cfg)).eval().to(args.device)
        routes[("stock RetinaNet", "fp32")] = torch_route(stock, "fp32", args.device)
        reference = routes[("torch", "fp32")](one) if ("torch", "fp32") in routes else None
        for (backend, precision), run in routes.items():
            row = {"config": name, "backend": backend, "precision": precision}
            if isinstance(run, str):
                rows.append({**row, "note": run})
                continue
            row["latency_ms"] = 1000 * measure(run, one, args.reps)
            row["images_per_s"] = args.batch / measure(run, many, max(1, args.reps // 2))
            if reference is not None and backend != "stock RetinaNet":
                row["agreement"] = agreement(reference, run(one), args.parity_score)
            if args.ap_dataset and backend != "stock RetinaNet":
                kwargs = {"config_file": config, "weights": weights, "device": args.device}
                kwargs["protocol"] = "original"  # the table's AP is the single-pass AP
                row["ap"] = route_ap(kwargs, backend, precision, args.ap_dataset)
            rows.append(row)
            print(f"  {name} {backend} {precision}: {row['latency_ms']:.0f} ms", file=sys.stderr)
    gmacs = {
        "AInnoFace": count_flops(detector.network.cpu(), w, h)["total"],
        "stock RetinaNet": count_flops(stock.cpu(), w, h)["total"],
    }
    for row in rows:
        row["gmac"] = gmacs[
            "stock RetinaNet" if row["backend"] == "stock RetinaNet" else "AInnoFace"
        ]
    return rows


def print_table(rows, args):
    w, h = args.size
    print(
        f"\n{args.device}, {args.threads} CPU threads, batch 1 @ {w}x{h} (latency) and batch "
        f"{args.batch}"
        f" (throughput); torch {torch.__version__}; bf16 natively: torch "
        f"{cpu_bf16_native('torch')}, OpenVINO {cpu_bf16_native('openvino')}"
    )
    head = [
        "config",
        "route",
        "GMAC",
        "ms @ bs1",
        "x vs torch fp32",
        "x vs stock fp32",
        f"img/s @ bs{args.batch}",
        "agree",
        "AP easy/med/hard",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cfg_name in dict.fromkeys(r["config"] for r in rows):
        group = [r for r in rows if r["config"] == cfg_name]
        base = {(r["backend"], r["precision"]): r.get("latency_ms") for r in group}
        ref, stock = base.get(("torch", "fp32")), base.get(("stock RetinaNet", "fp32"))
        for r in group:
            route = f"{r['backend']} {r['precision']}"
            if "note" in r:
                print(f"| {cfg_name} | {route} | | {r['note']} | | | | | |")
                continue
            ms = r["latency_ms"]
            ap = "/".join(f"{a:.1f}" for a in r["ap"]) if "ap" in r else ""
            # nan: the reference has no detection above --parity-score (e.g. random weights)
            a = r.get("agreement", float("nan"))
            agree = "" if math.isnan(a) else f"{a:.2f}"
            print(
                f"| {cfg_name} | {route} | {r['gmac']:.1f} | {ms:.0f} | "
                f"{ref / ms if ref else float('nan'):.2f} | "
                f"{stock / ms if stock else float('nan'):.2f} | {r['images_per_s']:.2f} | "
                f"{agree} | {ap} |"
            )


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=CONFIGS)
    p.add_argument("--weights", nargs="*", default=[], help="one checkpoint per config")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (GPU routes: torch fp16, ORT)")
    p.add_argument(
        "--parity-score",
        type=float,
        default=0.05,
        help="agreement column: detections of torch fp32 above this score",
    )
    p.add_argument("--size", type=parse_size, default=(640, 480), help="WxH")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument(
        "--routes",
        nargs="+",
        default=[f"{b}:{q}" for b, q in ROUTES],
        help="backend:precision pairs",
    )
    p.add_argument("--calibration", help="registered dataset for the int8 calibration")
    p.add_argument("--ap-dataset", help="registered WIDER-style val split for the AP column")
    p.add_argument("--quick", action="store_true", help="3 repetitions, batch 2")
    p.add_argument("--json", help="also write the rows here")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.device.startswith("cuda") and args.routes == get_parser().get_default("routes"):
        args.routes = GPU_ROUTES
    args.routes = [tuple(r.split(":")) for r in args.routes]
    if args.quick:
        args.reps, args.batch = 3, 2
    if args.weights and len(args.weights) != len(args.configs):
        raise SystemExit("--weights: give one checkpoint per --configs entry")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    for i, config in enumerate(args.configs):
        rows += bench_config(config, args.weights[i] if args.weights else None, args)
    print_table(rows, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    sys.exit(run_cli(main))
