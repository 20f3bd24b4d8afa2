#!/usr/bin/env python
"""Rehearse the paper's WIDER FACE run without WIDER images, at WIDER FACE's real scale.

    .venv/bin/python tools/rehearse_wider_face.py --wider-files /data/widerface \\
        --output output/rehearsal

``--wider-files`` holds the real annotation files (``wider_face_split/wider_face_{train,val}_
bbx_gt.txt`` and the official ``[eval_tools/]ground_truth/*.mat``). For every annotated image a
stand-in is rendered: faces of the built-in generator (``skimage``'s LFW crops) pasted at the
annotated boxes on a noise background. WIDER images are 1024 px wide; their heights are not in the
annotation files, so each image is as tall as its boxes need, at least 683 px. Then,
each stage timed:

1. the real converter (``ainnoface_d2.data.wider_face``) writes the COCO files;
2. the paper config's training data loader (its mapper, batch and workers) runs
   ``--loader-batches`` batches: images per second;
3. a small backbone (``--train-config``, at the paper's input size) trains ``--train-iters``
   steps: the peak memory of a step and the images of that step;
4. inference on the val images at their original size: time, detections and the peak memory of
   an image, and which image;
5. the official evaluation (easy / medium / hard AP, meaningless for an untrained model; the
   time is the point).

Peak memory is the process's resident set (VmHWM), reset before each step and each image.
``--train-images`` / ``--val-images`` take the first images of each file only (a quick run);
``--val-inference N`` infers N val images only (``--most-crowded-first``: the ones with the most
faces; the evaluation then covers those). The figures go to ``<output>/rehearsal.json``.
"""

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import ainnoface_d2  # noqa: E402,F401  (the Detectron2 shims first)
from ainnoface_d2.analysis import WIDER_WIDTH, reset_peak_rss, rss_gb, stand_in_height  # noqa: E402

logger = logging.getLogger("rehearse_wider_face")
PAPER_CONFIG = os.path.join(REPO, "configs", "ainnoface_R50.yaml")
SMALL_CONFIG = os.path.join(REPO, "configs", "ainnoface_R18_cpu.yaml")
PREFIX = "rehearsal_wider_face"


# ---------------------------------------------------------------- rendering


