"""ResNet + six-level FPN backbone with SRN's two feature streams (SRN, arXiv 1809.02693, Sec. 3.1).

The backbone returns two aligned feature pyramids with the same strides (4, 8, ..., 128):

* ``c2`` .. ``c7``: the *first-step* features. C2-C5 are ResNet stages res2-res5; C6 and C7 are
  extra 3x3 stride-2 convs on C5 and C6 (SRN: 2048->1024->256 channels). Each is projected to the
  head width by a 1x1 conv.
* ``p2`` .. ``p7``: the *second-step* features, an FPN over C2-C5: P5 is a 3x3 conv on the lateral
  of C5, P6 a 3x3 stride-2 conv on that lateral, P7 a 3x3 stride-2 conv on P6; P4-P2 come from
  top-down upsample-and-add of laterals, each followed by a 3x3 conv.

Three details are options because they differ between SRN's code (``resnet_srn.py`` and its
config) and the RetinaNet/Detectron2 habits this project started from: a ReLU on C6 and P6 before
the C7 and P7 convs (``extra_relu``; SRN has none), the top-down upsampling (``upsample``:
"nearest" or SRN's "bilinear") and the initialisation of every conv around the ResNet (``init``:
"xavier" or SRN's "normal", N(0, 0.01)). The paper configs use SRN's choices.

Two-step classification uses (c_l, p_l) on the shallow levels, two-step regression on the deep ones.
Everything around the ResNet is registered as ``build_ainnoface_resnet_fpn_backbone``.
"""

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import nn

__all__ = ["AInnoFaceFPN", "build_ainnoface_resnet_fpn_backbone"]


def _conv(in_ch, out_ch, kernel, stride, norm):
    conv = Conv2d(
        in_ch,
        out_ch,
        kernel_size=kernel,
        stride=stride,
        padding=kernel // 2,
        bias=not norm,
        norm=get_norm(norm, out_ch),
    )
    weight_init.c2_xavier_fill(conv)
    return conv


class AInnoFaceFPN(Backbone):
    """ResNet bottom-up, C6/C7 extras, first-step projections and a P2-P7 FPN."""

    def __init__(
        self,
        bottom_up,
        in_features,
        out_channels,
        c6_channels,
        c7_channels,
        norm="",
        extra_relu=True,
        upsample="nearest",
        init="xavier",
    ):
        """
        Args:
            bottom_up (Backbone): a ResNet producing ``in_features`` (res2..res5).
            in_features (list[str]): the four ResNet stages, shallowest first.
            out_channels (int): width of every output feature (the heads' width).
            c6_channels, c7_channels (int): widths of the extra C6 and C7 convs.
            norm (str): normalisation of the FPN/extra convs ("" = none, as in SRN).
            extra_relu (bool): ReLU on C6 / P6 before the C7 / P7 convs (SRN: False).
            upsample (str): top-down upsampling, "nearest" or "bilinear" (SRN).
            init (str): initialisation of the convs outside the ResNet: "xavier"
                (Detectron2's ``c2_xavier_fill``) or "normal" (N(0, 0.01), bias 0; SRN).
        """
        super().__init__()
        assert len(in_features) == 4, f"expected res2..res5, got {in_features}"
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        shapes = bottom_up.output_shape()
        in_channels = [shapes[f].channels for f in in_features]
        strides = [shapes[f].stride for f in in_features]
        if strides != [4, 8, 16, 32]:
            raise ValueError(f"AInnoFace needs ResNet stages with strides 4-32, got {strides}")

        self.c6 = _conv(in_channels[-1], c6_channels, 3, 2, norm)
        self.c7 = _conv(c6_channels, c7_channels, 3, 2, norm)
        c_channels = in_channels + [c6_channels, c7_channels]
        # First-step projections of C2-C7 to the head width.
        self.c_proj = nn.ModuleList(_conv(c, out_channels, 1, 1, norm) for c in c_channels)
        # FPN: laterals of C2-C5, 3x3 output convs of P2-P5, P6/P7 extras.
        self.lateral = nn.ModuleList(_conv(c, out_channels, 1, 1, norm) for c in in_channels)
        self.output = nn.ModuleList(_conv(out_channels, out_channels, 3, 1, norm) for _ in range(4))
        self.p6 = _conv(out_channels, out_channels, 3, 2, norm)
        self.p7 = _conv(out_channels, out_channels, 3, 2, norm)

        if upsample not in ("nearest", "bilinear"):
            raise ValueError(
                f"MODEL.AINNOFACE.FPN_UPSAMPLE: 'nearest' or 'bilinear', got {upsample!r}"
            )
        if init not in ("xavier", "normal"):
            raise ValueError(f"MODEL.AINNOFACE.EXTRA_INIT: 'xavier' or 'normal', got {init!r}")
        self.extra_relu = bool(extra_relu)
        self.upsample = upsample
        if init == "normal":
            self._normal_init()

        levels = range(2, 8)
        self._out_features = [f"c{i}" for i in levels] + [f"p{i}" for i in levels]
        self._out_feature_strides = {f: 2 ** int(f[1:]) for f in self._out_features}
        self._out_feature_channels = {f: out_channels for f in self._out_features}

    def _normal_init(self):
        """SRN's N(0, 0.01) weights and zero biases for every conv outside the ResNet."""
        for name, module in self.named_modules():
            if not name.startswith("bottom_up") and isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _top_down(self, x, size):
        if self.upsample == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=size, mode="nearest")

    @property
    def size_divisibility(self):
        # res5 needs a multiple of 32. C6/C7 and P6/P7 come from maps of the same size through
        # the same stride-2 convs, so the C and P streams stay aligned level by level without
        # padding to 128 (which would cost up to 4x more padding pixels).
        return 32

    def forward(self, x):
        bottom_up = self.bottom_up(x)
        c = [bottom_up[f] for f in self.in_features]
        c6 = self.c6(c[-1])
        c7 = self.c7(F.relu(c6) if self.extra_relu else c6)
        c_all = c + [c6, c7]
        out = {f"c{i + 2}": proj(ci) for i, (proj, ci) in enumerate(zip(self.c_proj, c_all))}

        laterals = [lat(ci) for lat, ci in zip(self.lateral, c)]
        top_down = laterals[3]
        p = [None] * 4
        p[3] = self.output[3](top_down)
        for i in (2, 1, 0):
            top_down = laterals[i] + self._top_down(top_down, laterals[i].shape[-2:])
            p[i] = self.output[i](top_down)
        p6 = self.p6(laterals[3])
        p7 = self.p7(F.relu(p6) if self.extra_relu else p6)
        out.update({f"p{i + 2}": pi for i, pi in enumerate(p + [p6, p7])})
        return out

    def output_shape(self):
        return {
            f: ShapeSpec(channels=self._out_feature_channels[f], stride=s)
            for f, s in self._out_feature_strides.items()
        }


@BACKBONE_REGISTRY.register()
def build_ainnoface_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """Detectron2's ResNet (``MODEL.RESNETS``) wrapped in :class:`AInnoFaceFPN`."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    return AInnoFaceFPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        c6_channels=cfg.MODEL.AINNOFACE.C6_CHANNELS,
        c7_channels=cfg.MODEL.AINNOFACE.C7_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        extra_relu=cfg.MODEL.AINNOFACE.EXTRA_RELU,
        upsample=cfg.MODEL.AINNOFACE.FPN_UPSAMPLE,
        init=cfg.MODEL.AINNOFACE.EXTRA_INIT,
    )
