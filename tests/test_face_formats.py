"""Face datasets of one's own (ainnoface_d2.data.face_formats, ainnoface_d2.data.own_datasets):
the same small dataset written as COCO JSON, YOLO, Pascal VOC and WIDER FACE converts to the same
registered records; the readers' conventions; registration on import; the WIDER FACE evaluation
in the one setting "all"."""

import json
import os
import subprocess
import sys

import ainnoface_d2  # noqa: F401
from ainnoface_d2.data.face_formats import (
    FaceFormatError,
    build_faces_coco,
    read_coco,
    read_voc,
    read_yolo,
)
from ainnoface_d2.data.own_datasets import MANIFEST, register_own_datasets
from ainnoface_d2.evaluation import WiderFaceEvaluator

import numpy as np
import pytest
import torch
from _face_layouts import OPTIONS, SMALL_DATASET, WRITERS, make_dataset
from _scripts import REPO, load_script
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

prepare_faces = load_script("datasets/prepare_faces.py")


def _convert(fmt, tmp, records, images, name, split="val", extra=()):
    annotations = WRITERS[fmt](records, str(tmp / f"src_{fmt}_{split}"))
    argv = ["--format", fmt, "--images", str(images), "--annotations", str(annotations)]
    argv += ["--name", name, "--split", split, "--root", str(tmp / "datasets"), *OPTIONS[fmt]]
    assert prepare_faces.main(argv + list(extra)) == 0
    return annotations


def _expected(records):
    """The records the converter must register, computed from the drawn boxes: clipped to the
    image, ignore regions as iscrowd=1, file order."""
    out = {}
    for rec in records:
        anns = []
        for x1, y1, x2, y2, ignore in rec["boxes"]:
            cx1, cy1 = min(max(x1, 0), rec["width"]), min(max(y1, 0), rec["height"])
            cx2, cy2 = min(max(x2, 0), rec["width"]), min(max(y2, 0), rec["height"])
            anns.append(([cx1, cy1, cx2 - cx1, cy2 - cy1], int(ignore)))
        out[rec["file_name"]] = (rec["width"], rec["height"], anns)
    return out


@pytest.fixture(scope="module")
def four_layouts(tmp_path_factory):
    """The small dataset converted from each layout; ``{fmt: dataset name}`` and the records."""
    tmp = tmp_path_factory.mktemp("layouts")
    images = tmp / "images"
    records = make_dataset(images)
    names = {}
    for fmt in WRITERS:
        names[fmt] = f"layouts_{fmt}"
        _convert(fmt, tmp, records, images, names[fmt])
    registered = register_own_datasets(tmp / "datasets")
    assert sorted(registered) == sorted(f"{n}_val" for n in names.values())
    return tmp, images, records, names


def test_four_layouts_register_the_same_records(four_layouts):
    tmp, images, records, names = four_layouts
    expected = _expected(records)
    for fmt, name in names.items():
        dicts = DatasetCatalog.get(f"{name}_val")
        assert [os.path.relpath(d["file_name"], images) for d in dicts] == list(expected), fmt
        for d in dicts:
            width, height, anns = expected[os.path.relpath(d["file_name"], images)]
            assert (d["width"], d["height"]) == (width, height), fmt
            got = d["annotations"]
            assert [a["iscrowd"] for a in got] == [a[1] for a in anns], (fmt, d["file_name"])
            for a, (bbox, ignore) in zip(got, anns):
                np.testing.assert_allclose(a["bbox"], bbox, atol=0.5, err_msg=fmt)
                assert a["category_id"] == 0  # the one class, "face"
                # What the WIDER FACE evaluator reads: integer boxes, the face / ignore flag.
                assert a["wider_bbox"] == bbox and a["wider_all"] == (not ignore), fmt
            assert [a["wider_index"] for a in got] == list(range(len(got)))
        meta = MetadataCatalog.get(f"{name}_val")
        assert meta.evaluator_type == "wider_face" and meta.thing_classes == ["face"]
        assert tuple(meta.wider_face_settings) == ("all",)
        assert meta.image_root == str(images)


def test_summary_counts_the_clipped_box_and_other_categories(four_layouts):
    tmp = four_layouts[0]
    for fmt, name in four_layouts[3].items():
        manifest = json.loads((tmp / "datasets" / name / MANIFEST).read_text())
        stats = manifest["splits"]["val"]["stats"]
        assert stats["clipped"] == 1 and stats["faces"] == 6 and stats["ignore_regions"] == 1, fmt
        assert stats["faceless_images"] == 1 and stats["images_written"] == 5
        # The writers add one 'person' box per image (YOLO: per label file, and the faceless
        # image has none); WIDER FACE has faces only.
        assert stats["other_categories"] == {"wider": 0, "yolo": 4}.get(fmt, 5), fmt


def test_datasets_register_on_import(four_layouts):
    """A new process that imports ainnoface_d2 finds the converted datasets under
    $DETECTRON2_DATASETS and loads them."""
    tmp = four_layouts[0]
    code = (
        "import ainnoface_d2\n"
        "from detectron2.data import DatasetCatalog as C, MetadataCatalog as M\n"
        "names = sorted(n for n in C.list() if n.startswith('layouts_'))\n"
        "print(names, [len(C.get(n)) for n in names], M.get(names[0]).evaluator_type)"
    )
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp / "datasets"), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    expected = sorted(f"layouts_{f}_val" for f in WRITERS)
    assert out.strip().splitlines()[-1] == f"{expected} {[5] * 4} wider_face"


def _output(boxes, scores):
    inst = Instances((1, 1))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    return {"instances": inst}


