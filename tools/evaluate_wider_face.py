#!/usr/bin/env python
"""Evaluate a folder of WIDER FACE val predictions like the official ``eval_tools``.

The folder has the official submission layout, ``<pred>/<event>/<image name>.txt`` (image name,
number of boxes, then ``x y w h score`` lines); ``--gt`` is the official ``eval_tools/ground_truth``
directory (``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``). Prints easy / medium /
hard AP. See :mod:`ainnoface_d2.evaluation.wider_face_evaluation` for the protocol.

    python tools/evaluate_wider_face.py \\
        --pred output/inference/wider_face_val/wider_face_submission \\
        --gt datasets/wider_face/eval_tools/ground_truth
"""

import argparse
import json
import logging
import time

import ainnoface_d2  # noqa: F401  (detectron2 compatibility shims first)
from ainnoface_d2.evaluation import (
    PROTOCOLS,
    evaluate,
    load_wider_gt_from_mat,
    plot_pr_curves,
    read_submission_dir,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pred", required=True, help="predictions: <pred>/<event>/<image>.txt")
    parser.add_argument(
        "--gt",
        required=True,
        help="directory of wider_face_val.mat, wider_{easy,medium,hard}_val.mat",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="matlab",
        help="'matlab': the official tool's exact arithmetic (default); 'python': the Python port",
    )
    parser.add_argument("--plot", help="save the precision-recall curves to this image file")
    parser.add_argument("--json", help="write the APs to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    start = time.perf_counter()
    gt = load_wider_gt_from_mat(args.gt)
    preds = read_submission_dir(args.pred, gt)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    results = evaluate(preds, gt, protocol=args.protocol)
    eval_s = time.perf_counter() - start

    print("==================== Results ====================")
    for s in ("easy", "medium", "hard"):
        print(f"{s.capitalize():<6} Val AP: {results[s]:.4f}")
    print("=================================================")
    print(f"({args.protocol} protocol; reading {read_s:.1f} s, evaluation {eval_s:.2f} s)")
    if args.plot:
        plot_pr_curves(results, args.plot, title=f"WIDER FACE val ({args.protocol} protocol)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"protocol": args.protocol, **{s: results[s] for s in ("easy", "medium", "hard")}},
                f,
                indent=2,
            )
    return results


if __name__ == "__main__":
    main()
