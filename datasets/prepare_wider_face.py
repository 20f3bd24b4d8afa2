#!/usr/bin/env python
"""Convert WIDER FACE annotations to the COCO JSON files that ``wider_face_{train,val,test}`` load.

    python datasets/prepare_wider_face.py                     # $DETECTRON2_DATASETS/wider_face
    python datasets/prepare_wider_face.py --root /data/wider_face --splits train val
    python datasets/prepare_wider_face.py --check             # validate only, write nothing

The layout, download links and JSON schema are in ``datasets/README.md``; the work is done by
:func:`ainnoface_d2.data.wider_face.convert_wider_face`.
"""

import argparse
import json
import logging
import os
import sys

from ainnoface_d2.data.datasets import datasets_root
from ainnoface_d2.data.wider_face import convert_wider_face, sizes_from_json
from ainnoface_d2.data.wider_face_format import SPLITS, WiderFaceFormatError
from ainnoface_d2.file_io import atomic_write_json

logger = logging.getLogger("prepare_wider_face")


def get_parser():
    default_root = os.path.join(datasets_root(), "wider_face")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        default=default_root,
        help="the WIDER FACE directory (default: $DETECTRON2_DATASETS/wider_face = %(default)s)",
    )
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument(
        "--output-dir", help="where to write wider_face_<split>.json (default: <root>/annotations)"
    )
    parser.add_argument(
        "--eval-gt-dir",
        help="directory of wider_face_val.mat and wider_{easy,medium,hard}_val.mat "
        "(default: <root>/eval_tools/ground_truth)",
    )
    parser.add_argument(
        "--image-sizes",
        help='JSON file {"<event>/<name>.jpg": [width, height]} used instead of reading images',
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="log and skip images that are missing or unreadable instead of stopping",
    )
    parser.add_argument(
        "--stats-json", help="also write the conversion statistics (counts per reason) here"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the annotations against the images, report every problem, write nothing",
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    size_fn = sizes_from_json(args.image_sizes) if args.image_sizes else None
    try:
        results = convert_wider_face(
            args.root,
            args.splits,
            output_dir=args.output_dir,
            eval_gt_dir=args.eval_gt_dir,
            size_fn=size_fn,
            skip_missing=args.skip_missing,
            check=args.check,
        )
    except (WiderFaceFormatError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 1
    if args.check:
        failed = False
        for split, stats in results.items():
            for problem in stats.problems:
                print(f"{split}: {problem}")
            failed |= stats.missing_images > 0
            print(
                f"{split}: {len(stats.problems)} problems, "
                f"{stats.missing_images} images missing or unreadable"
            )
        return 1 if failed else 0
    for split, stats in results.items():
        print(
            f"{split}: wrote {stats.json_file} ({stats.images_written} images, "
            f"{stats.annotations} annotations, {stats.missing_images} images skipped)"
        )
    if args.stats_json:
        stats = {split: s.as_dict() for split, s in results.items()}
        atomic_write_json(args.stats_json, stats, indent=1)
    return 0


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    sys.exit(run_cli(main))
