"""ainnoface_d2/modeling/backbone.py: the ResNet + FPN with C6/C7 and P6/P7, and its SRN options
(no ReLU before C7/P7, bilinear upsampling, N(0, 0.01) initialisation)."""

import math

import ainnoface_d2  # noqa: F401

import pytest
import torch
import torch.nn.functional as F
from test_meta_arch import SIZE, tiny_model


def _pieces(backbone, x):
    c = backbone.bottom_up(x)
    return [c[f] for f in backbone.in_features]


@torch.no_grad()
def test_backbone_extra_relu_option():
    x = torch.rand(1, 3, SIZE, SIZE) * 255
    for relu in (True, False):
        model = tiny_model(**{"MODEL.AINNOFACE.EXTRA_RELU": relu})
        bb = model.backbone
        c = _pieces(bb, x)
        c6 = bb.c6(c[3])
        assert (c6 < 0).any()
        lat5 = bb.lateral[3](c[3])
        p6 = bb.p6(lat5)
        act = F.relu if relu else (lambda t: t)
        out = bb(x)
        torch.testing.assert_close(out["c7"], bb.c_proj[5](bb.c7(act(c6))))
        torch.testing.assert_close(out["p7"], bb.p7(act(p6)))
        other = (lambda t: t) if relu else F.relu
        assert not torch.allclose(out["p7"], bb.p7(other(p6)))


@torch.no_grad()
def test_backbone_upsampling_option():
    x = torch.rand(1, 3, SIZE, SIZE) * 255
    for mode in ("nearest", "bilinear"):
        bb = tiny_model(**{"MODEL.AINNOFACE.FPN_UPSAMPLE": mode}).backbone
        c = _pieces(bb, x)
        lat4, lat5 = bb.lateral[2](c[2]), bb.lateral[3](c[3])
        kw = {"mode": "bilinear", "align_corners": False} if mode == "bilinear" else {}
        expected = bb.output[2](lat4 + F.interpolate(lat5, size=lat4.shape[-2:], **kw))
        torch.testing.assert_close(bb(x)["p4"], expected)
    with pytest.raises(ValueError, match="FPN_UPSAMPLE"):
        tiny_model(**{"MODEL.AINNOFACE.FPN_UPSAMPLE": "bicubic"})


def test_backbone_normal_init_option():
    torch.manual_seed(0)
    bb = tiny_model(**{"MODEL.AINNOFACE.EXTRA_INIT": "normal"}).backbone
    convs = [bb.c6, bb.c7, bb.p6, bb.p7, *bb.c_proj, *bb.lateral, *bb.output]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.std().item() - 0.01) < 0.0005 and abs(weights.mean().item()) < 0.0005
    assert all(m.bias is None or torch.count_nonzero(m.bias) == 0 for m in convs)
    # the ResNet keeps its own initialisation
    stem = bb.bottom_up.stem.conv1.weight
    assert stem.std().item() > 0.02
    # c2_xavier_fill: uniform with std 1 / sqrt(fan_in), fan_in = 512 * 9 for C6 of ResNet-18
    xavier = tiny_model(**{"MODEL.AINNOFACE.EXTRA_INIT": "xavier"}).backbone
    assert abs(xavier.c6.weight.std().item() - 1 / math.sqrt(512 * 9)) < 0.0005
