"""tools/demo.py on bad input: outputs onto inputs, undecodable and oversized images, 16-bit
files, a video without a readable frame, the size guard."""

import logging
import os
from pathlib import Path

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
from ainnoface_d2.predictor import FaceDetector

import cv2
import numpy as np
import pytest
import torch
from _scripts import load_script
from detectron2.structures import Boxes, Instances
from PIL import Image
from torch import nn

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "ainnoface_R18_cpu.yaml")

demo_tool = load_script("tools/demo.py", "ainnoface_demo_tool_input")


class OneFace(nn.Module):
    """A fake detector: one face at (4, 4)-(20, 20), score 0.9; records the images."""

    def __init__(self):
        super().__init__()
        self.images = []

    def forward(self, batched_inputs):
        outputs = []
        for x in batched_inputs:
            self.images.append(x["image"])
            inst = Instances((x["height"], x["width"]))
            inst.pred_boxes = Boxes(torch.tensor([[4.0, 4.0, 20.0, 20.0]]))
            inst.scores = torch.tensor([0.9])
            inst.pred_classes = torch.zeros(1, dtype=torch.int64)
            outputs.append({"instances": inst})
        return outputs


@pytest.fixture
def fake(monkeypatch):
    model = OneFace()

    class Patched(FaceDetector):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model = model

    monkeypatch.setattr(demo_tool, "FaceDetector", Patched)
    return model


def _argv(*args):
    return ["--config-file", CONFIG, *map(str, args)]


def _photos(folder, n=3):
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(n):
        assert cv2.imwrite(str(folder / f"p{i}.png"), rng.randint(0, 256, (40, 50, 3), np.uint8))
    return {p: p.read_bytes() for p in sorted(folder.iterdir())}


def test_output_onto_the_input_folder_is_refused(tmp_path, capsys, fake):
    photos = tmp_path / "photos"
    originals = _photos(photos)
    for output in (photos, tmp_path / "." / "photos"):
        with pytest.raises(SystemExit) as e:
            demo_tool.main(_argv("--input", photos, "--output", output))
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "would overwrite the input file" in err and "p0.png" in err
    # A single file onto itself.
    with pytest.raises(SystemExit):
        demo_tool.main(_argv("--input", photos / "p1.png", "--output", photos / "p1.png"))
    assert "would overwrite the input file" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in sorted(photos.iterdir())} == originals
    assert fake.images == []  # refused before any detection


def test_output_onto_a_link_of_an_input_is_refused(tmp_path, capsys, fake):
    photos = tmp_path / "photos"
    originals = _photos(photos, 1)
    out = tmp_path / "out"
    out.mkdir()
    os.link(photos / "p0.png", out / "p0.png")
    with pytest.raises(SystemExit):
        demo_tool.main(_argv("--input", photos, "--output", out))
    assert "would overwrite the input file" in capsys.readouterr().err
    assert (photos / "p0.png").read_bytes() == originals[photos / "p0.png"]


def test_output_elsewhere_keeps_the_inputs(tmp_path, fake):
    photos = tmp_path / "photos"
    originals = _photos(photos)
    assert demo_tool.main(_argv("--input", photos, "--output", tmp_path / "drawn")) == 0
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert {p: p.read_bytes() for p in sorted(photos.iterdir())} == originals


def test_video_output_onto_the_video_is_refused(tmp_path, capsys, fake):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not read")
    with pytest.raises(SystemExit):
        demo_tool.main(_argv("--video-input", video, "--output", video))
    assert "would overwrite the input file" in capsys.readouterr().err
    assert video.read_bytes() == b"not read"


def test_oversized_and_broken_images_are_skipped_by_name(tmp_path, caplog, monkeypatch, fake):
    photos = tmp_path / "photos"
    _photos(photos, 2)
    # Above twice Pillow's limit: DecompressionBombError (a 20000 x 20000 PNG at the default
    # limit; the limit is lowered here to keep the file small).
    assert cv2.imwrite(str(photos / "p0_big.png"), np.zeros((100, 100, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    data = (photos / "p0.png").read_bytes()
    (photos / "p0_truncated.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="ainnoface_d2.demo"):
        assert demo_tool.main(_argv("--input", photos, "--output", out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("p0_big.png" in m and "DecompressionBombError" in m for m in warnings)
    assert any("p0_truncated.png" in m and "skipped" in m for m in warnings)
    assert any(m.startswith("Skipped 2 of 4") for m in warnings)


def test_16_bit_png_is_drawn_from_its_high_byte(tmp_path, fake):
    grey = np.full((96, 128), 30000, np.uint16)  # high byte 117
    grey[:, 80:] = 65535
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), grey)
    target = tmp_path / "drawn.png"
    assert demo_tool.main(_argv("--input", path, "--output", target)) == 0
    (seen,) = fake.images
    assert seen[:, 0, 0].tolist() == [117.0] * 3 and seen[:, 0, 127].tolist() == [255.0] * 3
    drawn = cv2.imread(str(target))
    # Beyond the box (4..20) and its label the drawing is the image itself.
    assert (drawn[60:, 50:75] == 117).all() and (drawn[60:, 90:] == 255).all()


def test_video_without_a_readable_frame_fails(tmp_path, caplog, fake):
    video = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 12, (64, 48))
    writer.release()
    capture = cv2.VideoCapture(str(video))
    assert capture.isOpened() and not capture.read()[0]  # opens, but holds no frame
    capture.release()
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="ainnoface_d2.demo"):
        with pytest.raises(SystemExit) as e:
            demo_tool.main(_argv("--video-input", video, "--output", out))
    assert e.value.code != 0 and "read no frame" in str(e.value) and "empty.avi" in str(e.value)
    assert not any(m.startswith("Wrote") for m in caplog.messages)
    assert not (out / "empty.mp4").exists()


def test_large_image_is_detected_within_the_limit(tmp_path, caplog, fake):
    path = tmp_path / "wide.png"
    assert cv2.imwrite(str(path), np.full((300, 400, 3), 90, np.uint8))
    target = tmp_path / "drawn.png"
    argv = _argv("--input", path, "--output", target, "--protocol", "original")
    with caplog.at_level(logging.WARNING, logger="ainnoface_d2"):
        assert demo_tool.main(argv + ["--opts", "TEST.FACE.MAX_IMAGE_PIXELS", "30000"]) == 0
    (seen,) = fake.images
    assert tuple(seen.shape[-2:]) == (150, 200)
    assert any("400x300 is above TEST.FACE.MAX_IMAGE_PIXELS" in m for m in caplog.messages)
    assert cv2.imread(str(target)).shape == (300, 400, 3)
