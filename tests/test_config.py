"""ainnoface_d2/config.py and configs/: the defaults are the papers' values, and each YAML sets
only what its base does not already give."""

import glob
import math
import os

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import add_ainnoface_config, get_ainnoface_cfg

import pytest
import yaml
from detectron2.config import get_cfg
from detectron2.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
R50 = os.path.join(REPO, "configs", "ainnoface_R50.yaml")


def test_defaults_are_the_papers_values():
    cfg = get_cfg()
    add_ainnoface_config(cfg)
    a, f = cfg.MODEL.AINNOFACE, cfg.INPUT.FACE
    # SRN's test: 6000 candidates per level before NMS at IoU 0.4.
    assert a.TOPK_CANDIDATES_TEST == 6000 and math.isclose(a.NMS_THRESH_TEST, 0.4)
    # SRN's backbone: no ReLU before C7 / P7, bilinear top-down upsampling, N(0, 0.01) init.
    assert (a.EXTRA_RELU, a.FPN_UPSAMPLE, a.EXTRA_INIT) == (False, "bilinear", "normal")
    # Ignore regions on, background anchors covered by an ignore box at IoF >= 0.5 ignored.
    assert f.IGNORE_REGIONS is True and math.isclose(a.IGNORE_IOF_THRESH, 0.5)
    # SRN's crop: the shorter side or U[0.5, 1] of it, with equal odds.
    assert tuple(f.CROP_SCALE_RANGE) == (0.5, 1.0) and f.CROP_FULL_SIDE_PROB == 0.5
    # PyramidBox's data-anchor-sampling: its own bins, capped at twice the face.
    assert f.DATA_ANCHOR_SAMPLING_MAX_UPSCALE == 2.0
    assert f.DATA_ANCHOR_SAMPLING_BINS == "pyramidbox"
    assert a.STC_WARMUP_ITERS == -1 and cfg.TEST.AUG.FACE.VOTE_IOU_PLUS_ONE is True
    # the AInnoFace loss: focal (0.25, 2) and IoU; STC on P2-P4, STR on P5-P7, RFE.
    assert (a.FOCAL_LOSS_ALPHA, a.FOCAL_LOSS_GAMMA) == (0.25, 2.0)
    assert a.STC_LEVELS == [0, 1, 2] and a.STR_LEVELS == [3, 4, 5] and a.USE_RFE
    assert cfg.SOLVER.OPTIMIZER == "SGD" and not cfg.MODEL_EMA.ENABLED
    assert f.GRAYSCALE_PROB == 0.0 and a.HEAD_NORM == ""


def _leaves(node, prefix=()):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _get(cfg, path):
    for key in path:
        cfg = cfg[key]
    return cfg


def _same(a, b):
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_key_a_config_sets_changes_its_base(path):
    with open(path) as f:
        own = yaml.safe_load(f)
    base_file = own.pop("_BASE_", None)
    base = get_ainnoface_cfg(os.path.join(os.path.dirname(path), base_file) if base_file else None)
    merged = get_ainnoface_cfg(path)
    repeated = [
        ".".join(key)
        for key, _ in _leaves(own)
        if key not in (("OUTPUT_DIR",), ("MODEL", "WEIGHTS"), ("MODEL", "RESNETS", "DEPTH"))
        and key != ("VERSION",)  # Detectron2 warns about a config without it
        and _same(_get(merged, key), _get(base, key))
    ]
    assert not repeated, f"{os.path.basename(path)} repeats what its base gives: {repeated}"


def test_paper_config_freezes_only_the_stem():
    cfg = get_ainnoface_cfg(R50, ["MODEL.DEVICE", "cpu"])
    bottom_up = build_model(cfg).backbone.bottom_up
    assert not any(p.requires_grad for p in bottom_up.stem.parameters())
    assert all(p.requires_grad for p in bottom_up.res2.parameters())
