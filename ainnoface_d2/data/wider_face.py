"""Convert the WIDER FACE annotations to COCO JSON.

The files are read by :mod:`ainnoface_d2.data.wider_face_format` (formats, constants, the official
evaluation ground truth). This module turns each split into one COCO JSON file (the schema is in
``datasets/README.md``): training faces (``iscrowd=0``) are valid boxes with a positive area inside
the image; ``invalid=1`` faces with an area inside the image are kept in every split as ignore
annotations (``iscrowd=1``); for val every official box is kept (``iscrowd=1`` where it is not a
training face) together with its index in the official ground truth, the official box and the
Easy/Medium/Hard flags, so that an evaluator sees the complete ground truth. Quirks of the real
files that it handles (``datasets/README.md``):

* train images without faces have a count of 0 followed by one all-zero placeholder line; val writes
  them as a count of 1 with that line;
* zero or negative widths/heights (the txt writes negative sizes as 0, the .mat keeps them);
* ``invalid=1`` faces and boxes that reach outside the image (clipped; a box with no area left is
  not a training face).

Image sizes come from the image headers (no pixel decoding), with the EXIF orientation applied the
way :func:`detectron2.data.detection_utils.read_image` applies it.
"""

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image
from tqdm import tqdm

from .wider_face_format import (
    ATTRIBUTE_NAMES,
    SETTINGS,
    SPLITS,
    WiderFaceFormatError,
    WiderImage,
    eval_gt_path,
    image_key,
    load_eval_ground_truth,
    parse_bbx_gt,
    parse_filelist,
)

logger = logging.getLogger(__name__)

__all__ = [
    "NOT_TRAINING_REASONS",
    "ConversionStats",
    "read_image_size",
    "sizes_from_json",
    "split_paths",
    "build_coco_split",
    "convert_split",
    "convert_wider_face",
]

# Why a box is not a training face, in the order they are tested: a box is counted under the first.
NOT_TRAINING_REASONS = ("dummy", "degenerate", "invalid", "outside")
# EXIF orientations 5-8 are transposes: detectron2's read_image swaps width and height for them.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def _counts(keys):
    return field(default_factory=lambda: dict.fromkeys(keys, 0))


