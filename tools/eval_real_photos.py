#!/usr/bin/env python
"""Score a face detector on the real-photo check set (AP at IoU 0.5) and draw what it finds.

    python datasets/prepare_real_photos.py                  # once: collects the photos
    python tools/eval_real_photos.py --config-file configs/ainnoface_R18_cpu.yaml \\
        --output output/real_photos MODEL.WEIGHTS output/quickstart/model_final.pth

The model runs through :class:`ainnoface_d2.predictor.FaceDetector`, as in ``tools/demo.py``
(same preprocessing, every detection the model keeps). Detections of all photos are ranked by
score together and matched greedily to the hand-drawn boxes: a detection is a true positive when
its best-overlapping box has IoU >= 0.5 and is not taken yet, else a false positive (PASCAL VOC
2010+ rule). AP is the area under the monotone precision envelope (VOC all-point,
:func:`ainnoface_d2.evaluation.wider_face_protocol.voc_ap`). It also prints how many faces are
found at ``--score-threshold`` and how many detections there are false, and writes
``real_photos_metrics.json`` and the drawn photos (hand-drawn boxes blue, detections green with
scores, false ones red) under ``--output``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
from ainnoface_d2.cli import run_cli
from ainnoface_d2.data.datasets import datasets_root
from ainnoface_d2.data.wider_face_format import parse_bbx_gt
from ainnoface_d2.evaluation.wider_face_protocol import voc_ap
from ainnoface_d2.file_io import atomic_write_json, write_image
from ainnoface_d2.size_protocol import add_protocol_arguments

import cv2
import numpy as np
import torch
from detectron2.structures import Boxes, pairwise_iou

logger = logging.getLogger("ainnoface_d2.eval_real_photos")
BOX_FILE = "real_photos_bbx_gt.txt"


def load_ground_truth(root: Path) -> dict[str, np.ndarray]:
    """``{image name: (N, 4) float XYXY boxes}`` from ``root/real_photos_bbx_gt.txt``."""
    gt = {}
    for entry in parse_bbx_gt(root / BOX_FILE):
        xywh = (entry.boxes[:0] if entry.faceless else entry.boxes).astype(np.float64)
        gt[entry.file_name] = np.hstack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]).reshape(-1, 4)
    return gt


def match_detections(preds: dict, gt: dict, iou_threshold: float = 0.5):
    """Rank all detections by score and mark each true (1) or false (0) positive.

    ``preds``: ``{name: (boxes (N, 4) XYXY, scores (N,))}``; ``gt``: ``{name: (M, 4) XYXY}``.
    Returns (score, is_tp, matched box index or -1, image name, detection index) per
    detection, best first.
    """
    rows = [(float(s), name, i) for name, (_, sc) in preds.items() for i, s in enumerate(sc)]
    rows.sort(key=lambda r: -r[0])
    ious = {}
    for name, (boxes, _) in preds.items():
        g = gt.get(name, np.zeros((0, 4)))
        if len(boxes) and len(g):
            ious[name] = pairwise_iou(
                Boxes(torch.as_tensor(np.asarray(boxes), dtype=torch.float64)),
                Boxes(torch.as_tensor(g, dtype=torch.float64)),
            ).numpy()
    taken = {name: np.zeros(len(g), bool) for name, g in gt.items()}
    out = []
    for score, name, i in rows:
        tp, j = 0, -1
        if name in ious:
            j = int(np.argmax(ious[name][i]))
            if ious[name][i, j] >= iou_threshold and not taken[name][j]:
                taken[name][j], tp = True, 1
            else:
                j = -1
        out.append((score, tp, j, name, i))
    return out


def average_precision(preds: dict, gt: dict, iou_threshold: float = 0.5) -> float:
    """VOC all-point AP of ``preds`` against ``gt`` (see :func:`match_detections`)."""
    n_gt = sum(len(g) for g in gt.values())
    if n_gt == 0:
        raise ValueError("the ground truth has no face: AP is undefined")
    matched = match_detections(preds, gt, iou_threshold)
    tp = np.cumsum([m[1] for m in matched], dtype=np.float64)
    fp = np.cumsum([1 - m[1] for m in matched], dtype=np.float64)
    if not len(tp):
        return 0.0
    return voc_ap(tp / n_gt, tp / np.maximum(tp + fp, 1e-12))


def summarize(preds: dict, gt: dict, score_threshold: float = 0.5) -> dict:
    matched = match_detections(preds, gt)
    kept = [m for m in matched if m[0] >= score_threshold]
    return {
        "AP50": average_precision(preds, gt),
        "num_images": len(gt),
        "num_faces": int(sum(len(g) for g in gt.values())),
        "score_threshold": score_threshold,
        "found": int(sum(m[1] for m in kept)),
        "false_positives": int(sum(1 - m[1] for m in kept)),
    }


def draw(image: np.ndarray, gt_boxes, boxes, scores, tps, score_threshold: float) -> np.ndarray:
    out = image.copy()
    t = max(2, round(max(image.shape[:2]) / 400))
    for x0, y0, x1, y1 in np.round(gt_boxes).astype(int):
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 128, 0), t)
    for (x0, y0, x1, y1), s, tp in zip(np.round(boxes).astype(int), scores, tps):
        if s < score_threshold:
            continue
        colour = (0, 220, 0) if tp else (0, 0, 255)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, t)
        cv2.putText(out, f"{s:.2f}", (x0, max(12, y0 - 4)), 0, 0.4 * t, colour, t)
    return out


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(datasets_root()) / "real_photos",
        help="from datasets/prepare_real_photos.py (default $DETECTRON2_DATASETS/real_photos)",
    )
    parser.add_argument("--output", type=Path, default=None, help="metrics and drawings here")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    add_protocol_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE")
    return parser


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ainnoface_d2.predictor import FaceDetector

    if not (args.root / BOX_FILE).is_file():
        raise FileNotFoundError(
            f"{args.root / BOX_FILE} is missing: run python datasets/prepare_real_photos.py "
            f"--root {args.root}"
        )
    gt = load_ground_truth(args.root)
    detector = FaceDetector(
        args.config_file,
        confidence_threshold=0.0,
        opts=args.opts,
        tta=args.tta,
        protocol=args.protocol,
    )
    preds, images = {}, {}
    for name in gt:
        images[name] = cv2.imread(str(args.root / "images" / name))
        if images[name] is None:
            raise FileNotFoundError(f"{args.root / 'images' / name} cannot be read as an image")
        faces = detector(images[name])
        preds[name] = (faces["boxes"], faces["scores"])
    result = summarize(preds, gt, args.score_threshold)
    result["protocol"] = detector.protocol
    print(
        f"real photos ('{result['protocol']}' test size): AP50 {100 * result['AP50']:.1f}  "
        f"faces found at score >= {result['score_threshold']}: {result['found']} of "
        f"{result['num_faces']}, false positives {result['false_positives']} "
        f"({result['num_images']} photos)"
    )
    if args.output is not None:
        _write_outputs(args.output, result, preds, gt, images, args.score_threshold)
    return result


def _write_outputs(out: Path, result, preds, gt, images, score_threshold) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "real_photos_metrics.json", result, indent=2)
    tp_of = {(name, i): tp for _, tp, _, name, i in match_detections(preds, gt)}
    for name, (boxes, scores) in preds.items():
        tps = [tp_of[(name, i)] for i in range(len(scores))]
        drawn = draw(images[name], gt[name], boxes, scores, tps, score_threshold)
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, drawn)
    print(f"  metrics and drawings: {out}")


if __name__ == "__main__":
    run_cli(main)
    sys.exit(0)
