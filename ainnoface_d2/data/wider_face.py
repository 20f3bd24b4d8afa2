"""Read the WIDER FACE annotation files and convert them to COCO JSON.

WIDER FACE (Yang, Luo, Loy, Tang, "WIDER FACE: A Face Detection Benchmark", CVPR 2016) ships its
annotations as text files, ``wider_face_split/wider_face_{train,val}_bbx_gt.txt``::

    <event>/<image>.jpg
    <number of boxes>
    x y w h blur expression illumination invalid occlusion pose      (one line per box)

and the test image list as ``wider_face_test_filelist.txt``. The official evaluation reads the
MATLAB ground truth in ``eval_tools/ground_truth/`` instead: ``wider_face_val.mat`` and
``wider_{easy,medium,hard}_val.mat``, whose ``gt_list`` holds, per image, the 1-based indices of the
``face_bbx_list`` boxes that count in that setting.

This module turns each split into one COCO JSON file (the schema is in ``datasets/README.md``):
training faces (``iscrowd=0``) are valid boxes with a positive area inside the image; for val
every official box is kept (``iscrowd=1`` where it is not a training face) together with its index
in the official ground truth, the official box and the Easy/Medium/Hard flags, so that an evaluator
sees the complete ground truth. Quirks of the real files that it handles (``datasets/README.md``):

* train images without faces have a count of 0 followed by one all-zero placeholder line; val writes
  them as a count of 1 with that line;
* zero or negative widths/heights (the txt writes negative sizes as 0, the .mat keeps them);
* ``invalid=1`` faces and boxes that reach outside the image (clipped; a box with no area left is
  not a training face).

A malformed file raises :class:`WiderFaceFormatError` with ``path:line: what was expected``.
Image sizes come from the image headers (no pixel decoding), with the EXIF orientation applied the
way :func:`detectron2.data.detection_utils.read_image` applies it.
"""

import json
import logging
import os
import re
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image
from tqdm import tqdm

logger = logging.getLogger(__name__)

__all__ = [
    "ATTRIBUTE_NAMES",
    "EVAL_SETTINGS",
    "SPLITS",
    "NOT_TRAINING_REASONS",
    "WiderFaceFormatError",
    "WiderImage",
    "parse_bbx_gt",
    "parse_filelist",
    "load_eval_ground_truth",
    "read_image_size",
    "sizes_from_json",
    "split_paths",
    "build_coco_split",
    "convert_split",
    "convert_wider_face",
]

SPLITS = ("train", "val", "test")
# Column order of a box line after x y w h, with the largest value each may take
# (wider_face_split/readme.txt).
ATTRIBUTE_NAMES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
_ATTRIBUTE_MAX = (2, 1, 1, 1, 2, 1)
EVAL_SETTINGS = ("easy", "medium", "hard")
# Why a box is not a training face, in the order they are tested: a box is counted under the first.
NOT_TRAINING_REASONS = ("dummy", "degenerate", "invalid", "outside")

_BOX_LINE_FORMAT = "10 integers (x y w h " + " ".join(ATTRIBUTE_NAMES) + ")"
_IMAGE_PATH_RE = re.compile(r"^[^/\\\s]+/[^/\\\s]+\.jpg$", re.IGNORECASE)
# EXIF orientations 5-8 are transposes: detectron2's read_image swaps width and height for them.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


class WiderFaceFormatError(ValueError):
    """A WIDER FACE annotation file does not have the expected format; the message starts with
    ``path:line:``."""


@dataclass
class WiderImage:
    """One image entry of a ``*_bbx_gt.txt`` file.

    ``boxes`` is (N, 4) int64 ``[x, y, w, h]`` as written in the file, ``attributes`` (N, 6) int64
    in :data:`ATTRIBUTE_NAMES` order. A faceless image has one all-zero placeholder box (the .mat
    stores it that way too, so box indices line up with the official ground truth); ``box_lines``
    holds the line number of each box line, or 0 where a train-style count of 0 was not followed by
    a placeholder line.
    """

    file_name: str
    line: int
    boxes: np.ndarray
    attributes: np.ndarray
    box_lines: list

    @property
    def faceless(self):
        return len(self.boxes) == 1 and not self.boxes.any() and not self.attributes.any()


