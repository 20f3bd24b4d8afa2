"""The CPU fast paths of the convolutions (ainnoface_d2.modeling.layers: matrix products and
NNPACK) and the allocator setting (ainnoface_d2.runtime): same function as ``F.conv2d``,
including gradients."""

import os
import subprocess
import sys
import textwrap

import ainnoface_d2  # noqa: F401
from ainnoface_d2.modeling import AInnoFaceFPN
from ainnoface_d2.modeling.layers import (
    NNPACK_MIN_CHANNELS,
    Conv1x1,
    Conv3x3,
    GemmConv2d,
    nnpack_enabled,
)

import pytest
import torch
import torch.nn.functional as F


def _grads(module, x):
    """Output and gradients w.r.t. input, weight and bias of a random linear read-out."""
    x = x.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    y = module(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * g).sum().backward()
    bias = module.bias.grad if module.bias is not None else None
    return y.detach(), x.grad, module.weight.grad, bias


def _reference(module, x, **conv_args):
    """The same layer as a plain ``torch.nn.Conv2d`` with the same parameters."""
    ref = torch.nn.Conv2d(
        module.in_channels,
        module.out_channels,
        module.kernel_size,
        bias=module.bias is not None,
        **conv_args,
    )
    ref.load_state_dict(module.state_dict())
    return _grads(ref, x)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv1x1_equals_conv2d(batch, bias, channels_last):
    torch.manual_seed(0)
    conv = Conv1x1(12, 7, bias=bias)
    x = torch.randn(batch, 12, 5, 9)
    if channels_last:  # not contiguous: the F.conv2d path
        x = x.contiguous(memory_format=torch.channels_last)
    for got, want in zip(_grads(conv, x), _reference(conv, x)):
        if want is None:
            assert got is None
        else:
            assert got.shape == want.shape
            assert torch.allclose(got, want, atol=1e-5)


def test_conv1x1_norm_activation_and_empty_batch():
    conv = Conv1x1(4, 4, norm=torch.nn.GroupNorm(2, 4), activation=torch.relu)
    x = torch.randn(2, 4, 3, 3)
    want = torch.relu(conv.norm(F.conv2d(x, conv.weight, conv.bias)))
    assert torch.allclose(conv(x), want, atol=1e-6)
    assert Conv1x1(4, 6)(torch.zeros(0, 4, 3, 3)).shape == (0, 6, 3, 3)


@pytest.mark.parametrize(
    "kwargs", [{"kernel_size": 3}, {"stride": 2}, {"padding": 1}, {"groups": 2}, {"dilation": 2}]
)
def test_conv1x1_rejects_other_convolutions(kwargs):
    with pytest.raises(ValueError, match="Conv1x1 needs"):
        Conv1x1(4, 4, **kwargs)


@pytest.mark.parametrize(
    "conv_args",
    [
        dict(kernel_size=3, stride=2, padding=1),  # SRN's C6
        dict(kernel_size=(1, 5), stride=1, padding=(0, 2)),
        dict(kernel_size=3, stride=1, padding=2, dilation=2),
        dict(kernel_size=2, stride=3, padding=0),
    ],
)
@pytest.mark.parametrize("batch", [1, 2])
def test_gemm_conv_equals_conv2d(conv_args, batch):
    torch.manual_seed(0)
    conv = GemmConv2d(6, 5, **conv_args)
    x = torch.randn(batch, 6, 11, 8)
    ref_args = {k: v for k, v in conv_args.items() if k != "kernel_size"}
    for got, want in zip(_grads(conv, x), _reference(conv, x, **ref_args)):
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-5)


def test_gemm_conv_rejects_groups():
    with pytest.raises(ValueError, match="ungrouped"):
        GemmConv2d(4, 4, kernel_size=3, groups=2)


