"""CPU fast paths of AInnoFace's convolutions: matrix products and NNPACK, where they beat oneDNN.

A 1x1, stride-1, ungrouped convolution of an NCHW tensor is ``W @ X`` per image, with ``X`` the
(C, H*W) view of the image. On the CPU, oneDNN's convolution is up to 2.4x slower than the same
product in BLAS once the map leaves the cache (measured on 2 cores with torch 2.14: 256->256 at
120x160, i.e. P2 of a 640x480 image, 42 ms as a conv vs 18 ms as ``addmm``; never slower at the
other sizes of the R50 config). AInnoFace has many such convs on its largest maps (the RFE's
entry and fuse convs on both steps, the first-step projections and the FPN laterals), so
:class:`Conv1x1` uses the product on CPU tensors and ``F.conv2d`` everywhere else (cuDNN, or a
channels-last input). Same parameters and state-dict keys as a convolution, same function.

:class:`GemmConv2d` does the same for a general convolution through ``F.unfold`` (im2col). It is
used only for SRN's C6 conv (3x3, stride 2, 2048->1024 channels on the stride-32 map), which
oneDNN runs at a small fraction of its speed elsewhere (its 75 MB of weights are re-laid out on
every call): 59 ms as a conv vs 22 ms as unfold + ``addmm`` at 640x480 on 2 cores. For the
model's other convolutions oneDNN is as fast or faster (measured), so they stay convolutions.

:class:`Conv3x3` (the subnets' and the FPN's stride-1 3x3 convs) runs through NNPACK's fast
convolution (Winograd / FFT, the one torch ships) at inference on the CPU, for maps of at least
4,800 pixels and 128 channels: measured on 2 cores, 256 channels, 120x160 (P2 of a 640x480
image) 121 ms with oneDNN vs 72 ms, 60x80 31 vs 21 ms, 240x320 392 vs 245 ms; below that size,
or with 64 channels at 120x160, oneDNN is faster (48x64: equal; 30x40: 6.5 vs 12 ms). torch
itself uses NNPACK only for batches of 16 or more. Results differ from oneDNN's by ~1.5e-5 of the
output's magnitude (fp32 throughout). Training (autograd), autocast, other dtypes and devices
use ``F.conv2d``. ``AINNOFACE_NNPACK=0`` turns it off; if NNPACK is missing or fails once, it
is off for the process (with a warning).
"""

import logging
import os

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d
from torch import Tensor

__all__ = [
    "Conv1x1",
    "Conv3x3",
    "GemmConv2d",
    "autocast_cpu_enabled",
    "conv1x1",
    "cpu_fp32_inference",
    "nnpack_enabled",
    "use_gemm",
]

logger = logging.getLogger(__name__)

NNPACK_MIN_PIXELS = 4800
NNPACK_MIN_CHANNELS = 128
_nnpack = {}  # "enabled": bool, decided on first use


def use_gemm(x: Tensor) -> bool:
    """Whether the matrix-product forms below apply: a contiguous 4-D CPU tensor."""
    return x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous()


def _gemm(weight2d: Tensor, bias: Tensor, x3: Tensor) -> Tensor:
    """``weight2d @ x3[i] + bias`` for every image i of an (N, K, L) tensor -> (N, O, L)."""
    n = x3.shape[0]
    o = weight2d.shape[0]
    if n == 1:
        x2 = x3[0]
        out = torch.mm(weight2d, x2) if bias is None else torch.addmm(bias.view(o, 1), weight2d, x2)
        return out.unsqueeze(0)
    w3 = weight2d.expand(n, *weight2d.shape)
    if bias is None:
        return torch.bmm(w3, x3)
    return torch.baddbmm(bias.view(1, o, 1).expand(n, o, 1), w3, x3)


def conv1x1(x: Tensor, weight: Tensor, bias: Tensor = None) -> Tensor:
    """``F.conv2d(x, weight, bias)`` for a (O, C, 1, 1) weight, as a GEMM on contiguous CPU
    tensors."""
    if not use_gemm(x):
        return F.conv2d(x, weight, bias)
    n, c, h, w = x.shape
    o = weight.shape[0]
    return _gemm(weight.view(o, c), bias, x.view(n, c, h * w)).view(n, o, h, w)


