"""tools/benchmark.py's inference task at several image sizes and per-level candidate caps."""

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
import ainnoface_d2.modeling.meta_arch as meta_arch

import pytest
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
