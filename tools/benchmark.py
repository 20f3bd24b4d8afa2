#!/usr/bin/env python
"""Benchmarks of the model's tasks, one subcommand each (deployment routes: benchmark_deploy.py).

* ``model`` (the default when no subcommand is named): AInnoFace side by side with Detectron2's
  stock RetinaNet, in one process and run, in the shape of Detectron2's ``tools/benchmark.py``:
  one measuring function per task (``--task``, comma-separated), each returning rows of one
  table printed with ``tabulate``.

  - ``train``: training images/s and peak memory, fp32 and mixed precision. One step is what
    ``SimpleTrainer`` / ``AMPTrainer`` do: loss dict -> sum -> backward -> SGD step
    (Detectron2's ``build_optimizer``; ``torch.autocast`` + ``GradScaler`` for AMP). Random
    images, 12 random boxes each.
  - ``infer``: inference latency at batch 1 and throughput at ``--infer-batch``, fp32 and AMP, of
    the whole model (preprocessing, backbone, heads, decoding, NMS), at every ``--infer-size``
    and, with ``--topk``, at every per-level candidate cap
    (``MODEL.AINNOFACE.TOPK_CANDIDATES_TEST``; the stock model's
    ``MODEL.RETINANET.TOPK_CANDIDATES_TEST``). Random weights score no anchor like a face:
    ``--score-thresh 0`` (and ``MODEL.AINNOFACE.STC_NEG_THRESH 1.0``, STC dropping nothing) makes
    every level hand its full cap to NMS, as on a crowded image at worst.
  - ``flops``: fvcore's operation count of backbone + head at VGA (640x480) and at each
    ``--infer-size`` (:func:`ainnoface_d2.analysis.count_flops`); it does not depend on the
    machine's load.

* ``topk``: the cost of the per-level candidate cap at inference, on fixed synthetic head
  outputs (the number of candidates controlled).
* ``mapper``: the training data mapper's images/s on one CPU core.
* ``evaluator``: the WIDER FACE evaluation on the full official val ground truth.
* ``train-step``: the training step of ``tools/train_net.py`` as it runs (Trainer, data loader,
  hooks) per memory format and number of loader workers; it writes under the config's
  ``OUTPUT_DIR``.
* ``crowded``: peak memory and time of a training step, of the anchor matching alone and of
  inference on the box layouts of the most crowded WIDER FACE images (``--wider-root``: the
  annotation files only), each in a fresh process.

Mixed-precision training stability is a test (``tests/test_amp.py``, CUDA only).

The stock model is RetinaNet with ``build_retinanet_resnet_fpn_backbone`` over res2-res5 (FPN
P2-P5 + P6/P7 from res5), head on P2-P7, anchors ``{16..512} x 2^{0,1/3,2/3}`` with aspect ratio
1.25 (3 per location), one class. Its ResNet settings (depth, stride-in-1x1, norm, frozen stages,
widths), FPN width, pixel mean/std and solver come from the AInnoFace config, so the two backbones
are the same. Both models start from random weights: with trained weights inference would also
pay for more candidates above the score threshold (``--score-thresh 0`` makes both decode every
top-k candidate, the worst case).

Examples::

    python tools/benchmark.py                                 # GPU: R152 vs stock, bs8 @ 1024
    python tools/benchmark.py model --config-file configs/ainnoface_R50.yaml --device cpu \\
        --threads 2 --task infer --infer-size 640x480 --infer-batch 0 --amp off
    python tools/benchmark.py model --config-file configs/ainnoface_R50.yaml --device cpu \\
        --task flops
    # the per-level candidate cap at max sides 1024 and 2100, every cap full (worst case)
    python tools/benchmark.py model --config-file configs/ainnoface_R50.yaml --device cpu \\
        --task infer --model-order ainnoface --infer-size 1024x1024,2100x1575 --topk 1000,6000 \\
        --score-thresh 0 --infer-batch 0 --amp off MODEL.AINNOFACE.STC_NEG_THRESH 1.0
    python tools/benchmark.py topk --config-file configs/ainnoface_R50.yaml
    python tools/benchmark.py mapper --iters 200 [--dataset wider_face_train]
    python tools/benchmark.py evaluator --gt datasets/wider_face/eval_tools/ground_truth
    python tools/benchmark.py train-step --iters 150 --repeats 2
    python tools/benchmark.py crowded --wider-root datasets/wider_face            # train step
    python tools/benchmark.py crowded --wider-root datasets/wider_face --mode test \
        --protocol multiscale --layouts top1 --steps 1
"""

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import ainnoface_d2  # noqa: F401  (compat shims + registration; must precede detectron2 imports)
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.analysis import (
    WIDER_WIDTH,
    count_flops,
    parse_sizes,
    reset_peak_rss,
    rss_gb,
    stand_in_height,
    stock_retinanet_cfg,
)
from ainnoface_d2.data import FaceDatasetMapper
from ainnoface_d2.data.wider_face import split_paths
from ainnoface_d2.evaluation import PROTOCOLS, SETTINGS, evaluate, load_eval_ground_truth
from ainnoface_d2.runtime import tune_cpu_allocator

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, BoxMode, ImageList, Instances
from detectron2.utils.events import EventStorage
from tabulate import tabulate

