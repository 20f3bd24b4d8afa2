"""datasets/prepare_faces.py: bad input (one line naming the file and line, non-zero exit),
names that exist, atomic output; a converted dataset used everywhere a dataset name is: training
and evaluation with tools/train_net.py, int8 calibration in tools/export_model.py and
FaceDetector."""

import json
import os
import subprocess
import sys

from ainnoface_d2 import FaceDetector, get_ainnoface_cfg
from ainnoface_d2.cli import run_cli
from ainnoface_d2.data.own_datasets import MANIFEST, register_own_datasets
from ainnoface_d2.engine import Trainer

import pytest
from _builtin_fixture import SMALL_CONFIG, tiny_train_opts
from _face_layouts import OPTIONS, SMALL_DATASET, WRITERS, make_dataset, write_coco
from _scripts import REPO, load_script
from detectron2.utils.logger import setup_logger
from PIL import Image

prepare_faces = load_script("datasets/prepare_faces.py")


def _run(tmp_path, fmt, annotations, name="mine", split="val", images=None, extra=()):
    argv = ["--format", fmt, "--images", str(images or tmp_path / "images")]
    argv += ["--annotations", str(annotations), "--name", name, "--split", split]
    argv += ["--root", str(tmp_path / "datasets"), *extra]
    try:
        return run_cli(prepare_faces.main, argv, prog="prepare_faces.py")
    except SystemExit as e:
        return e.code


def _error(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("prepare_faces.py: error: "), err
    return err


@pytest.fixture
def small(tmp_path):
    return make_dataset(tmp_path / "images")


@pytest.mark.parametrize(
    "fmt, relative, text, where, what",
    [
        ("coco", "faces.json", '{"images": [\n  {"id": 1,}]}', "faces.json:2", "not valid JSON"),
        ("yolo", "labels/0--Parade/parade_1.txt", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n",
         "parade_1.txt:2", "expected 'class cx cy w h'"),
        ("yolo", "labels/0--Parade/parade_1.txt", "0 0.5 0.5 0.2 wide\n", "parade_1.txt:1",
         "expected an integer class and 4 numbers"),
        ("voc", "Annotations/0--Parade/parade_1.xml", "<annotation>\n<object>\n</annotation>",
         "parade_1.xml:3", "not valid XML"),
        ("voc", "Annotations/0--Parade/parade_1.xml",
         "<annotation><object><name>face</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
         "<xmax>9</xmax></bndbox></object></annotation>",
         "parade_1.xml: <object> 1", "<ymax> must be a number"),
        ("wider", "bbx_gt.txt", "0--Parade/parade_1.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n1 2 3\n",
         "bbx_gt.txt:4", "expected a box line"),
    ],
)  # fmt: skip
def test_malformed_annotations_name_file_and_line(
    tmp_path, small, capsys, fmt, relative, text, where, what
):
    annotations = WRITERS[fmt](small, str(tmp_path))
    path = tmp_path / relative
    path.write_text(text)
    assert _run(tmp_path, fmt, annotations, extra=OPTIONS[fmt]) == 2
    err = _error(capsys)
    assert f"{path.parent.name}/{where}" in err or where in err, err
    assert what in err
    assert not (tmp_path / "datasets" / "mine").exists()  # nothing written


def test_missing_and_unreadable_images_are_named(tmp_path, small, capsys):
    coco = write_coco(small, tmp_path / "faces.json")
    missing = tmp_path / "images" / "1--Street" / "street_1.jpg"
    os.remove(missing)
    assert _run(tmp_path, "coco", coco) == 2
    assert f"cannot read image {missing}" in _error(capsys)
    assert _run(tmp_path, "coco", coco, extra=["--skip-missing"]) == 0
    out = capsys.readouterr().out
    assert "4 images (1 skipped as missing" in out
    missing.write_bytes(b"not an image")
    assert _run(tmp_path, "coco", coco, name="other") == 2
    assert f"cannot read image {missing}" in _error(capsys)


def test_yolo_label_without_image_and_ambiguous_images(tmp_path, small, capsys):
    labels = WRITERS["yolo"](small, str(tmp_path))
    stray = tmp_path / "labels" / "1--Street" / "gone.txt"
    stray.write_text("0 0.5 0.5 0.1 0.1\n")
    assert _run(tmp_path, "yolo", labels) == 2
    assert f"{stray}: no image 1--Street/gone." in _error(capsys)
    stray.unlink()
    (tmp_path / "labels" / "1--Street" / "street_1.txt").write_bytes(b"0 0.5 \xff\n")
    assert _run(tmp_path, "yolo", labels) == 2
    assert "street_1.txt: not a UTF-8 text file" in _error(capsys)
    assert _run(tmp_path, "yolo", tmp_path / "images") == 2  # the images folder by mistake
    assert f"{tmp_path / 'images'}: no .txt label files" in _error(capsys)
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "1--Street" / "street_1.png")
    assert _run(tmp_path, "yolo", labels) == 2
    assert "street_1.jpg and 1--Street/street_1.png share the label file" in _error(capsys)


def test_boxes_outside_are_clipped_or_left_out_and_counted(tmp_path, small, capsys):
    records = [dict(r) for r in small]
    # Image 1 is 160x120: one box reaches outside (clipped), one lies beyond it (left out), one
    # has no width (left out).
    records[0]["boxes"] = records[0]["boxes"] + [(170, 10, 190, 30, False), (5, 5, 5, 20, False)]
    coco = write_coco(records, tmp_path / "faces.json")
    stats_file = tmp_path / "stats.json"
    assert _run(tmp_path, "coco", coco, extra=["--stats-json", str(stats_file)]) == 0
    out = capsys.readouterr().out
    assert "1 boxes clipped to the image, 1 outside it and 1 with width or height <= 0" in out
    stats = json.loads(stats_file.read_text())
    assert (stats["clipped"], stats["outside"], stats["degenerate"], stats["faces"]) == (1, 1, 1, 6)


