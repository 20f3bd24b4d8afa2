"""FaceDetector's input: pixel types, the size guard, and batches that give every image the
detections it gets alone (eager and through the exported graph)."""

import logging
from pathlib import Path

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
from ainnoface_d2.export import runtimes
from ainnoface_d2.predictor import FaceDetector

import numpy as np
import pytest
import torch
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from torch import nn

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "ainnoface_R18_cpu.yaml")
# The pair: a 333 x 517 image batched with a 593 x 543 one (width x height).
SIZES_HW = [(543, 593), (517, 333)]


class Recorder(nn.Module):
    """Wraps a detector (or answers one box, relative to the input's size, when there is none)
    and records the images it is given."""

    def __init__(self, model=None, box=(0.25, 0.25, 0.5, 0.75)):
        super().__init__()
        self.model = model
        self.box = torch.tensor(box, dtype=torch.float32)
        self.calls = []
        self.eval()

    def forward(self, batched_inputs):
        self.calls.append([x["image"] for x in batched_inputs])
        if self.model is not None:
            return self.model(batched_inputs)
        outputs = []
        for x in batched_inputs:
            h, w = x["image"].shape[-2:]
            inst = Instances((h, w))
            inst.pred_boxes = Boxes((self.box * torch.tensor([w, h, w, h]))[None])
            inst.scores = torch.tensor([0.9])
            inst.pred_classes = torch.zeros(1, dtype=torch.int64)
            outputs.append({"instances": detector_postprocess(inst, x["height"], x["width"])})
        return outputs


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(CONFIG, weights="", device="cpu", protocol="original")


def _noise(h, w, seed):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


# ---------------------------------------------------------------- pixel types


def test_uint16_and_greyscale_reach_the_model_as_8_bit(detector, monkeypatch):
    fake = Recorder()
    monkeypatch.setattr(detector, "model", fake)
    rng = np.random.RandomState(0)
    bgr16 = rng.randint(0, 65536, (20, 30, 3)).astype(np.uint16)
    detector(bgr16)
    # The config's INPUT.FORMAT is RGB: the BGR image's channels reversed, high byte kept.
    expected = (bgr16 >> 8)[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(fake.calls[-1][0].numpy(), expected)
    grey16 = rng.randint(0, 65536, (20, 30)).astype(np.uint16)
    detector(grey16[:, :, None])
    got = fake.calls[-1][0].numpy()
    for c in range(3):
        np.testing.assert_array_equal(got[c], (grey16 >> 8).astype(np.float32))


@pytest.mark.parametrize(
    "image, message",
    [
        (None, "^image is None; expected an HxWx3 uint8 array"),
        (np.random.RandomState(0).rand(20, 30, 3), "float image"),
        (np.full((20, 30, 3), np.nan, np.float32), "float image"),
        (np.full((20, 30, 3), np.inf, np.float32), "float image"),
        (np.ones((20, 30, 3), bool), "bool"),
        (np.zeros((20, 30, 4), np.uint8), "alpha"),
        (np.zeros((3, 20, 30), np.uint8), r"got shape \(3, 20, 30\)"),
    ],
)
def test_bad_images_are_refused_with_a_message(detector, image, message):
    with pytest.raises(ValueError, match=message):
        detector(image)


def test_detect_many_names_the_bad_image(detector):
    with pytest.raises(ValueError, match=r"^images\[2\]: got a float image"):
        detector.detect_many([_noise(20, 30, 0)] * 2 + [np.zeros((20, 30, 3))], batch_size=2)


# ---------------------------------------------------------------- the size guard


def test_large_images_are_shrunk_and_boxes_mapped_back(monkeypatch, caplog):
    limit = 120 * 160
    det = FaceDetector(
        CONFIG,
        weights="",
        device="cpu",
        protocol="original",
        opts=["TEST.FACE.MAX_IMAGE_PIXELS", str(limit)],
    )
    fake = Recorder()
    monkeypatch.setattr(det, "model", fake)
    with caplog.at_level(logging.WARNING, logger="ainnoface_d2"):
        out = det(_noise(480, 640, 1))
    (seen,) = fake.calls[-1]
    assert seen.shape[-2:] == (120, 160)
    assert any("640x480 is above TEST.FACE.MAX_IMAGE_PIXELS" in m for m in caplog.messages)
    # The fake's box is (0.25, 0.25, 0.5, 0.75) of the image it sees: in the original's pixels.
    np.testing.assert_allclose(out["boxes"], [[160, 120, 320, 360]], atol=1e-3)
    caplog.clear()
    small = det(_noise(120, 160, 2))
    assert fake.calls[-1][0].shape[-2:] == (120, 160) and not caplog.messages
    np.testing.assert_allclose(small["boxes"], [[40, 30, 80, 90]], atol=1e-3)


def test_pyramid_runs_within_the_limit(caplog):
    """The CPU config's own protocol: every copy the network runs stays within the limit, and
    the boxes come back inside the original image."""
    limit = 200 * 150
    det = FaceDetector(
        CONFIG,
        weights="",
        device="cpu",
        confidence_threshold=0.0,
        opts=[
            "TEST.FACE.MAX_IMAGE_PIXELS",
            str(limit),
            "TEST.FACE.PYRAMID.BASE_SIZE",
            "(48, 64)",
            "MODEL.AINNOFACE.SCORE_THRESH_TEST",
            "0.0",
        ],
    )
    assert det.protocol == "pyramid"
    recorder = Recorder(det.model.model)
    det.model.model = recorder
    with caplog.at_level(logging.WARNING, logger="ainnoface_d2"):
        out = det(_noise(600, 800, 3))
    seen = [tuple(x.shape[-2:]) for call in recorder.calls for x in call]
    assert len(seen) >= 3  # the pyramid's copies
    assert max(h * w for h, w in seen) <= limit
    assert max(seen) == (150, 200)
    assert any("800x600 is above" in m for m in caplog.messages)
    boxes = out["boxes"]
    assert len(boxes) > 0
    assert (boxes >= -1e-3).all() and (boxes[:, 0::2] <= 800 + 1e-3).all()
    assert (boxes[:, 1::2] <= 600 + 1e-3).all()
    # Faces as large as the shrunk image's pyramid can see reach beyond its own 200 px.
    assert boxes[:, 2].max() > 200


def test_default_limit_is_stated():
    det = FaceDetector(CONFIG, weights="", device="cpu")
    assert det.cfg.TEST.FACE.MAX_IMAGE_PIXELS == 3840 * 2160


# ---------------------------------------------------------------- batches


def _same(a, b, atol=1e-3):
    assert a["boxes"].shape == b["boxes"].shape, (a["boxes"].shape, b["boxes"].shape)
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=atol)
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)


