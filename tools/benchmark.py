#!/usr/bin/env python
"""Benchmark AInnoFace side by side with Detectron2's stock RetinaNet, in one process and run.

In the style of Detectron2's ``tools/benchmark.py``. Parts (``--what``, comma-separated):

* ``train``: training images/s and peak memory, fp32 and mixed precision, of the AInnoFace
  config and of the stock RetinaNet built beside it. One step is what ``SimpleTrainer`` /
  ``AMPTrainer`` do: loss dict -> sum -> backward -> SGD step (Detectron2's ``build_optimizer``;
  ``torch.autocast`` + ``GradScaler`` for AMP). Random images, ~12 random boxes each (the
  reference script's recipe).
* ``infer``: inference latency at batch 1 and throughput at ``--infer-batch``, fp32 and AMP.
* ``mapper``: the training data mapper (full augmentation chain) on WIDER-like 1024-wide
  JPEGs, images/s per CPU core (``tools/benchmark_mapper.py``'s code, one thread).
* ``eval``: the WIDER FACE evaluator on the full official val ground truth
  (``--wider-gt``, default ``../shared/widerface/ground_truth``) with synthetic predictions:
  jittered ground-truth boxes plus random false positives, ``--eval-preds`` per image.
* ``amp``: mixed-precision training stability and fp16 inference agreement (GPU). Trains
  ``--amp-config`` (default the small R18 config) with ``SOLVER.AMP.ENABLED`` for
  ``--amp-iters`` iterations on a freshly generated built-in face dataset with
  ``tools/train_net.py``'s Trainer (Detectron2's ``AMPTrainer``, which raises on the first
  non-finite loss), then runs the trained model on the built-in val images in fp32 and under
  autocast and checks that every detection with score >= 0.5 of either has a partner with
  IoU >= 0.95 in the other. On CPU it trains in fp32 and compares with bfloat16 autocast (a smoke
  test of the code path; the figure that counts is the GPU's).

The stock model is the one of ``../shared/perf/bench_stock_retinanet.py`` (``make_cfg(p2=True)``):
RetinaNet, ``build_retinanet_resnet_fpn_backbone`` over res2-res5 (FPN P2-P5 + P6/P7 from res5),
head on P2-P7, anchors ``{16..512} x 2^{0,1/3,2/3}`` with aspect ratio 1.25 (3 per location),
one class. Its ResNet settings (depth, stride-in-1x1, norm, frozen stages, widths), FPN width,
pixel mean/std and solver come from the AInnoFace config, so the two backbones are the same.
Both models start from random weights: with trained weights inference would also pay for more
candidates above the score threshold (``--score-thresh 0`` makes both decode every top-k
candidate, the worst case).

Examples::

    python tools/benchmark.py                                 # GPU: R152 vs stock, bs8 @ 1024
    python tools/benchmark.py --config-file configs/ainnoface_R50.yaml --device cpu \\
        --threads 2 --what infer --infer-size 640x480 --infer-batch 0 --amp off
    python tools/benchmark.py --what mapper,eval --json out.json
"""

import argparse
import importlib.util
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time

import ainnoface_d2  # noqa: F401  (compat shims + registration; must precede detectron2 imports)
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.runtime import tune_cpu_allocator

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

logger = logging.getLogger("ainnoface_d2.benchmark")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "ainnoface_R152.yaml")
AMP_CONFIG = os.path.join(REPO, "configs", "ainnoface_R18_cpu.yaml")
DEFAULT_WIDER_GT = os.path.join(os.path.dirname(REPO), "shared", "widerface", "ground_truth")
PARTS = ("train", "infer", "flops", "mapper", "eval", "amp")
GiB = 2**30


