"""tools/benchmark.py: the model's inference task at several image sizes and per-level candidate
caps, the other subcommands on tiny inputs; and what the benchmarks share
(ainnoface_d2/analysis.py: the FLOP counter, the stock RetinaNet config, the size parser)."""

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
import ainnoface_d2.modeling.meta_arch as meta_arch
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.analysis import count_flops, parse_sizes, stock_retinanet_cfg

import pytest
import torch
from _builtin_fixture import SMALL_CONFIG, TINY_MODEL_OPTS
from _scripts import load_script

benchmark = load_script("tools/benchmark.py", "ainnoface_benchmark_tool")


def test_infer_task_times_every_size_and_cap(monkeypatch, capsys):
    """Every (size, cap) pair gets its row, and each timed call runs with that row's cap."""
    seen = []  # (P2 locations, cap) of every post-processing call

    def recording(scores, *args, topk, **kwargs):
        seen.append((scores[0].shape[1] // 2, topk))  # P2 has two anchors per location
        return decode(scores, *args, topk=topk, **kwargs)

    decode = meta_arch.decode_detections
    monkeypatch.setattr(meta_arch, "decode_detections", recording)
    opts = [str(v) for kv in TINY_MODEL_OPTS.items() for v in kv]
    argv = ["--config-file", SMALL_CONFIG, "--device", "cpu", "--task", "infer"]
    argv += ["--model-order", "ainnoface", "--infer-size", "64x32,96x64", "--topk", "5,50"]
    argv += ["--score-thresh", "0", "--infer-batch", "0", "--amp", "off", "--malloc", "default"]
    argv += ["--infer-iters", "2", "--infer-warmup", "1", "--settle", "0", *opts]
    rows = benchmark.main(argv)
    assert [r.key for r in rows] == [
        "params_M",
        "infer_ms_bs1_64x32_topk5_fp32",
        "infer_ms_bs1_64x32_topk50_fp32",
        "infer_ms_bs1_96x64_topk5_fp32",
        "infer_ms_bs1_96x64_topk50_fp32",
    ]
    assert all(set(r.values) == {"ainnoface"} and r.values["ainnoface"] > 0 for r in rows)
    assert "infer latency bs1 @ 96x64, top-50/level (ms), fp32" in capsys.readouterr().out
    # 1 warm-up + 2 timed calls per row; P2 (stride 4) of a 64x32 image: 8 x 16 locations
    assert seen == [(8 * 16, 5)] * 3 + [(8 * 16, 50)] * 3 + [(16 * 24, 5)] * 3 + [(16 * 24, 50)] * 3


def test_bad_lists_are_refused():
    parser = benchmark.get_parser()
    assert parser.parse_args(["--topk", "1000,6000"]).topk == [1000, 6000]
    assert parser.parse_args(["--infer-size", "1024x768,2100x1575"]).infer_size == [
        (1024, 768),
        (2100, 1575),
    ]
    for bad in (["--topk", "0"], ["--topk", "10,x"], ["--infer-size", "1024"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    with pytest.raises(SystemExit, match="each once"):
        benchmark._resolve_args(parser.parse_args(["--model-order", "ainnoface,ainnoface"]))


def test_subcommands_run_on_tiny_inputs(capsys):
    assert benchmark.main(["mapper", "--iters", "2", "--num-images", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "images/s per CPU core" in out and "1 synthetic 1024x600-800 JPEGs" in out
    argv = ["topk", "--config-file", SMALL_CONFIG, "--sizes", "64x48", "--topk", "7"]
    assert benchmark.main(argv + ["--reps", "1", "--logit-mean", "3"]) == 0
    # logits N(3, 2): nearly every anchor is a candidate, so each level hands its cap of 7 to NMS
    row = capsys.readouterr().out.strip().splitlines()[-1].split("|")
    assert row[1].strip() == "64x48" and row[3].strip() == "7" and 0 < int(row[5]) <= 6 * 7


class _TwoConvs(torch.nn.Module):
    """The interface count_flops reads: preprocess_image, backbone, head, head_in_features."""

    head_in_features = ["p2"]

    def __init__(self):
        super().__init__()
        self.backbone = _Backbone()
        self.head = _Head()

    def preprocess_image(self, batched_inputs):
        from detectron2.structures import ImageList

        return ImageList.from_tensors([x["image"] for x in batched_inputs], 32)


class _Backbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return {"p2": self.conv(x)}


class _Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 2, 1)

    def forward(self, features):
        return [self.conv(f) for f in features]


def test_flop_counter_counts_multiply_adds_of_the_padded_input():
    counts = count_flops(_TwoConvs(), 50, 30)  # padded to 64 x 32 (divisibility 32)
    assert counts["padded_input"] == "64x32"
    assert counts["backbone"] * 1e9 == 64 * 32 * 4 * 3 * 9
    assert counts["head"] * 1e9 == 64 * 32 * 2 * 4
    assert counts["total"] == counts["backbone"] + counts["head"]


def test_stock_retinanet_shares_the_resnet_and_has_p2_to_p7():
    face = get_ainnoface_cfg(SMALL_CONFIG)
    stock = stock_retinanet_cfg(face, anchors_per_location=2, score_thresh=0.0)
    for key in ("DEPTH", "RES2_OUT_CHANNELS", "STRIDE_IN_1X1", "NORM"):
        assert stock.MODEL.RESNETS[key] == face.MODEL.RESNETS[key]
    assert stock.MODEL.FPN.OUT_CHANNELS == face.MODEL.FPN.OUT_CHANNELS
    assert stock.MODEL.RETINANET.IN_FEATURES == ["p2", "p3", "p4", "p5", "p6", "p7"]
    assert stock.MODEL.ANCHOR_GENERATOR.SIZES[0] == [16, 16 * 2**0.5]
    assert stock.MODEL.RETINANET.SCORE_THRESH_TEST == 0.0 and stock.INPUT.FORMAT == "RGB"


def test_size_parser():
    assert parse_sizes("640x480,1024X768") == [(640, 480), (1024, 768)]
    for bad in ("640", "0x480", "axb", ""):
        with pytest.raises(Exception, match="WIDTHxHEIGHT|WxH"):
            parse_sizes(bad)