def _looks_like_image_path(text):
    return _IMAGE_PATH_RE.match(text.strip()) is not None


def _check_image_path(path, lineno, text):
    name = text.strip()
    if not _IMAGE_PATH_RE.match(name):
        raise WiderFaceFormatError(
            f"{path}:{lineno}: expected an image path '<event>/<name>.jpg', got {name!r}"
        )
    return name


def _parse_box(path, lineno, text, image_name):
    fields = text.split()
    if len(fields) != 10:
        what = "an image path" if _looks_like_image_path(text) else f"{len(fields)} fields"
        raise WiderFaceFormatError(
            f"{path}:{lineno}: expected a box line of {_BOX_LINE_FORMAT} for '{image_name}', "
            f"got {what}: {text.strip()!r}"
        )
    try:
        values = [int(v) for v in fields]
    except ValueError:
        bad = next(v for v in fields if not re.fullmatch(r"[+-]?\d+", v))
        raise WiderFaceFormatError(
            f"{path}:{lineno}: expected a box line of {_BOX_LINE_FORMAT}, got non-integer {bad!r}"
        ) from None
    for name, value, vmax in zip(ATTRIBUTE_NAMES, values[4:], _ATTRIBUTE_MAX):
        if not 0 <= value <= vmax:
            raise WiderFaceFormatError(
                f"{path}:{lineno}: attribute {name} must be an integer in [0, {vmax}], got {value}"
            )
    return values


def _read_lines(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    # Trailing blank lines are harmless; blank lines elsewhere are reported where they occur.
    n = len(lines)
    while n and not lines[n - 1].strip():
        n -= 1
    if n == 0:
        raise WiderFaceFormatError(f"{path}:1: expected an image path, the file is empty")
    return lines[:n]


def parse_bbx_gt(path):
    """Parse ``wider_face_{train,val}_bbx_gt.txt`` into :class:`WiderImage` s, in file order."""
    path = os.fspath(path)
    lines = _read_lines(path)
    n = len(lines)
    images = []
    seen = {}
    i = 0
    while i < n:
        lineno = i + 1
        name = _check_image_path(path, lineno, lines[i])
        if name in seen:
            raise WiderFaceFormatError(
                f"{path}:{lineno}: image '{name}' is listed twice (first at line {seen[name]})"
            )
        seen[name] = lineno
        i += 1
        if i >= n:
            raise WiderFaceFormatError(
                f"{path}:{n}: file ended early: expected the number of boxes of '{name}' "
                f"(line {lineno})"
            )
        count_text = lines[i].strip()
        if not count_text.isdigit():
            raise WiderFaceFormatError(
                f"{path}:{i + 1}: expected the number of boxes of '{name}' "
                f"(a non-negative integer), got {count_text!r}"
            )
        count = int(count_text)
        i += 1
        rows, box_lines = [], []
        if count == 0:
            # The train txt follows a count of 0 with one all-zero placeholder line (the .mat
            # stores a faceless image as one all-zero box). Accept files that omit it too.
            if i < n and not _looks_like_image_path(lines[i]):
                row = _parse_box(path, i + 1, lines[i], name)
                if any(row):
                    raise WiderFaceFormatError(
                        f"{path}:{i + 1}: expected the all-zero placeholder line that follows a "
                        f"box count of 0 for '{name}', got {lines[i].strip()!r}"
                    )
                box_lines.append(i + 1)
                i += 1
            else:
                box_lines.append(0)
            rows.append([0] * 10)
        else:
            for k in range(count):
                if i >= n:
                    raise WiderFaceFormatError(
                        f"{path}:{n}: file ended early: '{name}' (line {lineno}) declares "
                        f"{count} boxes, found {k}"
                    )
                rows.append(_parse_box(path, i + 1, lines[i], name))
                box_lines.append(i + 1)
                i += 1
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 10)
        images.append(WiderImage(name, lineno, arr[:, :4], arr[:, 4:], box_lines))
    return images