def test_stated_size_must_match_the_image(tmp_path, small, capsys):
    coco = write_coco(small, tmp_path / "faces.json")
    data = json.loads(coco.read_text())
    data["images"][2]["width"] = 400
    coco.write_text(json.dumps(data))
    assert _run(tmp_path, "coco", coco) == 2
    err = _error(capsys)
    assert "faces.json: images[2]: states the size 400x150" in err and "which is 200x150" in err


def test_existing_names_are_not_overwritten(tmp_path, small, capsys):
    coco = write_coco(small, tmp_path / "faces.json")
    assert _run(tmp_path, "coco", coco) == 0
    json_file = tmp_path / "datasets" / "mine" / "annotations" / "mine_val.json"
    manifest = tmp_path / "datasets" / "mine" / MANIFEST
    before = json_file.read_bytes(), manifest.read_bytes()
    assert _run(tmp_path, "coco", coco) == 2
    err = _error(capsys)
    assert "dataset 'mine_val' exists" in err and "pass --overwrite to replace it" in err
    # A failed conversion with --overwrite leaves the dataset as it was.
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert _run(tmp_path, "coco", broken, extra=["--overwrite"]) == 2
    assert "broken.json:1: not valid JSON" in _error(capsys)
    assert (json_file.read_bytes(), manifest.read_bytes()) == before
    assert not [p for p in json_file.parent.iterdir() if p.name != "mine_val.json"]
    # Another split extends the dataset; --overwrite replaces one.
    assert _run(tmp_path, "coco", coco, split="train") == 0
    assert _run(tmp_path, "coco", coco, extra=["--overwrite"]) == 0
    assert sorted(json.loads(manifest.read_text())["splits"]) == ["train", "val"]
    # The names of the built-in datasets are taken.
    assert _run(tmp_path, "coco", coco, name="builtin_faces") == 2
    assert "'builtin_faces_val' is already registered" in _error(capsys)
    assert _run(tmp_path, "coco", coco, name="../elsewhere") == 2
    assert "--name '../elsewhere'" in _error(capsys)


def test_command_line_error_has_no_traceback(tmp_path, small):
    labels = WRITERS["yolo"](small, str(tmp_path))
    bad = tmp_path / "labels" / "0--Parade" / "parade_2.txt"
    bad.write_text("0 0.5 0.5 0.1 0.1\nface 0.5 0.5 0.1 0.1\n")
    cmd = [sys.executable, str(REPO / "datasets" / "prepare_faces.py"), "--format", "yolo"]
    cmd += ["--images", str(tmp_path / "images"), "--annotations", labels, "--name", "x"]
    cmd += ["--split", "train", "--root", str(tmp_path / "datasets")]
    # torch's own deprecation warnings at import are not the converter's output.
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore::FutureWarning"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"prepare_faces.py: error: {bad}:2: expected an integer class and 4 numbers, got "
        "'face 0.5 0.5 0.1 0.1'"
    ]


def test_train_and_evaluate_on_a_converted_dataset(tmp_path):
    """Two training steps on a converted train split, evaluated on the converted val split
    (COCO AP and the WIDER FACE protocol's AP over all faces, with their labelled files); the
    int8 calibration images taken from it by name."""
    root = tmp_path / "datasets"
    for split, seed in (("train", 1), ("val", 2)):
        records = make_dataset(tmp_path / f"images_{split}", SMALL_DATASET, seed=seed)
        labels = WRITERS["yolo"](records, str(tmp_path / split))
        argv = ["--format", "yolo", "--images", str(tmp_path / f"images_{split}")]
        argv += ["--annotations", labels, "--name", "own", "--split", split, "--root", str(root)]
        assert prepare_faces.main(argv + OPTIONS["yolo"]) == 0
    register_own_datasets(root)
    out = tmp_path / "out"
    opts = tiny_train_opts(
        "own",
        out,
        **{"SOLVER.MAX_ITER": 2, "TEST.WIDER_FACE.COCO_EVAL": True},
        **{"TEST.WIDER_FACE.WRITE_SUBMISSION": True},
    )
    cfg = get_ainnoface_cfg(SMALL_CONFIG, opts)
    cfg.freeze()
    setup_logger(str(out), name="ainnoface_d2")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # evaluates DATASETS.TEST at the end
    inference = out / "inference" / "own_val"
    metrics = json.loads((inference / "wider_face_metrics.json").read_text())
    assert metrics["dataset"] == "own_val" and metrics["size_protocol"] == "original"
    assert 0 <= metrics["AP_all"] <= 100 and "AP_easy" not in metrics
    assert len(list((inference / "wider_face_submission").rglob("*.txt"))) == 5
    assert (inference / "coco_instances_results.json").is_file()  # Detectron2's COCO evaluation
    results = trainer._last_eval_results  # what --eval-only returns too (Trainer.test)
    assert results["wider_face"]["AP_all"] == pytest.approx(metrics["AP_all"])
    assert 0 <= results["bbox"]["AP50"] <= 100

    # tools/export_model.py --int8 --calibration-dataset NAME and FaceDetector(calibration=NAME)
    # take their images from here.
    detector = FaceDetector(SMALL_CONFIG, str(out / "model_final.pth"), device="cpu", opts=opts)
    images = detector.calibration_images("own_train", count=5)
    assert [im.shape[:2] for im in images] == [(r[2], r[1]) for r in SMALL_DATASET]
