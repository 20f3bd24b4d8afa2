"""ainnoface_d2.predictor.FaceDetector and tools/demo.py, on the tiny CPU AInnoFace config."""

import logging
from pathlib import Path

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
from ainnoface_d2.modeling.tta import AInnoFaceWithTTA
from ainnoface_d2.predictor import FaceDetector

import cv2
import numpy as np
import pytest
import torch
from _scripts import load_script
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.structures import Boxes, Instances
from torch import nn

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "ainnoface_R18_cpu.yaml")


demo_tool = load_script("tools/demo.py", "ainnoface_demo_tool")


class FixedDetector(nn.Module):
    """A fake detector: returns the same boxes/scores for every image, records its inputs.

    With ``relative=True`` the boxes are fractions of the input image's width and height.
    """

    def __init__(self, boxes, scores, relative=False):
        super().__init__()
        self.boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        self.scores = torch.tensor(scores, dtype=torch.float32)
        self.relative = relative
        self.calls = []

    def forward(self, batched_inputs):
        self.calls.append(batched_inputs)
        outputs = []
        for x in batched_inputs:
            inst = Instances((x["height"], x["width"]))
            boxes = self.boxes.clone()
            if self.relative:
                h, w = x["image"].shape[-2:]
                boxes *= torch.tensor([w, h, w, h], dtype=torch.float32)
            inst.pred_boxes = Boxes(boxes)
            inst.scores = self.scores.clone()
            inst.pred_classes = torch.zeros(len(self.scores), dtype=torch.int64)
            outputs.append({"instances": inst})
        return outputs


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(
        CONFIG, weights="", device="cpu", confidence_threshold=0.5, protocol="original"
    )


def _bgr_image(h=48, w=64):
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # B, G, R
    return image


# ---------------------------------------------------------------- FaceDetector


def test_real_model_output_types(detector):
    assert detector.cfg.MODEL.META_ARCHITECTURE == "AInnoFace"
    assert not detector.model.training
    out = detector(_bgr_image())
    assert out["boxes"].dtype == np.float32 and out["boxes"].shape[1:] == (4,)
    assert out["scores"].dtype == np.float32 and out["scores"].shape == out["boxes"].shape[:1]
    assert np.all(out["scores"] >= 0.5)


def test_threshold_sort_and_channel_order(detector, monkeypatch):
    boxes = [[0, 0, 5, 5], [1, 1, 9, 9], [2, 2, 7, 7], [3, 3, 8, 8]]
    fake = FixedDetector(boxes, [0.3, 0.9, 0.6, 0.5])
    monkeypatch.setattr(detector, "model", fake)
    out = detector(_bgr_image())
    # Scores >= 0.5, decreasing: 0.9 (box 1), 0.6 (box 2), 0.5 (box 3).
    np.testing.assert_allclose(out["scores"], [0.9, 0.6, 0.5])
    np.testing.assert_allclose(out["boxes"], [boxes[1], boxes[2], boxes[3]])
    # The config's INPUT.FORMAT is RGB: the model gets R, G, B = 30, 20, 10; original size
    # (MIN_SIZE_TEST 0), float CHW.
    (inputs,) = fake.calls[-1]
    assert detector.input_format == "RGB"
    assert inputs["image"].shape == (3, 48, 64) and inputs["image"].dtype == torch.float32
    assert inputs["image"][:, 0, 0].tolist() == [30.0, 20.0, 10.0]
    assert (inputs["height"], inputs["width"]) == (48, 64)
    detector(_bgr_image()[:, :, ::-1], format="RGB")
    assert fake.calls[-1][0]["image"][:, 0, 0].tolist() == [30.0, 20.0, 10.0]
    # Grayscale is replicated to three channels.
    detector(np.full((48, 64), 7, dtype=np.uint8))
    assert fake.calls[-1][0]["image"][:, 0, 0].tolist() == [7.0, 7.0, 7.0]