def parse_filelist(path):
    """Parse ``wider_face_test_filelist.txt``: one ``<event>/<name>.jpg`` per line."""
    path = os.fspath(path)
    names = []
    seen = {}
    for i, text in enumerate(_read_lines(path)):
        name = _check_image_path(path, i + 1, text)
        if name in seen:
            raise WiderFaceFormatError(
                f"{path}:{i + 1}: image '{name}' is listed twice (first at line {seen[name]})"
            )
        seen[name] = i + 1
        names.append(name)
    return names


def _mat_str(cell):
    return str(np.asarray(cell).ravel()[0])


def _iter_mat_images(mat, path, key):
    """Yield ``(file_name, mat[key] cell of that image)`` over a WIDER .mat file's cell arrays."""
    events = mat["event_list"]
    for e in range(events.shape[0]):
        event = _mat_str(events[e, 0])
        files = mat["file_list"][e, 0]
        cells = mat[key][e, 0]
        if cells.shape[0] != files.shape[0]:
            raise WiderFaceFormatError(
                f"{path}: event '{event}' has {files.shape[0]} files but {cells.shape[0]} {key}"
            )
        for j in range(files.shape[0]):
            yield f"{event}/{_mat_str(files[j, 0])}.jpg", cells[j, 0]


def load_eval_ground_truth(gt_dir):
    """Read the official val ground truth of the WIDER FACE evaluation tool.

    Returns ``(gt, sources)``: ``gt`` maps ``"<event>/<name>.jpg"`` to a dict with ``boxes``
    ((N, 4) int64, the official ``face_bbx_list``, negative sizes kept) and, per setting found, a
    boolean (N,) array ``easy``/``medium``/``hard`` (from the 1-based ``gt_list``); ``sources``
    maps ``"boxes"`` and each setting found to the file it was read from. Returns ``(None, {})``
    when ``gt_dir`` holds none of the files.
    """
    import scipy.io

    gt_dir = os.fspath(gt_dir)
    candidates = [("boxes", "wider_face_val.mat")] + [
        (s, f"wider_{s}_val.mat") for s in EVAL_SETTINGS
    ]
    sources = {k: os.path.join(gt_dir, f) for k, f in candidates}
    sources = {k: p for k, p in sources.items() if os.path.isfile(p)}
    if not sources:
        return None, {}
    gt = {}
    # Any of the four files has face_bbx_list (identical in all of them); prefer wider_face_val.mat.
    box_source = sources.get("boxes") or sources[next(s for s in EVAL_SETTINGS if s in sources)]
    sources["boxes"] = box_source
    mat = scipy.io.loadmat(box_source)
    for name, cell in _iter_mat_images(mat, box_source, "face_bbx_list"):
        gt[name] = {"boxes": np.asarray(cell, dtype=np.int64).reshape(-1, 4)}
    for setting in EVAL_SETTINGS:
        if setting not in sources:
            continue
        path = sources[setting]
        mat = scipy.io.loadmat(path)
        for name, cell in _iter_mat_images(mat, path, "gt_list"):
            if name not in gt:
                raise WiderFaceFormatError(f"{path}: image '{name}' is not in {box_source}")
            num = len(gt[name]["boxes"])
            keep = np.asarray(cell, dtype=np.int64).ravel()
            if keep.size and (keep.min() < 1 or keep.max() > num):
                raise WiderFaceFormatError(
                    f"{path}: gt_list of '{name}' has index {int(keep.max())} or {int(keep.min())}"
                    f" outside 1..{num} (1-based indices into face_bbx_list)"
                )
            flags = np.zeros(num, dtype=bool)
            flags[keep - 1] = True
            gt[name][setting] = flags
    return gt, sources


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


def _check_against_eval_gt(image, official, annotation_file, gt_source):
    txt_boxes = image.boxes
    mat_boxes = official["boxes"]
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