logger = logging.getLogger("ainnoface_d2.benchmark")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "ainnoface_R152.yaml")
TASKS = ("train", "infer", "flops")
MODELS = ("ainnoface", "stock")
VGA = (640, 480)
GiB = 2**30


@dataclass
class Row:
    """One figure of the table: a value per model and, where both ran in turns, the paired
    AInnoFace / stock ratio (:func:`paired_ratio`)."""

    key: str
    label: str
    values: dict = field(default_factory=dict)
    paired: float = None


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
# Timing and counting
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


def measure_train(models, args, device):
    """Training images/s (and peak memory on CUDA with one model) of ``{name: (model, cfg)}``."""
    data = random_batch(args.batch, args.size, args.size, with_gt=True)
    optimizers = {name: build_optimizer(cfg, model) for name, (model, cfg) in models.items()}
    rows = []
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
        speed = Row(f"train_img_s_{key}", f"train img/s, bs{args.batch} @ {args.size}, {key}")
        speed.values = {name: args.batch / t[name] for name in models}
        speed.paired = paired_ratio(samples, inverse=True)
        rows.append(speed)
        if device.type == "cuda" and len(models) == 1:
            peak = torch.cuda.max_memory_allocated(device) / GiB
            rows.append(
                Row(
                    f"train_peak_gib_{key}",
                    f"train peak memory (GiB), {key}",
                    {**{n: peak for n in models}},
                )
            )
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    return rows


