"""Loading and saving weights: Detectron2's ``DetectionCheckpointer`` with checks and atomic files.

:class:`AInnoFaceCheckpointer` is what training, evaluation, the demo, export and
:class:`ainnoface_d2.predictor.FaceDetector` load weights with. Over Detectron2's it

* names the file when it is missing or cannot be read (truncated, text, not made by
  ``torch.save`` or ``pickle``): :class:`CheckpointError`, one line;
* compares the weights with the model they are loaded into, by parameter/buffer name and shape,
  and refuses weights of another network: fewer than half of the model's tensors matched
  (:data:`MIN_MATCHED`). A backbone initialisation file (a ``.pkl`` that Detectron2 loads with its
  name-matching heuristics, e.g. the ImageNet weights of ``tools/convert_torchvision_to_d2.py``)
  is measured against the backbone's bottom-up network only. ``MODEL.AINNOFACE.
  ALLOW_PARTIAL_WEIGHTS`` (``allow_partial=True``) loads such files anyway, with a warning;
* resuming (``--resume``) needs the very model of the config: any difference is an error
  (:func:`check_resumable`), since training would continue from the saved iteration with the rest
  of the model freshly initialised;
* writes checkpoints and ``last_checkpoint`` atomically (:mod:`ainnoface_d2.file_io`): a full disk
  or a killed run leaves the previous files intact.
"""

import logging
import os
import pickle
import zipfile

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

from .file_io import atomic_save_torch, atomic_write

__all__ = [
    "AInnoFaceCheckpointer",
    "CheckpointError",
    "MIN_MATCHED",
    "build_checkpointer",
    "check_resumable",
    "checkpoint_differences",
    "read_checkpoint",
]

logger = logging.getLogger(__name__)

MIN_MATCHED = 0.5
"""Least fraction of the model's tensors that weights must match by name and shape."""

# Detectron2 fills these from the config, not from the checkpoint.
_FROM_CONFIG = ("pixel_mean", "pixel_std")
_BACKBONE = "backbone.bottom_up."
# What torch.load / pickle raise on a file that is not a whole checkpoint.
_UNREADABLE = (
    OSError,  # the file exists: a read error is about its content (torch: "Invalid argument")
    RuntimeError,
    EOFError,
    pickle.UnpicklingError,
    UnicodeDecodeError,
    zipfile.BadZipFile,
    ValueError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
)


class CheckpointError(ValueError):
    """A weights file that is unreadable or holds another model; the message starts with the
    file."""


def _short(e, limit=120):
    """The exception's name and the start of its first line (torch's can be paragraphs)."""
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(e).__name__}: {first}".rstrip(": ")


def read_checkpoint(path, mmap=False):
    """``torch.load`` of a checkpoint, with a :class:`CheckpointError` naming ``path`` when it is
    not a whole one (``mmap`` maps a zip-format file instead of reading it)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            return torch.load(path, map_location="cpu", weights_only=False)  # not zip format
    except _UNREADABLE as e:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, or not written by torch.save): "
            f"{_short(e)}"
        ) from e


def _shapes(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items() if hasattr(v, "shape")}


def _names(keys, limit):
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _compare(saved, wanted, limit):
    """``(matched names, lines saying what differs)`` of two ``{name: shape}``."""
    lines = []
    missing = wanted.keys() - saved.keys()
    if missing:
        lines.append(f"missing from it ({len(missing)}): {_names(missing, limit)}")
    unexpected = saved.keys() - wanted.keys()
    if unexpected:
        lines.append(f"not in the model ({len(unexpected)}): {_names(unexpected, limit)}")
    common = wanted.keys() & saved.keys()
    reshaped = [k for k in common if wanted[k] != saved[k]]
    if reshaped:
        lines.append(
            f"other shapes ({len(reshaped)}): "
            + _names((f"{k} {saved[k]} instead of {wanted[k]}" for k in reshaped), limit)
        )
    return common - set(reshaped), lines


def _strip_module(state_dict):
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def checkpoint_differences(model, checkpoint_file, limit=5):
    """How the ``model`` entry of a Detectron2 checkpoint differs from ``model`` (its parameter
    and buffer names and shapes; ``module.`` prefixes of DDP-wrapped saves ignored): a list of
    lines, empty when they match. At most ``limit`` names are listed per kind of difference."""
    saved = read_checkpoint(checkpoint_file, mmap=True)  # only the shapes are needed
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        found = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        return [f"it has no 'model' entry (found: {found})"]
    saved = _shapes(_strip_module(saved["model"]))
    return _compare(saved, _shapes(model.state_dict()), limit)[1]


def check_resumable(model, checkpoint_file):
    """Raise :class:`CheckpointError` naming ``checkpoint_file`` and what differs when it holds
    another model than ``model``. Detectron2 would load what fits, warn about the rest and
    continue from the checkpoint's iteration with the rest of the model as initialised."""
    differences = checkpoint_differences(model, checkpoint_file)
    if differences:
        raise CheckpointError(
            f"cannot resume from {checkpoint_file}: it holds another model than the config "
            "builds (a run of another config, or of another version of this one):\n  "
            + "\n  ".join(differences)
            + "\nTrain into another OUTPUT_DIR, or resume with the config that made it."
        )


