#!/usr/bin/env python
"""Peak memory and time of one training step, and of inference, on crowded WIDER FACE layouts.

    .venv/bin/python tools/crowded_step.py --wider-root datasets/wider_face

Training (``--mode train``): the config (the paper's R50 by default) at its input size
(``INPUT.FACE.TRAIN_SIZE``, 1024 x 1024), batch 1, random pixels, the boxes of one train image
(invalid faces as ignore boxes, as the paper config's mapper keeps them): by default an ordinary
image (the first with 4 valid faces) and the one with the most valid faces
(2_Demonstration_Demonstrators_2_371, 1,962). Only the box layout matters to the step's cost:
matching sees the boxes, the network sees a fixed-size image.

Inference (``--mode test``): the val images with the most faces at their annotated size (1024
wide, as tall as their boxes need, at least 683 px) through a test protocol (``original``: one
pass at the original size; ``multiscale``: SRN's copies up to L = TEST.AUG.FACE.MAX_SIDE and box
voting), with the classification biases set so that every anchor scores as a face: each level
passes its full ``TOPK_CANDIDATES_TEST`` candidates, the worst case of a crowded image.

Matching alone (``--mode match``): ``label_anchors`` of both steps on the training layouts, the
time and the memory it adds to the process.

Every measurement runs in a fresh process (``--steps`` steps, the time of the last is reported;
peak RSS is the process's VmHWM, model included). ``--code`` measures another checkout's
``ainnoface_d2`` with the same layouts.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "ainnoface_R50.yaml")
MIN_HEIGHT = 683  # the smallest height of a WIDER FACE image 1024 px wide


def _wider_file(root, split):
    return os.path.join(root, "wider_face_split", f"wider_face_{split}_bbx_gt.txt")


def load_layouts(root, split, which):
    """[(file name, (H, W), boxes XYXY list, ignore list)] of the images named by ``which``:
    "ordinary" (the first with 4 valid faces), "crowded" (the most valid faces) or "top<K>"."""
    from ainnoface_d2.data.wider_face_format import parse_bbx_gt

    images = parse_bbx_gt(_wider_file(root, split))
    rows = []
    for im in images:
        keep = (im.boxes[:, 2] > 0) & (im.boxes[:, 3] > 0)
        boxes = im.boxes[keep].astype(float)
        boxes[:, 2:] += boxes[:, :2]
        ignore = im.attributes[keep, 3] == 1
        height = max(MIN_HEIGHT, math.ceil(boxes[:, 3].max())) if len(boxes) else MIN_HEIGHT
        rows.append((im.file_name, (height, 1024), boxes.tolist(), ignore.tolist()))
    valid = [sum(not i for i in r[3]) for r in rows]
    by_faces = sorted(range(len(rows)), key=lambda i: -valid[i])
    out = []
    for name in which:
        if name == "ordinary":
            out.append(rows[valid.index(4)])
        elif name == "crowded":
            out.append(rows[by_faces[0]])
        elif name.startswith("top"):
            out.extend(rows[i] for i in by_faces[: int(name[3:])])
        else:
            raise SystemExit(f"crowded_step: unknown layout {name!r}")
    return out


def _status_gb(field):
    """``field`` of /proc/self/status (``VmHWM``: peak resident set, ``VmRSS``: now) in GB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _saturate(model):
    """Every anchor a face with probability ~1: the most candidates the protocol lets through."""
    import torch

    head = model.head
    with torch.no_grad():
        head.cls_score.bias.fill_(12.0)
        if getattr(head, "maxout_score", None) is not None:
            head.maxout_score.bias.fill_(-12.0)
        if getattr(head, "stc_score", None) is not None:
            head.stc_score.bias.fill_(12.0)


def _instances(size, boxes, ignore, keep_ignored):
    import torch
    from detectron2.structures import Boxes, Instances

    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4).clamp(0, size)
    inst = Instances((size, size))
    inst.gt_boxes = Boxes(b)
    inst.gt_classes = torch.zeros(len(b), dtype=torch.int64)
    if keep_ignored:
        inst.gt_ignore = torch.tensor(ignore, dtype=torch.bool)
        return inst
    return inst[~torch.tensor(ignore, dtype=torch.bool)]


def _match_only(model, inst, size, steps):
    """Times of ``label_anchors`` alone (both steps, STR levels refined by random deltas) and
    the memory it adds above the process's resident set before it."""
    import torch

    strides = [2 ** int(f[1:]) for f in model.head_in_features[model.num_levels :]]
    feats = [torch.zeros(1, 1, math.ceil(size / s), math.ceil(size / s)) for s in strides]
    anchors = model.anchors(feats)
    g = torch.Generator().manual_seed(0)
    refined = [
        anchors[lvl].tensor.unsqueeze(0) + 4 * torch.randn(1, len(anchors[lvl]), 4, generator=g)
        for lvl in model.str_levels
    ]
    times = []
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_gb("VmRSS")
    for _ in range(steps):
        t = time.perf_counter()
        model.label_anchors(anchors, refined, [inst])
        times.append(time.perf_counter() - t)
    return times, {"added_peak_gb": _status_gb("VmHWM") - before}