def measure_infer(models, args, device):
    """Latency at batch 1 and throughput at ``--infer-batch`` of ``{name: (model, cfg)}``, at
    every ``--infer-size`` and ``--topk`` cap."""
    rows = []
    for (w, h), topk in itertools.product(args.infer_size, args.topk or [None]):
        one = random_batch(1, h, w, with_gt=False)
        many = random_batch(args.infer_batch, h, w, with_gt=False) if args.infer_batch else None
        where, tag = f"{w}x{h}", f"{w}x{h}"
        if topk is not None:
            for model, _ in models.values():
                model.test_topk_candidates = topk
            where, tag = f"{where}, top-{topk}/level", f"{tag}_topk{topk}"
        for amp in _amp_modes(args, device):

            def infer(model, x, amp=amp):
                with torch.no_grad(), torch.autocast(device.type, torch.float16, enabled=amp):
                    return model(x)

            key = "amp" if amp else "fp32"
            for model, _ in models.values():
                model.eval()
            fns = {name: (lambda m=m, x=one: infer(m, x)) for name, (m, _) in models.items()}
            samples = {}
            t1 = timeit(fns, args.infer_warmup, args.infer_iters, device, args.settle, samples)
            row = Row(f"infer_ms_bs1_{tag}_{key}", f"infer latency bs1 @ {where} (ms), {key}")
            row.values = {name: 1000 * t1[name] for name in models}
            row.paired = paired_ratio(samples)
            rows.append(row)
            if many:
                fns = {name: (lambda m=m, x=many: infer(m, x)) for name, (m, _) in models.items()}
                reps = max(3, args.infer_iters // 3)
                samples = {}
                warmup = max(1, args.infer_warmup // 2)
                tn = timeit(fns, warmup, reps, device, args.settle, samples)
                n = args.infer_batch
                row = Row(f"infer_img_s_bs{n}_{tag}_{key}", f"infer img/s bs{n} @ {where}, {key}")
                row.values = {name: n / tn[name] for name in models}
                row.paired = paired_ratio(samples, inverse=True)
                rows.append(row)
    return rows


def measure_flops(models, args, device):
    """fvcore's count of backbone + head (after the model's own padding) at VGA and at each
    ``--infer-size``; fvcore counts one multiply-add as one flop."""
    sizes = list(dict.fromkeys([VGA, *args.infer_size]))
    rows = []
    for w, h in sizes:
        counts = {name: count_flops(model, w, h) for name, (model, _) in models.items()}
        where = "VGA " if (w, h) == VGA else ""
        for part in ("total", "backbone", "head"):
            label = f"GFLOPs {part} @ {where}{w}x{h} (fvcore)"
            rows.append(
                Row(f"gflops_{part}_{w}x{h}", label, {n: c[part] for n, c in counts.items()})
            )
        padded = {n: c["padded_input"] for n, c in counts.items()}
        rows.append(Row(f"padded_input_{w}x{h}", f"  padded input of {w}x{h}", padded))
    return rows


MEASURES = {"train": measure_train, "infer": measure_infer, "flops": measure_flops}


def merge_rows(row_lists):
    """Rows of several runs (one model each) merged by key, in first-seen order."""
    merged = {}
    for rows in row_lists:
        for row in rows:
            if row.key in merged:
                merged[row.key].values.update(row.values)
            else:
                merged[row.key] = Row(row.key, row.label, dict(row.values), row.paired)
    return list(merged.values())


def run_tasks(args, device):
    """Every task of ``args.what`` on both models: in turns within one run (``--interleave``), or
    one model at a time, so that each peak-memory figure is its own. Returns the rows."""
    face_cfg = ainnoface_cfg(args)
    stock = stock_retinanet_cfg(face_cfg, args.stock_anchors, args.score_thresh)
    cfgs = {"ainnoface": face_cfg, "stock": stock}

    def build(name):
        torch.manual_seed(0)
        model = build_model(cfgs[name])
        return model, cfgs[name]

    def measure(models):
        params = Row("params_M", "parameters (M)")
        params.values = {
            n: sum(p.numel() for p in m.parameters()) / 1e6 for n, (m, _) in models.items()
        }
        rows = [params]
        for task in args.what:
            rows += MEASURES[task](models, args, device)
        return rows

    if args.interleave:
        return measure({name: build(name) for name in args.model_order})
    runs = []
    for name in args.model_order:
        runs.append(measure({name: build(name)}))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return merge_rows(runs)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _fmt(v, digits=2):
    if v is None:
        return ""
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def format_table(rows):
    """The rows as a tabulate pipe table with the ratio of the two models' figures."""
    table = []
    for row in rows:
        a, s = row.values.get("ainnoface"), row.values.get("stock")
        ratio = a / s if isinstance(a, float) and isinstance(s, float) and s else None
        table.append([row.label, _fmt(a), _fmt(s), _fmt(ratio, 3), _fmt(row.paired, 3)])
    headers = ["figure", "AInnoFace", "stock RetinaNet", "AInnoFace / stock", "paired"]
    return tabulate(table, headers=headers, tablefmt="pipe", disable_numparse=True)


def parse_ints(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers like 1000,6000, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", default=DEFAULT_CONFIG, help="AInnoFace config")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--task", "--what", dest="what", default="train,infer", help=f"comma-separated of {TASKS}"
    )
    p.add_argument("--amp", choices=("both", "on", "off"), default="both")
    p.add_argument("--batch", type=int, help="training batch (default 8 on GPU, 2 on CPU)")
    p.add_argument("--size", type=int, help="training image side (default 1024 GPU, 256 CPU)")
    p.add_argument("--infer-size", type=parse_sizes, help="WxH[,WxH...] (default: --size square)")
    p.add_argument("--infer-batch", type=int, help="throughput batch, 0 = skip (default 8 / 2)")
    p.add_argument("--train-iters", type=int, help="timed training steps (default 10 / 3)")
    p.add_argument("--train-warmup", type=int, help="untimed training steps (default 3 / 1)")
    p.add_argument("--infer-iters", type=int, help="timed batch-1 runs (default 30 / 5)")
    p.add_argument("--infer-warmup", type=int, help="untimed runs (default 5 / 1)")
    p.add_argument("--lr", type=float, default=1e-4, help="SGD LR (random weights: keep small)")
    p.add_argument("--score-thresh", type=float, help="test score threshold of both models")
    p.add_argument(
        "--topk",
        type=parse_ints,
        help="per-level candidate caps to time inference at, e.g. 1000,6000 (default: each "
        "config's own)",
    )
    p.add_argument("--stock-anchors", type=int, default=3, help="stock anchors per location")
    p.add_argument(
        "--model-order",
        default="stock,ainnoface",
        help="which model runs first; one name measures that model alone",
    )
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
    p.add_argument("--json", help="also write every figure to this JSON file")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="AInnoFace config overrides")
    return p


def _resolve_args(args):
    """Task list, model order and the per-device defaults of the unset options."""
    args.what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = [w for w in args.what if w not in TASKS]
    if unknown:
        raise SystemExit(f"--task: unknown {unknown}; choose from {TASKS}")
    args.model_order = [m.strip() for m in args.model_order.split(",")]
    order = args.model_order
    if not order or not set(order) <= set(MODELS) or len(set(order)) != len(order):
        raise SystemExit("--model-order must name ainnoface and/or stock, each once")
    gpu = torch.device(args.device).type == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available")
    defaults = {
        "batch": (8, 2),
        "size": (1024, 256),
        "infer_batch": (8, 2),
        "train_iters": (10, 3),
        "train_warmup": (3, 1),
        "infer_iters": (30, 5),
        "infer_warmup": (5, 1),
        "settle": (0, 1),
        "interleave": (False, True),
    }
    for key, (on_gpu, on_cpu) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, on_gpu if gpu else on_cpu)
    if args.infer_size is None:
        args.infer_size = [(args.size, args.size)]
    return args


def _header(args, device):
    gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc = "glibc default"
    if args.malloc == "tuned":
        malloc = "tuned" if tune_cpu_allocator() else "default (tuning not applicable)"
    name = torch.cuda.get_device_name(device) if gpu else (platform.processor() or "CPU")
    if not gpu:
        name += f", {torch.get_num_threads()} threads"
    return (
        f"device: {name} | torch {torch.__version__}"
        + (f" (CUDA {torch.version.cuda})" if gpu else "")
        + f" | config {os.path.relpath(args.config_file, REPO)} {' '.join(args.opts)}".rstrip()
        + f" | stock: RetinaNet P2-P7, {args.stock_anchors} anchors/location"
        + f" | malloc: {malloc}"
    )