def _load_tool(name):
    """A script of tools/ as a module (they are scripts, not part of the package)."""
    path = os.path.join(REPO, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"ainnoface_tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Models and inputs
# ---------------------------------------------------------------------------------------------
def ainnoface_cfg(args):
    cfg = get_ainnoface_cfg(args.config_file, args.opts)
    cfg.MODEL.DEVICE = args.device
    cfg.MODEL.WEIGHTS = ""
    cfg.SOLVER.BASE_LR = args.lr
    if args.score_thresh is not None:
        cfg.MODEL.AINNOFACE.SCORE_THRESH_TEST = args.score_thresh
    cfg.freeze()
    return cfg


def stock_retinanet_cfg(face_cfg, args):
    """Stock RetinaNet P2-P7 as ``bench_stock_retinanet.make_cfg(p2=True)``, same ResNet."""
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
    n = args.stock_anchors
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [
        [s * 2 ** (k / n) for k in range(n)] for s in (16, 32, 64, 128, 256, 512)
    ]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[1.25]]
    cfg.MODEL.RETINANET.NUM_CLASSES = 1
    if args.score_thresh is not None:
        cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.score_thresh
    cfg.MODEL.PIXEL_MEAN = list(face_cfg.MODEL.PIXEL_MEAN)
    cfg.MODEL.PIXEL_STD = list(face_cfg.MODEL.PIXEL_STD)
    cfg.INPUT.FORMAT = face_cfg.INPUT.FORMAT
    cfg.SOLVER = face_cfg.SOLVER.clone()
    cfg.MODEL.DEVICE = args.device
    cfg.freeze()
    return cfg