def run_one(args, layout):
    """The measurement of one layout in this process, as a dict."""
    import ainnoface_d2  # noqa: F401
    from ainnoface_d2 import get_ainnoface_cfg

    import torch
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    name, (height, width), boxes, ignore = layout
    cfg = get_ainnoface_cfg(args.config_file, ["MODEL.DEVICE", "cpu"] + list(args.opts))
    torch.manual_seed(0)
    model = build_model(cfg)
    times = []
    if args.mode == "train":
        size = cfg.INPUT.FACE.TRAIN_SIZE
        inst = _instances(size, boxes, ignore, cfg.INPUT.FACE.IGNORE_REGIONS)
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        with EventStorage(0):
            for _ in range(args.steps):
                t = time.perf_counter()
                losses = model([{"image": image, "instances": inst}])
                opt.zero_grad()
                sum(losses.values()).backward()
                opt.step()
                times.append(time.perf_counter() - t)
        count = len(inst)
    elif args.mode == "match":
        size = cfg.INPUT.FACE.TRAIN_SIZE
        inst = _instances(size, boxes, ignore, cfg.INPUT.FACE.IGNORE_REGIONS)
        times, extra = _match_only(model, inst, size, args.steps)
        count = len(inst)
    else:
        from ainnoface_d2.size_protocol import wrap_model

        model.eval()
        _saturate(model)
        runner = wrap_model(cfg, model, args.protocol)
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
        with torch.no_grad():
            for _ in range(args.steps):
                t = time.perf_counter()
                out = runner([{"image": image, "height": height, "width": width}])
                times.append(time.perf_counter() - t)
        count = len(out[0]["instances"])
    return {
        **(extra if args.mode == "match" else {}),
        "image": name,
        "size": [height, width],
        "boxes": len(boxes),
        "valid_faces": len(boxes) - sum(ignore),
        "count": count,
        "seconds": times[-1],
        "peak_rss_gb": _status_gb("VmHWM"),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wider-root", required=True, help="holds wider_face_split/*_bbx_gt.txt")
    p.add_argument("--config-file", default=DEFAULT_CONFIG)
    p.add_argument("--mode", choices=("train", "test", "match"), default="train")
    p.add_argument("--protocol", choices=("original", "multiscale"), default="original")
    p.add_argument("--layouts", default=None, help="comma list: ordinary, crowded, top<K>")
    p.add_argument("--steps", type=int, default=2, help="steps per process; the last is timed")
    p.add_argument("--repeats", type=int, default=1, help="processes per layout, alternating")
    p.add_argument("--code", default=REPO, help="checkout whose ainnoface_d2 is measured")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = p.parse_args(argv)
    split = "val" if args.mode == "test" else "train"
    if not os.path.isfile(_wider_file(args.wider_root, split)):
        p.error(f"{_wider_file(args.wider_root, split)} not found")
    which = (args.layouts or ("ordinary,crowded" if split == "train" else "top3")).split(",")
    sys.path.insert(0, args.code)
    layouts = load_layouts(args.wider_root, split, which)
    if args.one is not None:
        print(json.dumps(run_one(args, layouts[args.one])))
        return
    env = dict(os.environ, PYTHONPATH=os.path.abspath(args.code))
    base = [sys.executable, os.path.abspath(__file__), "--wider-root", args.wider_root]
    base += ["--config-file", args.config_file, "--mode", args.mode, "--protocol", args.protocol]
    base += ["--layouts", ",".join(which), "--steps", str(args.steps), "--code", args.code]
    results = []
    for _ in range(args.repeats):
        for i in range(len(layouts)):
            cmd = base + ["--one", str(i)] + list(args.opts)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    _table(results, args)


def _table(results, args):
    what = "detections" if args.mode == "test" else "boxes used"
    if args.mode == "match":
        what = "+peak GB"
        for r in results:
            r["count"] = round(r["added_peak_gb"], 2)
    print(f"\n{args.mode} ({args.protocol if args.mode == 'test' else 'one step'}), {args.code}")
    print(f"{'image':<58} {'size':>10} {'valid':>6} {what:>10} {'peak RSS GB':>12} {'s':>7}")
    for r in results:
        size = "x".join(map(str, r["size"]))
        print(
            f"{r['image']:<58} {size:>10} {r['valid_faces']:>6} {r['count']:>10} "
            f"{r['peak_rss_gb']:>12.2f} {r['seconds']:>7.2f}"
        )


if __name__ == "__main__":
    main()