def run_model(argv=None):
    """The ``model`` subcommand: AInnoFace and stock RetinaNet, one table; returns the rows."""
    args = _resolve_args(get_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.set_device(device)
    header = _header(args, device)
    print(header, flush=True)
    rows = run_tasks(args, device)
    print(f"\n{header}")
    if args.interleave and len(args.model_order) > 1:
        print(
            "AInnoFace / stock: ratio of the figures; paired: median of the ratios of the "
            "adjacent calls of each repetition (robust to a machine whose speed drifts)"
        )
    print(format_table(rows) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            figures = {r.key: {**r.values, "paired": r.paired} for r in rows}
            json.dump({"header": header, "args": vars(args), "figures": figures}, f, indent=1)
    return rows


# ---------------------------------------------------------------------------------------------
# topk: the per-level candidate cap on fixed synthetic head outputs
# ---------------------------------------------------------------------------------------------
def topk_head_outputs(model, height, width, logit_mean, generator):
    """Features (only their sizes matter) and raw head outputs for one image: step-2 face logits
    from N(``logit_mean``, 2) (-3: about half of the anchors above the 0.05 score threshold, a
    crowded image; -7: about 2 %), step-1 logits 0 (STC filters nothing), deltas N(0, 0.1)."""
    shapes = [(-(-height // 2 ** (i + 2)), -(-width // 2 ** (i + 2))) for i in range(6)]
    anchors = model.head.num_anchors

    def randn(channels, shape, scale, shift=0.0):
        return torch.randn(1, channels, *shape, generator=generator) * scale + shift

    step1_logits = [torch.zeros(1, anchors, *shapes[i]) for i in model.stc_levels]
    step2_logits = [randn(anchors, s, 2.0, logit_mean) for s in shapes]
    step1_deltas = [randn(4 * anchors, shapes[i], 0.1) for i in model.str_levels]
    step2_deltas = [randn(4 * anchors, s, 0.1) for s in shapes]
    features = [torch.zeros(1, 1, *s) for s in shapes] * 2
    return features, (step1_logits, step2_logits, step1_deltas, step2_deltas)


def time_topk(model, height, width, logit_mean, reps):
    """Median ms of ``forward_inference`` (threshold, top-k, decoding, NMS) and the detections."""
    features, predictions = topk_head_outputs(
        model, height, width, logit_mean, torch.Generator().manual_seed(0)
    )
    images = ImageList(torch.zeros(1, 3, height, width), [(height, width)])
    times = []
    with torch.no_grad():
        for _ in range(reps + 1):  # the first call is not timed
            start = time.perf_counter()
            out = model.forward_inference(images, features, predictions)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1000, len(out[0])


def run_topk(argv=None):
    """The ``topk`` subcommand: ``MODEL.AINNOFACE.TOPK_CANDIDATES_TEST``'s cost at inference. The
    backbone and head are not run (their cost does not depend on the cap)."""
    p = argparse.ArgumentParser(prog="benchmark.py topk", description=run_topk.__doc__)
    p.add_argument("--config-file", default=os.path.join(REPO, "configs", "ainnoface_R50.yaml"))
    p.add_argument("--sizes", type=parse_sizes, default=[(1024, 1024), (2100, 1575)])
    p.add_argument("--topk", type=parse_ints, default=[1000, 6000])
    p.add_argument("--logit-mean", nargs="+", type=float, default=[-3.0, -7.0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    # A ResNet-18 trunk builds faster; forward_inference does not depend on it.
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "18"]
    opts += ["MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
    print("| size | candidates | TOPK | median ms | detections |")
    print("|---|---|---|---|---|")
    for topk in args.topk:
        cap = ["MODEL.AINNOFACE.TOPK_CANDIDATES_TEST", str(topk)]
        model = build_model(get_ainnoface_cfg(args.config_file, opts + cap)).eval()
        for width, height in args.sizes:
            for mean in args.logit_mean:
                ms, n = time_topk(model, height, width, mean, args.reps)
                size = f"{width}x{height}"
                print(f"| {size} | logits N({mean:g}, 2) | {topk} | {ms:.0f} | {n} |", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# mapper: the training data mapper on one CPU core
# ---------------------------------------------------------------------------------------------
def synthetic_dataset(out_dir, num_images, seed=0):
    """WIDER-like JPEGs (1024 wide, 600-800 high, textured, 6-18 face-like ellipses of
    log-uniform size 8-300 px) written to ``out_dir``; returns dataset dicts (bbox XYWH_ABS)."""
    rng = np.random.default_rng(seed)
    dicts = []
    for idx in range(num_images):
        w, h = 1024, int(rng.integers(600, 801))
        # Smooth background plus noise, so that JPEG decoding costs about what a photo costs.
        low = rng.integers(0, 256, size=(h // 32 + 1, w // 32 + 1, 3)).astype(np.uint8)
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, rng.integers(0, 24, size=(h, w, 3)).astype(np.uint8))
        annos = []
        for _ in range(int(rng.integers(6, 19))):
            side = float(np.exp(rng.uniform(np.log(8), np.log(300))))
            bw, bh = side, side * 1.25
            if bw >= w - 2 or bh >= h - 2:
                continue
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            centre = (int(x0 + bw / 2), int(y0 + bh / 2))
            colour = tuple(int(c) for c in rng.integers(60, 230, size=3))
            cv2.ellipse(img, centre, (int(bw / 2), int(bh / 2)), 0, 0, 360, colour, -1)
            box = {"bbox": [x0, y0, bw, bh], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}
            annos.append({**box, "iscrowd": 0})
        path = os.path.join(out_dir, f"{idx:04d}.jpg")
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        dicts.append(
            {"file_name": path, "image_id": idx, "height": h, "width": w, "annotations": annos}
        )
    return dicts


def time_mapper(mapper, dicts, iters, warmup):
    """Seconds of decoding and of augmentation + tensor conversion, and the faces kept."""
    decode = augment = 0.0
    n_faces = 0
    for i in range(warmup + iters):
        d = dicts[i % len(dicts)]
        t0 = time.perf_counter()
        image = mapper.read_image(d)
        t1 = time.perf_counter()
        out = mapper.map_image(d, image)
        t2 = time.perf_counter()
        if i >= warmup:
            decode += t1 - t0
            augment += t2 - t1
            inst = out["instances"]  # ignore boxes (INPUT.FACE.IGNORE_REGIONS) are not faces
            n_faces += int((~inst.gt_ignore).sum()) if inst.has("gt_ignore") else len(inst)
    return decode, augment, n_faces


def run_mapper(argv=None):
    """The ``mapper`` subcommand: :class:`ainnoface_d2.data.FaceDatasetMapper` (full training
    augmentation) in this one process, OpenCV and torch on one thread: images/s per core, split
    into decoding and the rest. Training needs images/s/core x loader workers >= the model's
    training rate. Without ``--dataset``, synthetic WIDER-like JPEGs in a temporary folder."""
    p = argparse.ArgumentParser(prog="benchmark.py mapper", description=run_mapper.__doc__)
    p.add_argument("--config-file", default=os.path.join(REPO, "configs", "Base-AInnoFace.yaml"))
    p.add_argument("--dataset", help="a registered dataset (default: synthetic images)")
    p.add_argument("--num-images", type=int, default=24, help="synthetic images to write")
    p.add_argument("--iters", type=int, default=150, help="timed images")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--train-size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    cfg = get_ainnoface_cfg(args.config_file, args.opts)
    cfg.INPUT.FACE.TRAIN_SIZE = args.train_size
    cfg.freeze()
    mapper = FaceDatasetMapper(cfg, is_train=True)
    np.random.seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset:
            dicts = DatasetCatalog.get(args.dataset)
            source = f"dataset {args.dataset} ({len(dicts)} images)"
        else:
            dicts = synthetic_dataset(tmp, args.num_images, args.seed)
            n = sum(len(d["annotations"]) for d in dicts)
            source = f"{len(dicts)} synthetic 1024x600-800 JPEGs, {n / len(dicts):.1f} faces each"
        decode, augment, n_faces = time_mapper(mapper, dicts, args.iters, args.warmup)
    total = decode + augment
    print(f"source: {source}; TRAIN_SIZE {args.train_size}; {args.iters} images timed")
    print(
        f"per image: decode {1000 * decode / args.iters:.1f} ms, "
        f"augment+to-tensor {1000 * augment / args.iters:.1f} ms, "
        f"total {1000 * total / args.iters:.1f} ms"
    )
    print(f"targets kept per image: {n_faces / args.iters:.1f}")
    print(f"throughput: {args.iters / total:.2f} images/s per CPU core")
    return 0


# ---------------------------------------------------------------------------------------------
# evaluator: the WIDER FACE evaluation on the official val ground truth
# ---------------------------------------------------------------------------------------------
def synthetic_predictions(gt, per_image, seed=0):
    """``{(event, name): (N, 5) [x y w h score]}`` per image: each real face, with probability
    0.9, jittered by ~10 % of its size with a score in [0.3, 1), plus random boxes with scores in
    [0, 0.6) up to ``per_image`` boxes."""
    rng = np.random.default_rng(seed)
    preds = {}
    for key, g in gt.items():
        boxes = np.asarray(g.boxes, dtype=np.float64).reshape(-1, 4)
        real = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
        real = real[rng.random(len(real)) < 0.9][:per_image]
        size = real[:, 2:4]
        xy = real[:, :2] + rng.normal(0, 0.1, size.shape) * size
        wh = size * rng.uniform(0.9, 1.1, size.shape)
        tp = np.concatenate([xy, wh, rng.uniform(0.3, 1.0, (len(real), 1))], 1)
        n_fp = per_image - len(tp)
        far = boxes[:, :2].max(0) + boxes[:, 2:].max(0) if len(boxes) else np.full(2, 1024.0)
        xy = rng.uniform(0, 1, (n_fp, 2)) * np.maximum(far, 64)
        wh = np.exp(rng.uniform(np.log(4), np.log(300), (n_fp, 2)))
        fp = np.concatenate([xy, wh, rng.uniform(0, 0.6, (n_fp, 1))], 1)
        preds[key] = np.concatenate([tp, fp], 0)
    return preds


def run_evaluator(argv=None):
    """The ``evaluator`` subcommand: :func:`ainnoface_d2.evaluation.evaluate` on synthetic
    predictions for the official val ground truth, under both scoring protocols (median of
    ``--reps``)."""
    p = argparse.ArgumentParser(prog="benchmark.py evaluator", description=run_evaluator.__doc__)
    p.add_argument("--gt", required=True, help="the official eval_tools/ground_truth folder")
    p.add_argument("--preds", type=int, default=300, help="predictions per image")
    p.add_argument("--reps", type=int, default=3, help="timed evaluations per protocol")
    args = p.parse_args(argv)
    start = time.perf_counter()
    gt = load_eval_ground_truth(args.gt)
    load_s = time.perf_counter() - start
    preds = synthetic_predictions(gt, args.preds)
    n = sum(len(v) for v in preds.values())
    print(f"ground truth: {len(gt)} images, loaded in {load_s:.2f} s; {n} predictions")
    for protocol in PROTOCOLS:
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            res = evaluate(preds, gt, protocol=protocol)
            times.append(time.perf_counter() - start)
        aps = " / ".join(f"{100 * res[s]:.2f}" for s in SETTINGS)
        print(f"{protocol} scoring: {statistics.median(times):.2f} s (AP e/m/h {aps})")
    return 0


# ---------------------------------------------------------------------------------------------
# train-step: tools/train_net.py's step as it runs
# ---------------------------------------------------------------------------------------------
def time_train_steps(config_file, memory_format, workers, iters, skip, opts) -> float:
    """Seconds per step of ``iters`` training steps of the Trainer, after the first ``skip``;
    its files go to ``<OUTPUT_DIR>/benchmark_train_step``."""
    from ainnoface_d2.engine import Trainer

    from detectron2.engine import HookBase

    if memory_format == "contiguous":
        Trainer.build_model = classmethod(lambda cls, cfg: build_model(cfg))
    cfg = get_ainnoface_cfg(config_file, list(opts))
    output_dir = os.path.join(cfg.OUTPUT_DIR, "benchmark_train_step")
    cfg.merge_from_list(["SOLVER.MAX_ITER", iters, "DATALOADER.NUM_WORKERS", workers])
    cfg.merge_from_list(["DATASETS.TEST", (), "TEST.EVAL_PERIOD", 0, "OUTPUT_DIR", output_dir])
    cfg.merge_from_list(["SOLVER.CHECKPOINT_PERIOD", 10**9])
    starts = {}

    class Clock(HookBase):
        def after_step(self):
            if self.trainer.iter + 1 == skip:
                starts["t"] = time.perf_counter()

    trainer = Trainer(cfg)
    trainer.register_hooks([Clock()])
    trainer.train()
    return (time.perf_counter() - starts["t"]) / (iters - skip)


def _train_step_parser():
    p = argparse.ArgumentParser(prog="benchmark.py train-step", description=run_train_step.__doc__)
    p.add_argument("--config-file", default=os.path.join(REPO, "configs", "ainnoface_R18_cpu.yaml"))
    p.add_argument("--formats", default="contiguous,channels_last")
    p.add_argument("--workers", default="1,0", help="DATALOADER.NUM_WORKERS values")
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--skip", type=int, default=10, help="untimed first steps")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--one", nargs=2, metavar=("FORMAT", "WORKERS"), help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides (OUTPUT_DIR too)")
    return p


def run_train_step(argv=None):
    """The ``train-step`` subcommand: each setting (memory format x loader workers) trains
    ``--iters`` steps of the config from scratch in a fresh process (no evaluation or
    checkpoints; files under ``<OUTPUT_DIR>/benchmark_train_step``) and reports the mean time per
    step after ``--skip``; settings alternate over ``--repeats`` rounds, so that a machine whose
    speed drifts is seen in every setting alike. ``channels_last`` is what
    ``ainnoface_d2.engine.Trainer`` builds on a CPU, ``contiguous`` Detectron2's plain
    ``build_model``. The data must exist (``make quickstart`` builds the built-in faces)."""
    p = _train_step_parser()
    args = p.parse_args(argv)
    if args.iters <= args.skip:
        p.error("--iters must be larger than --skip")
    if args.one:
        fmt, workers = args.one
        sec = time_train_steps(
            args.config_file, fmt, int(workers), args.iters, args.skip, args.opts
        )
        print(json.dumps({"seconds_per_step": sec}))
        return 0
    settings = [(f, int(w)) for f in args.formats.split(",") for w in args.workers.split(",")]
    times = {s: [] for s in settings}
    for _ in range(args.repeats):
        for fmt, workers in settings:
            cmd = [sys.executable, os.path.abspath(__file__), "train-step"]
            cmd += ["--config-file", args.config_file, "--iters", str(args.iters)]
            cmd += ["--skip", str(args.skip), "--one", fmt, str(workers), *args.opts]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            step = json.loads(out.strip().splitlines()[-1])["seconds_per_step"]
            times[(fmt, workers)].append(step)
    base = sum(times[settings[0]]) / len(times[settings[0]])
    head = ("memory format", "workers", "ms/step (each round)", "mean", "vs first")
    print(f"{head[0]:<15} {head[1]:>7} {head[2]:>28} {head[3]:>7} {head[4]:>8}")
    for (fmt, workers), ts in times.items():
        mean = sum(ts) / len(ts)
        each = " ".join(f"{1000 * t:.0f}" for t in ts)
        print(f"{fmt:<15} {workers:>7} {each:>28} {1000 * mean:>7.0f} {mean / base:>8.2f}")
    return 0


# ---------------------------------------------------------------------------------------------
# crowded: a training step and an inference pass on the box layouts of crowded WIDER FACE images
# ---------------------------------------------------------------------------------------------
def wider_layouts(root, split, which):
    """``[(file name, (height, width), boxes XYXY, ignore flags)]`` of the images of
    ``wider_face_<split>_bbx_gt.txt`` named by ``which``: "ordinary" (the first with 4 valid
    faces), "crowded" (the most valid faces) or "top<K>" (the K with the most); each as tall as
    :func:`~ainnoface_d2.analysis.stand_in_height` makes its stand-in."""
    from ainnoface_d2.data.wider_face_format import parse_bbx_gt

    rows = []
    for im in parse_bbx_gt(split_paths(root, split)["annotation_file"]):
        keep = (im.boxes[:, 2] > 0) & (im.boxes[:, 3] > 0)
        boxes = im.boxes[keep].astype(float)
        height = stand_in_height(boxes)
        boxes[:, 2:] += boxes[:, :2]
        rows.append(
            (im.file_name, (height, WIDER_WIDTH), boxes.tolist(), im.attributes[keep, 3] == 1)
        )
    valid = [int((~r[3]).sum()) for r in rows]
    by_faces = sorted(range(len(rows)), key=lambda i: -valid[i])
    out = []
    for name in which:
        if name == "ordinary":
            out.append(rows[valid.index(4)])
        elif name == "crowded":
            out.append(rows[by_faces[0]])
        elif name.startswith("top") and name[3:].isdigit():
            out.extend(rows[i] for i in by_faces[: int(name[3:])])
        else:
            raise ValueError(f"unknown layout {name!r} (ordinary, crowded or top<K>)")
    return out


def saturate_scores(model):
    """Every anchor a face with probability ~1: the most candidates a protocol lets through."""
    head = model.head
    with torch.no_grad():
        head.cls_score.bias.fill_(12.0)
        for name, value in (("maxout_score", -12.0), ("stc_score", 12.0)):
            if getattr(head, name, None) is not None:
                getattr(head, name).bias.fill_(value)


def _layout_instances(size, boxes, ignore, keep_ignored):
    inst = Instances((size, size))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4).clamp(0, size))
    inst.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
    ignore = torch.as_tensor(ignore, dtype=torch.bool)
    if keep_ignored:
        inst.gt_ignore = ignore
        return inst
    return inst[~ignore]


def _peak_gb(device):
    """The process's peak memory so far: GPU memory allocated by torch on CUDA, else VmHWM."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / GiB
    return rss_gb()


def time_matching(model, inst, size, steps):
    """Seconds of the last of ``steps`` calls of ``label_anchors`` alone (both steps; STR levels
    refined by random deltas) and the memory it adds above what the process held before it."""
    device = model.device
    strides = [2 ** int(f[1:]) for f in model.head_in_features[model.num_levels :]]
    sides = [-(-size // s) for s in strides]
    anchors = model.anchors([torch.zeros(1, 1, n, n, device=device) for n in sides])
    g = torch.Generator().manual_seed(0)
    refined = [
        anchors[lvl].tensor.unsqueeze(0)
        + 4 * torch.randn(1, len(anchors[lvl]), 4, generator=g).to(device)
        for lvl in model.str_levels
    ]
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / GiB
    else:
        reset_peak_rss()
        before = rss_gb("VmRSS")
    seconds = _last_step_seconds(
        lambda: model.label_anchors(anchors, refined, [inst]), steps, device
    )
    return seconds, _peak_gb(device) - before


def _last_step_seconds(fn, steps, device):
    """Seconds of the last of ``steps`` timed calls of ``fn`` (:func:`timeit`, no warm-up)."""
    samples = {}
    timeit({"step": fn}, 0, steps, device, samples=samples)
    return samples["step"][-1]


def measure_crowded(args, layout):
    """One layout's figures (this process): ``{"seconds" (the last step), "peak_gb", ...}``."""
    from ainnoface_d2.size_protocol import wrap_model

    name, (height, width), boxes, ignore = layout
    cfg = get_ainnoface_cfg(args.config_file, ["MODEL.DEVICE", args.device] + list(args.opts))
    torch.manual_seed(0)
    model = build_model(cfg)
    device = model.device
    size, row = cfg.INPUT.FACE.TRAIN_SIZE, {}
    inst = _layout_instances(size, boxes, ignore, cfg.INPUT.FACE.IGNORE_REGIONS).to(device)
    if args.mode == "match":
        seconds, row["count"] = time_matching(model, inst, size, args.steps)
    elif args.mode == "train":
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

        def step():
            losses = model([{"image": image, "instances": inst}])
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()

        with EventStorage(0):
            seconds = _last_step_seconds(step, args.steps, device)
        row["count"] = len(inst)
    else:
        model.eval()
        saturate_scores(model)
        runner = wrap_model(cfg, model, args.protocol)
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
        last = {}

        def infer():
            last["out"] = runner([{"image": image, "height": height, "width": width}])

        with torch.no_grad():
            seconds = _last_step_seconds(infer, args.steps, device)
        row["count"] = len(last["out"][0]["instances"])
    return {
        "image": name,
        "size": f"{height}x{width}",
        "valid_faces": int((~ignore).sum()),
        **row,
        "peak_gb": _peak_gb(device),
        "seconds": seconds,
    }


def _crowded_parser():
    p = argparse.ArgumentParser(prog="benchmark.py crowded", description=run_crowded.__doc__)
    p.add_argument("--wider-root", required=True, help="holds wider_face_split/*_bbx_gt.txt")
    p.add_argument("--config-file", default=os.path.join(REPO, "configs", "ainnoface_R50.yaml"))
    p.add_argument("--mode", choices=("train", "match", "test"), default="train")
    p.add_argument("--protocol", choices=("original", "multiscale"), default="original")
    p.add_argument("--device", default="cpu", help="cpu or cuda (peak: torch's GPU memory)")
    p.add_argument(
        "--layouts",
        help="comma list of ordinary, crowded, top<K> (default: "
        "ordinary,crowded; top3 with --mode test)",
    )
    p.add_argument("--steps", type=int, default=2, help="steps per process; the last is timed")
    p.add_argument("--repeats", type=int, default=1, help="processes per layout, alternating")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    return p


def run_crowded(argv=None):
    """The ``crowded`` subcommand: peak memory and time on the box layouts of real WIDER FACE
    images (random pixels: the box layout is all the matching sees), each layout in a fresh
    process (peak = the process's VmHWM on a CPU, torch's peak GPU memory allocated with
    ``--device cuda``, model included; ``--steps`` steps, the last timed).
    ``--mode train``: one training step of the config (the paper's R50 by default) at its
    ``INPUT.FACE.TRAIN_SIZE``, batch 1, the boxes of a train image (invalid faces as ignore boxes
    where the config keeps them). ``--mode match``: ``label_anchors`` of both steps alone, the
    memory it adds ("+GB"). ``--mode test``: the val images with the most faces at their
    stand-in size through ``--protocol``, every anchor scored a face (each level passes its full
    ``TOPK_CANDIDATES_TEST``: a crowded image's worst case)."""
    p = _crowded_parser()
    args = p.parse_args(argv)
    split = "val" if args.mode == "test" else "train"
    annotation_file = split_paths(args.wider_root, split)["annotation_file"]
    if not os.path.isfile(annotation_file):
        p.error(f"{annotation_file} not found")
    which = (args.layouts or ("top3" if split == "val" else "ordinary,crowded")).split(",")
    try:
        layouts = wider_layouts(args.wider_root, split, which)
    except ValueError as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one is not None:
        print(json.dumps(measure_crowded(args, layouts[args.one])))
        return 0
    cmd = [sys.executable, os.path.abspath(__file__), "crowded", "--wider-root", args.wider_root]
    cmd += ["--config-file", args.config_file, "--mode", args.mode, "--protocol", args.protocol]
    cmd += ["--layouts", ",".join(which), "--steps", str(args.steps), "--device", args.device]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    rows = []
    for _ in range(args.repeats):
        for i in range(len(layouts)):
            out = subprocess.run(
                cmd + ["--one", str(i), *args.opts], check=True, capture_output=True, text=True
            ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    count = {"train": "boxes used", "match": "+GB", "test": "detections"}[args.mode]
    print(
        f"{args.mode} ({args.protocol if args.mode == 'test' else 'one step'}), "
        f"{os.path.basename(args.config_file)}"
    )
    keys = ("image", "size", "valid_faces", "count", "peak_gb", "seconds")
    peak = "peak GPU GB" if args.device.startswith("cuda") else "peak RSS GB"
    print(
        tabulate(
            [[r[k] for k in keys] for r in rows],
            headers=["image", "size", "valid faces", count, peak, "s"],
            floatfmt=".2f",
        )
    )
    return 0


SUBCOMMANDS = {
    "model": run_model,
    "topk": run_topk,
    "mapper": run_mapper,
    "evaluator": run_evaluator,
    "train-step": run_train_step,
    "crowded": run_crowded,
}


def main(argv=None):
    """``benchmark.py [SUBCOMMAND] [options]``; without a subcommand, ``model``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        print(__doc__)
        return 0
    return run_model(argv)


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    result = run_cli(main)
    sys.exit(result if isinstance(result, int) else 0)
