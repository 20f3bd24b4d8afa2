#!/usr/bin/env python
"""Convert face annotations in COCO, YOLO, Pascal VOC or WIDER FACE layout into a dataset
``<name>_<split>`` that ``import ainnoface_d2`` registers.

    python datasets/prepare_faces.py --format coco --images DIR --annotations faces.json \\
        --name my_faces --split train
    python datasets/prepare_faces.py --format yolo --images DIR --annotations labels/ ...
    python datasets/prepare_faces.py --format voc --images DIR --annotations Annotations/ ...
    python datasets/prepare_faces.py --format wider --images DIR --annotations bbx_gt.txt ...

It writes ``$DETECTRON2_DATASETS/<name>/annotations/<name>_<split>.json`` and the manifest
``faces_dataset.json`` (the images stay where they are); the layouts and what is read from each
are described in :mod:`ainnoface_d2.data.face_formats`.
"""

import argparse
import json
import logging
import sys

from ainnoface_d2.data.datasets import datasets_root
from ainnoface_d2.data.face_formats import FORMATS
from ainnoface_d2.data.own_datasets import SPLITS, convert_faces
from ainnoface_d2.file_io import atomic_write_json

logger = logging.getLogger("prepare_faces")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=FORMATS, help="annotation layout")
    parser.add_argument("--images", required=True, help="folder of the images")
    parser.add_argument(
        "--annotations",
        required=True,
        help="coco: the JSON file; yolo: the folder of .txt labels; voc: the folder of .xml "
        "files; wider: the *_bbx_gt.txt file",
    )
    parser.add_argument("--name", required=True, help="dataset name: registers <name>_<split>")
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument(
        "--category",
        help="coco: the face category's name or id; voc: the objects' <name> (default: face)",
    )
    parser.add_argument(
        "--class", dest="class_id", type=int, default=0, help="yolo: the face class (default 0)"
    )
    parser.add_argument(
        "--ignore-class", type=int, help="yolo: a class whose boxes are ignore regions"
    )
    parser.add_argument(
        "--root",
        default=datasets_root(),
        help="datasets root (default: $DETECTRON2_DATASETS, else ./datasets; now %(default)s)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the split if the dataset has it already"
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="log and skip images that are missing or unreadable instead of stopping",
    )
    parser.add_argument("--stats-json", help="also write the conversion counts to this file")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    json_file, stats = convert_faces(
        args.format,
        args.images,
        args.annotations,
        args.name,
        args.split,
        root=args.root,
        category=args.category,
        class_id=args.class_id,
        ignore_class=args.ignore_class,
        skip_missing=args.skip_missing,
        overwrite=args.overwrite,
    )
    print(f"{args.name}_{args.split}: wrote {json_file}: {stats.summary()}")
    if args.stats_json:
        atomic_write_json(args.stats_json, stats.as_dict())
    return 0


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    sys.exit(run_cli(main))