def _random_detector(backend="torch"):
    """The CPU config with random weights from seed 0, one pass at the original size, every
    detection kept (up to 50)."""
    torch.manual_seed(0)
    return FaceDetector(
        CONFIG,
        weights="",
        device="cpu",
        backend=backend,
        confidence_threshold=0.0,
        protocol="original",
        opts=["MODEL.AINNOFACE.SCORE_THRESH_TEST", "0.0", "TEST.DETECTIONS_PER_IMAGE", "50"],
    )


@pytest.fixture(scope="module")
def gn_detector():
    """The CPU config (group norm in the subnets, whose statistics padding would change) with
    random weights from a fixed seed, every detection kept."""
    return _random_detector()


def test_mixed_size_batch_gives_each_image_its_own_detections(gn_detector):
    images = [_noise(h, w, seed) for seed, (h, w) in enumerate(SIZES_HW)]
    alone = [gn_detector(im) for im in images]
    batched = gn_detector.detect_many(images, batch_size=2)
    assert all(len(a["scores"]) >= 20 for a in alone)  # non-vacuous
    for (h, w), a, b in zip(SIZES_HW, alone, batched):
        _same(a, b)
        assert (b["boxes"] >= 0).all()
        assert (b["boxes"][:, 0::2] <= w).all() and (b["boxes"][:, 1::2] <= h).all()


def test_images_of_one_padded_size_share_a_forward_pass(gn_detector, monkeypatch):
    # 543x593 and 530x580 both pad to 544x608 (size divisibility 32); 517x333 does not.
    sizes = [(543, 593), (517, 333), (530, 580)]
    images = [_noise(h, w, 10 + i) for i, (h, w) in enumerate(sizes)]
    alone = [gn_detector(im) for im in images]
    recorder = Recorder(gn_detector.model)
    monkeypatch.setattr(gn_detector, "model", recorder)
    batched = gn_detector.detect_many(images, batch_size=3)
    assert [[tuple(x.shape[-2:]) for x in call] for call in recorder.calls] == [
        [(543, 593), (530, 580)],
        [(517, 333)],
    ]
    for a, b in zip(alone, batched):
        _same(a, b)


