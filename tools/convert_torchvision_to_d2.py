#!/usr/bin/env python
"""Convert a torchvision ImageNet ResNet checkpoint into Detectron2's backbone format.

AInnoFace uses a ResNet-152 backbone (arXiv 1905.01585); Detectron2's model zoo has no ImageNet
ResNet-152 in its own (MSRA/Caffe2) format, but torchvision has ResNet-18/34/50/101/152. This tool
renames torchvision's keys to Detectron2's ``build_resnet_backbone`` names and writes the pickle
that ``DetectionCheckpointer`` loads with its name-matching heuristics (the same file layout as
Detectron2's ``tools/convert-torchvision-to-d2.py``)::

    conv1                    -> stem.conv1          bn1 -> stem.conv1.norm
    layer{N}.{i}.conv{k}     -> res{N+1}.{i}.conv{k}
    layer{N}.{i}.bn{k}       -> res{N+1}.{i}.conv{k}.norm
    layer{N}.{i}.downsample.0 / .1 -> res{N+1}.{i}.shortcut / shortcut.norm
    fc.*, *.num_batches_tracked    -> dropped

Usage::

    python tools/convert_torchvision_to_d2.py resnet152-394f9c45.pth R-152-torchvision.pkl
    # or let torchvision download the ImageNet weights first (needs a network connection):
    python tools/convert_torchvision_to_d2.py --download resnet152 R-152-torchvision.pkl

(``--download`` calls ``torchvision.models.resnet152(weights="IMAGENET1K_V1")``, which stores the
file under ``$TORCH_HOME/hub/checkpoints``.)

The converted weights expect torchvision's preprocessing and block layout, so a config that uses
them needs::

    MODEL:
      WEIGHTS: "R-152-torchvision.pkl"
      PIXEL_MEAN: [123.675, 116.280, 103.530]
      PIXEL_STD: [58.395, 57.120, 57.375]
      RESNETS:
        DEPTH: 152
        STRIDE_IN_1X1: False   # torchvision puts the stride in the 3x3 conv
    INPUT:
      FORMAT: "RGB"

For ResNet-18/34, Detectron2 builds BasicBlocks and needs ``MODEL.RESNETS.RES2_OUT_CHANNELS: 64``
(and ``DEPTH: 18`` or ``34``). Batch-norm layers become ``FrozenBN`` (``MODEL.RESNETS.NORM``), which
with the converted running statistics computes what torchvision's BatchNorm does in eval mode.
"""

import argparse
import logging
import pickle
import re
import sys
from collections import OrderedDict
from pathlib import Path

import torch

logger = logging.getLogger("convert_torchvision_to_d2")

DOWNLOADABLE = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

_RULES = [
    (re.compile(r"^conv1\."), "stem.conv1."),
    (re.compile(r"^bn1\."), "stem.conv1.norm."),
    (re.compile(r"^layer(\d+)\."), lambda m: f"res{int(m.group(1)) + 1}."),
    (re.compile(r"\.bn(\d+)\."), r".conv\1.norm."),
    (re.compile(r"\.downsample\.0\."), ".shortcut."),
    (re.compile(r"\.downsample\.1\."), ".shortcut.norm."),
]


def convert_key(key: str) -> str | None:
    """Detectron2's name for a torchvision ResNet key, or None for keys that are dropped."""
    if key.startswith("fc.") or key.endswith("num_batches_tracked"):
        return None
    new = key
    for pattern, repl in _RULES:
        new = pattern.sub(repl, new)
    return new


def convert_state_dict(state_dict) -> "OrderedDict[str, object]":
    """Rename a torchvision ResNet ``state_dict``; values become numpy arrays (as in d2's tool).

    Raises ValueError for keys that are not part of a torchvision ResNet, so that a wrong file
    (a detector checkpoint, another architecture) is not half-converted silently.
    """
    known = re.compile(r"^(conv1\.|bn1\.|fc\.|layer\d+\.\d+\.(conv\d|bn\d|downsample\.[01])\.)")
    converted = OrderedDict()
    for key, value in state_dict.items():
        if not known.match(key):
            raise ValueError(
                f"Key {key!r} is not a torchvision ResNet key; is this an ImageNet ResNet "
                "checkpoint from torchvision?"
            )
        new = convert_key(key)
        if new is None:
            continue
        converted[new] = value.detach().cpu().numpy()
    return converted


def load_torchvision_state_dict(path: str):
    """Read a torchvision checkpoint (a plain state_dict, or one under "state_dict"/"model")."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if wrapper in obj and isinstance(obj[wrapper], dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path}: expected a state_dict of tensors, got {type(obj).__name__}.")
    return obj


def download_torchvision_state_dict(arch: str):
    """Download torchvision's IMAGENET1K_V1 weights of ``arch`` (needs a network connection)."""
    import torchvision

    model = getattr(torchvision.models, arch)(weights="IMAGENET1K_V1")
    return model.state_dict()


def save_d2_checkpoint(converted, output: str) -> None:
    payload = {"model": converted, "__author__": "torchvision", "matching_heuristics": True}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as f:
        pickle.dump(payload, f)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert a torchvision ImageNet ResNet checkpoint to Detectron2's format."
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="[input.pth] output.pkl")
    parser.add_argument(
        "--download",
        choices=DOWNLOADABLE,
        help="download torchvision's IMAGENET1K_V1 weights of this model instead of reading "
        "input.pth (then give only output.pkl)",
    )
    args = parser.parse_args(argv)
    if args.download:
        if len(args.paths) != 1:
            parser.error("with --download give only the output path")
        output = args.paths[0]
        state_dict = download_torchvision_state_dict(args.download)
        source = f"torchvision {args.download} IMAGENET1K_V1"
    else:
        if len(args.paths) != 2:
            parser.error("give input.pth and output.pkl (or --download ARCH output.pkl)")
        source, output = args.paths
        if not Path(source).is_file():
            parser.error(f"input checkpoint not found: {source}")
        try:
            state_dict = load_torchvision_state_dict(source)
        except (ValueError, pickle.UnpicklingError, RuntimeError) as e:
            parser.error(f"cannot read {source}: {e}")
    try:
        converted = convert_state_dict(state_dict)
    except ValueError as e:
        parser.error(f"{source}: {e}")
    save_d2_checkpoint(converted, output)
    logger.info("Converted %d tensors from %s into %s", len(converted), source, output)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from ainnoface_d2.cli import run_cli
    except ImportError:  # the conversion itself needs torch only
        sys.exit(main())
    sys.exit(run_cli(main))