def check_weights_match(model, state_dict, path, backbone_only=False, allow_partial=False):
    """Raise :class:`CheckpointError` (or warn, with ``allow_partial``) when ``state_dict``
    matches fewer than :data:`MIN_MATCHED` of ``model``'s tensors by name and shape (of its
    bottom-up backbone's, with ``backbone_only``). Returns the fraction matched."""
    wanted = {k: v for k, v in _shapes(model.state_dict()).items() if k not in _FROM_CONFIG}
    if backbone_only and any(k.startswith(_BACKBONE) for k in wanted):
        wanted = {k: v for k, v in wanted.items() if k.startswith(_BACKBONE)}
        saved = {k: v for k, v in _shapes(state_dict).items() if k.startswith(_BACKBONE)}
        what = "backbone (bottom-up) tensors"
    else:
        saved, what = _shapes(_strip_module(state_dict)), "tensors"
    matched, lines = _compare(saved, wanted, limit=3)
    fraction = len(matched) / max(len(wanted), 1)
    if fraction >= MIN_MATCHED:
        return fraction
    message = (
        f"{path}: holds the weights of another network: {len(matched)} of the model's "
        f"{len(wanted)} {what} match it by name and shape (at least {MIN_MATCHED:.0%} expected); "
        + "; ".join(lines)
    )
    if not allow_partial:
        raise CheckpointError(
            message + ". To load it anyway: MODEL.AINNOFACE.ALLOW_PARTIAL_WEIGHTS True"
        )
    logger.warning("%s. Loaded anyway (MODEL.AINNOFACE.ALLOW_PARTIAL_WEIGHTS).", message)
    return fraction


class AInnoFaceCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer with the checks and atomic writes of this module."""

    def __init__(self, model, save_dir="", *, allow_partial=False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.allow_partial = bool(allow_partial)
        self._loading = None

    @classmethod
    def like(cls, other, allow_partial=False):
        """The same model, folder and checkpointables as Detectron2's ``other``."""
        return cls(
            other.model,
            other.save_dir,
            save_to_disk=other.save_to_disk,
            allow_partial=allow_partial,
            **other.checkpointables,
        )

    def load(self, path, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: checkpoint not found (MODEL.WEIGHTS)")
        self._loading = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading = None

    def resume_or_load(self, path, *, resume=True):
        if resume and self.has_checkpoint():
            check_resumable(self.model, self.get_checkpoint_file())
        return super().resume_or_load(path, resume=resume)

    def _load_file(self, filename):
        try:
            loaded = super()._load_file(filename)
        except _UNREADABLE as e:
            raise CheckpointError(
                f"{filename}: not a readable checkpoint (truncated, or not written by "
                f"torch.save or pickle): {_short(e)}"
            ) from e
        if not isinstance(loaded.get("model") if isinstance(loaded, dict) else None, dict):
            raise CheckpointError(f"{filename}: holds no state_dict (a dict of tensors)")
        return loaded

    def _load_model(self, checkpoint):
        heuristics = checkpoint.get("matching_heuristics", False)
        if heuristics:  # Detectron2's renaming, done here so that the check sees model names
            self._convert_ndarray_to_tensor(checkpoint["model"])
            checkpoint["model"] = align_and_update_state_dicts(
                self.model.state_dict(),
                checkpoint["model"],
                c2_conversion=checkpoint.get("__author__", None) == "Caffe2",
            )
            checkpoint["matching_heuristics"] = False
        self._convert_ndarray_to_tensor(checkpoint["model"])
        check_weights_match(
            self.model,
            checkpoint["model"],
            self._loading or "the checkpoint",
            backbone_only=heuristics,
            allow_partial=self.allow_partial,
        )
        return super()._load_model(checkpoint)

    def save(self, name, **kwargs):
        """Detectron2's ``save``, written atomically."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_save_torch(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        with atomic_write(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)


def build_checkpointer(cfg, model, save_dir="", **kwargs):
    """:class:`AInnoFaceCheckpointer` with ``MODEL.AINNOFACE.ALLOW_PARTIAL_WEIGHTS``."""
    allow = cfg.MODEL.get("AINNOFACE", {}).get("ALLOW_PARTIAL_WEIGHTS", False)
    return AInnoFaceCheckpointer(model, save_dir, allow_partial=allow, **kwargs)
