#!/usr/bin/env python
"""Evaluate a folder of WIDER FACE val predictions like the official ``eval_tools``.

The folder has the official submission layout, ``<pred>/<event>/<image name>.txt`` (image name,
number of boxes, then ``x y w h score`` lines); ``--gt`` is the official ``eval_tools/ground_truth``
directory (``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``). Prints easy / medium /
hard AP. See :mod:`ainnoface_d2.evaluation.wider_face_protocol` for the protocol.

    python tools/evaluate_wider_face.py \\
        --pred output/inference/wider_face_val/wider_face_submission \\
        --gt datasets/wider_face/eval_tools/ground_truth

A missing, short or malformed file, missing ground truth or a folder without a prediction file for
any val image is reported on one line (``file:line: what was expected``) with exit status 2.
"""

import argparse
import logging
import sys
import time

import ainnoface_d2  # noqa: F401  (detectron2 compatibility shims first)
from ainnoface_d2.cli import debug_requested, run_cli
from ainnoface_d2.evaluation import (
    PROTOCOLS,
    SETTINGS,
    evaluate,
    events_without_predictions,
    load_eval_ground_truth,
    plot_pr_curves,
    read_submission_dir,
)
from ainnoface_d2.file_io import atomic_write_json
from ainnoface_d2.size_protocol import SIZE_PROTOCOLS, parse_size_protocol


def get_parser():
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
        help="scoring: 'matlab', the official tool's exact arithmetic (default); 'python', the "
        "Python port",
    )
    parser.add_argument(
        "--size-protocol",
        type=parse_size_protocol,
        metavar="{" + ",".join(SIZE_PROTOCOLS) + "}",
        help="the test-size protocol the predictions were made under, printed beside the APs "
        "(a label: this tool cannot tell)",
    )
    parser.add_argument("--plot", help="save the precision-recall curves to this image file")
    parser.add_argument("--json", help="write the APs to this JSON file")
    return parser


def run(args):
    start = time.perf_counter()
    gt = load_eval_ground_truth(args.gt)
    missing = []
    preds = read_submission_dir(args.pred, gt, missing=missing)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    results = evaluate(preds, gt, protocol=args.protocol)
    eval_s = time.perf_counter() - start

    size = args.size_protocol or "not given"
    labels = f"test size: {size}, scoring: {args.protocol}"
    print("==================== Results ====================")
    for s in SETTINGS:
        print(f"{s.capitalize():<6} Val AP: {results[s]:.4f}  ({labels})")
    print("=================================================")
    print(f"(reading {read_s:.1f} s, evaluation {eval_s:.2f} s)")
    if args.plot:
        plot_pr_curves(results, args.plot, title=f"WIDER FACE val ({labels})")
    if args.json:
        aps = {s: results[s] for s in SETTINGS}
        meta = {"size_protocol": args.size_protocol, "scoring_protocol": args.protocol}
        # What the APs were computed without: images without a prediction file count as images
        # without detections, as in the official tool, and whole events missing are listed.
        absent = {
            "images": len(gt),
            "missing_prediction_files": len(missing),
            "events_without_predictions": events_without_predictions(missing, gt),
        }
        atomic_write_json(args.json, {**meta, **aps, **absent}, indent=2)
    return results


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (OSError, ValueError) as e:
        if debug_requested():
            raise
        # Format errors carry "file:line: what was expected"; a traceback adds nothing to them.
        print(f"evaluate_wider_face.py: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    run_cli(main)
