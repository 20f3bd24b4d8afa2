"""tools/benchmark.py: the model's inference task at several image sizes and per-level candidate
caps, the other subcommands on tiny inputs; and what the benchmarks share
(ainnoface_d2/analysis.py: the FLOP counter, the stock RetinaNet config, the size parser)."""

import json

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


def _write_bbx_gt(root, split, images):
    """A WIDER FACE annotation file: ``images`` is ``[(name, [(x, y, w, h, invalid), ...])]``."""
    lines = []
    for name, boxes in images:
        lines += [name, str(len(boxes))]
        lines += [f"{x} {y} {w} {h} 0 0 0 {inv} 0 0" for x, y, w, h, inv in boxes]
    path = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_crowded_picks_the_layouts_and_measures_each(tmp_path, capsys):
    grid = [(20 * (i % 40), 700 + 20 * (i // 40), 16, 16, 0) for i in range(90)]
    images = [
        ("0_A/0_A_1.jpg", [(10, 10, 30, 30, 0), (50, 10, 30, 30, 1)]),
        ("0_A/0_A_2.jpg", [(10 * i, 10, 8, 8, 0) for i in range(4)] + [(0, 0, 0, 5, 0)]),
        ("1_B/1_B_3.jpg", grid + [(0, 0, 40, 40, 1)]),  # 90 valid faces down to y = 756
    ]
    for split in ("train", "val"):
        _write_bbx_gt(tmp_path, split, images)
    ordinary, crowded, *top = benchmark.wider_layouts(tmp_path, "train", ["ordinary", "top3"])
    assert ordinary[0] == "0_A/0_A_2.jpg" and len(ordinary[2]) == 4  # the zero-width box dropped
    assert ordinary[1] == (683, 1024)
    assert [r[0] for r in (crowded, *top)] == ["1_B/1_B_3.jpg", "0_A/0_A_2.jpg", "0_A/0_A_1.jpg"]
    assert crowded[1] == (756, 1024) and crowded[2][0] == [0.0, 700.0, 16.0, 716.0]
    assert crowded[3].tolist() == [False] * 90 + [True]
    with pytest.raises(SystemExit):
        benchmark.main(["crowded", "--wider-root", str(tmp_path), "--layouts", "busiest"])

    tiny = ["--config-file", SMALL_CONFIG, "--steps", "1"]
    opts = ["INPUT.FACE.TRAIN_SIZE", "128"] + [str(v) for kv in TINY_MODEL_OPTS.items() for v in kv]
    argv = ["crowded", "--wider-root", str(tmp_path), "--layouts", "crowded", *tiny]
    for mode, count in (("train", 90), ("match", None)):  # the small config drops ignore boxes
        assert benchmark.main(argv + ["--mode", mode, "--one", "0", *opts]) == 0
        row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert row["image"] == "1_B/1_B_3.jpg" and row["valid_faces"] == 90
        assert row["peak_gb"] > 0 and row["seconds"] > 0
        if count is not None:
            assert row["count"] == count
    test = ["crowded", "--wider-root", str(tmp_path), "--mode", "test", "--layouts", "top1"]
    assert benchmark.main(test + tiny + ["TEST.FACE.PROTOCOL", "original", *opts]) == 0
    out = capsys.readouterr().out
    # every anchor scored a face: the config's cap of detections is reached
    assert "1_B/1_B_3.jpg" in out and " 300 " in out.splitlines()[-1]