def random_batch(n, height, width, with_gt, seed=0):
    """Random images with 12 random boxes each: the reference script's recipe at 1024x1024
    (corners in [0, size-200), sides 8-188 px), scaled with the image for other sizes."""
    g = torch.Generator().manual_seed(seed)
    scale = min(height, width) / 1024
    out = []
    for _ in range(n):
        img = torch.randint(0, 255, (3, height, width), generator=g).float()
        d = {"image": img, "height": height, "width": width}
        if with_gt:
            room = torch.tensor([width, height]) - 200 * scale
            xy = torch.rand(12, 2, generator=g) * room
            wh = (8 + torch.rand(12, 2, generator=g) * 180) * scale
            inst = Instances((height, width))
            inst.gt_boxes = Boxes(torch.cat([xy, xy + wh.clamp(min=4)], 1))
            inst.gt_classes = torch.zeros(12, dtype=torch.long)
            d["instances"] = inst
        out.append(d)
    return out


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fns, warmup, reps, device, settle=0, samples=None):
    """Median wall time of ``reps`` timed calls of each function after ``warmup`` untimed ones.

    ``fns`` maps names to functions. With several, the repetitions take turns, in the order
    A B, B A, A B, ..., so that a machine whose speed drifts (a shared host) and the order
    affect all of them alike. ``settle`` untimed calls of the same function come right before
    each timed call: each function is then timed in its own steady state (caches, allocator),
    as a user who runs one model sees it, not just after the other one. ``samples``, a dict,
    receives every timed call (``{name: [seconds, ...]}``, repetition by repetition).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    names = list(fns)
    times = {name: [] for name in fns}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            for _ in range(settle):
                fns[name]()
            _sync(device)
            t = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t)
    if samples is not None:
        samples.update(times)
    return {name: statistics.median(ts) for name, ts in times.items()}


def paired_ratio(samples, inverse=False):
    """Median over repetitions of AInnoFace's time / stock's time in the same repetition (the
    two calls of a repetition are adjacent in time, so a slow spell of the machine cancels);
    ``inverse`` for a throughput (stock time / AInnoFace time). None without both models."""
    if not {"ainnoface", "stock"} <= set(samples):
        return None
    pairs = zip(samples["ainnoface"], samples["stock"])
    return statistics.median(s / a if inverse else a / s for a, s in pairs)


def _amp_modes(args, device):
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.amp]
    if device.type != "cuda" and True in modes:
        logger.info("AMP figures need CUDA; measuring fp32 only on %s.", device)
        modes = [False]
    return modes


def bench_train(models, args, device, paired):
    """Training images/s (and peak memory on CUDA with one model) of ``{name: (model, cfg)}``;
    ``paired`` receives the paired AInnoFace / stock ratios (see :func:`paired_ratio`)."""
    data = random_batch(args.batch, args.size, args.size, with_gt=True)
    optimizers = {name: build_optimizer(cfg, model) for name, (model, cfg) in models.items()}
    out = {name: {} for name in models}
    for amp in _amp_modes(args, device):
        steps = {}
        for name, (model, _) in models.items():
            model.train()
            scaler = torch.amp.GradScaler(device.type, enabled=amp)

            def step(model=model, optimizer=optimizers[name], scaler=scaler, amp=amp):
                with EventStorage(0):
                    with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                        losses = model(data)
                    loss = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()

            steps[name] = step
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        samples = {}
        t = timeit(steps, args.train_warmup, args.train_iters, device, args.settle, samples)
        key = "amp" if amp else "fp32"
        paired[f"train_img_s_{key}"] = paired_ratio(samples, inverse=True)
        for name in models:
            out[name][f"train_img_s_{key}"] = args.batch / t[name]
            logger.info("%s train %s: %.3f s/iter", name, key, t[name])
            if device.type == "cuda" and len(models) == 1:
                out[name][f"train_peak_gib_{key}"] = torch.cuda.max_memory_allocated(device) / GiB
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    return out


def bench_infer(models, args, device, paired):
    """Latency at batch 1 and throughput at ``--infer-batch`` of ``{name: (model, cfg)}``;
    ``paired`` receives the paired AInnoFace / stock ratios (see :func:`paired_ratio`)."""
    w, h = args.infer_size
    one = random_batch(1, h, w, with_gt=False)
    many = random_batch(args.infer_batch, h, w, with_gt=False) if args.infer_batch else None
    out = {name: {} for name in models}
    for amp in _amp_modes(args, device):

        def infer(model, x, amp=amp):
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                return model(x)

        key = "amp" if amp else "fp32"
        for model, _ in models.values():
            model.eval()
        fns = {name: (lambda m=m: infer(m, one)) for name, (m, _) in models.items()}
        samples = {}
        t1 = timeit(fns, args.infer_warmup, args.infer_iters, device, args.settle, samples)
        paired[f"infer_ms_bs1_{key}"] = paired_ratio(samples)
        if many:
            fns = {name: (lambda m=m: infer(m, many)) for name, (m, _) in models.items()}
            reps = max(3, args.infer_iters // 3)
            tn = timeit(fns, max(1, args.infer_warmup // 2), reps, device, args.settle, samples)
            paired[f"infer_img_s_bs{args.infer_batch}_{key}"] = paired_ratio(samples, inverse=True)
        for name in models:
            out[name][f"infer_ms_bs1_{key}"] = 1000 * t1[name]
            logger.info("%s infer %s: %.1f ms at batch 1", name, key, 1000 * t1[name])
            if many:
                out[name][f"infer_img_s_bs{args.infer_batch}_{key}"] = args.infer_batch / tn[name]
    return out


class _DenseNet(torch.nn.Module):
    """Backbone + head of a Detectron2 dense detector, on a preprocessed image tensor."""

    def __init__(self, model):
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        self.in_features = list(model.head_in_features)

    def forward(self, images):
        features = self.backbone(images)
        return self.head([features[f] for f in self.in_features])


def count_flops(model, args):
    """fvcore's multiply-accumulate count (GMAC) of backbone + head at the inference size,
    after the model's own padding; independent of the machine's load."""
    from fvcore.nn import FlopCountAnalysis

    w, h = args.infer_size
    images = model.preprocess_image(random_batch(1, h, w, with_gt=False)).tensor
    model.eval()
    with torch.no_grad():
        flops = FlopCountAnalysis(_DenseNet(model), images)
        flops.unsupported_ops_warnings(False)
        flops.uncalled_modules_warnings(False)
        by_module = flops.by_module()
        return {
            "gmac": flops.total() / 1e9,
            "gmac_backbone": by_module["backbone"] / 1e9,
            "gmac_head": by_module["head"] / 1e9,
            "padded_input": "x".join(str(v) for v in images.shape[-2:][::-1]),
        }


def bench_models(args, device):
    face_cfg = ainnoface_cfg(args)
    cfgs = {"ainnoface": face_cfg, "stock": stock_retinanet_cfg(face_cfg, args)}
    results = {name: {} for name in args.model_order}

    def build(name):
        torch.manual_seed(0)
        model = build_model(cfgs[name])
        results[name]["params_M"] = sum(p.numel() for p in model.parameters()) / 1e6
        logger.info("%s: %.2f M parameters", name, results[name]["params_M"])
        if "flops" in args.what:
            results[name].update(count_flops(model, args))
        return model, cfgs[name]

    paired = {}

    def measure(models):
        if "train" in args.what:
            for name, res in bench_train(models, args, device, paired).items():
                results[name].update(res)
        if "infer" in args.what:
            for name, res in bench_infer(models, args, device, paired).items():
                results[name].update(res)

    if args.interleave:
        measure({name: build(name) for name in args.model_order})
    else:
        # One model at a time on the device, so that each peak-memory figure is its own.
        for name in args.model_order:
            measure({name: build(name)})
            if device.type == "cuda":
                torch.cuda.empty_cache()
    results["paired"] = {k: v for k, v in paired.items() if v is not None}
    return results


# ---------------------------------------------------------------------------------------------
# Data mapper and evaluator
# ---------------------------------------------------------------------------------------------
def bench_mapper(args):
    """images/s on one core: tools/benchmark_mapper.py's synthetic images and loop."""
    from ainnoface_d2.data import FaceDatasetMapper

    import cv2

    bm = _load_tool("benchmark_mapper")
    cfg = get_ainnoface_cfg(args.config_file, args.opts)
    cfg.INPUT.FACE.TRAIN_SIZE = args.mapper_size
    cfg.freeze()
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        mapper = FaceDatasetMapper(cfg, is_train=True)
        np.random.seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            dicts = bm.synthetic_dataset(tmp, args.mapper_images, seed=0)
            decode, augment, _ = bm.run(mapper, dicts, args.mapper_iters, warmup=5)
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    return {
        "mapper_img_s_core": args.mapper_iters / (decode + augment),
        "mapper_ms_decode": 1000 * decode / args.mapper_iters,
        "mapper_ms_augment": 1000 * augment / args.mapper_iters,
    }