def annotation_blocks(path, limit=None):
    """The file's image entries as (file name, raw lines of the entry, boxes (N, 4) XYWH)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, i = [], 0
    while i < len(lines) and lines[i].strip() and (limit is None or len(out) < limit):
        count = int(lines[i + 1])
        rows = lines[i + 2 : i + 2 + max(count, 1)]
        boxes = np.array([[int(v) for v in r.split()[:4]] for r in rows[:count]]).reshape(-1, 4)
        out.append((lines[i].strip(), lines[i : i + 2 + max(count, 1)], boxes))
        i += 2 + max(count, 1)
    return out


def render_image(boxes, crops, rng):
    """A WIDER_WIDTH-wide noise image with a face crop pasted (resized) at every box."""
    import cv2

    h = stand_in_height(boxes)
    small = rng.integers(40, 216, size=(h // 16 + 1, WIDER_WIDTH // 16 + 1, 3), dtype=np.uint8)
    img = cv2.resize(small, (WIDER_WIDTH, h), interpolation=cv2.INTER_LINEAR)
    for x, y, w, bh in boxes.tolist():
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, WIDER_WIDTH), min(y + bh, h)
        if x1 <= x0 or y1 <= y0:
            continue
        face = cv2.resize(crops[rng.integers(len(crops))], (w, bh), interpolation=cv2.INTER_AREA)
        face = (face[y0 - y : y1 - y, x0 - x : x1 - x] * 255).astype(np.uint8)
        img[y0:y1, x0:x1] = face[:, :, None]
    return img


def render_split(wider_files, root, split, limit, seed):
    """Write the stand-in images and the (possibly shortened) annotation file of ``split``."""
    from ainnoface_d2.builtin_faces.sources import load_face_crops
    from ainnoface_d2.data.wider_face import split_paths

    import cv2

    blocks = annotation_blocks(split_paths(wider_files, split)["annotation_file"], limit)
    crops = load_face_crops()
    rng = np.random.default_rng(seed)
    paths = split_paths(root, split)
    image_root = paths["image_root"]
    for name, _, boxes in blocks:
        out = os.path.join(image_root, name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if not cv2.imwrite(out, render_image(boxes, crops, rng), [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise SystemExit(f"rehearse_wider_face: cannot write {out}")
    dst = paths["annotation_file"]
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst + ".tmp", "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for _, entry, _ in blocks for line in entry))
    os.replace(dst + ".tmp", dst)
    return len(blocks), sum(len(b) for _, _, b in blocks)


def _gt_dir(wider_files):
    """The official ground truth: ``ground_truth/`` or ``eval_tools/ground_truth/``."""
    for sub in ("ground_truth", os.path.join("eval_tools", "ground_truth")):
        if os.path.isdir(os.path.join(wider_files, sub)):
            return os.path.join(wider_files, sub)
    return None


def prepare(args, report):
    from ainnoface_d2.data.wider_face import convert_wider_face

    root = os.path.join(args.output, "wider_face")
    gt_dir = os.path.join(root, "eval_tools", "ground_truth")
    os.makedirs(gt_dir, exist_ok=True)
    src = _gt_dir(args.wider_files)
    for name in os.listdir(src):
        shutil.copyfile(os.path.join(src, name), os.path.join(gt_dir, name))
    for split, limit in (("train", args.train_images), ("val", args.val_images)):
        t = time.perf_counter()
        images, boxes = render_split(args.wider_files, root, split, limit, seed=args.seed)
        report[f"render_{split}"] = {
            "images": images,
            "boxes": boxes,
            "seconds": time.perf_counter() - t,
        }
        logger.info("rendered %d %s images (%d boxes)", images, split, boxes)
    t = time.perf_counter()
    stats = convert_wider_face(root, splits=("train", "val"))
    report["convert_seconds"] = time.perf_counter() - t
    report["convert"] = {s: st.as_dict() for s, st in stats.items()}
    return root


# ---------------------------------------------------------------- loader, training, inference


def _cfg(config_file, opts, root_names):
    from ainnoface_d2 import get_ainnoface_cfg

    train, val = root_names
    cfg = get_ainnoface_cfg(config_file, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""] + opts)
    cfg.defrost()
    cfg.DATASETS.TRAIN = (train,)
    cfg.DATASETS.TEST = (val,)
    return cfg


def measure_loader(args, names, report):
    """Images per second of the paper config's training loader, after its first batch."""
    from ainnoface_d2.engine import Trainer

    opts = []
    if args.loader_workers is not None:
        opts += ["DATALOADER.NUM_WORKERS", args.loader_workers]
    if args.loader_batch is not None:
        opts += ["SOLVER.IMS_PER_BATCH", args.loader_batch]
    cfg = _cfg(args.paper_config, opts, names)
    loader = iter(Trainer.build_train_loader(cfg))
    next(loader)
    t, images = time.perf_counter(), 0
    for _ in range(args.loader_batches):
        images += len(next(loader))
    sec = time.perf_counter() - t
    report["loader"] = {
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "workers": cfg.DATALOADER.NUM_WORKERS,
        "batches": args.loader_batches,
        "images_per_s": images / sec,
    }
    logger.info("loader: %.1f images/s", images / sec)
    del loader


def train(args, names, report):
    """``--train-iters`` steps of the small backbone; the peak memory of each step."""
    from ainnoface_d2.engine import Trainer

    from detectron2.utils.events import EventStorage

    opts = ["INPUT.FACE.TRAIN_SIZE", 1024, "SOLVER.IMS_PER_BATCH", args.train_batch]
    opts += ["DATALOADER.NUM_WORKERS", args.train_workers] + list(args.opts)
    cfg = _cfg(args.train_config, opts, names)
    model = Trainer.build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    loader = iter(Trainer.build_train_loader(cfg))
    steps = []
    with EventStorage(0) as storage:
        for it in range(args.train_iters):
            batch = next(loader)
            storage.iter = it
            reset_peak_rss()
            t = time.perf_counter()
            losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            steps.append(
                {
                    "seconds": time.perf_counter() - t,
                    "peak_rss_gb": rss_gb(),
                    "images": [d["file_name"] for d in batch],
                    "boxes": sum(len(d["instances"]) for d in batch),
                    "loss": float(sum(v.item() for v in losses.values())),
                }
            )
    worst = max(steps, key=lambda s: s["peak_rss_gb"])
    report["train"] = {
        "config": os.path.relpath(args.train_config, REPO),
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "iters": len(steps),
        "seconds_per_step": sum(s["seconds"] for s in steps) / len(steps),
        "peak_step": worst,
        "finite_losses": all(math.isfinite(s["loss"]) for s in steps),
    }
    logger.info("train: peak step %.2f GB (%s)", worst["peak_rss_gb"], worst["images"])
    del loader
    return model, cfg


