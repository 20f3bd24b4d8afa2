"""Deployment: the exported graph (ONNX under ONNX Runtime, TorchScript) against the PyTorch
model, batches of mixed sizes, reduced precision (bf16, int8), tools/export_model.py and the
errors on bad input.

The small model is the ``synthetic_face_model`` session fixture (tests/conftest.py): the tiny CPU
config with the paper's head, 80 steps on four synthetic 128x128 images with bright elliptic
'faces' (as in test_model.py), which gives confident detections (scores > 0.5) in seconds.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import FaceDetector
from ainnoface_d2.export import export_model
from ainnoface_d2.export.graph import AInnoFaceGraph
from ainnoface_d2.export.runtimes import (
    OnnxRuntimeRunner,
    pad_batch,
    quantize_onnx,
    resolve_precision,
)

import numpy as np
import pytest
import torch
from _builtin_fixture import SMALL_CONFIG, SYNTHETIC_FACE_OPTS
from _scripts import load_script
from detectron2.modeling import build_model
from test_model import _synthetic_images
from torchvision.ops import box_iou

ort = pytest.importorskip("onnxruntime")

OPTS = SYNTHETIC_FACE_OPTS


@pytest.fixture(scope="module")
def trained(synthetic_face_model, tmp_path_factory):
    """The trained model, its weights file, an ONNX and a TorchScript export, test images."""
    tmp = tmp_path_factory.mktemp("deploy")
    cfg, model = synthetic_face_model["cfg"], synthetic_face_model["model"]
    weights = synthetic_face_model["weights"]
    # Test images: new synthetic ones (the draws that follow the model's four training images
    # from seed 0), of sizes that are not multiples of 32, as BGR arrays; the faces lie in the
    # top-left square, the rest is background noise.
    rng = np.random.RandomState(0)
    _synthetic_images(4, 128, rng)
    images = []
    for h, w in ((150, 150), (120, 190), (170, 130), (140, 110), (110, 170)):
        img, _ = _synthetic_images(1, min(h, w), rng)[0]
        canvas = (rng.rand(h, w, 3) * 60).astype(np.uint8)
        canvas[: min(h, w), : min(h, w)] = img.numpy().transpose(1, 2, 0)[:, :, ::-1]
        images.append(canvas)
    onnx_path = export_model(cfg, model, str(tmp / "onnx"), "onnx")
    ts_path = export_model(cfg, model, str(tmp / "ts"), "torchscript")
    return {
        "cfg": cfg,
        "model": model,
        "weights": weights,
        "images": images,
        "tmp": tmp,
        "onnx": onnx_path,
        "ts": ts_path,
    }


def _chw(image_bgr):
    """The model input of a BGR image (the config's INPUT.FORMAT is RGB)."""
    return torch.as_tensor(image_bgr[:, :, ::-1].transpose(2, 0, 1).copy()).float()


def _eager(model, image_bgr):
    with torch.no_grad():
        inst = model([{"image": _chw(image_bgr)}])[0]["instances"]
    return inst.pred_boxes.tensor, inst.scores


def _graph_out(outputs, i=0):
    num, boxes, scores = (np.asarray(o) for o in outputs[:3])
    n = int(num[i])
    return torch.as_tensor(boxes[i, :n]).float(), torch.as_tensor(scores[i, :n]).float()


def _match(ref, got, min_score, min_iou):
    """IoU of every reference detection (score >= min_score) with its best match in ``got``,
    and for each the |score difference| to that match."""
    (rb, rs), (gb, gs) = ref, got
    keep = rs >= min_score
    rb, rs = rb[keep], rs[keep]
    if len(rb) == 0:
        return torch.zeros(0), torch.zeros(0)
    if len(gb) == 0:
        return torch.zeros(len(rb)), torch.ones(len(rb))
    iou = box_iou(rb, gb)
    # among the candidates at IoU >= min_iou, the closest in score
    diff = (rs[:, None] - gs[None, :]).abs() + (iou < min_iou) * 10.0
    best = diff.argmin(dim=1)
    return iou[torch.arange(len(rb)), best], diff[torch.arange(len(rb)), best]


# ---------------------------------------------------------------- export parity (fp32)


def test_exported_graphs_match_pytorch(trained):
    session = OnnxRuntimeRunner(trained["onnx"])
    ts = torch.jit.load(trained["ts"])
    checked = 0
    for image in trained["images"]:
        ref = _eager(trained["model"], image)
        x = _chw(image)[None]
        with torch.no_grad():
            outputs = {"onnxruntime": session(x.numpy()), "torchscript": ts(x)}
        for name, out in outputs.items():
            ious, diffs = _match(ref, _graph_out(out), 0.3, 0.99)
            assert (ious >= 0.99).all() and (diffs <= 1e-3).all(), (name, ious, diffs)
        checked += int((ref[1] >= 0.3).sum())
    assert checked >= 5  # the comparison is not vacuous


def test_mixed_size_batch_matches_single_images(trained, capsys):
    session = OnnxRuntimeRunner(trained["onnx"])
    images = trained["images"][:3]
    chw = [_chw(im).numpy() for im in images]
    batch, sizes = pad_batch(chw, trained["cfg"].MODEL.PIXEL_MEAN)
    assert batch.shape == (3, 3, 170, 190)
    outputs = session(batch)
    all_ious = []
    for i, x in enumerate(chw):
        single = _graph_out(session(x[None]))
        ious, _ = _match(single, _graph_out(outputs, i), 0.5, 0.95)
        assert (ious >= 0.95).all(), (i, ious)
        all_ious.append(ious)
    ious = torch.cat(all_ious)
    assert len(ious) >= 3
    with capsys.disabled():
        print(
            f"\nmixed-size batch vs single images: {len(ious)} faces (score >= 0.5), "
            f"min IoU {ious.min():.4f}"
        )


def test_image_without_faces_gives_zero_detections(trained, tmp_path):
    cfg = trained["cfg"]
    model = build_model(cfg).eval()
    model.load_state_dict(trained["model"].state_dict())
    with torch.no_grad():  # a classifier that sees no face anywhere (probability 0)
        model.head.cls_score.weight.zero_()
        model.head.cls_score.bias.fill_(-200.0)
    path = export_model(cfg, model, str(tmp_path), "onnx")
    x = _chw(trained["images"][0])[None].repeat(2, 1, 1, 1).numpy()
    num, boxes, scores, classes = OnnxRuntimeRunner(path)(x)
    assert num.tolist() == [0, 0]
    assert boxes.shape == (2, cfg.TEST.DETECTIONS_PER_IMAGE, 4) and not boxes.any()
    with torch.no_grad():
        num_t = AInnoFaceGraph(model)(torch.as_tensor(x))[0]
    assert num_t.tolist() == [0, 0]


_LOAD_TS = textwrap.dedent(
    """
    import sys
    sys.modules["ainnoface_d2"] = None  # not importable
    sys.modules["detectron2"] = None
    import torch, torchvision  # torchvision registers torchvision::nms
    model = torch.jit.load(sys.argv[1])
    num, boxes, scores, classes = model(torch.rand(2, 3, 70, 90) * 255)
    print(num.shape[0], boxes.shape[1], scores.dtype, classes.dtype)
    """
)


def test_torchscript_loads_without_the_package(trained):
    res = subprocess.run(
        [sys.executable, "-c", _LOAD_TS, trained["ts"]],
        capture_output=True,
        text=True,
        cwd=str(trained["tmp"]),
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-4:] == ["2", "300", "torch.float32", "torch.int32"]


def test_export_tool_writes_both_formats_and_metadata(trained, tmp_path):
    tool = load_script("tools/export_model.py", "export_tool")
    out = tmp_path / "exported"  # both formats into one folder: each keeps its own metadata
    for fmt, name in (("onnx", "model.onnx"), ("torchscript", "model.ts")):
        argv = ["--config-file", SMALL_CONFIG, "--format", fmt, "--output", str(out)]
        argv += ["--input-dtype", "uint8", *OPTS, "MODEL.WEIGHTS", trained["weights"]]
        assert tool.main(argv) == 0
        meta = json.loads((out / f"{name}.json").read_text())
        assert meta["file"] == name and meta["input_dtype"] == "uint8"
        assert meta["input_format"] == "RGB" and meta["max_detections"] == 300
    assert json.loads((out / "model.onnx.json").read_text())["format"] == "onnx"
    # The uint8 graph gives the fp32 model's detections on an integer-valued image.
    image = trained["images"][0]
    x = image[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.uint8)
    got = _graph_out(ort.InferenceSession(str(out / "model.onnx")).run(None, {"images": x}))
    ious, diffs = _match(_eager(trained["model"], image), got, 0.3, 0.99)
    assert len(ious) > 0 and (ious >= 0.99).all() and (diffs <= 1e-3).all()


@pytest.mark.parametrize(
    "protocol,opts",
    [
        (
            "pyramid",
            ["TEST.FACE.PYRAMID.BASE_SIZE", "(48, 64)", "TEST.FACE.PYRAMID.MIN_FACE", "8.0"],
        ),
        ("multiscale", ["TEST.AUG.FACE.MAX_SIDE", "240"]),
    ],
)
def test_protocols_with_copies_run_on_the_exported_graph(trained, protocol, opts):
    """The pyramid and SRN's copies on ONNX Runtime give the torch backend's detections: the
    copies are resized and merged in Python around either runner. Compared down to score 0.1:
    how many of the fixture model's detections pass 0.3 through the pyramid's small copies
    varies with the host's kernels (2 of them on one machine)."""
    kwargs = {"device": "cpu", "opts": OPTS + opts, "protocol": protocol}
    kwargs["confidence_threshold"] = 0.1
    ref = FaceDetector(SMALL_CONFIG, trained["weights"], **kwargs)
    det = FaceDetector(SMALL_CONFIG, trained["onnx"], backend="onnxruntime", **kwargs)
    assert det.protocol == protocol and len(det.model.copies(150, 150)) >= 3
    matched = 0
    for image in trained["images"]:
        want, got = ref(image), det(image)
        want = (torch.as_tensor(want["boxes"]), torch.as_tensor(want["scores"]))
        got = (torch.as_tensor(got["boxes"]), torch.as_tensor(got["scores"]))
        ious, diffs = _match(want, got, 0.1, 0.99)
        assert (ious >= 0.99).all() and (diffs <= 1e-3).all()
        matched += len(ious)
    assert matched >= 3


# ---------------------------------------------------------------- reduced precision


@pytest.fixture(scope="module")
def int8_onnx(trained):
    """The ONNX graph quantized to int8, calibrated on the four training images."""
    rng = np.random.RandomState(0)
    calib = [img[None].numpy() for img, _ in _synthetic_images(4, 128, rng)]
    return quantize_onnx(trained["onnx"], str(trained["tmp"] / "model_int8.onnx"), calib)


def test_int8_graph_is_u8s8_per_channel(int8_onnx):
    """Every convolution runs on uint8 activations and per-channel int8 weights (the form that
    ONNX Runtime's x86 int8 kernels run natively), read from the quantized graph itself."""
    import onnx

    graph = onnx.load(int8_onnx).graph
    producer = {out: node for node in graph.node for out in node.output}
    zero_point_type = {init.name: init.data_type for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs
    for conv in convs:
        act, weight = producer[conv.input[0]], producer[conv.input[1]]
        assert act.op_type == weight.op_type == "DequantizeLinear", conv.name
        assert zero_point_type[act.input[2]] == onnx.TensorProto.UINT8, conv.name
        assert zero_point_type[weight.input[2]] == onnx.TensorProto.INT8, conv.name
        axis = [a.i for a in weight.attribute if a.name == "axis"]
        assert axis == [0], conv.name  # one scale per output channel


def test_int8_graph_has_its_own_metadata(trained, int8_onnx):
    """``model_int8.onnx.json``: the fp32 graph's metadata, naming the int8 file and how it was
    quantized; nothing else (no temporary file) is left beside the two."""
    import json

    fp32 = json.loads(open(trained["onnx"] + ".json").read())
    int8 = json.loads(open(int8_onnx + ".json").read())
    assert int8.pop("file") == "model_int8.onnx" and fp32.pop("file") == "model.onnx"
    assert int8.pop("calibration_images") == 4 and "QDQ" in int8.pop("quantization")
    assert int8 == fp32
    assert sorted(os.listdir(os.path.dirname(int8_onnx))) == sorted(
        ["model_int8.onnx", "model_int8.onnx.json", "onnx", "ts"]
    )


@pytest.fixture(scope="module")
def fp32_faces(trained):
    """FaceDetector (torch, fp32) detections of the test images, scores >= 0.5."""
    det = FaceDetector(SMALL_CONFIG, trained["weights"], device="cpu", opts=OPTS)
    return [det(image) for image in trained["images"]]


def _routes():
    routes = [("torch", "bf16", "pth"), ("onnxruntime", "int8", "int8")]
    if importlib.util.find_spec("openvino"):
        routes += [("openvino", "fp32", "onnx"), ("openvino", "bf16", "onnx")]
        routes += [("openvino", "int8", "int8")]
    return routes


@pytest.mark.parametrize("backend,precision,model_file", _routes())
def test_reduced_precision_agrees_with_fp32(
    trained, int8_onnx, fp32_faces, backend, precision, model_file, capsys
):
    weights = {"pth": trained["weights"], "onnx": trained["onnx"], "int8": int8_onnx}[model_file]
    det = FaceDetector(
        SMALL_CONFIG, weights, device="cpu", opts=OPTS, backend=backend, precision=precision
    )
    ious, diffs = [], []
    for image, ref in zip(trained["images"], fp32_faces):
        got = det(image)
        ref = (torch.as_tensor(ref["boxes"]), torch.as_tensor(ref["scores"]))
        got = (torch.as_tensor(got["boxes"]), torch.as_tensor(got["scores"]))
        iou, diff = _match(ref, got, 0.5, 0.9)
        ious.append(iou)
        diffs.append(diff)
    ious, diffs = torch.cat(ious), torch.cat(diffs)
    assert len(ious) >= 3
    found = (ious >= 0.9).float().mean().item()
    with capsys.disabled():
        print(
            f"\n{backend} {precision} vs torch fp32: {found:.0%} of {len(ious)} faces "
            f"(score >= 0.5) at IoU >= 0.9; min IoU {ious.min():.3f}, "
            f"max |score diff| {diffs[ious >= 0.9].max():.3f}"
        )
    assert found == 1.0


# ---------------------------------------------------------------- bad input


def test_runner_rejects_bad_batches(trained):
    runner = OnnxRuntimeRunner(trained["onnx"])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(3, 64, 64\)"):
        runner(np.zeros((3, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(1, 4, 64, 64\)"):
        runner(np.zeros((1, 4, 64, 64), np.float32))
    with pytest.raises(ValueError, match="empty batch"):
        runner(np.zeros((0, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="empty batch"):
        pad_batch([], [0, 0, 0])
    with pytest.raises(ValueError, match=r"image 1: expected a 3xHxW"):
        pad_batch([np.zeros((3, 4, 4)), np.zeros((4, 4))], [0, 0, 0])


def test_detector_errors_name_what_was_expected(trained, tmp_path, monkeypatch):
    missing = str(tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        FaceDetector(SMALL_CONFIG, missing, device="cpu", opts=OPTS, backend="onnxruntime")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'.*torch, onnxruntime"):
        FaceDetector(SMALL_CONFIG, "", device="cpu", opts=OPTS, backend="tensorrt")
    with pytest.raises(ValueError, match="unknown precision 'int4'.*fp32, bf16, int8"):
        FaceDetector(SMALL_CONFIG, "", device="cpu", opts=OPTS, precision="int4")
    with pytest.raises(ValueError, match="'bf16' is not available with backend 'onnxruntime'"):
        resolve_precision("onnxruntime", "bf16", "cpu")
    with pytest.raises(ValueError, match="'fp16' is not available with backend 'torch' on cpu"):
        resolve_precision("torch", "fp16", "cpu")
    with pytest.raises(ValueError, match="unknown test-size protocol 'fit'.*'pyramid'"):
        FaceDetector(SMALL_CONFIG, "", opts=OPTS, backend="onnxruntime", protocol="fit")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install onnxruntime.*\.\[deploy\]"):
        OnnxRuntimeRunner(trained["onnx"])