def test_padded_size_groups():
    sizes = [(543, 593), (517, 333), (530, 580), (517, 333), (10, 10)]
    assert runtimes.padded_size_groups(sizes, 32) == [[0, 2], [1, 3], [4]]
    assert runtimes.padded_size_groups(sizes) == [[0], [1, 3], [2], [4]]


def test_clip_to_sizes_drops_boxes_in_the_padding():
    num = np.array([3, 1], np.int32)
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0] = [[10, 10, 50, 40], [300, 20, 491, 60], [400, 5, 480, 30]]
    boxes[1] = [[-5, -5, 20, 20], [0, 0, 0, 0], [0, 0, 0, 0]]
    scores = np.array([[0.9, 0.8, 0.7], [0.6, 0, 0]], np.float32)
    classes = np.zeros((2, 3), np.int32)
    # Image 0 is 333 wide: its second box ends in the padding, its third lies in it.
    num2, boxes2, scores2, _ = runtimes.clip_to_sizes(
        [num, boxes, scores, classes], [(100, 333), (50, 60)]
    )
    assert num2.tolist() == [2, 1]
    np.testing.assert_array_equal(boxes2[0, :2], [[10, 10, 50, 40], [300, 20, 333, 60]])
    np.testing.assert_array_equal(boxes2[0, 2], [0, 0, 0, 0])
    np.testing.assert_array_equal(scores2[0], np.float32([0.9, 0.8, 0]))
    np.testing.assert_array_equal(boxes2[1, 0], [0, 0, 20, 20])
    np.testing.assert_array_equal(boxes[0, 1], [300, 20, 491, 60])  # the input is left as it was


# ---------------------------------------------------------------- the exported graph


@pytest.fixture(scope="module")
def graph_detector():
    """The CPU config with random weights (fixed seed), exported to ONNX when it is built."""
    pytest.importorskip("onnxruntime")
    return _random_detector(backend="onnxruntime")


def test_graph_runner_clips_each_image_to_its_own_size(graph_detector):
    runner = graph_detector.runner
    mean = graph_detector.cfg.MODEL.PIXEL_MEAN
    images = [_noise(h, w, 20 + i).transpose(2, 0, 1) for i, (h, w) in enumerate(SIZES_HW)]
    batch, sizes = runtimes.pad_batch(images, mean)
    assert sizes == SIZES_HW
    num, boxes = runner(batch, sizes)[:2]
    assert num.min() > 0
    for i, (h, w) in enumerate(sizes):
        b = boxes[i, : int(num[i])]
        assert (b >= 0).all() and (b[:, 0::2] <= w).all() and (b[:, 1::2] <= h).all()
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
    # Without the sizes the graph can only clip to the batch: boxes reach into the padding.
    raw_num, raw_boxes = runner(batch)[:2]
    assert raw_boxes[1, : int(raw_num[1]), 2].max() > 333


def test_graph_runner_input_types(graph_detector):
    runner = graph_detector.runner
    image = _noise(64, 80, 30).transpose(2, 0, 1)[None]
    ref = runner(image.astype(np.float32))
    for same in (image, image.astype(np.uint16) * 256 + 17):
        for r, g in zip(ref, runner(same)):
            np.testing.assert_array_equal(r, g)
    for bad, message in [
        (np.where(image > 100, np.nan, image.astype(np.float32)), "NaN or inf"),
        (image.astype(np.float32) / 255 * 300, "expected \\[0, 255\\]"),
        (image > 100, "bool"),
    ]:
        with pytest.raises(ValueError, match=message):
            runner(bad)


def test_graph_backend_batches_like_single_images(graph_detector):
    images = [_noise(h, w, 40 + i) for i, (h, w) in enumerate(SIZES_HW)]
    alone = [graph_detector(im) for im in images]
    batched = graph_detector.detect_many(images, batch_size=2)
    assert all(len(a["scores"]) >= 20 for a in alone)
    for (h, w), a, b in zip(SIZES_HW, alone, batched):
        _same(a, b)
        assert (b["boxes"][:, 0::2] <= w).all() and (b["boxes"][:, 1::2] <= h).all()