def synthetic_predictions(gt, per_image, seed=0):
    """Per image: each real face, with probability 0.9, as a box jittered by ~10 % of its size
    (score in [0.3, 1)), plus random boxes (score in [0, 0.6)) up to ``per_image`` boxes."""
    rng = np.random.default_rng(seed)
    preds = {}
    for key, g in gt.items():
        boxes = np.asarray(g.boxes, dtype=np.float64).reshape(-1, 4)
        real = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
        real = real[rng.random(len(real)) < 0.9][:per_image]
        size = real[:, 2:4]
        tp = np.concatenate([real[:, :2] + rng.normal(0, 0.1, size.shape) * size,
                             size * rng.uniform(0.9, 1.1, size.shape)], 1)  # fmt: skip
        tp = np.concatenate([tp, rng.uniform(0.3, 1.0, (len(tp), 1))], 1)
        n_fp = per_image - len(tp)
        extent = (
            np.maximum(boxes[:, :2].max(0) + boxes[:, 2:].max(0), 64) if len(boxes) else [1024] * 2
        )  # noqa: E501
        wh = np.exp(rng.uniform(np.log(4), np.log(300), (n_fp, 2)))
        xy = rng.uniform(0, 1, (n_fp, 2)) * np.asarray(extent, dtype=np.float64)
        fp = np.concatenate([xy, wh, rng.uniform(0, 0.6, (n_fp, 1))], 1)
        preds[key] = np.concatenate([tp, fp], 0)
    return preds


def bench_eval(args):
    from ainnoface_d2.evaluation import evaluate, load_eval_ground_truth

    if not os.path.isdir(args.wider_gt):
        raise FileNotFoundError(
            f"--wider-gt {args.wider_gt}: no such directory (the official eval_tools/ground_truth "
            "with wider_face_val.mat and wider_{easy,medium,hard}_val.mat)"
        )
    t = time.perf_counter()
    gt = load_eval_ground_truth(args.wider_gt)
    load_s = time.perf_counter() - t
    preds = synthetic_predictions(gt, args.eval_preds)
    n = sum(len(p) for p in preds.values())
    out = {"eval_images": len(gt), "eval_predictions": n, "eval_gt_load_s": load_s}
    for protocol in ("matlab", "python"):
        res = {}

        def run(protocol=protocol, res=res):
            res.update(evaluate(preds, gt, protocol=protocol))

        t = timeit({protocol: run}, 0, args.eval_reps, torch.device("cpu"))
        out[f"eval_s_{protocol}"] = t[protocol]
        out[f"eval_ap_{protocol}"] = {s: round(100 * res[s], 2) for s in ("easy", "medium", "hard")}
    return out


