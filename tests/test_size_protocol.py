"""ainnoface_d2/size_protocol.py: the test-size protocols' names, output folders, resizing,
wrapping and command-line parsing, in one place."""

import argparse

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.modeling.tta import AInnoFaceWithTTA
from ainnoface_d2.size_protocol import (
    SIZE_PROTOCOLS,
    check_size_protocol,
    output_folder,
    parse_size_protocol,
    parse_size_protocols,
    result_suffix,
    single_pass_resize,
    wrap_model,
)

import numpy as np
import pytest
import torch
from _builtin_fixture import SMALL_CONFIG


def test_every_protocol_has_its_own_folder_and_suffix():
    folders = [output_folder(p) for p in SIZE_PROTOCOLS]
    suffixes = [result_suffix(p) for p in SIZE_PROTOCOLS]
    assert len(set(folders)) == len(set(suffixes)) == len(SIZE_PROTOCOLS)
    assert (output_folder("original"), result_suffix("original")) == ("inference", "")
    with pytest.raises(ValueError, match="unknown test-size protocol 'srn'"):
        output_folder("srn")


def test_resizing_of_the_one_pass_protocols():
    cfg = get_ainnoface_cfg(SMALL_CONFIG)
    image = np.zeros((1000, 3000, 3), np.uint8)  # 3:1, so the long side limits the VGA fit
    vga = single_pass_resize(cfg, "vga").get_transform(image)
    assert (vga.new_h, vga.new_w) == (213, 640)
    assert single_pass_resize(cfg, "original") is None  # INPUT.MIN_SIZE_TEST 0: as it is
    cfg.defrost()
    cfg.INPUT.MIN_SIZE_TEST = 300
    original = single_pass_resize(cfg, "original").get_transform(image)
    assert (original.new_h, original.new_w) == (300, 900)
    assert (
        single_pass_resize(cfg, "pyramid") is None and single_pass_resize(cfg, "multiscale") is None
    )


def test_wrapping():
    cfg = get_ainnoface_cfg(SMALL_CONFIG)
    model = torch.nn.Identity()
    assert wrap_model(cfg, model, "original") is model and wrap_model(cfg, model, "vga") is model
    pyramid = wrap_model(cfg, model, "pyramid")
    assert isinstance(pyramid, AInnoFaceWithTTA) and pyramid.pyramid == ((192, 256), 2.0, 16.0)
    multiscale = wrap_model(cfg, model, "multiscale")
    assert isinstance(multiscale, AInnoFaceWithTTA) and multiscale.pyramid is None


def test_parsing():
    assert parse_size_protocols("vga,pyramid") == ["vga", "pyramid"]
    assert parse_size_protocol("multiscale") == "multiscale"
    for bad in ("", "vga,640"):
        with pytest.raises(argparse.ArgumentTypeError, match="comma-separated"):
            parse_size_protocols(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="'fit'"):
        parse_size_protocol("fit")
    with pytest.raises(ValueError, match=r"\(TEST.FACE.PROTOCOL\)"):
        check_size_protocol("fit", "TEST.FACE.PROTOCOL")