@dataclass
class ConversionStats:
    """What :func:`build_coco_split` found and wrote for one split.

    ``not_training`` counts the boxes that are not training faces by their first reason in
    :data:`NOT_TRAINING_REASONS`; ``ignore_annotations`` the ``iscrowd=1`` annotations written;
    ``eval_kept`` / ``eval_images_with_kept`` (val) the faces each official setting keeps and the
    images with at least one. ``problems`` is filled in ``--check`` mode, ``seconds`` and
    ``json_file`` when a file is written.
    """

    split: str
    images: int = 0
    images_written: int = 0
    missing_images: int = 0
    faceless_images: int = 0
    box_lines: int = 0
    faces: int = 0
    annotations: int = 0
    training_faces: int = 0
    ignore_annotations: int = 0
    not_training: dict = _counts(NOT_TRAINING_REASONS)
    clipped: int = 0
    nonpositive_width: int = 0
    nonpositive_height: int = 0
    attribute_sums: dict = _counts(ATTRIBUTE_NAMES)
    eval_kept: dict = _counts(SETTINGS)
    eval_images_with_kept: dict = _counts(SETTINGS)
    problems: list | None = None
    seconds: float | None = None
    json_file: str | None = None

    def as_dict(self):
        """The stats as a JSON-ready dict, without the fields that do not apply to the split (the
        box counts for test, the official settings' counts for train)."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if self.split == "test":
            return {k: v for k, v in out.items() if k in _COMMON_FIELDS}
        if self.split == "train":
            out.pop("eval_kept")
            out.pop("eval_images_with_kept")
        return out


# The fields of every split's stats (the test split has images only).
_COMMON_FIELDS = ("split", "images", "images_written", "missing_images")
_COMMON_FIELDS += ("problems", "seconds", "json_file")


def read_image_size(path):
    """``(width, height)`` of an image as :func:`detectron2.data.detection_utils.read_image` returns
    it, read from the file header only (PIL does not decode pixels for ``.size``)."""
    with Image.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(_EXIF_ORIENTATION_TAG)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return width, height


def sizes_from_json(path):
    """A ``size_fn`` that reads ``{"<event>/<name>.jpg": [width, height], ...}`` from a JSON file,
    for converting annotations without the images."""
    with open(path, encoding="utf-8") as f:
        sizes = json.load(f)

    def size_fn(file_name):
        if file_name not in sizes:
            raise FileNotFoundError(f"'{file_name}' is not in the image sizes file {path}")
        width, height = sizes[file_name]
        return int(width), int(height)

    return size_fn


def split_paths(root, split):
    """Where a split's files live in the standard layout under ``root`` (e.g.
    ``$DETECTRON2_DATASETS/wider_face``): ``annotation_file``, ``image_root`` and ``json_file``."""
    if split not in SPLITS:
        raise ValueError(f"unknown WIDER FACE split {split!r}, expected one of {SPLITS}")
    split_dir = os.path.join(root, "wider_face_split")
    annotation = (
        "wider_face_test_filelist.txt" if split == "test" else f"wider_face_{split}_bbx_gt.txt"
    )
    return {
        "annotation_file": os.path.join(split_dir, annotation),
        "image_root": os.path.join(root, f"WIDER_{split}", "images"),
        "json_file": os.path.join(root, "annotations", f"wider_face_{split}.json"),
    }


def _clip(x, y, w, h, width, height):
    # A negative size means an empty box at (x, y): clipping must not turn it into a positive one.
    x1, y1 = min(max(x, 0), width), min(max(y, 0), height)
    x2, y2 = min(max(x + max(w, 0), 0), width), min(max(y + max(h, 0), 0), height)
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def _check_against_eval_gt(image, mat_boxes, annotation_file, gt_source):
    txt_boxes = image.boxes
    if len(txt_boxes) != len(mat_boxes):
        raise WiderFaceFormatError(
            f"{annotation_file}:{image.line}: '{image.file_name}' has {len(txt_boxes)} boxes but "
            f"{gt_source} has {len(mat_boxes)}"
        )
    # The txt writes the .mat's negative sizes as 0.
    differs = np.flatnonzero((np.maximum(txt_boxes, 0) != np.maximum(mat_boxes, 0)).any(axis=1))
    if differs.size:
        k = int(differs[0])
        raise WiderFaceFormatError(
            f"{annotation_file}:{image.box_lines[k]}: box {k} of '{image.file_name}' is "
            f"{txt_boxes[k].tolist()} but {gt_source} has {mat_boxes[k].tolist()}"
        )


def _size_function(image_root, size_fn):
    if size_fn is not None:
        return size_fn
    if image_root is None:
        raise ValueError("build_coco_split needs image_root or size_fn to know image sizes")
    image_root = os.fspath(image_root)
    return lambda file_name: read_image_size(os.path.join(image_root, file_name))


def _read_split(split, annotation_file):
    if split == "test":
        names = parse_filelist(annotation_file)
        return [WiderImage(n, i + 1, None, None, []) for i, n in enumerate(names)]
    return parse_bbx_gt(annotation_file)


def _val_ground_truth(eval_gt_dir, annotation_file):
    """The official ground truth for val, with the settings whose files exist; ``None`` (and a
    warning) when ``wider_face_val.mat`` is absent."""
    if eval_gt_dir is None or not os.path.isfile(eval_gt_path(eval_gt_dir)):
        logger.warning(
            "No official evaluation ground truth (wider_face_val.mat, wider_{easy,medium,hard}"
            "_val.mat) in %s: wider_easy/medium/hard are False and wider_bbox comes from %s. "
            "Get eval_tools.zip from http://shuoyang1213.me/WIDERFACE/ "
            "(see datasets/README.md).",
            eval_gt_dir,
            annotation_file,
        )
        return None
    present = [s for s in SETTINGS if os.path.isfile(eval_gt_path(eval_gt_dir, s))]
    missing = [s for s in SETTINGS if s not in present]
    if missing:
        logger.warning(
            "%s lacks wider_%s_val.mat: those flags are False.", eval_gt_dir, "/".join(missing)
        )
    return load_eval_ground_truth(eval_gt_dir, present)


def _official_entry(image, eval_gt, annotation_file, gt_source):
    """The image's official ground truth, checked against its txt boxes (val only)."""
    if eval_gt is None or image.boxes is None:
        return None
    official = eval_gt.get(image_key(image.file_name))
    if official is None:
        raise WiderFaceFormatError(
            f"{annotation_file}:{image.line}: '{image.file_name}' is not in the official "
            f"ground truth {gt_source}"
        )
    _check_against_eval_gt(image, official.boxes, annotation_file, gt_source)
    return official


def _count_boxes(stats, image, official):
    """Add the image's box counts (before the image size is known) to ``stats``."""
    for name, total in zip(ATTRIBUTE_NAMES, image.attributes.sum(axis=0).tolist()):
        stats.attribute_sums[name] += total
    stats.box_lines += sum(1 for line in image.box_lines if line)
    stats.nonpositive_width += int((image.boxes[:, 2] <= 0).sum())
    stats.nonpositive_height += int((image.boxes[:, 3] <= 0).sum())
    stats.faceless_images += image.faceless
    stats.faces += 0 if image.faceless else len(image.boxes)
    if official is not None:
        for setting, mask in official.keep.items():
            kept = int(mask.sum())
            stats.eval_kept[setting] += kept
            stats.eval_images_with_kept[setting] += kept > 0


