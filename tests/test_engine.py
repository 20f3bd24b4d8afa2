"""ainnoface_d2.engine and tools/train_net.py: the labelled test-size protocols and the check of
MODEL.WEIGHTS before any work starts."""

import json
import os
import subprocess
import sys

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.engine import Trainer, check_weights, size_protocol_mapper, size_protocols

import numpy as np
import pytest
import torch
from _builtin_fixture import (
    REPO,
    SMALL_CONFIG,
    make_tiny_faces,
    register_tiny_faces,
    tiny_train_opts,
)
from _scripts import load_script
from detectron2.modeling import build_model

PAPER_CONFIG = os.path.join(REPO, "configs", "ainnoface_R50.yaml")


def _cfg(*opts):
    return get_ainnoface_cfg(SMALL_CONFIG, list(opts))


def test_size_protocol_names():
    assert size_protocols(_cfg()) == ["original", "pyramid"]  # the small config's
    aug = _cfg("TEST.FACE.SIZE_PROTOCOLS", "['original']", "TEST.AUG.ENABLED", "True")
    assert size_protocols(aug) == ["original", "multiscale"]
    cfg = _cfg("TEST.FACE.SIZE_PROTOCOLS", "['vga', 'multiscale']", "TEST.AUG.ENABLED", "True")
    assert size_protocols(cfg) == ["vga", "multiscale"]
    with pytest.raises(ValueError, match=r"unknown \['640'\]"):
        size_protocols(_cfg("TEST.FACE.SIZE_PROTOCOLS", "['640']"))


@pytest.mark.parametrize("width,height", [(1024, 768), (1024, 1366), (300, 200), (640, 480)])
def test_vga_protocol_fits_the_image_into_640x480(width, height):
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    record = {"file_name": "e/i.jpg", "height": height, "width": width, "annotations": []}
    out = size_protocol_mapper(_cfg(), "vga").map_image(record, image)
    # Expected by hand: the largest scale with shorter side <= 480 and longer side <= 640.
    scale = min(480 / min(width, height), 640 / max(width, height))
    h, w = out["image"].shape[1:]
    assert (w, h) == (int(width * scale + 0.5), int(height * scale + 0.5))
    assert max(w, h) <= 640 and min(w, h) <= 480
    assert (out["width"], out["height"]) == (width, height)  # detections go back to this size
    original = size_protocol_mapper(_cfg(), "original").map_image(record, image)
    assert tuple(original["image"].shape[1:]) == (height, width)


def test_missing_imagenet_weights_name_the_file_and_the_command(tmp_path):
    cfg = get_ainnoface_cfg(PAPER_CONFIG, ["OUTPUT_DIR", str(tmp_path / "out")])
    assert cfg.MODEL.WEIGHTS == "pretrained/R-50-torchvision.pkl"
    with pytest.raises(FileNotFoundError) as e:
        check_weights(cfg)
    assert str(e.value).startswith("MODEL.WEIGHTS pretrained/R-50-torchvision.pkl does not exist")
    assert (
        "python tools/convert_torchvision_to_d2.py --download resnet50 "
        "pretrained/R-50-torchvision.pkl" in str(e.value)
    )
    # Resuming from a checkpoint in OUTPUT_DIR does not load MODEL.WEIGHTS; nor does "".
    os.makedirs(cfg.OUTPUT_DIR)
    with open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"), "w") as f:
        f.write("model_0000009.pth")
    check_weights(cfg, resume=True)
    check_weights(_cfg("MODEL.WEIGHTS", ""))
    with pytest.raises(FileNotFoundError, match="other.pth does not exist. Give a checkpoint"):
        check_weights(_cfg("MODEL.WEIGHTS", str(tmp_path / "other.pth")))


