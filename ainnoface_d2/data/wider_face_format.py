"""The official WIDER FACE files: their constants, their parsers and the one loader of the
official evaluation ground truth.

WIDER FACE (Yang, Luo, Loy, Tang, "WIDER FACE: A Face Detection Benchmark", CVPR 2016) ships its
annotations as text files, ``wider_face_split/wider_face_{train,val}_bbx_gt.txt``::

    <event>/<image>.jpg
    <number of boxes>
    x y w h blur expression illumination invalid occlusion pose      (one line per box)

and the test image list as ``wider_face_test_filelist.txt``. The official evaluation reads the
MATLAB ground truth in ``eval_tools/ground_truth/`` instead: ``wider_face_val.mat``
(``event_list``, ``file_list``, ``face_bbx_list``) and ``wider_{easy,medium,hard}_val.mat``, whose
``gt_list`` holds, per image, the 1-based indices of the ``face_bbx_list`` boxes that count in that
setting. :func:`load_eval_ground_truth` reads them for the converter
(:mod:`ainnoface_d2.data.wider_face`), the evaluator (:mod:`ainnoface_d2.evaluation`) and
``tools/evaluate_wider_face.py``; images are keyed ``(event, image name without .jpg)`` as in the
submission layout (:func:`image_key`).

A malformed file raises :class:`WiderFaceFormatError` with ``path:line: what was expected``
(``path: what was expected`` for the .mat files, which have no lines).
"""

import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ATTRIBUTE_NAMES",
    "SETTINGS",
    "SPLITS",
    "WiderFaceFormatError",
    "WiderImage",
    "WiderImageGT",
    "datasets_root",
    "eval_gt_path",
    "image_key",
    "load_eval_ground_truth",
    "parse_bbx_gt",
    "parse_filelist",
]

SPLITS = ("train", "val", "test")