def test_backbone_uses_the_cpu_layers_with_unchanged_state_dict_keys():
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import Backbone

    class Stages(Backbone):
        def forward(self, x):
            return {}

        def output_shape(self):
            return {f"res{i}": ShapeSpec(channels=8 * i, stride=2**i) for i in range(2, 6)}

    fpn = AInnoFaceFPN(Stages(), ["res2", "res3", "res4", "res5"], 16, 32, 16)
    assert isinstance(fpn.c6, GemmConv2d)
    assert all(isinstance(m, Conv1x1) for m in list(fpn.c_proj) + list(fpn.lateral))
    keys = set(fpn.state_dict())
    assert {"c6.weight", "c6.bias", "c_proj.0.weight", "lateral.3.bias", "p7.weight"} <= keys


_FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    from ainnoface_d2.runtime import tune_cpu_allocator
    print(tune_cpu_allocator())
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    counts = []
    for _ in range(8):
        before = faults()
        maps = [torch.empty(5 << 20).fill_(1.0) for _ in range(3)]  # three 20 MiB maps
        del maps
        counts.append(faults() - before)
    print(max(counts[4:]))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_reuses_freed_memory():
    """Three 20 MiB maps allocated and freed, eight times: after tune_cpu_allocator() the last
    four rounds take all their memory from the heap without a page fault. (With glibc's
    defaults they usually fault two of the maps in anew, ~10,000 4-KiB faults a round; that is
    glibc's behaviour, reported but not asserted.) AINNOFACE_TUNE_MALLOC=0 opts out."""
    out = {}
    for setting in ("1", "0"):
        env = dict(os.environ, AINNOFACE_TUNE_MALLOC=setting, OMP_NUM_THREADS="1")
        res = subprocess.run(
            [sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True
        )
        applied, faults = res.stdout.split()[-2:]
        out[setting] = (applied, int(faults))
    assert out["1"][0] == "True" and out["0"][0] == "False"
    assert out["1"][1] < 100, out


def _conv3x3(channels, seed=0):
    torch.manual_seed(seed)
    conv = Conv3x3(channels, channels)
    torch.nn.init.normal_(conv.weight, std=0.05)
    return conv


@pytest.mark.skipif(not nnpack_enabled(), reason="torch built without NNPACK")
def test_conv3x3_nnpack_matches_conv2d_at_inference():
    conv = _conv3x3(NNPACK_MIN_CHANNELS)
    x = torch.randn(1, NNPACK_MIN_CHANNELS, 60, 80)  # 4,800 pixels: NNPACK's smallest maps
    assert conv._use_nnpack(x) is False  # autograd on: the plain convolution
    want = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert torch.equal(conv(x), want)
    with torch.no_grad():
        assert conv._use_nnpack(x)
        got = conv(x)
        scale = want.abs().max()
        assert not torch.equal(got, want)  # a different algorithm ...
        assert (got - want).abs().max() <= 1e-4 * scale  # ... with the same result
        # Too few pixels or channels, or another dtype: the plain convolution, bit for bit.
        small = x[..., :48, :64].contiguous()
        assert torch.equal(conv(small), F.conv2d(small, conv.weight, conv.bias, padding=1))
        narrow = _conv3x3(64)
        x64 = torch.randn(1, 64, 60, 80)
        assert torch.equal(narrow(x64), F.conv2d(x64, narrow.weight, narrow.bias, padding=1))
        assert not conv._use_nnpack(x.double())
        two = torch.randn(2, NNPACK_MIN_CHANNELS, 60, 80)  # a batch (FaceDetector.detect_many)
        want2 = F.conv2d(two, conv.weight, conv.bias, padding=1)
        assert (conv(two) - want2).abs().max() <= 1e-4 * want2.abs().max()


def test_conv3x3_falls_back_when_nnpack_fails(monkeypatch, caplog):
    from ainnoface_d2.modeling import layers

    def broken(*args, **kwargs):
        raise RuntimeError("NNPACK SpatialConvolution_updateOutput failed")

    monkeypatch.setitem(layers._nnpack, "enabled", True)
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", broken, raising=False)
    conv = _conv3x3(NNPACK_MIN_CHANNELS)
    x = torch.randn(1, NNPACK_MIN_CHANNELS, 60, 80)
    with torch.no_grad(), caplog.at_level("WARNING"):
        got = conv(x)
    assert torch.equal(got, F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert layers._nnpack["enabled"] is False
    assert "NNPACK convolution failed" in caplog.text


@pytest.mark.parametrize("kwargs", [{"kernel_size": 5}, {"stride": 2}, {"padding": 0}])
def test_conv3x3_rejects_other_convolutions(kwargs):
    with pytest.raises(ValueError, match="Conv3x3 needs"):
        Conv3x3(4, 4, **kwargs)


def test_nnpack_can_be_turned_off():
    code = "from ainnoface_d2.modeling.layers import nnpack_enabled; print(nnpack_enabled())"
    env = dict(os.environ, AINNOFACE_NNPACK="0")
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert res.stdout.split()[-1] == "False"


@pytest.mark.skipif(not nnpack_enabled(), reason="torch built without NNPACK")
def test_model_outputs_with_and_without_nnpack(monkeypatch):
    """The R18 CPU config at 128 channels: on a 320x256 image P2 (80x64) and the FPN's P2 conv
    go through NNPACK; the head's outputs equal those of the plain convolutions."""
    from ainnoface_d2 import get_ainnoface_cfg
    from ainnoface_d2.modeling import layers

    from detectron2.modeling import build_model

    config = os.path.join(os.path.dirname(__file__), "..", "configs", "ainnoface_R18_cpu.yaml")
    cfg = get_ainnoface_cfg(
        config, ["MODEL.FPN.OUT_CHANNELS", 128, "MODEL.AINNOFACE.RFE_BRANCH_CHANNELS", 32]
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.rand(1, 3, 256, 320) * 255
    calls = []
    fast = torch._nnpack_spatial_convolution

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return fast(*args, **kwargs)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", counted)

    def head_outputs(enabled):
        monkeypatch.setitem(layers._nnpack, "enabled", enabled)
        with torch.no_grad():
            x = model.preprocess_image([{"image": image[0]}]).tensor
            features = model.backbone(x)
            return model.head([features[f] for f in model.head_in_features])

    plain = head_outputs(False)
    assert not calls
    nnpack = head_outputs(True)
    # FPN output conv and 3 subnet passes x 2 convs on P2 (C2 cls, P2 cls, P2 box).
    assert len(calls) == 7 and all(s[-2:] == (64, 80) for s in calls), calls
    for a_maps, b_maps in zip(plain, nnpack):
        for a, b in zip(a_maps, b_maps):
            assert (a - b).abs().max() <= 1e-4 * a.abs().max().clamp(min=1.0)


def test_cpu_paths_under_bfloat16_autocast():
    """CPU autocast (the benchmark's AMP smoke test, bf16 inference on CPU): every fast path
    either handles the lower precision or steps aside; results match fp32 to bf16 accuracy."""
    from ainnoface_d2.modeling.head import _subnet

    torch.manual_seed(0)
    net = _subnet(NNPACK_MIN_CHANNELS, True, NNPACK_MIN_CHANNELS // 4).eval()
    c6 = GemmConv2d(NNPACK_MIN_CHANNELS, 64, kernel_size=3, stride=2, padding=1)
    for module in (net, c6):
        for x in (
            torch.randn(1, NNPACK_MIN_CHANNELS, 60, 80),
            torch.randn(2, NNPACK_MIN_CHANNELS, 9, 13),
        ):
            with torch.no_grad():
                want = module(x)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    got = module(x)
            assert got.dtype == torch.bfloat16
            assert (got.float() - want).abs().max() <= 0.05 * want.abs().max()
