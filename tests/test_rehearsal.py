"""The WIDER FACE rehearsal (``tools/rehearse_wider_face.py``): its stand-in images follow the real
annotation files, and a small run of the whole pipeline (render, convert, loader, training,
inference, official evaluation) completes. Needs ``../shared/widerface`` (skipped without)."""

import json
from pathlib import Path

import numpy as np
import pytest
from _builtin_fixture import TINY_MODEL_OPTS
from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]
WIDER = REPO.parent / "shared" / "widerface"
VAL_TXT = WIDER / "wider_face_split" / "wider_face_val_bbx_gt.txt"
pytestmark = pytest.mark.skipif(not VAL_TXT.is_file(), reason="needs ../shared/widerface")


@pytest.fixture(scope="module")
def tool():
    return load_script("tools/rehearse_wider_face.py")


def test_entries_and_heights_follow_the_annotation_file(tool):
    from ainnoface_d2.analysis import stand_in_height
    from ainnoface_d2.data.wider_face_format import parse_bbx_gt

    blocks = tool.annotation_blocks(VAL_TXT)
    images = parse_bbx_gt(VAL_TXT)
    assert len(blocks) == len(images) == 3226
    for (name, _, boxes), im in zip(blocks, images):
        assert name == im.file_name
        if not im.faceless:
            assert np.array_equal(boxes, im.boxes)
        h = stand_in_height(boxes)
        bottom = (boxes[:, 1] + boxes[:, 3]).max() if len(boxes) else 0
        assert h >= 683 and h >= bottom and (h == 683 or h == bottom)


def test_faces_are_pasted_at_the_boxes(tool):
    crops = np.zeros((1, 25, 25), np.float32) + 1.0  # white faces
    boxes = np.array([[10, 20, 30, 40], [1000, 690, 40, 50]])
    img = tool.render_image(boxes, crops, np.random.default_rng(0))
    assert img.shape == (740, 1024, 3)
    assert (img[20:60, 10:40] == 255).all()
    assert (img[690:740, 1000:1024] == 255).all()  # clipped at the right edge
    assert (img[100:200, 100:200] < 255).all()  # background: noise in [40, 216)


def test_small_rehearsal_runs_end_to_end(tool, tmp_path):
    opts = ["INPUT.FACE.TRAIN_SIZE", "256"]
    for k, v in TINY_MODEL_OPTS.items():
        opts += [k, str(v)]
    args = ["--wider-files", str(WIDER), "--output", str(tmp_path), "--train-images", "3"]
    args += ["--val-images", "2", "--loader-batches", "1", "--loader-batch", "2"]
    args += ["--loader-workers", "0", "--train-iters", "1", "--train-batch", "1"]
    report = tool.main(args + opts)
    coco = json.loads((tmp_path / "wider_face" / "annotations" / "wider_face_val.json").read_text())
    assert len(coco["images"]) == 2 and report["convert"]["val"]["images_written"] == 2
    assert report["render_train"]["images"] == 3
    assert report["loader"]["images_per_s"] > 0
    assert report["train"]["iters"] == 1 and report["train"]["finite_losses"]
    assert report["inference"]["images"] == 2 and report["evaluation"]["images"] == 2
    written = sorted(p.name for p in (tmp_path / "submission").rglob("*.txt"))
    assert written == sorted(Path(im["file_name"]).stem + ".txt" for im in coco["images"])
    assert json.loads((tmp_path / "rehearsal.json").read_text())["inference"]["images"] == 2
