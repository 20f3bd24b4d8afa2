"""Tests of the WIDER FACE converter (ainnoface_d2.data.wider_face), its CLI
(datasets/prepare_wider_face.py) and the dataset registration (ainnoface_d2.data.datasets).

Counts on the real annotation files (``../shared/widerface`` beside the repository; the tests that
need them skip without it) are checked against its README and against an independent reading of
the official .mat files with scipy.
"""

import json
import logging
from pathlib import Path

import ainnoface_d2  # noqa: F401  (detectron2 compatibility shims first)
from ainnoface_d2.data.datasets import register_wider_face_splits
from ainnoface_d2.data.wider_face import build_coco_split, convert_split, read_image_size
from ainnoface_d2.data.wider_face_format import (
    WiderFaceFormatError,
    parse_bbx_gt,
    parse_filelist,
)

import cv2
import numpy as np
import pytest
import scipy.io
from _scripts import load_script
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.structures import BoxMode
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "widerface"
ATTRS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
BOX_FORMAT = "10 integers (x y w h blur expression illumination invalid occlusion pose)"


def _real(*parts):
    path = SHARED.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is not available (the WIDER FACE files in ../shared/widerface)")
    return path


def _big(file_name):
    # Larger than any WIDER image (the tallest, 50_Celebration_Or_Party_houseparty_50_321, has
    # boxes down to y=8717): nothing is clipped.
    return 10000, 10000


def _cell(items):
    arr = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        arr[i, 0] = item
    return arr


def write_eval_mats(directory, entries, settings=("easy", "medium", "hard")):
    """Write WIDER-eval-style .mat files. entries: [(file_name, boxes, {setting: 1-based list})]."""
    directory.mkdir(parents=True, exist_ok=True)
    events = list(dict.fromkeys(name.split("/")[0] for name, _, _ in entries))
    per_event = {ev: [e for e in entries if e[0].split("/")[0] == ev] for ev in events}
    base = {
        "event_list": _cell([np.array([ev]) for ev in events]),
        "file_list": _cell(
            [
                _cell([np.array([n.split("/")[1][:-4]]) for n, _, _ in per_event[ev]])
                for ev in events
            ]
        ),
        "face_bbx_list": _cell(
            [
                _cell([np.asarray(b, dtype=np.int32).reshape(-1, 4) for _, b, _ in per_event[ev]])
                for ev in events
            ]
        ),
    }
    scipy.io.savemat(directory / "wider_face_val.mat", base)
    for s in settings:
        gt = _cell(
            [
                _cell(
                    [np.asarray(k[s], dtype=np.uint8).reshape(-1, 1) for _, _, k in per_event[ev]]
                )
                for ev in events
            ]
        )
        scipy.io.savemat(directory / f"wider_{s}_val.mat", {**base, "gt_list": gt})


def _mat_boxes(path):
    """{file_name: (boxes (N,4), labels (N,6))} read independently from an official .mat file."""
    mat = scipy.io.loadmat(path)
    out = {}
    for e in range(mat["event_list"].shape[0]):
        event = str(mat["event_list"][e, 0][0])
        for j in range(mat["file_list"][e, 0].shape[0]):
            name = f"{event}/{mat['file_list'][e, 0][j, 0][0]}.jpg"
            boxes = mat["face_bbx_list"][e, 0][j, 0].astype(np.int64)
            labels = np.stack(
                [mat[f"{a}_label_list"][e, 0][j, 0].ravel() for a in ATTRS], axis=1
            ).astype(np.int64)
            out[name] = (boxes, labels)
    return out