def _new_stats(split):
    stats = {"split": split, "images": 0, "images_written": 0, "missing_images": 0}
    if split == "test":
        return stats
    stats.update(
        {
            "faceless_images": 0,
            "box_lines": 0,
            "faces": 0,
            "annotations": 0,
            "training_faces": 0,
            "not_training": dict.fromkeys(NOT_TRAINING_REASONS, 0),
            "clipped": 0,
            "nonpositive_width": 0,
            "nonpositive_height": 0,
            "attribute_sums": dict.fromkeys(ATTRIBUTE_NAMES, 0),
        }
    )
    if split == "val":
        stats["eval_kept"] = dict.fromkeys(EVAL_SETTINGS, 0)
        stats["eval_images_with_kept"] = dict.fromkeys(EVAL_SETTINGS, 0)
    return stats


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
    """Convert one split to a COCO dict. Returns ``(coco, stats)``.

    Args:
        split: "train", "val" or "test"; decides the file format (test is a file list) and what
            is kept (train writes training faces only, val every official box).
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
    if size_fn is None:
        if image_root is None:
            raise ValueError("build_coco_split needs image_root or size_fn to know image sizes")
        image_root = os.fspath(image_root)

        def size_fn(file_name):
            return read_image_size(os.path.join(image_root, file_name))

    if split == "test":
        images = [
            WiderImage(n, i + 1, None, None, [])
            for i, n in enumerate(parse_filelist(annotation_file))
        ]
    else:
        images = parse_bbx_gt(annotation_file)

    eval_gt, gt_sources = None, {}
    if split == "val":
        if eval_gt_dir is not None:
            eval_gt, gt_sources = load_eval_ground_truth(eval_gt_dir)
        missing = [s for s in EVAL_SETTINGS if s not in gt_sources]
        if eval_gt is None:
            logger.warning(
                "No official evaluation ground truth (wider_face_val.mat, wider_{easy,medium,hard}"
                "_val.mat) in %s: wider_easy/medium/hard are False and wider_bbox comes from %s. "
                "Get eval_tools.zip from http://shuoyang1213.me/WIDERFACE/ "
                "(see datasets/README.md).",
                eval_gt_dir,
                annotation_file,
            )
        elif missing:
            logger.warning(
                "%s lacks wider_%s_val.mat: those flags are False.",
                eval_gt_dir,
                "/".join(missing),
            )

    stats = _new_stats(split)
    stats["images"] = len(images)
    coco_images, coco_anns = [], []
    attr_sums = np.zeros(len(ATTRIBUTE_NAMES), dtype=np.int64)
    reasons = stats.get("not_training")
    check = problems is not None
    for image in tqdm(images, desc=f"WIDER FACE {split}", unit="img", disable=None):
        name = image.file_name
        official = None
        if image.boxes is not None:
            attr_sums += image.attributes.sum(axis=0)
            stats["box_lines"] += sum(1 for line in image.box_lines if line)
            stats["nonpositive_width"] += int((image.boxes[:, 2] <= 0).sum())
            stats["nonpositive_height"] += int((image.boxes[:, 3] <= 0).sum())
            faceless = image.faceless
            stats["faceless_images"] += faceless
            stats["faces"] += 0 if faceless else len(image.boxes)
            if eval_gt is not None:
                official = eval_gt.get(name)
                if official is None:
                    raise WiderFaceFormatError(
                        f"{annotation_file}:{image.line}: '{name}' is not in the official "
                        f"ground truth {gt_sources['boxes']}"
                    )
                _check_against_eval_gt(image, official, annotation_file, gt_sources["boxes"])
        try:
            width, height = (int(v) for v in size_fn(name))
        except OSError as e:
            stats["missing_images"] += 1
            if check:
                problems.append(f"{name}: cannot read the image size: {e}")
                continue
            if skip_missing:
                logger.warning("Skipping %s: cannot read the image size: %s", name, e)
                continue
            raise FileNotFoundError(
                f"cannot read the size of image '{name}' listed in {annotation_file}:{image.line}"
                f" ({e}); pass --skip-missing to skip such images"
            ) from e
        image_id = len(coco_images) + 1
        coco_images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        if image.boxes is None:
            continue
        # Plain Python ints from here on: per-element numpy scalars would be several times slower.
        official_boxes = official["boxes"].tolist() if official is not None else None
        flags = {
            s: official[s].tolist() if official is not None and s in official else None
            for s in EVAL_SETTINGS
        }
        for k, (box, attrs) in enumerate(zip(image.boxes.tolist(), image.attributes.tolist())):
            x, y, w, h = box
            bbox = _clip(x, y, w, h, width, height)
            if faceless:
                reason = "dummy"
            elif w <= 0 or h <= 0:
                reason = "degenerate"
            elif attrs[3]:
                reason = "invalid"
            elif bbox[2] <= 0 or bbox[3] <= 0:
                reason = "outside"
            else:
                reason = None
            if reason is not None:
                reasons[reason] += 1
            if check and reason in (None, "outside") and bbox != [x, y, w, h]:
                problems.append(
                    f"{name}: box {k} [{x}, {y}, {w}, {h}] (line {image.box_lines[k]}) reaches "
                    f"outside the {width}x{height} image"
                    + (" entirely" if reason == "outside" else "")
                )
            if reason is None:
                stats["training_faces"] += 1
                stats["clipped"] += bbox != [x, y, w, h]
            elif split == "train":
                continue
            ann = {
                "id": len(coco_anns) + 1,
                "image_id": image_id,
                "category_id": 1,
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0 if reason is None else 1,
            }
            ann.update(zip(ATTRIBUTE_NAMES, attrs))
            if split == "val":
                ann["wider_index"] = k
                ann["wider_bbox"] = official_boxes[k] if official_boxes is not None else box
                for setting in EVAL_SETTINGS:
                    f = flags[setting]
                    ann[f"wider_{setting}"] = f[k] if f is not None else False
            coco_anns.append(ann)
        if split == "val" and official is not None:
            for setting in EVAL_SETTINGS:
                if setting in official:
                    kept = int(official[setting].sum())
                    stats["eval_kept"][setting] += kept
                    stats["eval_images_with_kept"][setting] += kept > 0

    stats["images_written"] = len(coco_images)
    if split != "test":
        stats["annotations"] = len(coco_anns)
        stats["attribute_sums"] = dict(zip(ATTRIBUTE_NAMES, (int(v) for v in attr_sums)))
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
    split = stats["split"]
    if split == "test":
        logger.info(
            "WIDER FACE test: %d images written (%d missing).",
            stats["images_written"],
            stats["missing_images"],
        )
        return
    not_training = ", ".join(f"{k} {v}" for k, v in stats["not_training"].items())
    kept = "dropped" if split == "train" else "kept with iscrowd=1"
    logger.info(
        "WIDER FACE %s: %d images written (%d missing, %d faceless), %d box lines, %d faces, "
        "%d training faces (%d clipped to the image). Not training faces, %s: %s. "
        "Boxes with w<=0: %d, h<=0: %d (placeholders included).",
        split,
        stats["images_written"],
        stats["missing_images"],
        stats["faceless_images"],
        stats["box_lines"],
        stats["faces"],
        stats["training_faces"],
        stats["clipped"],
        kept,
        not_training,
        stats["nonpositive_width"],
        stats["nonpositive_height"],
    )
    if split == "val":
        logger.info(
            "WIDER FACE val: faces kept by the official settings %s, images with a kept face %s",
            stats["eval_kept"],
            stats["eval_images_with_kept"],
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
    stats["seconds"] = time.perf_counter() - start
    _log_stats(stats)
    logger.info("Wrote %s in %.1f s", output_file, stats["seconds"])
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
    With ``check=True`` nothing is written; returns ``{split: stats}`` where each stats dict also
    has a ``problems`` list of everything found.
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
            stats["problems"] = problems
            _log_stats(stats)
        else:
            json_file = (
                os.path.join(output_dir, f"wider_face_{split}.json")
                if output_dir is not None
                else paths["json_file"]
            )
            stats = convert_split(split, paths["annotation_file"], json_file, **kwargs)
            stats["json_file"] = json_file
        results[split] = stats
    return results