def infer(model, cfg, names, limit, most_crowded, report):
    """Detections of the val images at their original size, ``{(event, name): (N, 5)}``."""
    from ainnoface_d2.data.wider_face_format import image_key

    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.data.detection_utils import read_image

    dicts = DatasetCatalog.get(names[1])
    if most_crowded:
        dicts = sorted(dicts, key=lambda d: -len(d["annotations"]))
    dicts = dicts[:limit]
    model.eval()
    preds, per_image = {}, []
    t0 = time.perf_counter()
    with torch.no_grad():
        for d in dicts:
            img = read_image(d["file_name"], format=cfg.INPUT.FORMAT)
            image = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))
            reset_peak_rss()
            t = time.perf_counter()
            out = model([{"image": image, "height": d["height"], "width": d["width"]}])
            inst = out[0]["instances"]
            b = inst.pred_boxes.tensor.numpy().astype(np.float64)
            xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
            rel = os.path.relpath(d["file_name"], os.path.dirname(os.path.dirname(d["file_name"])))
            preds[image_key(rel)] = np.concatenate([xywh, inst.scores.numpy()[:, None]], axis=1)
            per_image.append((rss_gb(), time.perf_counter() - t, rel, len(inst)))
            if len(per_image) % 250 == 0:
                logger.info(
                    "inference: %d of %d images, %.2f s per image",
                    len(per_image),
                    len(dicts),
                    (time.perf_counter() - t0) / len(per_image),
                )
    worst = max(per_image)
    report["inference"] = {
        "images": len(per_image),
        "seconds": time.perf_counter() - t0,
        "seconds_per_image": sum(p[1] for p in per_image) / max(len(per_image), 1),
        "peak_image": {"peak_rss_gb": worst[0], "seconds": worst[1], "image": worst[2]},
        "detections": sum(p[3] for p in per_image),
    }
    logger.info("inference: %d images, peak %.2f GB (%s)", len(per_image), worst[0], worst[2])
    return preds


def evaluate_preds(args, root, preds, report):
    from ainnoface_d2.data.wider_face_format import load_eval_ground_truth
    from ainnoface_d2.evaluation import evaluate, write_submission_dir

    t = time.perf_counter()
    write_submission_dir(os.path.join(args.output, "submission"), preds)
    gt = load_eval_ground_truth(os.path.join(root, "eval_tools", "ground_truth"))
    if len(preds) < len(gt):
        gt = {k: v for k, v in gt.items() if k in preds}
    results = evaluate(preds, gt)
    report["evaluation"] = {
        "images": len(gt),
        "seconds": time.perf_counter() - t,
        **{s: float(results[s]) for s in ("easy", "medium", "hard")},
    }
    logger.info("evaluation of %d images: %.1f s", len(gt), report["evaluation"]["seconds"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--wider-files", required=True, help="wider_face_split/, [eval_tools/]ground_truth/"
    )
    p.add_argument("--output", default=os.path.join(REPO, "output", "rehearsal"))
    p.add_argument("--train-images", type=int, help="only the first N train images")
    p.add_argument("--val-images", type=int, help="only the first N val images")
    p.add_argument("--val-inference", type=int, help="run inference on N val images only")
    p.add_argument(
        "--most-crowded-first", action="store_true", help="infer the most crowded images first"
    )
    p.add_argument("--paper-config", default=PAPER_CONFIG, help="its data loader is measured")
    p.add_argument("--loader-batches", type=int, default=10)
    p.add_argument("--loader-batch", type=int, help="default: the paper config's batch")
    p.add_argument("--loader-workers", type=int, help="default: the paper config's workers")
    p.add_argument("--train-config", default=SMALL_CONFIG, help="the small backbone trained")
    p.add_argument("--train-iters", type=int, default=20)
    p.add_argument("--train-batch", type=int, default=2)
    p.add_argument("--train-workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="overrides of the train config")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    split_dir = os.path.join(args.wider_files, "wider_face_split")
    if not os.path.isdir(split_dir) or _gt_dir(args.wider_files) is None:
        p.error(f"{args.wider_files} needs wider_face_split/ and [eval_tools/]ground_truth/")
    if os.path.realpath(os.path.join(args.output, "wider_face")) == os.path.realpath(
        args.wider_files
    ):
        p.error("--output/wider_face is --wider-files: the stand-ins would overwrite its files")
    from ainnoface_d2.data.datasets import register_wider_face_splits

    from detectron2.data import DatasetCatalog

    report = {}
    root = prepare(args, report)
    names = register_wider_face_splits(PREFIX, root, splits=("train", "val"))
    for n in names:  # the images are this run's: a cached list of an earlier run is stale
        DatasetCatalog.get(n)
    measure_loader(args, names, report)
    model, cfg = train(args, names, report)
    preds = infer(model, cfg, names, args.val_inference, args.most_crowded_first, report)
    evaluate_preds(args, root, preds, report)
    out = os.path.join(args.output, "rehearsal.json")
    with open(out + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(out + ".tmp", out)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
