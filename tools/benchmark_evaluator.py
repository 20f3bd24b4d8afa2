#!/usr/bin/env python
"""Time the WIDER FACE evaluation on the full official val ground truth.

Loads ``--gt`` (the official ``eval_tools/ground_truth``) with
:func:`ainnoface_d2.evaluation.load_eval_ground_truth`, makes synthetic predictions (per image:
each real face, with probability 0.9, jittered by ~10 % of its size with a score in [0.3, 1), plus
random boxes with scores in [0, 0.6) up to ``--preds`` boxes) and times
:func:`ainnoface_d2.evaluation.evaluate` under both scoring protocols (median of ``--reps``).

Example::

    python tools/benchmark_evaluator.py --gt datasets/wider_face/eval_tools/ground_truth
"""

import argparse
import statistics
import sys
import time

import ainnoface_d2  # noqa: F401  (detectron2 compatibility shims first)
from ainnoface_d2.evaluation import PROTOCOLS, SETTINGS, evaluate, load_eval_ground_truth

import numpy as np


def synthetic_predictions(gt, per_image, seed=0):
    """``{(event, name): (N, 5) [x y w h score]}``: jittered real faces plus random boxes."""
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt", required=True, help="the official eval_tools/ground_truth folder")
    parser.add_argument("--preds", type=int, default=300, help="predictions per image")
    parser.add_argument("--reps", type=int, default=3, help="timed evaluations per protocol")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    gt = load_eval_ground_truth(args.gt)
    load_s = time.perf_counter() - start
    preds = synthetic_predictions(gt, args.preds)
    n = sum(len(p) for p in preds.values())
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


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    sys.exit(run_cli(main))
