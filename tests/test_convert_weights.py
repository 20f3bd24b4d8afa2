"""tools/convert_torchvision_to_d2.py: converted torchvision ResNets reproduce their features in
Detectron2's ResNet backbone, loaded through DetectionCheckpointer."""

import logging
import pickle

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)

import pytest
import torch
import torchvision
from _scripts import load_script
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone

tool = load_script("tools/convert_torchvision_to_d2.py")


def _random_torchvision_resnet(arch):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None)
    # Default BN parameters (weight 1, bias 0, mean 0, var 1) would hide a mis-mapped norm.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _torchvision_features(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    feats = {}
    for i, name in enumerate(["layer1", "layer2", "layer3", "layer4"]):
        x = getattr(model, name)(x)
        feats[f"res{i + 2}"] = x
    return feats


def _d2_backbone(depth):
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if depth in (18, 34) else 256
    return build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("arch,depth", [("resnet18", 18), ("resnet50", 50)])
def test_converted_weights_reproduce_torchvision_features(tmp_path, arch, depth):
    tv_model = _random_torchvision_resnet(arch)
    src = tmp_path / f"{arch}.pth"
    dst = tmp_path / f"{arch}.pkl"
    torch.save(tv_model.state_dict(), src)
    assert tool.main([str(src), str(dst)]) == 0

    with open(dst, "rb") as f:
        payload = pickle.load(f)
    assert payload["__author__"] == "torchvision" and payload["matching_heuristics"] is True
    assert not any(k.startswith("fc.") or "num_batches_tracked" in k for k in payload["model"])

    backbone = _d2_backbone(depth)
    # fvcore's checkpointer reports unmatched keys on its own logger; listen there directly, as
    # other tests may have set propagate=False on it (detectron2's setup_logger does).
    handler = _Collect()
    fvcore_logger = logging.getLogger("fvcore.common.checkpoint")
    fvcore_logger.addHandler(handler)
    try:
        DetectionCheckpointer(backbone).load(str(dst))
    finally:
        fvcore_logger.removeHandler(handler)
    unmatched = [
        m
        for m in handler.messages
        if "not found in the checkpoint" in m or "not used by the model" in m
    ]
    assert unmatched == []

    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = _torchvision_features(tv_model, x)
        actual = backbone(x)
    for name in ["res2", "res3", "res4", "res5"]:
        assert actual[name].shape == expected[name].shape
        assert torch.allclose(actual[name], expected[name], atol=1e-4, rtol=1e-4), name


def test_key_renaming_table():
    assert tool.convert_key("conv1.weight") == "stem.conv1.weight"
    assert tool.convert_key("bn1.running_var") == "stem.conv1.norm.running_var"
    assert tool.convert_key("layer3.5.bn2.bias") == "res4.5.conv2.norm.bias"
    assert tool.convert_key("layer1.0.downsample.0.weight") == "res2.0.shortcut.weight"
    assert tool.convert_key("layer4.0.downsample.1.weight") == "res5.0.shortcut.norm.weight"
    assert tool.convert_key("fc.weight") is None
    assert tool.convert_key("layer1.0.bn1.num_batches_tracked") is None


def test_bad_inputs_fail_clearly(tmp_path, capsys):
    missing = tmp_path / "nope.pth"
    with pytest.raises(SystemExit):
        tool.main([str(missing), str(tmp_path / "out.pkl")])
    assert str(missing) in capsys.readouterr().err

    not_resnet = tmp_path / "detector.pth"
    torch.save({"backbone.body.conv1.weight": torch.zeros(1)}, not_resnet)
    with pytest.raises(SystemExit):
        tool.main([str(not_resnet), str(tmp_path / "out.pkl")])
    err = capsys.readouterr().err
    assert "backbone.body.conv1.weight" in err and str(not_resnet) in err
    assert not (tmp_path / "out.pkl").exists()