def _image_size(image, size_fn, stats, annotation_file, skip_missing, problems):
    """``(width, height)``, or ``None`` for an image that is skipped (or reported in check mode)."""
    try:
        return tuple(int(v) for v in size_fn(image.file_name))
    except OSError as e:
        stats.missing_images += 1
        if problems is not None:
            problems.append(f"{image.file_name}: cannot read the image size: {e}")
            return None
        if skip_missing:
            logger.warning("Skipping %s: cannot read the image size: %s", image.file_name, e)
            return None
        raise FileNotFoundError(
            f"cannot read the size of image '{image.file_name}' listed in "
            f"{annotation_file}:{image.line} ({e}); pass --skip-missing to skip such images"
        ) from e


def _not_training_reason(faceless, box, attrs, bbox):
    """The first of :data:`NOT_TRAINING_REASONS` that applies to a box, or ``None``."""
    if faceless:
        return "dummy"
    if box[2] <= 0 or box[3] <= 0:
        return "degenerate"
    if attrs[ATTRIBUTE_NAMES.index("invalid")]:
        return "invalid"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return "outside"
    return None


def _writes(split, reason, bbox):
    """Whether a box becomes an annotation: every val box; in train the training faces and the
    invalid faces that keep an area in the image (ignore regions)."""
    if split == "val" or reason is None:
        return True
    return reason == "invalid" and bbox[2] > 0 and bbox[3] > 0


def _image_annotations(split, image, size, official, stats, problems):
    """The COCO annotations of one image (``id`` and ``image_id`` are set by the caller)."""
    width, height = size
    # Plain Python ints from here on: per-element numpy scalars would be several times slower.
    official_boxes = official.boxes.tolist() if official is not None else None
    flags = {s: official.keep[s].tolist() for s in official.keep} if official is not None else {}
    anns = []
    for k, (box, attrs) in enumerate(zip(image.boxes.tolist(), image.attributes.tolist())):
        bbox = _clip(*box, width, height)
        reason = _not_training_reason(image.faceless, box, attrs, bbox)
        if reason is not None:
            stats.not_training[reason] += 1
        if problems is not None and reason in (None, "outside") and bbox != box:
            problems.append(
                f"{image.file_name}: box {k} {box} (line {image.box_lines[k]}) reaches outside "
                f"the {width}x{height} image" + (" entirely" if reason == "outside" else "")
            )
        if problems is not None and reason == "degenerate":
            use = "kept as an ignore region" if _writes(split, reason, bbox) else "dropped"
            problems.append(
                f"{image.file_name}: box {k} {box} (line {image.box_lines[k]}) has width or "
                f"height <= 0: not a face ({use})"
            )
        if reason is None:
            stats.training_faces += 1
            stats.clipped += bbox != box
        if not _writes(split, reason, bbox):
            continue
        ann = {"category_id": 1, "bbox": bbox, "area": bbox[2] * bbox[3]}
        ann["iscrowd"] = 0 if reason is None else 1
        ann.update(zip(ATTRIBUTE_NAMES, attrs))
        if split == "val":
            ann["wider_index"] = k
            ann["wider_bbox"] = official_boxes[k] if official_boxes is not None else box
            for setting in SETTINGS:
                ann[f"wider_{setting}"] = flags[setting][k] if setting in flags else False
        anns.append(ann)
    return anns


