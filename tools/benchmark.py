#!/usr/bin/env python
"""Benchmark AInnoFace side by side with Detectron2's stock RetinaNet, in one process and run.

In the shape of Detectron2's ``tools/benchmark.py``: one measuring function per task
(``--task``, comma-separated), each returning rows of one table printed with ``tabulate``.

* ``train``: training images/s and peak memory, fp32 and mixed precision. One step is what
  ``SimpleTrainer`` / ``AMPTrainer`` do: loss dict -> sum -> backward -> SGD step (Detectron2's
  ``build_optimizer``; ``torch.autocast`` + ``GradScaler`` for AMP). Random images, 12 random
  boxes each.
* ``infer``: inference latency at batch 1 and throughput at ``--infer-batch``, fp32 and AMP, of
  the whole model (preprocessing, backbone, heads, decoding, NMS), at every ``--infer-size`` and,
  with ``--topk``, at every per-level candidate cap (``MODEL.AINNOFACE.TOPK_CANDIDATES_TEST``;
  the stock model's ``MODEL.RETINANET.TOPK_CANDIDATES_TEST``). Random weights score no anchor
  like a face: ``--score-thresh 0`` (and ``MODEL.AINNOFACE.STC_NEG_THRESH 1.0``, STC dropping
  nothing) makes every level hand its full cap to NMS, as on a crowded image at worst.
* ``flops``: fvcore's operation count of backbone + head at VGA (640x480) and at each
  ``--infer-size``; it does not depend on the machine's load.

The data mapper and the evaluator are timed by their own tools (``tools/benchmark_mapper.py``,
``tools/benchmark_evaluator.py``); mixed-precision training stability is a test
(``tests/test_amp.py``, CUDA only).

The stock model is RetinaNet with ``build_retinanet_resnet_fpn_backbone`` over res2-res5 (FPN
P2-P5 + P6/P7 from res5), head on P2-P7, anchors ``{16..512} x 2^{0,1/3,2/3}`` with aspect ratio
1.25 (3 per location), one class. Its ResNet settings (depth, stride-in-1x1, norm, frozen stages,
widths), FPN width, pixel mean/std and solver come from the AInnoFace config, so the two backbones
are the same. Both models start from random weights: with trained weights inference would also
pay for more candidates above the score threshold (``--score-thresh 0`` makes both decode every
top-k candidate, the worst case).

Examples::

    python tools/benchmark.py                                 # GPU: R152 vs stock, bs8 @ 1024
    python tools/benchmark.py --config-file configs/ainnoface_R50.yaml --device cpu \\
        --threads 2 --task infer --infer-size 640x480 --infer-batch 0 --amp off
    python tools/benchmark.py --config-file configs/ainnoface_R50.yaml --device cpu --task flops
    # the per-level candidate cap at max sides 1024 and 2100, every cap full (worst case)
    python tools/benchmark.py --config-file configs/ainnoface_R50.yaml --device cpu \\
        --task infer --model-order ainnoface --infer-size 1024x1024,2100x1575 --topk 1000,6000 \\
        --score-thresh 0 --infer-batch 0 --amp off MODEL.AINNOFACE.STC_NEG_THRESH 1.0
"""

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

import ainnoface_d2  # noqa: F401  (compat shims + registration; must precede detectron2 imports)
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.runtime import tune_cpu_allocator

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
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


def count_flops(model, w, h):
    """fvcore's count (GFLOPs, one multiply-add = one flop; element-wise ops are not counted) of
    backbone + head on a ``w`` x ``h`` image after the model's own padding.

    Traced with autograd on: the model then takes the convolutions every device runs (its CPU
    inference paths call NNPACK, which fvcore cannot count)."""
    from fvcore.nn import FlopCountAnalysis

    images = model.preprocess_image(random_batch(1, h, w, with_gt=False)).tensor
    model.eval()
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
    cfgs = {"ainnoface": face_cfg, "stock": stock_retinanet_cfg(face_cfg, args)}

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


def parse_size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def parse_sizes(text):
    """``WxH[,WxH...]`` as a list of (w, h)."""
    return [parse_size(t) for t in text.split(",") if t.strip()]


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


def main(argv=None):
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


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    run_cli(main)
    sys.exit(0)