# ---------------------------------------------------------------------------------------------
# Mixed-precision training stability and fp16 inference agreement
# ---------------------------------------------------------------------------------------------
def match_fraction(a_boxes, a_scores, b_boxes, score_thresh, iou_thresh):
    """(matched, total): detections of A with score >= score_thresh that have a box of B at
    IoU >= iou_thresh."""
    sel = a_scores >= score_thresh
    total = int(sel.sum())
    if total == 0:
        return 0, 0
    if len(b_boxes) == 0:
        return 0, total
    iou = pairwise_iou(Boxes(a_boxes[sel]), Boxes(b_boxes))
    return int((iou.max(dim=1).values >= iou_thresh).sum()), total


def amp_agreement(model, cfg, dataset, device, num_images, score_thresh=0.5, iou_thresh=0.95):
    """Run ``model`` in fp32 and under autocast on ``dataset``; count matched detections."""
    from ainnoface_d2.data import FaceDatasetMapper

    from detectron2.data import build_detection_test_loader

    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    loader = build_detection_test_loader(
        cfg, dataset, mapper=FaceDatasetMapper(cfg, is_train=False)
    )
    model.eval()
    counts = np.zeros(4, dtype=np.int64)  # fp32 matched, fp32 total, amp matched, amp total
    for i, inputs in enumerate(loader):
        if i >= num_images:
            break
        with torch.no_grad():
            ref = model(inputs)[0]["instances"].to("cpu")
            with torch.autocast(device.type, dtype=dtype):
                low = model(inputs)[0]["instances"].to("cpu")
        rb, rs = ref.pred_boxes.tensor.float(), ref.scores.float()
        lb, ls = low.pred_boxes.tensor.float(), low.scores.float()
        counts[:2] += match_fraction(rb, rs, lb, score_thresh, iou_thresh)
        counts[2:] += match_fraction(lb, ls, rb, score_thresh, iou_thresh)
    return {
        "amp_dtype": str(dtype).replace("torch.", ""),
        "agree_fp32_matched": int(counts[0]),
        "agree_fp32_total": int(counts[1]),
        "agree_amp_matched": int(counts[2]),
        "agree_amp_total": int(counts[3]),
    }