def build_coco_split(
    split,
    annotation_file,
    *,
    image_root=None,
    size_fn=None,
    eval_gt_dir=None,
    skip_missing=False,
    problems=None,
):
    """Convert one split to a COCO dict. Returns ``(coco, stats)``, stats a
    :class:`ConversionStats`.

    Args:
        split: "train", "val" or "test"; decides the file format (test is a file list) and what
            is kept (train writes training faces and invalid faces, val every official box).
        annotation_file: the split's ``*_bbx_gt.txt`` or ``wider_face_test_filelist.txt``.
        image_root: the split's ``images/`` directory, where sizes are read from.
        size_fn: ``file_name -> (width, height)`` used instead of reading the images; it raises
            ``OSError`` (e.g. ``FileNotFoundError``) for an image it does not know.
        eval_gt_dir: directory of the official ``wider_face_val.mat`` and
            ``wider_{easy,medium,hard}_val.mat`` (val only).
        skip_missing: log and skip images whose size cannot be read instead of raising.
        problems: if a list, every problem found is appended to it as text (missing or unreadable
            images, boxes that reach outside their image) and nothing raises for a missing image:
            this is the ``--check`` mode.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown WIDER FACE split {split!r}, expected one of {SPLITS}")
    annotation_file = os.fspath(annotation_file)
    size_fn = _size_function(image_root, size_fn)
    images = _read_split(split, annotation_file)
    eval_gt = _val_ground_truth(eval_gt_dir, annotation_file) if split == "val" else None
    gt_source = eval_gt_path(eval_gt_dir) if eval_gt is not None else None

    stats = ConversionStats(split, images=len(images))
    coco_images, coco_anns = [], []
    for image in tqdm(images, desc=f"WIDER FACE {split}", unit="img", disable=None):
        official = _official_entry(image, eval_gt, annotation_file, gt_source)
        if image.boxes is not None:
            _count_boxes(stats, image, official)
        size = _image_size(image, size_fn, stats, annotation_file, skip_missing, problems)
        if size is None:
            continue
        image_id = len(coco_images) + 1
        coco_images.append(
            {"id": image_id, "file_name": image.file_name, "width": size[0], "height": size[1]}
        )
        if image.boxes is None:
            continue
        for ann in _image_annotations(split, image, size, official, stats, problems):
            coco_anns.append({"id": len(coco_anns) + 1, "image_id": image_id, **ann})

    stats.images_written = len(coco_images)
    stats.annotations = len(coco_anns)
    stats.ignore_annotations = sum(a["iscrowd"] for a in coco_anns)
    coco = {
        "info": {
            "description": f"WIDER FACE {split} (Yang et al., CVPR 2016), converted from "
            f"{os.path.basename(annotation_file)} by ainnoface_d2.data.wider_face",
        },
        "images": coco_images,
        "annotations": coco_anns,
        "categories": [{"id": 1, "name": "face"}],
    }
    return coco, stats


def _log_stats(stats):
    if stats.split == "test":
        logger.info(
            "WIDER FACE test: %d images written (%d missing).",
            stats.images_written,
            stats.missing_images,
        )
        return
    not_training = ", ".join(f"{k} {v}" for k, v in stats.not_training.items())
    logger.info(
        "WIDER FACE %s: %d images written (%d missing, %d faceless), %d box lines, %d faces, "
        "%d training faces (%d clipped to the image), %d ignore annotations (iscrowd=1). Not "
        "training faces: %s. Boxes with w<=0: %d, h<=0: %d (placeholders included).",
        stats.split,
        stats.images_written,
        stats.missing_images,
        stats.faceless_images,
        stats.box_lines,
        stats.faces,
        stats.training_faces,
        stats.clipped,
        stats.ignore_annotations,
        not_training,
        stats.nonpositive_width,
        stats.nonpositive_height,
    )
    if stats.split == "val":
        logger.info(
            "WIDER FACE val: faces kept by the official settings %s, images with a kept face %s",
            stats.eval_kept,
            stats.eval_images_with_kept,
        )


def _write_json(obj, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    # json.dumps uses the C encoder; json.dump streams through the slower pure-Python one.
    text = json.dumps(obj, separators=(",", ":"))
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def convert_split(split, annotation_file, output_file, **kwargs):
    """:func:`build_coco_split` and write the result to ``output_file``; returns the stats."""
    start = time.perf_counter()
    coco, stats = build_coco_split(split, annotation_file, **kwargs)
    _write_json(coco, output_file)
    stats.seconds = time.perf_counter() - start
    stats.json_file = os.fspath(output_file)
    _log_stats(stats)
    logger.info("Wrote %s in %.1f s", output_file, stats.seconds)
    return stats


def convert_wider_face(
    root,
    splits=SPLITS,
    *,
    output_dir=None,
    eval_gt_dir=None,
    size_fn=None,
    skip_missing=False,
    check=False,
):
    """Convert the splits of a WIDER FACE tree in the standard layout (``datasets/README.md``).

    Writes ``<output_dir>/wider_face_<split>.json`` (default ``<root>/annotations``). The val
    ground truth is read from ``eval_gt_dir`` (default ``<root>/eval_tools/ground_truth``).
    With ``check=True`` nothing is written and each stats' ``problems`` lists everything found.
    Returns ``{split: ConversionStats}``.
    """
    root = os.fspath(root)
    if eval_gt_dir is None:
        eval_gt_dir = os.path.join(root, "eval_tools", "ground_truth")
    results = {}
    for split in splits:
        paths = split_paths(root, split)
        kwargs = dict(
            image_root=paths["image_root"],
            size_fn=size_fn,
            eval_gt_dir=eval_gt_dir,
            skip_missing=skip_missing,
        )
        if check:
            problems = []
            _, stats = build_coco_split(
                split, paths["annotation_file"], problems=problems, **kwargs
            )
            stats.problems = problems
            _log_stats(stats)
        else:
            json_file = (
                os.path.join(output_dir, f"wider_face_{split}.json")
                if output_dir is not None
                else paths["json_file"]
            )
            stats = convert_split(split, paths["annotation_file"], json_file, **kwargs)
        results[split] = stats
    return results