def _expected_training(boxes, labels):
    """Training faces in a 10000x10000 image: positive size, invalid=0, not the single all-zero
    placeholder of a faceless image."""
    dummy = len(boxes) == 1 and not boxes.any()
    return (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (labels[:, 3] == 0) & (not dummy)


def _expected_ignore(boxes, labels):
    """Ignore regions written for train in a 10000x10000 image: invalid=1 with a positive size."""
    return (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (labels[:, 3] == 1)


def _anns_by_image(coco):
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    out = {n: [] for n in names.values()}
    for ann in coco["annotations"]:
        out[names[ann["image_id"]]].append(ann)
    return out


# ------------------------------------------------------------------------------------------------
# Real annotation files


@pytest.fixture(scope="module")
def real_train():
    txt = _real("wider_face_split", "wider_face_train_bbx_gt.txt")
    return build_coco_split("train", txt, size_fn=_big)


@pytest.fixture(scope="module")
def real_val():
    txt = _real("wider_face_split", "wider_face_val_bbx_gt.txt")
    _real("ground_truth", "wider_face_val.mat")
    return build_coco_split("val", txt, size_fn=_big, eval_gt_dir=SHARED / "ground_truth")


def test_real_train_counts(real_train):
    coco, stats = real_train
    # README "Measured counts".
    assert stats.images == len(coco["images"]) == 12880
    assert stats.box_lines == 159424
    assert stats.faces == 159420
    assert stats.faceless_images == 4
    assert stats.attribute_sums == {
        "blur": 232447,
        "expression": 1845,
        "illumination": 8134,
        "invalid": 2399,
        "occlusion": 99290,
        "pose": 6042,
    }
    # README "Gotchas": 23 boxes with w<=0 and 16 with h<=0 in train.
    assert (stats.nonpositive_width, stats.nonpositive_height) == (23, 16)

    # Independent count from wider_face_train.mat.
    mat = _mat_boxes(_real("wider_face_split", "wider_face_train.mat"))
    assert sorted(mat) == sorted(im["file_name"] for im in coco["images"])
    all_boxes = np.concatenate([b for b, _ in mat.values()])
    assert len(all_boxes) == 159424
    n_train = sum(int(_expected_training(b, lab).sum()) for b, lab in mat.values())
    n_dummy = sum(1 for b, _ in mat.values() if len(b) == 1 and not b.any())
    n_degenerate = sum(
        int(((b[:, 2] <= 0) | (b[:, 3] <= 0)).sum()) for b, _ in mat.values() if b.any()
    )
    assert n_dummy == 4
    n_invalid = sum(int(_expected_ignore(b, lab).sum()) for b, lab in mat.values())
    assert stats.training_faces == n_train
    assert stats.ignore_annotations == n_invalid
    assert len(coco["annotations"]) == stats.annotations == n_train + n_invalid
    assert stats.not_training == {
        "dummy": 4,
        "degenerate": n_degenerate,
        "invalid": 159424 - 4 - n_degenerate - n_train,
        "outside": 0,
    }
    assert stats.not_training["invalid"] <= 2399
    assert stats.not_training["invalid"] == n_invalid  # every invalid face has an area
    assert stats.clipped == 0

    # Every written box is the .mat's training or invalid box, in file order, with its
    # attributes; the invalid ones are ignore regions (iscrowd=1).
    for name, anns in _anns_by_image(coco).items():
        boxes, labels = mat[name]
        train, ignore = _expected_training(boxes, labels), _expected_ignore(boxes, labels)
        written = train | ignore
        assert [a["bbox"] for a in anns] == boxes[written].astype(float).tolist(), name
        assert [[a[k] for k in ATTRS] for a in anns] == labels[written].tolist(), name
        assert [a["iscrowd"] for a in anns] == ignore[written].astype(int).tolist(), name
        assert all(a["area"] == a["bbox"][2] * a["bbox"][3] for a in anns)
    assert [a["id"] for a in coco["annotations"]] == list(range(1, n_train + n_invalid + 1))


def test_real_val_counts(real_val):
    coco, stats = real_val
    assert stats.images == len(coco["images"]) == 3226
    assert stats.box_lines == len(coco["annotations"]) == 39708
    assert stats.faces == 39704
    assert stats.faceless_images == 4
    assert stats.attribute_sums == {
        "blur": 57663,
        "expression": 400,
        "illumination": 2298,
        "invalid": 585,
        "occlusion": 24607,
        "pose": 1655,
    }
    assert (stats.nonpositive_width, stats.nonpositive_height) == (9, 6)

    anns = coco["annotations"]
    kept = {s: [a for a in anns if a[f"wider_{s}"]] for s in ("easy", "medium", "hard")}
    assert {s: len(v) for s, v in kept.items()} == {"easy": 7211, "medium": 13319, "hard": 31958}
    assert {s: len({a["image_id"] for a in v}) for s, v in kept.items()} == {
        "easy": 2604,
        "medium": 3019,
        "hard": 3219,
    }
    assert stats.eval_kept == {"easy": 7211, "medium": 13319, "hard": 31958}
    assert stats.eval_images_with_kept == {"easy": 2604, "medium": 3019, "hard": 3219}
    for a in anns:
        assert a["wider_easy"] <= a["wider_medium"] <= a["wider_hard"]
    assert not any(a["invalid"] for a in kept["hard"])
    assert sum(a["invalid"] for a in anns) == 585

    # Independent: the official .mat boxes, unmodified, one annotation per box in order.
    mat = _mat_boxes(_real("ground_truth", "wider_face_val.mat"))
    n_train = 0
    for name, per_image in _anns_by_image(coco).items():
        boxes, labels = mat[name]
        assert [a["wider_index"] for a in per_image] == list(range(len(boxes)))
        assert [a["wider_bbox"] for a in per_image] == boxes.tolist()
        keep = _expected_training(boxes, labels)
        assert [a["iscrowd"] for a in per_image] == (~keep).astype(int).tolist()
        n_train += int(keep.sum())
    assert stats.training_faces == n_train
    # 4 placeholders + 585 invalid + the degenerate valid ones are iscrowd=1.
    assert sum(stats.not_training.values()) == 39708 - n_train

    # README: the negative-width Hard face.
    image_id = next(
        im["id"]
        for im in coco["images"]
        if im["file_name"] == "39--Ice_Skating/39_Ice_Skating_iceskiing_39_583.jpg"
    )
    neg = [a for a in anns if a["image_id"] == image_id and a["wider_bbox"][2] < 0]
    assert len(neg) == 1
    assert neg[0]["wider_bbox"] == [1026, 474, -2, 23]
    assert neg[0]["wider_index"] == 7  # txt line 34471 = 34462 (path) + 2 + 7
    assert neg[0]["bbox"] == [1026.0, 474.0, 0.0, 23.0]
    assert neg[0]["iscrowd"] == 1 and neg[0]["wider_hard"]


def test_real_test_filelist():
    names = parse_filelist(_real("wider_face_split", "wider_face_test_filelist.txt"))
    assert len(names) == 16097
    mat = scipy.io.loadmat(_real("wider_face_split", "wider_face_test.mat"))
    expected = [
        f"{mat['event_list'][e, 0][0]}/{mat['file_list'][e, 0][j, 0][0]}.jpg"
        for e in range(mat["event_list"].shape[0])
        for j in range(mat["file_list"][e, 0].shape[0])
    ]
    assert names == expected


def _real_entry(txt, file_name):
    lines = Path(txt).read_text().splitlines()
    i = lines.index(file_name)
    return "\n".join(lines[i : i + 2 + int(lines[i + 1])]) + "\n"


def test_clipping_on_a_real_entry(tmp_path):
    name = "0--Parade/0_Parade_Parade_0_901.jpg"
    entry = _real_entry(_real("wider_face_split", "wider_face_val_bbx_gt.txt"), name)
    # 7 399 201 342 / 283 680 164 208 / 712 351 292 374
    assert entry.splitlines()[2].split()[:4] == ["7", "399", "201", "342"]
    txt = tmp_path / "val.txt"
    txt.write_text(entry)
    coco, stats = build_coco_split("val", txt, size_fn=lambda f: (700, 690))
    anns = coco["annotations"]
    # Clip x to [0, 700], y to [0, 690]:
    # box 0: y2 = 399 + 342 = 741 -> 690, h = 690 - 399 = 291
    # box 1: y2 = 680 + 208 = 888 -> 690, h = 10
    # box 2: x = 712 >= 700: nothing left, x1 = x2 = 700; y2 = 725 -> 690, h = 339
    assert [a["bbox"] for a in anns] == [
        [7.0, 399.0, 201.0, 291.0],
        [283.0, 680.0, 164.0, 10.0],
        [700.0, 351.0, 0.0, 339.0],
    ]
    assert [a["area"] for a in anns] == [201.0 * 291, 164.0 * 10, 0.0]
    assert [a["iscrowd"] for a in anns] == [0, 0, 1]
    assert [a["wider_bbox"] for a in anns] == [
        [7, 399, 201, 342],
        [283, 680, 164, 208],
        [712, 351, 292, 374],
    ]
    assert stats.clipped == 2
    assert stats.not_training["outside"] == 1

    # As train, the box outside the image is dropped (it is not invalid).
    coco, stats = build_coco_split("train", txt, size_fn=lambda f: (700, 690))
    assert [a["bbox"] for a in coco["annotations"]] == [
        [7.0, 399.0, 201.0, 291.0],
        [283.0, 680.0, 164.0, 10.0],
    ]


# ------------------------------------------------------------------------------------------------
# Hand-written files: every quirk


QUIRKS_TRAIN = """0--Parade/a.jpg
0
0 0 0 0 0 0 0 0 0 0
0--Parade/b.jpg
0
1--Handshaking/c.jpg
7
10 10 20 20 0 0 0 0 0 0
30 30 0 10 1 0 0 0 0 0
30 30 10 0 0 0 0 0 0 0
5 5 10 10 0 0 0 1 0 0
90 80 20 30 2 1 1 0 2 1
120 10 5 5 0 0 0 0 0 0
-5 -6 10 10 1 0 0 0 1 0
"""
# c.jpg is 100x100. Training faces: box 0; box 4 clipped to [90, 80, 10, 20]; box 6 clipped to
# [0, 0, 5, 4]. Box 1 w=0 and box 2 h=0 are degenerate, box 3 invalid, box 5 outside (x >= 100).
C_BBOXES = [
    [10.0, 10.0, 20.0, 20.0],
    [30.0, 30.0, 0.0, 10.0],
    [30.0, 30.0, 10.0, 0.0],
    [5.0, 5.0, 10.0, 10.0],
    [90.0, 80.0, 10.0, 20.0],
    [100.0, 10.0, 0.0, 5.0],
    [0.0, 0.0, 5.0, 4.0],
]
C = "1--Handshaking/c.jpg"
C_TRAINING = [True, False, False, False, True, False, True]
# Train writes the training faces (iscrowd=0) and the invalid face, box 3, as an ignore region.
C_TRAIN_WRITTEN = [True, False, False, True, True, False, True]


def _sizes(file_name):
    return {"0--Parade/a.jpg": (64, 48), "0--Parade/b.jpg": (30, 40)}.get(file_name, (100, 100))


def test_train_quirks(tmp_path):
    txt = tmp_path / "train.txt"
    txt.write_text(QUIRKS_TRAIN)
    coco, stats = build_coco_split("train", txt, size_fn=_sizes)
    assert coco["images"] == [
        {"id": 1, "file_name": "0--Parade/a.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "0--Parade/b.jpg", "width": 30, "height": 40},
        {"id": 3, "file_name": "1--Handshaking/c.jpg", "width": 100, "height": 100},
    ]
    anns = coco["annotations"]
    assert [a["bbox"] for a in anns] == [b for b, t in zip(C_BBOXES, C_TRAIN_WRITTEN) if t]
    assert [a["id"] for a in anns] == [1, 2, 3, 4]
    assert all(a["image_id"] == 3 and a["category_id"] == 1 for a in anns)
    assert [a["iscrowd"] for a in anns] == [0, 1, 0, 0]
    assert [a["area"] for a in anns] == [400.0, 100.0, 200.0, 20.0]
    assert [[a[k] for k in ATTRS] for a in anns] == [
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [2, 1, 1, 0, 2, 1],
        [1, 0, 0, 0, 1, 0],
    ]
    assert "wider_index" not in anns[0]
    assert coco["categories"] == [{"id": 1, "name": "face"}]
    assert stats.images == 3
    assert stats.faceless_images == 2
    assert stats.box_lines == 8  # a's placeholder line + c's 7 (b has none)
    assert stats.faces == 7
    assert stats.training_faces == 3
    assert stats.ignore_annotations == 1 and stats.annotations == 4
    assert stats.not_training == {"dummy": 2, "degenerate": 2, "invalid": 1, "outside": 1}
    assert stats.clipped == 2
    # 2 placeholders + box 1 (w=0); 2 placeholders + box 2 (h=0)
    assert (stats.nonpositive_width, stats.nonpositive_height) == (3, 3)
    assert stats.attribute_sums == {
        "blur": 4,
        "expression": 1,
        "illumination": 1,
        "invalid": 1,
        "occlusion": 3,
        "pose": 1,
    }


def _val_text():
    # val style: a faceless image is count 1 + the all-zero line; CRLF line endings are accepted.
    text = QUIRKS_TRAIN.replace("0--Parade/a.jpg\n0\n", "0--Parade/a.jpg\n1\n")
    return text.replace("\n", "\r\n")


def test_val_quirks_with_eval_ground_truth(tmp_path):
    txt = tmp_path / "val.txt"
    txt.write_text(_val_text(), newline="")
    c_boxes = [[int(v) for v in line.split()[:4]] for line in QUIRKS_TRAIN.splitlines()[7:]]
    c_boxes[1][2] = -3  # the .mat keeps a negative width that the txt writes as 0
    zero = [[0, 0, 0, 0]]
    write_eval_mats(
        tmp_path / "gt",
        [
            ("0--Parade/a.jpg", zero, {"easy": [], "medium": [], "hard": []}),
            ("0--Parade/b.jpg", zero, {"easy": [], "medium": [], "hard": []}),
            ("1--Handshaking/c.jpg", c_boxes, {"easy": [1], "medium": [1, 5], "hard": [1, 5, 7]}),
            (
                "1--Handshaking/not_in_txt.jpg",
                [[1, 2, 3, 4]],
                {s: [1] for s in ("easy", "medium", "hard")},
            ),
        ],
    )
    coco, stats = build_coco_split("val", txt, size_fn=_sizes, eval_gt_dir=tmp_path / "gt")
    by_image = _anns_by_image(coco)
    for name in ("0--Parade/a.jpg", "0--Parade/b.jpg"):
        (dummy,) = by_image[name]
        assert dummy["bbox"] == [0.0, 0.0, 0.0, 0.0] and dummy["iscrowd"] == 1
        assert dummy["wider_index"] == 0 and dummy["wider_bbox"] == [0, 0, 0, 0]
        assert not (dummy["wider_easy"] or dummy["wider_medium"] or dummy["wider_hard"])
    c = by_image["1--Handshaking/c.jpg"]
    assert [a["bbox"] for a in c] == C_BBOXES
    assert [a["iscrowd"] for a in c] == [0 if t else 1 for t in C_TRAINING]
    assert [a["wider_index"] for a in c] == list(range(7))
    assert [a["wider_bbox"] for a in c] == c_boxes
    assert [a["wider_easy"] for a in c] == [True] + [False] * 6
    assert [a["wider_medium"] for a in c] == [True, False, False, False, True, False, False]
    assert [a["wider_hard"] for a in c] == [True, False, False, False, True, False, True]
    assert stats.box_lines == 8  # a: 1 (count 1 + all-zero line), b: none, c: 7
    assert stats.not_training == {"dummy": 2, "degenerate": 2, "invalid": 1, "outside": 1}
    assert stats.eval_kept == {"easy": 1, "medium": 2, "hard": 3}
    assert stats.eval_images_with_kept == {"easy": 1, "medium": 1, "hard": 1}
    assert len(coco["annotations"]) == 9


def test_val_without_eval_ground_truth(tmp_path, caplog):
    txt = tmp_path / "val.txt"
    txt.write_text(_val_text(), newline="")
    with caplog.at_level(logging.WARNING, logger="ainnoface_d2.data.wider_face"):
        coco, stats = build_coco_split("val", txt, size_fn=_sizes, eval_gt_dir=tmp_path / "none")
    assert "No official evaluation ground truth" in caplog.text
    assert len(coco["annotations"]) == 9
    c = _anns_by_image(coco)["1--Handshaking/c.jpg"]
    assert [a["wider_bbox"] for a in c][1] == [30, 30, 0, 10]  # from the txt
    assert not any(a[f"wider_{s}"] for a in coco["annotations"] for s in ("easy", "medium", "hard"))


def test_val_with_some_eval_settings_missing(tmp_path, caplog):
    txt = tmp_path / "val.txt"
    txt.write_text("0--Parade/a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n5 6 7 8 0 0 0 0 0 0\n")
    write_eval_mats(
        tmp_path / "gt",
        [("0--Parade/a.jpg", [[1, 2, 3, 4], [5, 6, 7, 8]], {"easy": [2]})],
        ("easy",),
    )
    with caplog.at_level(logging.WARNING, logger="ainnoface_d2.data.wider_face"):
        coco, _ = build_coco_split("val", txt, size_fn=_sizes, eval_gt_dir=tmp_path / "gt")
    assert "lacks wider_medium/hard_val.mat" in caplog.text
    flags = [[a[f"wider_{s}"] for s in ("easy", "medium", "hard")] for a in coco["annotations"]]
    assert flags == [[False, False, False], [True, False, False]]


def test_val_txt_and_eval_ground_truth_must_agree(tmp_path):
    txt = tmp_path / "val.txt"
    txt.write_text("0--Parade/a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n5 6 7 8 0 0 0 0 0 0\n")
    keep = {"easy": [1], "medium": [1], "hard": [1]}
    write_eval_mats(tmp_path / "one", [("0--Parade/a.jpg", [[1, 2, 3, 4]], keep)])
    with pytest.raises(WiderFaceFormatError) as e:
        build_coco_split("val", txt, size_fn=_sizes, eval_gt_dir=tmp_path / "one")
    mat = tmp_path / "one" / "wider_face_val.mat"
    assert str(e.value) == f"{txt}:1: '0--Parade/a.jpg' has 2 boxes but {mat} has 1"

    write_eval_mats(tmp_path / "diff", [("0--Parade/a.jpg", [[1, 2, 3, 4], [5, 6, 9, 8]], keep)])
    with pytest.raises(
        WiderFaceFormatError,
        match=r"val\.txt:4: box 1 of '0--Parade/a\.jpg' is "
        r"\[5, 6, 7, 8\] but .*wider_face_val\.mat has \[5, 6, 9, 8\]",
    ):
        build_coco_split("val", txt, size_fn=_sizes, eval_gt_dir=tmp_path / "diff")

    write_eval_mats(tmp_path / "other", [("0--Parade/z.jpg", [[1, 2, 3, 4]], keep)])
    with pytest.raises(
        WiderFaceFormatError,
        match=r"val\.txt:1: '0--Parade/a\.jpg' is not in the "
        r"official ground truth .*wider_face_val\.mat",
    ):
        build_coco_split("val", txt, size_fn=_sizes, eval_gt_dir=tmp_path / "other")


def test_test_split_has_images_only(tmp_path):
    txt = tmp_path / "list.txt"
    txt.write_text("0--Parade/a.jpg\n1--Handshaking/c.jpg\n\n")
    coco, stats = build_coco_split("test", txt, size_fn=_sizes)
    assert coco["images"] == [
        {"id": 1, "file_name": "0--Parade/a.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "1--Handshaking/c.jpg", "width": 100, "height": 100},
    ]
    assert coco["annotations"] == []
    # The stats of a file list say nothing about boxes.
    assert stats.as_dict() == {
        "split": "test",
        "images": 2,
        "images_written": 2,
        "missing_images": 0,
    }


# ------------------------------------------------------------------------------------------------
# Malformed files

BOX = "1 2 3 4 0 0 0 0 0 0"

MALFORMED = [
    ("", "1: expected an image path, the file is empty"),
    ("a.jpg\n0\n", "1: expected an image path '<event>/<name>.jpg', got 'a.jpg'"),
    (
        "0--Parade/a.png\n0\n",
        "1: expected an image path '<event>/<name>.jpg', got '0--Parade/a.png'",
    ),
    (
        "0--Parade/a.jpg\nabc\n",
        "2: expected the number of boxes of '0--Parade/a.jpg' (a non-negative integer), got 'abc'",
    ),
    (
        "0--Parade/a.jpg\n-1\n",
        "2: expected the number of boxes of '0--Parade/a.jpg' (a non-negative integer), got '-1'",
    ),
    (
        "0--Parade/a.jpg\n",
        "1: file ended early: expected the number of boxes of '0--Parade/a.jpg' (line 1)",
    ),
    (
        f"0--Parade/a.jpg\n3\n{BOX}\n",
        "3: file ended early: '0--Parade/a.jpg' (line 1) declares 3 boxes, found 1",
    ),
    (
        "0--Parade/a.jpg\n1\n1 2 3 4 0 0 0 0 0\n",
        f"3: expected a box line of {BOX_FORMAT} for '0--Parade/a.jpg', "
        "got 9 fields: '1 2 3 4 0 0 0 0 0'",
    ),
    (
        "0--Parade/a.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n",
        f"3: expected a box line of {BOX_FORMAT}, got non-integer 'x'",
    ),
    (
        "0--Parade/a.jpg\n1\n1 2 3.5 4 0 0 0 0 0 0\n",
        f"3: expected a box line of {BOX_FORMAT}, got non-integer '3.5'",
    ),
    (
        "0--Parade/a.jpg\n1\n1 2 3 4 3 0 0 0 0 0\n",
        "3: attribute blur must be an integer in [0, 2], got 3",
    ),
    (
        "0--Parade/a.jpg\n1\n1 2 3 4 0 0 0 0 0 -1\n",
        "3: attribute pose must be an integer in [0, 1], got -1",
    ),
    (
        f"0--Parade/a.jpg\n2\n{BOX}\n0--Parade/b.jpg\n1\n{BOX}\n",
        f"4: expected a box line of {BOX_FORMAT} for '0--Parade/a.jpg', "
        "got an image path: '0--Parade/b.jpg'",
    ),
    (
        f"0--Parade/a.jpg\n1\n{BOX}\n{BOX}\n",
        f"4: expected an image path '<event>/<name>.jpg', got '{BOX}'",
    ),
    (
        f"0--Parade/a.jpg\n0\n{BOX}\n",
        "3: expected the all-zero placeholder line that follows a box count of 0 for "
        f"'0--Parade/a.jpg', got '{BOX}'",
    ),
    (
        f"0--Parade/a.jpg\n1\n{BOX}\n\n0--Parade/b.jpg\n1\n{BOX}\n",
        "4: expected an image path '<event>/<name>.jpg', got ''",
    ),
    (
        f"0--Parade/a.jpg\n1\n{BOX}\n0--Parade/a.jpg\n1\n{BOX}\n",
        "4: image '0--Parade/a.jpg' is listed twice (first at line 1)",
    ),
]


@pytest.mark.parametrize("text,message", MALFORMED)
def test_malformed_bbx_gt(tmp_path, text, message):
    path = tmp_path / "wider_face_train_bbx_gt.txt"
    path.write_text(text)
    with pytest.raises(WiderFaceFormatError) as e:
        parse_bbx_gt(path)
    assert str(e.value) == f"{path}:{message}"
    assert isinstance(e.value, ValueError)


def test_malformed_filelist(tmp_path):
    path = tmp_path / "wider_face_test_filelist.txt"
    path.write_text("0--Parade/a.jpg\n0--Parade/b\n")
    with pytest.raises(WiderFaceFormatError) as e:
        parse_filelist(path)
    assert (
        str(e.value) == f"{path}:2: expected an image path '<event>/<name>.jpg', got '0--Parade/b'"
    )


# ------------------------------------------------------------------------------------------------
# Missing images, --check, images on disk


def _no_b(file_name):
    if file_name == "0--Parade/b.jpg":
        raise FileNotFoundError(f"no such image: {file_name}")
    return _sizes(file_name)


def test_missing_image(tmp_path, caplog):
    txt = tmp_path / "train.txt"
    txt.write_text(QUIRKS_TRAIN)
    with pytest.raises(FileNotFoundError, match=r"'0--Parade/b\.jpg' listed in .*train\.txt:4"):
        build_coco_split("train", txt, size_fn=_no_b)
    with caplog.at_level(logging.WARNING, logger="ainnoface_d2.data.wider_face"):
        coco, stats = build_coco_split("train", txt, size_fn=_no_b, skip_missing=True)
    assert "Skipping 0--Parade/b.jpg" in caplog.text
    assert [im["file_name"] for im in coco["images"]] == ["0--Parade/a.jpg", "1--Handshaking/c.jpg"]
    assert [im["id"] for im in coco["images"]] == [1, 2]
    assert {a["image_id"] for a in coco["annotations"]} == {2}
    assert stats.missing_images == 1 and stats.images_written == 2


def test_check_mode_reports_every_problem(tmp_path):
    txt = tmp_path / "train.txt"
    txt.write_text(QUIRKS_TRAIN)

    def sizes(file_name):
        if file_name.endswith(("a.jpg", "b.jpg")):
            raise FileNotFoundError(f"no such image: {file_name}")
        return 100, 100

    problems = []
    _, stats = build_coco_split("train", txt, size_fn=sizes, problems=problems)
    assert problems == [
        "0--Parade/a.jpg: cannot read the image size: no such image: 0--Parade/a.jpg",
        "0--Parade/b.jpg: cannot read the image size: no such image: 0--Parade/b.jpg",
        # Boxes of no width or height are not faces: counted as problems, then dropped.
        "1--Handshaking/c.jpg: box 1 [30, 30, 0, 10] (line 9) has width or height <= 0: not a "
        "face (dropped)",
        "1--Handshaking/c.jpg: box 2 [30, 30, 10, 0] (line 10) has width or height <= 0: not a "
        "face (dropped)",
        "1--Handshaking/c.jpg: box 4 [90, 80, 20, 30] (line 12) reaches outside the 100x100 image",
        "1--Handshaking/c.jpg: box 5 [120, 10, 5, 5] (line 13) reaches outside the 100x100 image"
        " entirely",
        "1--Handshaking/c.jpg: box 6 [-5, -6, 10, 10] (line 14) reaches outside the 100x100 image",
    ]
    assert stats.missing_images == 2


def _write_jpegs(image_root):
    """Two plain JPEGs (cv2) and one stored 40x20 with EXIF orientation 6 (shown rotated: 20x40)."""
    (image_root / "0--Parade").mkdir(parents=True)
    (image_root / "1--Handshaking").mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(image_root / "0--Parade/a.jpg"), rng.integers(0, 255, (48, 64, 3), np.uint8))
    cv2.imwrite(str(image_root / "0--Parade/b.jpg"), rng.integers(0, 255, (40, 30, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 255, (20, 40, 3), np.uint8)).save(
        image_root / "1--Handshaking/c.jpg", exif=exif
    )
    return {
        "0--Parade/a.jpg": (64, 48),
        "0--Parade/b.jpg": (30, 40),
        "1--Handshaking/c.jpg": (20, 40),
    }


def test_sizes_from_jpeg_headers(tmp_path):
    image_root = tmp_path / "images"
    expected = _write_jpegs(image_root)
    for name, (w, h) in expected.items():
        assert read_image_size(image_root / name) == (w, h)
        # What the data loader will see.
        assert read_image(str(image_root / name), format="BGR").shape == (h, w, 3)
    with Image.open(image_root / "1--Handshaking/c.jpg") as img:
        assert img.size == (40, 20)  # stored size, before the EXIF rotation

    txt = tmp_path / "train.txt"
    txt.write_text(QUIRKS_TRAIN)
    out = tmp_path / "annotations" / "wider_face_train.json"
    stats = convert_split("train", txt, out, image_root=image_root)
    coco = json.loads(out.read_text())
    assert {im["file_name"]: (im["width"], im["height"]) for im in coco["images"]} == expected
    # c.jpg is 20x40: box 0 [10,10,20,20] -> [10,10,10,20]; box 3 (invalid) stays [5,5,10,10];
    # box 4 (x=90) and box 5 lie outside; box 6 [-5,-6,10,10] -> [0,0,5,4].
    assert [a["bbox"] for a in coco["annotations"]] == [
        [10.0, 10.0, 10.0, 20.0],
        [5.0, 5.0, 10.0, 10.0],
        [0.0, 0.0, 5.0, 4.0],
    ]
    assert [a["iscrowd"] for a in coco["annotations"]] == [0, 1, 0]
    assert stats.not_training["outside"] == 2 and stats.clipped == 2

    (image_root / "0--Parade/b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FileNotFoundError, match=r"'0--Parade/b\.jpg'"):
        build_coco_split("train", txt, image_root=image_root)


# ------------------------------------------------------------------------------------------------
# CLI and registration


def _load_cli():
    return load_script("datasets/prepare_wider_face.py")


def _make_root(root):
    (root / "wider_face_split").mkdir(parents=True)
    (root / "wider_face_split/wider_face_train_bbx_gt.txt").write_text(QUIRKS_TRAIN)
    (root / "wider_face_split/wider_face_val_bbx_gt.txt").write_text(_val_text())
    sizes = _write_jpegs(root / "WIDER_train" / "images")
    _write_jpegs(root / "WIDER_val" / "images")
    return sizes


def test_cli_convert_and_check(tmp_path, capsys):
    cli = _load_cli()
    root = tmp_path / "wider_face"
    sizes = _make_root(root)
    sizes_json = tmp_path / "sizes.json"
    # Sizes from the JSON file, not the images: c.jpg is 20x40 on disk, 100x100 in the file.
    assert sizes["1--Handshaking/c.jpg"] == (20, 40)
    sizes_json.write_text(json.dumps({**{k: list(v) for k, v in sizes.items()}, C: [100, 100]}))

    stats_json = tmp_path / "stats.json"
    argv = ["--root", str(root), "--splits", "train", "val", "--image-sizes", str(sizes_json)]
    assert cli.main(argv + ["--stats-json", str(stats_json)]) == 0
    stats = json.loads(stats_json.read_text())
    assert stats["train"]["not_training"] == {
        "dummy": 2,
        "degenerate": 2,
        "invalid": 1,
        "outside": 1,
    }
    train = json.loads((root / "annotations/wider_face_train.json").read_text())
    val = json.loads((root / "annotations/wider_face_val.json").read_text())
    assert len(train["annotations"]) == 4 and len(val["annotations"]) == 9
    assert stats["train"]["ignore_annotations"] == 1 and stats["train"]["training_faces"] == 3
    assert train["images"][2] == {"id": 3, "file_name": C, "width": 100, "height": 100}
    out = capsys.readouterr().out
    assert (
        f"train: wrote {root / 'annotations/wider_face_train.json'} (3 images, 4 annotations" in out
    )
    assert f"val: wrote {root / 'annotations/wider_face_val.json'} (3 images, 9 annotations" in out

    assert cli.main(["--root", str(root), "--splits", "train", "--check"]) == 0
    (root / "WIDER_train/images/0--Parade/b.jpg").unlink()
    before = (root / "annotations/wider_face_train.json").stat().st_mtime_ns
    assert cli.main(["--root", str(root), "--splits", "train", "--check"]) == 1
    out = capsys.readouterr().out
    assert "train: 0--Parade/b.jpg: cannot read the image size" in out
    assert "train: 1--Handshaking/c.jpg: box 4 [90, 80, 20, 30] (line 12)" in out
    assert (root / "annotations/wider_face_train.json").stat().st_mtime_ns == before
    assert cli.main(["--root", str(root), "--splits", "train"]) == 1
    assert cli.main(["--root", str(root), "--splits", "train", "--skip-missing"]) == 0
    train = json.loads((root / "annotations/wider_face_train.json").read_text())
    assert len(train["images"]) == 2


def test_registration(tmp_path):
    root = tmp_path / "wider_face"
    _make_root(root)
    prefix = f"wf_test_{tmp_path.name}"
    names = register_wider_face_splits(prefix, root, splits=("train", "val"))
    assert names == [f"{prefix}_train", f"{prefix}_val"]
    meta = MetadataCatalog.get(f"{prefix}_val")
    assert meta.thing_classes == ["face"] and meta.evaluator_type == "wider_face"
    assert meta.json_file == str(root / "annotations/wider_face_val.json")
    assert meta.image_root == str(root / "WIDER_val/images")

    with pytest.raises(FileNotFoundError, match=r"python datasets/prepare_wider_face\.py --root "):
        DatasetCatalog.get(f"{prefix}_val")

    write_eval_mats(
        root / "eval_tools/ground_truth",
        [
            ("0--Parade/a.jpg", [[0, 0, 0, 0]], {"easy": [], "medium": [], "hard": []}),
            ("0--Parade/b.jpg", [[0, 0, 0, 0]], {"easy": [], "medium": [], "hard": []}),
            (
                "1--Handshaking/c.jpg",
                [[int(v) for v in line.split()[:4]] for line in QUIRKS_TRAIN.splitlines()[7:]],
                {"easy": [1], "medium": [1, 5], "hard": [1, 5, 7]},
            ),
        ],
    )
    from ainnoface_d2.data.wider_face import convert_wider_face

    convert_wider_face(root, ("train", "val"))
    dicts = DatasetCatalog.get(f"{prefix}_val")
    assert [d["file_name"] for d in dicts] == [
        str(root / "WIDER_val/images" / n)
        for n in ("0--Parade/a.jpg", "0--Parade/b.jpg", "1--Handshaking/c.jpg")
    ]
    assert [(d["width"], d["height"]) for d in dicts] == [(64, 48), (30, 40), (20, 40)]
    c = dicts[2]["annotations"]
    assert len(c) == 7
    assert all(a["bbox_mode"] == BoxMode.XYWH_ABS and a["category_id"] == 0 for a in c)
    assert [a["wider_hard"] for a in c] == [True, False, False, False, True, False, True]
    assert [a["wider_index"] for a in c] == list(range(7))
    assert c[4]["wider_bbox"] == [90, 80, 20, 30] and c[4]["blur"] == 2 and c[4]["pose"] == 1
    assert [a["iscrowd"] for a in c] == [0, 1, 1, 1, 1, 1, 0]  # box 4 lies outside the 20x40 image
    train = DatasetCatalog.get(f"{prefix}_train")
    assert [len(d["annotations"]) for d in train] == [0, 0, 3]
    assert [a["iscrowd"] for a in train[2]["annotations"]] == [0, 1, 0]  # box 3 is invalid
    assert set(train[2]["annotations"][0]) >= set(ATTRS)

    # Registering again is harmless; a different location for the same name is refused.
    assert register_wider_face_splits(prefix, root, splits=("train",)) == [f"{prefix}_train"]
    with pytest.raises(ValueError, match="already registered"):
        register_wider_face_splits(prefix, tmp_path / "elsewhere", splits=("train",))


def test_builtin_names_registered():
    import ainnoface_d2.data.datasets as ds

    for name in (
        "wider_face_train",
        "wider_face_val",
        "wider_face_test",
        "builtin_faces_train",
        "builtin_faces_val",
    ):
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "wider_face" and meta.thing_classes == ["face"]
    assert MetadataCatalog.get("builtin_faces_val").json_file == str(
        Path(ds.datasets_root()) / "builtin_faces" / "annotations" / "wider_face_val.json"
    )
