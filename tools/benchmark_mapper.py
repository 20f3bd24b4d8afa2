#!/usr/bin/env python
"""Measure the training data mapper's throughput on one CPU core.

Runs :class:`ainnoface_d2.data.FaceDatasetMapper` (full training augmentation) in this one
process, with OpenCV and torch limited to one thread, and prints images/s per core, split into
image decoding and everything after it (augmentation + tensor conversion). Warm-up iterations
are excluded. Without ``--dataset`` it writes WIDER-like synthetic JPEGs (1024 wide, 600-800 high,
textured, ~12 faces of log-uniform size 8-300 px) to a temporary directory.

Training needs the mapper to keep up with the GPUs: images/s/core x data-loader workers >= the
model's training rate.

Example::

    python tools/benchmark_mapper.py --iters 200
    python tools/benchmark_mapper.py --dataset wider_face_train --iters 200
"""

import argparse
import logging
import os
import sys
import tempfile
import time

import ainnoface_d2  # noqa: F401  (applies the detectron2 compatibility shims first)
from ainnoface_d2 import add_ainnoface_config
from ainnoface_d2.data import FaceDatasetMapper

import cv2
import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

logger = logging.getLogger("ainnoface_d2.benchmark_mapper")

_DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "configs", "Base-AInnoFace.yaml"
)


def synthetic_dataset(out_dir, num_images, seed=0):
    """WIDER-like JPEGs with face-like blobs; returns dataset dicts (bbox XYWH_ABS)."""
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
            annos.append(
                {
                    "bbox": [x0, y0, bw, bh],
                    "bbox_mode": BoxMode.XYWH_ABS,
                    "category_id": 0,
                    "iscrowd": 0,
                }
            )
        path = os.path.join(out_dir, f"{idx:04d}.jpg")
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        dicts.append(
            {"file_name": path, "image_id": idx, "height": h, "width": w, "annotations": annos}
        )
    return dicts


def run(mapper, dicts, iters, warmup):
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=_DEFAULT_CONFIG)
    parser.add_argument("--dataset", help="a registered dataset (default: synthetic images)")
    parser.add_argument("--num-images", type=int, default=24, help="synthetic images to write")
    parser.add_argument("--iters", type=int, default=150, help="timed images")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    # One core: no intra-op threads in OpenCV or torch.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    cfg = get_cfg()
    add_ainnoface_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
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
        decode, augment, n_faces = run(mapper, dicts, args.iters, args.warmup)

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


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    sys.exit(run_cli(main))
