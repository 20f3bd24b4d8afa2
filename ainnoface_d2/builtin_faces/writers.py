"""Writing the built-in face dataset's annotation files in the official WIDER FACE formats:
``wider_face_{train,val}_bbx_gt.txt``, the ``.mat`` files of ``wider_face_split/`` and the
evaluation ground truth ``eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat``, with
the keys, nesting and dtypes of the official files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import scipy.io

from ..data.wider_face_format import SETTINGS, eval_gt_path
from .records import EVENTS, GENERATOR_VERSION, ImageRecord, eval_settings

__all__ = ["write_split_files"]


def _by_event(records: list[ImageRecord]) -> list[tuple[str, list[ImageRecord]]]:
    return [
        (e, [r for r in records if r.event == e])
        for e in EVENTS
        if any(r.event == e for r in records)
    ]


def _write_txt(path: Path, records: list[ImageRecord], split: str) -> None:
    lines = []
    for r in records:
        lines.append(r.file_name)
        if r.faces:
            lines.append(str(len(r.faces)))
            for f in r.faces:
                lines.append(" ".join(str(v) for v in (*f.box, *f.labels)) + " ")
        else:
            # The official files: train says 0 faces, val 1 face, both followed by a dummy box.
            lines.append("0" if split == "train" else "1")
            lines.append("0 0 0 0 0 0 0 0 0 0 ")
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def _cell(items) -> np.ndarray:
    arr = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        arr[i, 0] = item
    return arr


def _savemat(path: Path, data: dict) -> None:
    buf = io.BytesIO()
    scipy.io.savemat(buf, data, do_compression=True)
    raw = bytearray(buf.getvalue())
    # scipy stamps the current time into the 116-byte text header; a fixed one keeps the file
    # byte-identical across runs.
    header = (
        "MATLAB 5.0 MAT-file, Platform: posix, "
        f"Created by: ainnoface_d2 builtin_faces v{GENERATOR_VERSION}"
    )
    raw[:116] = header.encode("ascii").ljust(116, b" ")
    path.write_bytes(bytes(raw))


def _mat_annotations(records: list[ImageRecord]) -> dict:
    """The arrays of wider_face_{train,val}.mat; a faceless image gets one all-zero box."""
    groups = _by_event(records)
    keys = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    boxes, labels = [], {k: [] for k in keys}
    for _, recs in groups:
        ev_boxes, ev_labels = [], {k: [] for k in keys}
        for r in recs:
            n = max(1, len(r.faces))
            b = np.zeros((n, 4), dtype=np.int32)
            lab = np.zeros((n, len(keys)), dtype=np.uint8)
            for j, f in enumerate(r.faces):
                b[j] = f.box
                lab[j] = f.labels
            ev_boxes.append(b)
            for k_i, k in enumerate(keys):
                ev_labels[k].append(np.ascontiguousarray(lab[:, k_i : k_i + 1]))
        boxes.append(_cell(ev_boxes))
        for k in keys:
            labels[k].append(_cell(ev_labels[k]))
    data = {
        "event_list": _cell([e for e, _ in groups]),
        "file_list": _cell([_cell([r.name for r in recs]) for _, recs in groups]),
        "face_bbx_list": _cell(boxes),
    }
    for k in keys:
        data[f"{k}_label_list"] = _cell(labels[k])
    return data


def _gt_list(records: list[ImageRecord], setting: int) -> np.ndarray:
    per_event = []
    for _, recs in _by_event(records):
        cells = []
        for r in recs:
            keep = [j + 1 for j, f in enumerate(r.faces) if eval_settings(f)[setting]]
            if keep:
                dtype = np.uint8 if max(keep) <= 255 else np.uint16
                cells.append(np.asarray(keep, dtype=dtype).reshape(-1, 1))
            else:
                # MATLAB's logical indexing of a one-box image gives 0x0, of a longer list 0x1.
                shape = (0, 0) if max(1, len(r.faces)) == 1 else (0, 1)
                cells.append(np.zeros(shape, dtype=np.uint8))
        per_event.append(_cell(cells))
    return _cell(per_event)


def write_split_files(out: Path, records: dict[str, list[ImageRecord]]) -> None:
    split_dir = out / "wider_face_split"
    gt_dir = out / "eval_tools" / "ground_truth"
    split_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        _write_txt(split_dir / f"wider_face_{split}_bbx_gt.txt", records[split], split)
        _savemat(split_dir / f"wider_face_{split}.mat", _mat_annotations(records[split]))
    test = records["test"]
    (split_dir / "wider_face_test_filelist.txt").write_text(
        "".join(r.file_name + "\n" for r in test), encoding="ascii"
    )
    groups = _by_event(test)
    _savemat(
        split_dir / "wider_face_test.mat",
        {
            "event_list": _cell([e for e, _ in groups]),
            "file_list": _cell([_cell([r.name for r in recs]) for _, recs in groups]),
        },
    )
    val = _mat_annotations(records["val"])
    _savemat(Path(eval_gt_path(gt_dir)), val)
    for i, setting in enumerate(SETTINGS):
        _savemat(
            Path(eval_gt_path(gt_dir, setting)), {**val, "gt_list": _gt_list(records["val"], i)}
        )
    (out / "README.txt").write_text(
        "Built-in face dataset generated by ainnoface_d2.builtin_faces "
        f"(version {GENERATOR_VERSION}) in the WIDER FACE layout.\n"
        "Faces: skimage.data.lfw_subset() (Labeled Faces in the Wild, Huang et al.), shipped by\n"
        "scikit-image. Backgrounds: CC0 / public-domain sample images of scikit-image.\n",
        encoding="ascii",
    )