def test_wider_face_protocol_all_faces(four_layouts, tmp_path):
    """AP over every face: predictions on ignore regions count neither way; one false positive
    ranked above all six faces gives AP 6/7 (VOC all-point AP: precision 6/7 at every recall)."""
    name = "layouts_coco_val"
    dicts = DatasetCatalog.get(name)

    def run(extra, extra_score, out_dir=None):
        ev = WiderFaceEvaluator(name, output_dir=out_dir, distributed=False)
        for d in dicts:
            boxes, scores = [], []
            for k, a in enumerate(d["annotations"]):
                x, y, w, h = a["bbox"]
                boxes.append([x, y, x + w, y + h])
                # Ignore regions score highest: as false positives they would cost precision.
                scores.append(0.99 if a["iscrowd"] else 0.9 - 0.01 * k)
            if extra and d is dicts[0]:
                boxes.append([140, 95, 159, 119])  # no face there
                scores.append(extra_score)
            ev.process([{"file_name": d["file_name"]}], [_output(boxes, scores)])
        return ev.evaluate()["wider_face"]

    assert run(False, 0) == {"AP_all": pytest.approx(100.0)}
    assert run(True, 1.0)["AP_all"] == pytest.approx(100.0 * 6 / 7)
    result = run(True, 0.01, out_dir=str(tmp_path))  # ranked last: costs nothing
    assert result["AP_all"] == pytest.approx(100.0)
    metrics = json.loads((tmp_path / "wider_face_metrics.json").read_text())
    assert metrics["dataset"] == name and metrics["AP_all"] == pytest.approx(100.0)
    assert {"size_protocol", "scoring_protocol"} <= metrics.keys()
    assert (tmp_path / "wider_face_pr_curves.png").is_file()
    submitted = sorted(p.name for p in (tmp_path / "wider_face_submission").rglob("*.txt"))
    assert submitted == sorted(os.path.basename(r[0])[:-4] + ".txt" for r in SMALL_DATASET)


def test_coco_category_by_name_or_id_and_errors(tmp_path):
    images = tmp_path / "images"
    records = make_dataset(images)
    path = WRITERS["coco"](records, str(tmp_path))
    by_name, other = read_coco(path)
    by_id, _ = read_coco(path, category="3")
    assert other == 5 and [len(i.boxes) for i in by_name] == [len(r["boxes"]) for r in records]
    assert [[(b.x1, b.y2) for b in i.boxes] for i in by_id] == [
        [(b.x1, b.y2) for b in i.boxes] for i in by_name
    ]
    persons, _ = read_coco(path, category="person")
    assert all(len(i.boxes) == 1 for i in persons)
    with pytest.raises(FaceFormatError, match=r"faces\.json: no category .*'dog'.*1: 'person'"):
        read_coco(path, category="dog")


def test_yolo_landmark_lines_and_other_classes(tmp_path):
    images = tmp_path / "images"
    make_dataset(images, SMALL_DATASET[:1])
    labels = tmp_path / "labels" / "0--Parade"
    labels.mkdir(parents=True)
    # yolov5-face: class cx cy w h + 5 landmarks (x y); class 3 is something else.
    (labels / "parade_1.txt").write_text(
        "0 0.25 0.45 0.25 0.4 " + " ".join(["0.3"] * 10) + "\n\n3 0.5 0.5 0.1 0.1\n"
    )
    out, other = read_yolo(images, tmp_path / "labels")
    assert other == 1 and len(out[0].boxes) == 1 and out[0].normalised
    b = out[0].boxes[0]
    assert (b.x1, b.y1, b.x2, b.y2) == pytest.approx((0.125, 0.25, 0.375, 0.65))
    assert b.where.endswith("parade_1.txt:1")


def test_voc_pixel_convention_and_missing_filename(tmp_path):
    """VOC's 1-based inclusive pixel indices become 0-based corners (Detectron2's convention):
    xmin 1 .. xmax 10 covers pixels 0..9, i.e. [0, 10)."""
    ann = tmp_path / "Annotations" / "ev"
    ann.mkdir(parents=True)
    (ann / "a.xml").write_text(
        "<annotation><object><name>face</name><bndbox><xmin>1</xmin><ymin>2</ymin>"
        "<xmax>10</xmax><ymax>20.5</ymax></bndbox></object></annotation>"
    )
    (tmp_path / "images" / "ev").mkdir(parents=True)
    (tmp_path / "images" / "ev" / "a.png").write_bytes(b"")
    out, _ = read_voc(tmp_path / "images", tmp_path / "Annotations")
    assert out[0].file_name == "ev/a.png"  # no <filename>: the image of the same stem
    b = out[0].boxes[0]
    assert (b.x1, b.y1, b.x2, b.y2, b.ignore) == (0, 1, 10, 20.5, False)


def test_border_boxes_from_rounded_decimals_are_not_counted_as_clipped(tmp_path):
    """x2 = 2/3 + 1/3 written with 10 decimals ends 1.5e-10 px beyond a 3-px-wide image: clipped
    to it exactly, but not counted; 0.01 px beyond is."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    make_dataset(images, [("ev/a.jpg", 3, 3, [])])
    (labels / "ev").mkdir(parents=True)
    (labels / "ev" / "a.txt").write_text(
        "0 0.6666666667 0.5 0.6666666667 0.5\n0 0.5033333333 0.5 0.9999999999 0.5\n"
    )
    images_list, _ = read_yolo(images, labels)
    coco, stats = build_faces_coco(images_list, images)
    assert [a["bbox"][0] + a["bbox"][2] for a in coco["annotations"]] == [3.0, 3.0]
    assert stats.clipped == 1
