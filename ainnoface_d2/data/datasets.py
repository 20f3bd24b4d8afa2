"""Register the WIDER FACE splits and the small built-in face dataset with Detectron2.

Follows detectron2's ``data/datasets/builtin.py``: a ``_PREDEFINED_SPLITS`` table, one
``register_all_*(root)`` function, and registration at import time under
``$DETECTRON2_DATASETS`` (default ``datasets``). Both datasets are COCO JSON written by
:mod:`ainnoface_d2.data.wider_face` (layout and schema in ``datasets/README.md``) and are loaded
with :func:`detectron2.data.datasets.load_coco_json`, keeping the WIDER attributes and the
official evaluation fields on every annotation.
"""

import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .wider_face import split_paths
from .wider_face_format import ATTRIBUTE_NAMES, SETTINGS, datasets_root

logger = logging.getLogger(__name__)

__all__ = ["WIDER_FACE_ANNOTATION_KEYS", "register_wider_face_splits", "register_all_wider_face"]

# Annotation fields beyond detectron2's defaults that the converter writes and the evaluator and
# data mappers use (val only: wider_index, wider_bbox, wider_easy/medium/hard).
WIDER_FACE_ANNOTATION_KEYS = (
    list(ATTRIBUTE_NAMES) + ["wider_index", "wider_bbox"] + [f"wider_{s}" for s in SETTINGS]
)

# prefix -> (directory under the datasets root, splits, command that writes the JSON files)
_PREDEFINED_SPLITS = {
    "wider_face": (
        "wider_face",
        ("train", "val", "test"),
        "python datasets/prepare_wider_face.py --root {root}",
    ),
    "builtin_faces": (
        "builtin_faces",
        ("train", "val"),
        "python datasets/prepare_builtin_faces.py --root {root} && "
        "python datasets/prepare_wider_face.py --root {root} --splits train val",
    ),
}


def _load(name, json_file, image_root, prepare_command):
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"Dataset '{name}': {json_file} does not exist. Write it with:\n  {prepare_command}\n"
            "(datasets/README.md describes the layout; the datasets root is $DETECTRON2_DATASETS, "
            "default ./datasets)"
        )
    return load_coco_json(
        json_file, image_root, name, extra_annotation_keys=WIDER_FACE_ANNOTATION_KEYS
    )


def register_wider_face_splits(prefix, root, splits=("train", "val", "test"), prepare_command=None):
    """Register ``<prefix>_<split>`` for a directory ``root`` in the WIDER FACE layout
    (``WIDER_<split>/images/``, ``annotations/wider_face_<split>.json``).

    Registering a name again with the same files does nothing; with other files it raises.
    ``prepare_command`` is shown when the JSON is missing (default: the converter command).
    Returns the registered names.
    """
    root = os.fspath(root)
    if prepare_command is None:
        prepare_command = _PREDEFINED_SPLITS["wider_face"][2]
    names = []
    for split in splits:
        name = f"{prefix}_{split}"
        paths = split_paths(root, split)
        json_file, image_root = paths["json_file"], paths["image_root"]
        if name in DatasetCatalog.list():
            registered = MetadataCatalog.get(name).get("json_file")
            if registered != json_file:
                raise ValueError(
                    f"Dataset '{name}' is already registered with json_file={registered!r}; "
                    f"cannot register it again with {json_file!r}"
                )
            names.append(name)
            continue
        command = prepare_command.format(root=root)
        DatasetCatalog.register(
            name,
            lambda n=name, j=json_file, i=image_root, c=command: _load(n, j, i, c),
        )
        MetadataCatalog.get(name).set(
            thing_classes=["face"],
            evaluator_type="wider_face",
            json_file=json_file,
            image_root=image_root,
        )
        names.append(name)
    return names


def register_all_wider_face(root):
    """Register every dataset of :data:`_PREDEFINED_SPLITS` under the datasets root ``root``."""
    for prefix, (subdir, splits, command) in _PREDEFINED_SPLITS.items():
        register_wider_face_splits(prefix, os.path.join(root, subdir), splits, command)


register_all_wider_face(datasets_root())