def bench_amp(args, device):
    from ainnoface_d2.data.builtin_faces import build_builtin_faces
    from ainnoface_d2.data.datasets import register_wider_face_splits
    from ainnoface_d2.data.wider_face import convert_wider_face
    from ainnoface_d2.engine import Trainer

    use_amp = device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "builtin_faces")
        build_builtin_faces(
            root, seed=0, num_train=args.amp_images, num_val=args.amp_val_images, num_test=0
        )
        convert_wider_face(root, splits=("train", "val"))
        prefix = f"benchmark_amp_faces_{os.getpid()}"
        register_wider_face_splits(prefix, root, splits=("train", "val"))
        cfg = get_ainnoface_cfg(args.amp_config)
        cfg.merge_from_list(
            [
                "MODEL.DEVICE",
                args.device,
                "SOLVER.AMP.ENABLED",
                use_amp,
                "SOLVER.MAX_ITER",
                args.amp_iters,
                "SOLVER.STEPS",
                (int(args.amp_iters * 0.8),),
                "SOLVER.WARMUP_ITERS",
                min(50, args.amp_iters // 4),
                "SOLVER.CHECKPOINT_PERIOD",
                10**9,
                "SOLVER.IMS_PER_BATCH",
                args.amp_batch,
                "DATASETS.TRAIN",
                (f"{prefix}_train",),
                "DATASETS.TEST",
                (f"{prefix}_val",),
                "DATALOADER.NUM_WORKERS",
                args.amp_workers,
                "TEST.EVAL_PERIOD",
                0,
                "TEST.WIDER_FACE.WRITE_SUBMISSION",
                False,
                "TEST.WIDER_FACE.PLOT_PR_CURVES",
                False,
                "TEST.WIDER_FACE.COCO_EVAL",
                False,
                "OUTPUT_DIR",
                os.path.join(tmp, "output"),
                "SEED",
                0,
            ]
            + list(args.amp_opts)  # fmt: skip
        )
        cfg.freeze()
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        out = {"amp_train_mode": "AMPTrainer fp16" if use_amp else "SimpleTrainer fp32 (no CUDA)"}
        t = time.perf_counter()
        try:
            trainer.train()
            out["amp_nonfinite_losses"] = 0
        except FloatingPointError as e:
            # Detectron2 raises on the first non-finite total loss.
            logger.error("non-finite loss: %s", e)
            out["amp_nonfinite_losses"] = 1
        # After a complete run Detectron2 leaves iter at max_iter; after an error, at the step
        # that failed.
        out["amp_train_iters_done"] = trainer.iter - trainer.start_iter
        out["amp_train_s"] = time.perf_counter() - t
        history = trainer.storage.history("total_loss").values() if trainer.storage else []
        losses = [v for v, _ in history]
        out["amp_total_loss_first_last"] = (
            [round(losses[0], 4), round(losses[-1], 4)] if losses else None
        )
        if use_amp:
            out["amp_grad_scale_final"] = float(trainer._trainer.grad_scaler.get_scale())
        results = getattr(trainer, "_last_eval_results", None) or {}
        ap = results.get("wider_face") or {}
        out["amp_model_ap"] = "/".join(f"{ap[k]:.1f}" for k in ap) if ap else "n/a"
        model = trainer.model
        out.update(
            amp_agreement(model, cfg, f"{prefix}_val", device, num_images=args.amp_val_images)
        )
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def print_table(args, device, results):
    rows = []
    m = results.get("models", {})
    a, s, paired = m.get("ainnoface", {}), m.get("stock", {}), m.get("paired", {})
    w, h = args.infer_size
    labels = [
        ("params_M", "parameters (M)"),
        ("gmac", f"GMAC backbone+head @ {w}x{h} (fvcore)"),
        ("gmac_backbone", "  of which backbone"),
        ("gmac_head", "  of which head"),
        ("padded_input", "  padded input (size divisibility)"),
        ("train_img_s_fp32", f"train img/s, bs{args.batch} @ {args.size}, fp32"),
        ("train_img_s_amp", f"train img/s, bs{args.batch} @ {args.size}, AMP"),
        ("train_peak_gib_fp32", "train peak memory (GiB), fp32"),
        ("train_peak_gib_amp", "train peak memory (GiB), AMP"),
        ("infer_ms_bs1_fp32", f"infer latency bs1 @ {w}x{h} (ms), fp32"),
        ("infer_ms_bs1_amp", f"infer latency bs1 @ {w}x{h} (ms), AMP"),
        (f"infer_img_s_bs{args.infer_batch}_fp32", f"infer img/s bs{args.infer_batch}, fp32"),
        (f"infer_img_s_bs{args.infer_batch}_amp", f"infer img/s bs{args.infer_batch}, AMP"),
    ]
    for key, label in labels:
        if key not in a and key not in s:
            continue
        if key.startswith("train_peak") and device.type != "cuda":
            continue
        ratio = None
        if isinstance(a.get(key), float) and isinstance(s.get(key), float) and s[key]:
            ratio = a[key] / s[key]
        rows.append(
            (label, _fmt(a.get(key)), _fmt(s.get(key)), _fmt(ratio, 3) if ratio else "",
             _fmt(paired[key], 3) if key in paired else "")
        )  # fmt: skip
    for name, d in (("AInnoFace", a), ("stock", s)):
        if "train_img_s_amp" in d and "train_img_s_fp32" in d:
            rows.append(
                (f"AMP / fp32 train speed-up, {name}", "", "",
                 _fmt(d["train_img_s_amp"] / d["train_img_s_fp32"], 3))
            )  # fmt: skip
    if "train" in args.what and not any(k.startswith("train_peak") for k in a):
        why = "CPU" if device.type != "cuda" else "--interleave"
        rows.append(("train peak memory", f"n/a ({why})", f"n/a ({why})", ""))
    mp = results.get("mapper")
    if mp:
        rows.append(
            (f"mapper img/s per core (TRAIN_SIZE {args.mapper_size})",
             _fmt(mp["mapper_img_s_core"]), "", "")
        )  # fmt: skip
        rows.append(
            ("  decode / augment+to-tensor (ms)",
             f"{mp['mapper_ms_decode']:.1f} / {mp['mapper_ms_augment']:.1f}", "", "")
        )  # fmt: skip
        for key in ("train_img_s_amp", "train_img_s_fp32"):
            if key in a:
                rows.append(
                    (f"  cores needed for AInnoFace {key[12:]} training",
                     _fmt(a[key] / mp["mapper_img_s_core"], 1), "", "")
                )  # fmt: skip
                break
    ev = results.get("eval")
    if ev:
        rows.append(
            (f"WIDER eval, {ev['eval_images']} images, {ev['eval_predictions']} preds: GT load (s)",
             _fmt(ev["eval_gt_load_s"]), "", "")
        )  # fmt: skip
        for p in ("matlab", "python"):
            ap = ev[f"eval_ap_{p}"]
            rows.append(
                (f"  evaluate(), {p} protocol (s) [AP e/m/h "
                 f"{ap['easy']}/{ap['medium']}/{ap['hard']}]",
                 _fmt(ev[f"eval_s_{p}"]), "", "")
            )  # fmt: skip
    amp = results.get("amp")
    if amp:
        rows.append(
            (f"AMP stability: {amp['amp_train_mode']}, non-finite losses / iterations",
             f"{amp['amp_nonfinite_losses']} / {amp['amp_train_iters_done']}", "", "")
        )  # fmt: skip
        rows.append(
            ("  total_loss first / last, grad scale",
             f"{amp['amp_total_loss_first_last']}, {amp.get('amp_grad_scale_final', 'n/a')}",
             "", "")
        )  # fmt: skip
        rows.append(("  WIDER AP of the trained model (e/m/h)", amp["amp_model_ap"], "", ""))
        rows.append(
            (f"{amp['amp_dtype']} vs fp32 detections >= 0.5 matched at IoU >= 0.95",
             f"fp32: {amp['agree_fp32_matched']}/{amp['agree_fp32_total']}, "
             f"{amp['amp_dtype']}: {amp['agree_amp_matched']}/{amp['agree_amp_total']}", "", "")
        )  # fmt: skip

    header = ("figure", "AInnoFace", "stock RetinaNet", "AInnoFace / stock", "paired")
    rows = [tuple(r) + ("",) * (len(header) - len(r)) for r in rows]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = "| " + " | ".join(f"{{:{w}}}" for w in widths) + " |"
    print()
    print(results["header"])
    if paired:
        print(
            "AInnoFace / stock: ratio of the medians; paired: median of the ratios of the "
            "adjacent calls of each repetition (robust to a machine whose speed drifts)"
        )
    print(line.format(*header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line.format(*r))
    print()


def parse_size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", default=DEFAULT_CONFIG, help="AInnoFace config")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--what", default="train,infer", help=f"comma-separated parts of {PARTS}")
    p.add_argument("--amp", choices=("both", "on", "off"), default="both")
    p.add_argument("--batch", type=int, help="training batch (default 8 on GPU, 2 on CPU)")
    p.add_argument("--size", type=int, help="training image side (default 1024 GPU, 256 CPU)")
    p.add_argument("--infer-size", type=parse_size, help="WxH (default: --size square)")
    p.add_argument("--infer-batch", type=int, help="throughput batch, 0 = skip (default 8 / 2)")
    p.add_argument("--train-iters", type=int, help="timed training steps (default 10 / 3)")
    p.add_argument("--train-warmup", type=int, help="untimed training steps (default 3 / 1)")
    p.add_argument("--infer-iters", type=int, help="timed batch-1 runs (default 30 / 5)")
    p.add_argument("--infer-warmup", type=int, help="untimed runs (default 5 / 1)")
    p.add_argument("--lr", type=float, default=1e-4, help="SGD LR (random weights: keep small)")
    p.add_argument("--score-thresh", type=float, help="test score threshold of both models")
    p.add_argument("--stock-anchors", type=int, default=3, help="stock anchors per location")
    p.add_argument("--model-order", default="stock,ainnoface", help="which model runs first")
    p.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        help="build both models and alternate their timed runs (default on CPU; no per-model "
        "peak memory then)",
    )
    p.add_argument(
        "--settle",
        type=int,
        help="untimed calls of a model right before each of its timed calls (default 0 on GPU, "
        "1 on CPU: each model timed in its own steady state; see timeit)",
    )
    p.add_argument(
        "--malloc",
        choices=("tuned", "default"),
        default="tuned",
        help="C allocator: 'tuned' keeps freed memory in the process (ainnoface_d2.runtime, "
        "both models alike), 'default' leaves glibc's settings",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--mapper-size", type=int, default=1024, help="mapper TRAIN_SIZE")
    p.add_argument("--mapper-iters", type=int, default=150)
    p.add_argument("--mapper-images", type=int, default=24)
    p.add_argument("--wider-gt", default=DEFAULT_WIDER_GT, help="official ground_truth dir")
    p.add_argument("--eval-preds", type=int, default=300, help="predictions per image")
    p.add_argument("--eval-reps", type=int, default=3)
    p.add_argument("--amp-config", default=AMP_CONFIG, help="config trained by the amp part")
    p.add_argument("--amp-iters", type=int, default=300)
    p.add_argument("--amp-batch", type=int, default=8)
    p.add_argument("--amp-images", type=int, default=120, help="built-in train images")
    p.add_argument("--amp-workers", type=int, default=4)
    p.add_argument("--amp-val-images", type=int, default=40, help="built-in val images")
    p.add_argument("--amp-opts", nargs="*", default=[], help="extra KEY VALUE for the amp run")
    p.add_argument("--json", help="also write every figure to this JSON file")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="AInnoFace config overrides")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    args.what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = [w for w in args.what if w not in PARTS]
    if unknown:
        raise SystemExit(f"--what: unknown parts {unknown}; choose from {PARTS}")
    args.model_order = [m.strip() for m in args.model_order.split(",")]
    if sorted(args.model_order) != ["ainnoface", "stock"]:
        raise SystemExit("--model-order must name ainnoface and stock")
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available")
    defaults = dict(
        batch=(8, 2), size=(1024, 256), infer_batch=(8, 2), train_iters=(10, 3),
        train_warmup=(3, 1), infer_iters=(30, 5), infer_warmup=(5, 1), settle=(0, 1),
    )  # fmt: skip
    for key, (on_gpu, on_cpu) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, on_gpu if gpu else on_cpu)
    if args.interleave is None:
        args.interleave = not gpu
    if args.infer_size is None:
        args.infer_size = (args.size, args.size)
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc = "glibc default"
    if args.malloc == "tuned":
        malloc = "tuned" if tune_cpu_allocator() else "default (tuning not applicable)"
    if gpu:
        torch.backends.cudnn.benchmark = True
        torch.cuda.set_device(device)

    name = torch.cuda.get_device_name(device) if gpu else (platform.processor() or "CPU")
    if not gpu:
        name += f", {torch.get_num_threads()} threads"
    header = (
        f"device: {name} | torch {torch.__version__}"
        + (f" (CUDA {torch.version.cuda})" if gpu else "")
        + f" | config {os.path.relpath(args.config_file, REPO)} {' '.join(args.opts)}".rstrip()
        + f" | stock: RetinaNet P2-P7, {args.stock_anchors} anchors/location"
        + f" | malloc: {malloc}"
    )
    print(header, flush=True)
    results = {"header": header, "args": {k: v for k, v in vars(args).items()}}
    if {"train", "infer", "flops"} & set(args.what):
        results["models"] = bench_models(args, device)
    if "mapper" in args.what:
        results["mapper"] = bench_mapper(args)
    if "eval" in args.what:
        results["eval"] = bench_eval(args)
    if "amp" in args.what:
        results["amp"] = bench_amp(args, device)
    print_table(args, device, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