def test_detect_many_batches(detector, monkeypatch):
    fake = FixedDetector([[1, 2, 3, 4]], [0.8])
    monkeypatch.setattr(detector, "model", fake)
    results = detector.detect_many([_bgr_image()] * 3, batch_size=2)
    assert [len(c) for c in fake.calls] == [2, 1]
    assert len(results) == 3
    for r in results:
        np.testing.assert_allclose(r["boxes"], [[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="batch_size"):
        detector.detect_many([_bgr_image()], batch_size=0)


def test_bad_image_and_format(detector):
    with pytest.raises(ValueError, match="HxWx3"):
        detector(np.zeros((4, 5, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="format"):
        detector(_bgr_image(), format="HSV")


def test_calibration_images_spread_over_the_dataset(detector, tmp_path):
    """A dataset's int8 calibration images are spread evenly over it (its first images are often
    all one event), every image once when it has fewer than asked for."""
    from detectron2.data import DatasetCatalog

    dicts = []
    for i in range(10):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), np.full((4, 4, 3), 10 * i, np.uint8))
        dicts.append({"file_name": str(path)})
    name = "calibration_spread_test"
    DatasetCatalog.register(name, lambda: dicts)
    try:
        picked = [int(im[0, 0, 0]) // 10 for im in detector.calibration_images(name, count=4)]
        assert picked == [0, 3, 6, 9]
        everything = detector.calibration_images(name, count=64)
        assert [int(im[0, 0, 0]) // 10 for im in everything] == list(range(10))
    finally:
        DatasetCatalog.remove(name)
    with pytest.raises(ValueError, match="not registered"):
        detector.calibration_images("no_such_dataset")


def test_min_size_test_resizes_and_keeps_original_size():
    det = FaceDetector(
        CONFIG, weights="", device="cpu", opts=["INPUT.MIN_SIZE_TEST", "32"], protocol="original"
    )
    fake = FixedDetector([[1, 2, 3, 4]], [0.8])
    det.model = fake
    det(_bgr_image(48, 64))
    (inputs,) = fake.calls[-1]
    # Shorter side 48 -> 32, longer 64 * 32 / 48 = 42.67 -> 43; output size stays 48 x 64.
    assert inputs["image"].shape == (3, 32, 43)
    assert (inputs["height"], inputs["width"]) == (48, 64)


def test_weights_are_loaded(detector, tmp_path):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in detector.model.parameters():
            p.uniform_(-1, 1)
    DetectionCheckpointer(detector.model, save_dir=str(tmp_path)).save("trained")
    loaded = FaceDetector(CONFIG, weights=str(tmp_path / "trained.pth"), device="cpu")
    expected = detector.model.state_dict()
    assert loaded.protocol == "pyramid"  # the config's: the network is wrapped
    for name, value in loaded.network.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_tta_wraps_the_model():
    opts = ["TEST.AUG.FLIP", "False", "TEST.AUG.FACE.MAX_SIDE", "40"]
    # The 0.75x and 0.5x copies keep boxes longer than SHRINK_KEEP_MIN_SIDE (SRN: 30): below
    # the 20-px face here, so that all three copies vote.
    opts += ["TEST.AUG.FACE.SHRINK_KEEP_MIN_SIDE", "10.0"]
    det = FaceDetector(CONFIG, weights="", device="cpu", tta=True, opts=opts)
    assert isinstance(det.model, AInnoFaceWithTTA) and det.model.flip is False
    fake = FixedDetector([[0.25, 0.25, 0.75, 0.75]], [0.9], relative=True).eval()
    det.model.model = fake
    out = det(_bgr_image(40, 40))
    # Area 40^2 = L^2: copies at 1, 0.75, 0.5 (no flip). Each sees the face at the same relative
    # place, i.e. (10, 10, 30, 30) in the original: three votes, one face at score 0.9.
    assert [tuple(c[0]["image"].shape[-2:]) for c in fake.calls] == [(40, 40), (30, 30), (20, 20)]
    np.testing.assert_allclose(out["boxes"], [[10, 10, 30, 30]], atol=1e-4)
    np.testing.assert_allclose(out["scores"], [0.9])


def test_protocol_from_the_config_or_the_argument():
    """The small config's TEST.FACE.PROTOCOL is "pyramid": FaceDetector wraps the network in
    the pyramid of TEST.FACE.PYRAMID; protocol= and tta= choose others."""
    det = FaceDetector(CONFIG, weights="", device="cpu")
    assert det.protocol == "pyramid" and det.model.pyramid == ((192, 256), 2.0, 16.0)
    assert det.model.model is det.network and not det.network.training
    assert FaceDetector(CONFIG, weights="", device="cpu", tta=True).protocol == "multiscale"
    plain = FaceDetector(CONFIG, weights="", device="cpu", protocol="original")
    assert plain.model is plain.network and plain.aug is None
    with pytest.raises(ValueError, match="unknown test-size protocol 'srn'.*'original', 'vga'"):
        FaceDetector(CONFIG, weights="", protocol="srn")
    with pytest.raises(ValueError, match="tta=True is the 'multiscale' protocol"):
        FaceDetector(CONFIG, weights="", tta=True, protocol="pyramid")
    with pytest.raises(ValueError, match="pass one"):
        FaceDetector(CONFIG, weights="", protocol="pyramid", min_face=10)


def test_vga_protocol_fits_the_image_into_640x480():
    det = FaceDetector(CONFIG, weights="", device="cpu", protocol="vga")
    fake = FixedDetector([[1, 2, 3, 4]], [0.8])
    det.model = fake
    det(_bgr_image(960, 1440))
    (inputs,) = fake.calls[-1]
    # shorter side 960 -> 480 would make the longer 720 > 640: longer side 640, shorter 426.67
    assert inputs["image"].shape == (3, 427, 640)
    assert (inputs["height"], inputs["width"]) == (960, 1440)


def test_pyramid_protocol_runs_the_copies():
    """A 480 x 640 image: copies of 192 x 256, 384 x 512 and 480 x 640 reach the network; a
    face the fake network reports in every copy at the same relative place (sqrt(w h) = 320
    px in the original) is kept from the 0.4x copy alone (its band: 40 px and more)."""
    det = FaceDetector(CONFIG, weights="", device="cpu")
    fake = FixedDetector([[0.25, 0.25, 0.75, 0.75]], [0.9], relative=True).eval()
    det.model.model = fake
    out = det(_bgr_image(480, 640))
    assert [tuple(c[0]["image"].shape[-2:]) for c in fake.calls] == [
        (192, 256),
        (384, 512),
        (480, 640),
    ]
    np.testing.assert_allclose(out["boxes"], [[160, 120, 480, 360]], atol=1e-3)
    np.testing.assert_allclose(out["scores"], [0.9])


def test_missing_config_names_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        FaceDetector(str(missing))


# ---------------------------------------------------------------- tools/demo.py


@pytest.fixture
def fake_box_detector(monkeypatch):
    """Make the demo's FaceDetector answer one face at (8, 8)-(40, 40) with score 0.9."""

    class Patched(FaceDetector):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model = FixedDetector([[8, 8, 40, 40]], [0.9])

    monkeypatch.setattr(demo_tool, "FaceDetector", Patched)


def _write_images(folder):
    folder.mkdir()
    (folder / "sub").mkdir()
    a = np.full((96, 128, 3), 128, dtype=np.uint8)
    b = np.full((60, 50, 3), 200, dtype=np.uint8)
    assert cv2.imwrite(str(folder / "a.png"), a)
    assert cv2.imwrite(str(folder / "sub" / "b.jpg"), b)
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return a, b


def test_demo_on_folder_draws_and_skips_unreadable(tmp_path, caplog, fake_box_detector):
    a, _ = _write_images(tmp_path / "in")
    out = tmp_path / "out"
    argv = ["--config-file", CONFIG, "--input", str(tmp_path / "in"), "--output", str(out)]
    with caplog.at_level(logging.INFO, logger="ainnoface_d2.demo"):
        assert demo_tool.main(argv + ["--opts", "MODEL.DEVICE", "cpu"]) == 0
    drawn_a = cv2.imread(str(out / "a.png"))
    drawn_b = cv2.imread(str(out / "sub" / "b.jpg"))
    assert drawn_a.shape == (96, 128, 3) and drawn_b.shape == (60, 50, 3)
    # The box outline is drawn: pixels on its left edge changed; the right part of the image,
    # beyond the box and its "face 90%" label, did not.
    assert np.abs(drawn_a[20:30, 7:10].astype(int) - 128).max() > 30
    assert np.array_equal(drawn_a[:, 100:], a[:, 100:])
    assert not (out / "broken.jpg").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("broken.jpg" in m and "cannot read" in m for m in warnings)
    assert any(m.startswith("Skipped 1 of 3") for m in warnings)
    assert any("ignoring 1 file" in m for m in caplog.messages)


def test_demo_single_image_to_file(tmp_path):
    _write_images(tmp_path / "in")
    target = tmp_path / "drawn.jpg"
    argv = ["--config-file", CONFIG, "--input", str(tmp_path / "in" / "a.png")]
    assert demo_tool.main(argv + ["--output", str(target)]) == 0
    assert cv2.imread(str(target)).shape == (96, 128, 3)


def test_demo_protocol_option(tmp_path, monkeypatch):
    """--protocol reaches FaceDetector; without it the config's TEST.FACE.PROTOCOL runs."""
    seen = []

    class Recording(FaceDetector):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.protocol)

    monkeypatch.setattr(demo_tool, "FaceDetector", Recording)
    _write_images(tmp_path / "in")
    argv = ["--config-file", CONFIG, "--input", str(tmp_path / "in" / "a.png")]
    argv += ["--output", str(tmp_path / "drawn.jpg")]
    assert demo_tool.main(argv + ["--protocol", "vga"]) == 0
    assert demo_tool.main(argv) == 0
    assert seen == ["vga", "pyramid"]
    with pytest.raises(SystemExit):
        demo_tool.main(argv + ["--protocol", "fit"])


def test_demo_video(tmp_path, fake_box_detector):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 12, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, dtype=np.uint8))
    writer.release()
    out = tmp_path / "out"
    argv = ["--config-file", CONFIG, "--video-input", str(video), "--output", str(out)]
    assert demo_tool.main(argv) == 0
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert capture.isOpened()
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 5 and all(f.shape == (48, 64, 3) for f in frames)


def test_demo_bad_paths_fail_clearly(tmp_path, capsys):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(SystemExit) as e:
        demo_tool.main(["--config-file", CONFIG, "--input", str(missing)])
    assert e.value.code == 2 and str(missing) in capsys.readouterr().err
    missing_cfg = tmp_path / "missing.yaml"
    with pytest.raises(SystemExit):
        demo_tool.main(["--config-file", str(missing_cfg), "--input", str(tmp_path)])
    assert str(missing_cfg) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo_tool.main(["--config-file", CONFIG, "--video-input", str(tmp_path / "v.mp4")])
    assert "v.mp4" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit):
        demo_tool.main(["--config-file", CONFIG, "--input", str(empty)])
    assert "no image files" in capsys.readouterr().err