def test_train_net_stops_before_work_when_weights_are_missing(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py")]
    cmd += ["--config-file", PAPER_CONFIG, "OUTPUT_DIR", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": REPO}
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "train_net.py: error: MODEL.WEIGHTS pretrained/R-50-torchvision.pkl" in res.stderr
    assert "--download resnet50" in res.stderr
    assert not (tmp_path / "out").exists()  # stopped before default_setup wrote anything


def test_eval_only_runs_several_labelled_protocols(tmp_path):
    """One --eval-only call with three test-size protocols: each writes its own outputs, and the
    metrics JSON and the results name the protocol."""
    # The tool's own command line is what is tested here, so the script is loaded as a module.
    train_net = load_script("tools/train_net.py")
    prefix = "engine_test_faces"
    register_tiny_faces(prefix, make_tiny_faces(tmp_path / "faces", num_train=2, num_val=3))
    out = tmp_path / "out"
    opts = tiny_train_opts(prefix, out, **{"MODEL.WEIGHTS": "", "INPUT.MIN_SIZE_TEST": 0})
    argv = ["--config-file", SMALL_CONFIG, "--eval-only", "--size-protocols"]
    res = train_net.main(train_net.parse_args(argv + ["original,vga,pyramid"] + opts))
    assert set(res) == {f"{prefix}_val", f"{prefix}_val_vga", f"{prefix}_val_pyramid"}
    outputs = (("inference", "original", ""), ("inference_vga", "vga", "_vga"))
    for folder, protocol, suffix in outputs + (("inference_pyramid", "pyramid", "_pyramid"),):
        with open(out / folder / f"{prefix}_val" / "wider_face_metrics.json") as f:
            metrics = json.load(f)
        assert metrics["size_protocol"] == protocol and metrics["scoring_protocol"] == "matlab"
        assert set(metrics) >= {"AP_easy", "AP_medium", "AP_hard"}
        key = f"{prefix}_val" + suffix
        assert res[key]["wider_face"] == {k: metrics[k] for k in res[key]["wider_face"]}


def test_cpu_model_is_channels_last_and_computes_what_the_plain_model_does():
    """Trainer.build_model on a CPU: channels-last weights (the faster oneDNN convolutions),
    the same parameter values, features and detections as Detectron2's plain build_model."""
    cfg = _cfg("MODEL.DEVICE", "cpu", "MODEL.AINNOFACE.SCORE_THRESH_TEST", "0.0")
    torch.manual_seed(0)
    model = Trainer.build_model(cfg).eval()
    torch.manual_seed(0)
    plain = build_model(cfg).eval()
    weight = model.backbone.bottom_up.stem.conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    plain_state = plain.state_dict()
    assert all(torch.equal(v, plain_state[k]) for k, v in model.state_dict().items())

    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 160, 224), np.uint8))
    with torch.no_grad():
        x = model.preprocess_image([{"image": image}]).tensor
        feats, plain_feats = model.backbone(x), plain.backbone(x)
        assert set(feats) == set(plain_feats)
        for k in feats:
            torch.testing.assert_close(feats[k], plain_feats[k], rtol=1e-4, atol=1e-4)
        dets = model([{"image": image}])[0]["instances"]
        plain_dets = plain([{"image": image}])[0]["instances"]
    assert len(dets) == len(plain_dets) > 0
    torch.testing.assert_close(dets.scores, plain_dets.scores, rtol=1e-4, atol=1e-5)


def test_adamw_is_fused_and_makes_adamw_updates():
    """SOLVER.OPTIMIZER ADAMW: PyTorch's fused kernel, over Detectron2's parameter groups; its
    first step is AdamW's, written out: decay, then lr * g / (|g| + eps) (bias-corrected
    moments of one step are g and g^2)."""
    from ainnoface_d2.solver import build_optimizer

    cfg = _cfg("SOLVER.BASE_LR", 0.01, "SOLVER.WEIGHT_DECAY", 0.1, "SOLVER.WEIGHT_DECAY_NORM", 0.0)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert all(group["fused"] for group in optimizer.param_groups)
    norm_params = {
        id(p)
        for m in model.modules()
        if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d))
        for p in m.parameters()
    }
    torch.manual_seed(0)
    before, decay = {}, {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.randn_like(p)
            before[p] = p.detach().clone()
            decay[p] = group["weight_decay"]
            assert decay[p] == (0.0 if id(p) in norm_params else 0.1)
    optimizer.step()
    for p, p0 in before.items():
        expected = p0 * (1 - 0.01 * decay[p]) - 0.01 * p.grad / (p.grad.abs() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)
