"""Test-size protocols: how an image is sized for the detector at test time.

Every AP is labelled with the protocol it was measured under, so that figures taken at different
sizes are never compared by mistake. ``TEST.FACE.SIZE_PROTOCOLS`` lists those an evaluation runs
(:class:`ainnoface_d2.engine.Trainer`), each on every ``DATASETS.TEST`` split;
``TEST.FACE.PROTOCOL`` names the one that :class:`ainnoface_d2.FaceDetector` and the tools run:

* ``original``: one pass per image at the test size of ``INPUT.MIN_SIZE_TEST`` (0 in the shipped
  configs: the original resolution, as the WIDER FACE benchmark is usually reported). Outputs in
  ``OUTPUT_DIR/inference/<dataset>``.
* ``vga``: one pass per image resized so that it fits 640x480 (shorter side 480, longer side at
  most 640: Detectron2's ``ResizeShortestEdge(480, max_size=640)``), the single-scale setting
  SCRFD reports. Outputs in ``OUTPUT_DIR/inference_vga/<dataset>``.
* ``multiscale``: SRN's multi-scale + flip testing with box voting
  (:class:`ainnoface_d2.modeling.tta.AInnoFaceWithTTA`, ``TEST.AUG.FACE``); also run when
  Detectron2's ``TEST.AUG.ENABLED`` is set. Outputs in ``OUTPUT_DIR/inference_TTA/<dataset>``.
* ``pyramid``: copies from the image fitted into ``TEST.FACE.PYRAMID.BASE_SIZE`` (the scale the
  model was trained at) up to scale 1, each face kept from the smallest copy where it is at least
  ``TEST.FACE.PYRAMID.MIN_FACE`` pixels (:func:`ainnoface_d2.modeling.tta.pyramid_copies`).
  Outputs in ``OUTPUT_DIR/inference_pyramid/<dataset>``.

This module owns their names, sizes, output folders, resizing, wrapping and command-line parsing.
They are not the *scoring* protocols ``TEST.WIDER_FACE.PROTOCOL`` (``matlab`` / ``python``: how
the official tool's arithmetic is reproduced, see
:mod:`ainnoface_d2.evaluation.wider_face_protocol`).
"""

import argparse
import logging

from detectron2.data import transforms as T

from .data import FaceDatasetMapper
from .modeling.tta import AInnoFaceWithTTA

__all__ = [
    "SIZE_PROTOCOLS",
    "VGA_LONG_SIDE",
    "VGA_SHORT_SIDE",
    "add_protocol_arguments",
    "check_size_protocol",
    "output_folder",
    "parse_size_protocol",
    "parse_size_protocols",
    "result_suffix",
    "single_pass_resize",
    "size_protocol_mapper",
    "size_protocols",
    "wrap_model",
]

logger = logging.getLogger(__name__)

SIZE_PROTOCOLS = ("original", "vga", "multiscale", "pyramid")
VGA_SHORT_SIDE, VGA_LONG_SIDE = 480, 640

# protocol -> (output folder under OUTPUT_DIR, suffix of the result keys)
_OUTPUTS = {
    "original": ("inference", ""),
    "vga": ("inference_vga", "_vga"),
    "multiscale": ("inference_TTA", "_TTA"),
    "pyramid": ("inference_pyramid", "_pyramid"),
}


def check_size_protocol(name, where=None):
    """``name`` if it is a protocol, else ``ValueError`` naming ``where`` it came from."""
    if name not in SIZE_PROTOCOLS:
        source = f" ({where})" if where else ""
        raise ValueError(
            f"unknown test-size protocol {name!r}{source}: expected one of {SIZE_PROTOCOLS}"
        )
    return name


def output_folder(protocol):
    """The folder under ``OUTPUT_DIR`` that an evaluation under ``protocol`` writes to."""
    return _OUTPUTS[check_size_protocol(protocol)][0]


def result_suffix(protocol):
    """The suffix of the result keys (``<dataset><suffix>``) of ``protocol``."""
    return _OUTPUTS[check_size_protocol(protocol)][1]


def size_protocols(cfg):
    """The test-size protocols an evaluation runs: ``TEST.FACE.SIZE_PROTOCOLS``, plus
    ``multiscale`` when ``TEST.AUG.ENABLED``; an unknown name raises ``ValueError``."""
    names = list(dict.fromkeys(cfg.TEST.FACE.SIZE_PROTOCOLS))
    unknown = [n for n in names if n not in SIZE_PROTOCOLS]
    if unknown:
        raise ValueError(
            f"TEST.FACE.SIZE_PROTOCOLS: unknown {unknown}, expected names from {SIZE_PROTOCOLS}"
        )
    if cfg.TEST.AUG.ENABLED and "multiscale" not in names:
        names.append("multiscale")
    return names


def single_pass_resize(cfg, protocol):
    """The resize of a one-pass protocol (``vga``: into 640x480; ``original``: to
    ``INPUT.MIN_SIZE_TEST`` when it is set), or None: the image as it is (the protocols with
    copies resize in :func:`wrap_model`'s wrapper)."""
    if protocol == "vga":
        return T.ResizeShortestEdge(VGA_SHORT_SIDE, VGA_LONG_SIDE)
    if protocol == "original" and cfg.INPUT.MIN_SIZE_TEST > 0:
        return T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
    return None


def size_protocol_mapper(cfg, protocol):
    """The test-time ``FaceDatasetMapper`` of a protocol (``multiscale`` and ``pyramid`` read the
    image as ``original`` does; the TTA wrapper resizes it)."""
    if protocol == "vga":
        return FaceDatasetMapper(
            is_train=False,
            augmentations=[single_pass_resize(cfg, protocol)],
            image_format=cfg.INPUT.FORMAT,
        )
    if cfg.INPUT.MIN_SIZE_TEST > 0:
        logger.warning(
            "INPUT.MIN_SIZE_TEST is %d: the '%s' protocol tests at that short side, not at the "
            "original resolution.",
            cfg.INPUT.MIN_SIZE_TEST,
            protocol,
        )
    return FaceDatasetMapper(cfg, is_train=False)


def wrap_model(cfg, model, protocol):
    """``model`` as ``protocol`` runs it: wrapped with SRN's copies (``multiscale``) or the
    pyramid's (``pyramid``, ``TEST.FACE.PYRAMID``); the one-pass protocols (``original``,
    ``vga``: their resize is :func:`single_pass_resize`) return it as it is."""
    if protocol == "multiscale":
        return AInnoFaceWithTTA(cfg, model)
    if protocol == "pyramid":
        p = cfg.TEST.FACE.PYRAMID
        return AInnoFaceWithTTA(cfg, model, pyramid=(tuple(p.BASE_SIZE), p.STEP, p.MIN_FACE))
    return model


def parse_size_protocol(text):
    """``argparse`` type of one protocol name."""
    try:
        return check_size_protocol(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_size_protocols(text):
    """``argparse`` type of a comma-separated list of protocol names."""
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in SIZE_PROTOCOLS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(SIZE_PROTOCOLS)}, got {text!r}"
        )
    return names


def add_protocol_arguments(parser):
    """``--tta`` and ``--protocol``, as the tools that run :class:`ainnoface_d2.FaceDetector`
    take them."""
    parser.add_argument(
        "--tta", action="store_true", help="multi-scale + flip testing (TEST.AUG.FACE.*)"
    )
    parser.add_argument(
        "--protocol",
        type=parse_size_protocol,
        metavar="{" + ",".join(SIZE_PROTOCOLS) + "}",
        help="test-size protocol (default: the config's TEST.FACE.PROTOCOL; --tta: multiscale)",
    )