class _CPUConv2d(Conv2d):
    """Detectron2's :class:`~detectron2.layers.Conv2d` (optional ``norm`` and ``activation``)
    whose convolution, :meth:`_conv`, has a CPU fast path. Subclasses with a fixed geometry set
    ``FIXED`` (argument -> the only value allowed, filled in by default)."""

    FIXED = {}

    def __init__(self, in_channels, out_channels, *args, **kwargs):
        for key, value in self.FIXED.items():
            given = kwargs.pop(key, value)
            if given not in (value, (value, value)):
                raise ValueError(f"{type(self).__name__} needs {key}={value}, got {given}")
        super().__init__(in_channels, out_channels, *args, **self.FIXED, **kwargs)

    def _conv(self, x):
        raise NotImplementedError

    def forward(self, x):
        x = self._conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class Conv1x1(_CPUConv2d):
    """A plain 1x1 conv computed by :func:`conv1x1`."""

    FIXED = {"kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}

    def _conv(self, x):
        return conv1x1(x, self.weight, self.bias)


class GemmConv2d(_CPUConv2d):
    """A convolution computed on CPU tensors as im2col (``F.unfold``) + matrix product;
    ``F.conv2d`` elsewhere. Ungrouped, zero-padded convolutions only."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.padding_mode != "zeros":
            raise ValueError("GemmConv2d supports ungrouped, zero-padded convolutions only")

    def _conv(self, x):
        if use_gemm(x) and x.numel() > 0:
            n, _, h, w = x.shape
            kh, kw = self.kernel_size
            (ph, pw), (sh, sw), (dh, dw) = self.padding, self.stride, self.dilation
            ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
            weight = self.weight.view(self.out_channels, -1)
            return _gemm(weight, self.bias, cols).view(n, self.out_channels, ho, wo)
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


def nnpack_enabled() -> bool:
    """Whether :class:`Conv3x3` may use NNPACK in this process (decided once)."""
    if "enabled" not in _nnpack:
        enabled = os.environ.get("AINNOFACE_NNPACK", "1") != "0"
        if enabled:
            available = getattr(torch, "_nnpack_available", None)
            # _nnpack_available() also initialises NNPACK; the op fails before that.
            enabled = available is not None and hasattr(torch, "_nnpack_spatial_convolution")
            enabled = enabled and bool(available())
        _nnpack["enabled"] = enabled
    return _nnpack["enabled"]


def autocast_cpu_enabled() -> bool:
    """Whether CPU autocast is on (the fp32-only fast paths then step aside)."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def cpu_fp32_inference(x: Tensor) -> bool:
    """Whether ``x`` takes the fp32-only inference fast paths (NNPACK, RFE's lean route): a
    contiguous fp32 CPU tensor, no autograd, no autocast."""
    return (
        not torch.is_grad_enabled()
        and use_gemm(x)
        and x.dtype == torch.float32
        and not autocast_cpu_enabled()
    )


class Conv3x3(_CPUConv2d):
    """A plain 3x3 'same' conv; at CPU inference on large maps through NNPACK (see the module
    doc), else ``F.conv2d``."""

    FIXED = {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1, "groups": 1}

    def _use_nnpack(self, x):
        return (
            cpu_fp32_inference(x)
            and x.shape[1] >= NNPACK_MIN_CHANNELS
            and x.shape[2] * x.shape[3] >= NNPACK_MIN_PIXELS
            and nnpack_enabled()
        )

    def _conv(self, x):
        if self._use_nnpack(x):
            try:
                return torch._nnpack_spatial_convolution(x, self.weight, self.bias, [1, 1])
            except RuntimeError as e:
                _nnpack["enabled"] = False
                logger.warning("NNPACK convolution failed (%s); using F.conv2d from now on", e)
        return F.conv2d(x, self.weight, self.bias, padding=1)