def datasets_root() -> str:
    """The datasets root: ``$DETECTRON2_DATASETS``, else ``datasets`` relative to the working
    directory, as Detectron2 resolves it (``detectron2/data/datasets/builtin.py``)."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


# The official evaluation settings, in the order the benchmark reports them.
SETTINGS = ("easy", "medium", "hard")
# Column order of a box line after x y w h, with the largest value each may take
# (wider_face_split/readme.txt).
ATTRIBUTE_NAMES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
_ATTRIBUTE_MAX = (2, 1, 1, 1, 2, 1)

_BOX_LINE_FORMAT = "10 integers (x y w h " + " ".join(ATTRIBUTE_NAMES) + ")"
_IMAGE_PATH_RE = re.compile(r"^[^/\\\s]+/[^/\\\s]+\.jpg$", re.IGNORECASE)


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


# ---------------------------------------------------------------------------------------------
# The official evaluation ground truth (eval_tools/ground_truth/*.mat)
# ---------------------------------------------------------------------------------------------
@dataclass
class WiderImageGT:
    """One image of the official ground truth.

    Attributes:
        boxes: ``(G, 4)`` official boxes ``[x, y, w, h]`` in ``face_bbx_list`` order (integers for
            the real ground truth; a negative width or height is kept as is).
        keep: setting name -> ``(G,)`` bool mask of the faces in that setting's ``gt_list``.
    """

    boxes: np.ndarray
    keep: dict = field(default_factory=dict)

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes).reshape(-1, 4)
        for setting, mask in list(self.keep.items()):
            mask = np.asarray(mask, dtype=bool).reshape(-1)
            if mask.shape[0] != self.boxes.shape[0]:
                raise ValueError(
                    f"keep mask of setting {setting!r} has {mask.shape[0]} entries for "
                    f"{self.boxes.shape[0]} boxes"
                )
            self.keep[setting] = mask


def image_key(file_name):
    """``(event, image name without extension)`` of an image path ``.../<event>/<name>.jpg``."""
    file_name = os.fspath(file_name)
    event = os.path.basename(os.path.dirname(file_name))
    name = os.path.splitext(os.path.basename(file_name))[0]
    return event, name


def eval_gt_path(gt_dir, setting=None):
    """``<gt_dir>/wider_face_val.mat`` (the boxes), or ``wider_<setting>_val.mat``."""
    name = "wider_face_val.mat" if setting is None else f"wider_{setting}_val.mat"
    return os.path.join(os.fspath(gt_dir), name)


def _mat_str(cell):
    return str(np.asarray(cell).reshape(-1)[0])


def _load_mat(path, keys):
    import scipy.io

    if not os.path.isfile(path):
        raise FileNotFoundError(f"WIDER FACE ground truth file not found: {path}")
    unreadable = (ValueError, TypeError, OSError, EOFError, IndexError, KeyError)
    try:
        mat = scipy.io.loadmat(path, variable_names=keys)
    except unreadable + (scipy.io.matlab.MatReadError,) as e:
        # A truncated file fails in scipy's own checks or in its zlib/struct reads.
        raise WiderFaceFormatError(
            f"{path}: not a readable MATLAB file (truncated or corrupt?): {type(e).__name__}: {e}"
        ) from e
    missing = [k for k in keys if k not in mat]
    if missing:
        raise WiderFaceFormatError(f"{path}: has no {', '.join(missing)}")
    return mat


def _keep_mask(cell, num_boxes, path, key):
    idx = np.asarray(cell).reshape(-1).astype(np.int64)
    if idx.size and (idx.min() < 1 or idx.max() > num_boxes):
        raise WiderFaceFormatError(
            f"{path}: gt_list of {key[0]}/{key[1]} has index {idx.min()}..{idx.max()} outside "
            f"1..{num_boxes} (1-based indices into face_bbx_list)"
        )
    mask = np.zeros(num_boxes, dtype=bool)
    mask[idx - 1] = True
    return mask


def load_eval_ground_truth(gt_dir, settings=SETTINGS):
    """Read the official val ground truth of the WIDER FACE evaluation tool.

    Reads ``wider_face_val.mat`` and, for each of ``settings``, ``wider_<setting>_val.mat``; a
    missing file raises ``FileNotFoundError`` naming it, a malformed one
    :class:`WiderFaceFormatError`.

    Returns:
        ``OrderedDict`` ``(event, image name) -> WiderImageGT`` in the official order, with a keep
        mask per setting read.
    """
    box_path = eval_gt_path(gt_dir)
    mat = _load_mat(box_path, ("event_list", "file_list", "face_bbx_list"))
    events = mat["event_list"].reshape(-1)
    files = mat["file_list"].reshape(-1)
    boxes = mat["face_bbx_list"].reshape(-1)
    keep_lists = {}
    for setting in settings:
        path = eval_gt_path(gt_dir, setting)
        lists = _load_mat(path, ("gt_list",))["gt_list"].reshape(-1)
        if len(lists) != len(events):
            raise WiderFaceFormatError(
                f"{path}: gt_list has {len(lists)} events, {box_path} {len(events)}"
            )
        keep_lists[setting] = (path, lists)

    gt = OrderedDict()
    for e, event_cell in enumerate(events):
        event = _mat_str(event_cell)
        names = files[e].reshape(-1)
        image_boxes = boxes[e].reshape(-1)
        if len(image_boxes) != len(names):
            raise WiderFaceFormatError(
                f"{box_path}: event {event} has {len(names)} files but {len(image_boxes)} "
                "face_bbx_list entries"
            )
        for j, name_cell in enumerate(names):
            key = (event, _mat_str(name_cell))
            if key in gt:
                raise WiderFaceFormatError(f"{box_path}: image {key[0]}/{key[1]} appears twice")
            b = np.asarray(image_boxes[j]).reshape(-1, 4).astype(np.int64)
            keep = {}
            for setting, (path, lists) in keep_lists.items():
                cells = lists[e].reshape(-1)
                if len(cells) != len(names):
                    raise WiderFaceFormatError(
                        f"{path}: event {event} has {len(cells)} gt_list entries, {box_path} "
                        f"{len(names)} files"
                    )
                keep[setting] = _keep_mask(cells[j], len(b), path, key)
            gt[key] = WiderImageGT(b, keep)
    return gt
