"""Face datasets of one's own: written by ``datasets/prepare_faces.py`` from COCO, YOLO, Pascal VOC
or WIDER FACE annotations (:mod:`.face_formats`), registered as ``<name>_<split>`` when
``ainnoface_d2`` is imported.

A dataset ``<name>`` lives in ``$DETECTRON2_DATASETS/<name>/``::

    faces_dataset.json               the manifest: one entry per split written
    annotations/<name>_<split>.json  COCO JSON (fields: face_formats.build_faces_coco)

The images stay where they are: the manifest records their folder (relative to the dataset folder
when they are inside it, so that the dataset can be moved with them). Registration reads the
manifests under the datasets root, as Detectron2's ``builtin.py`` registers its datasets under it;
each split gets ``register_coco_instances``' metadata (``json_file``, ``image_root``,
``evaluator_type``) with ``evaluator_type="wider_face"``, so that an evaluation gives Detectron2's
COCO AP and the WIDER FACE protocol's AP in the one setting ``all`` (``wider_face_settings``).
"""

import json
import logging
import os
import re

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .datasets import datasets_root
from .face_formats import ALL_FACES, build_faces_coco, read_faces

logger = logging.getLogger(__name__)

__all__ = [
    "MANIFEST",
    "OWN_ANNOTATION_KEYS",
    "DatasetExistsError",
    "convert_faces",
    "register_own_dataset",
    "register_own_datasets",
]

MANIFEST = "faces_dataset.json"
SPLITS = ("train", "val", "test")
# Fields beyond Detectron2's that every annotation carries for the WIDER FACE evaluator.
OWN_ANNOTATION_KEYS = ["wider_index", "wider_bbox"] + [f"wider_{s}" for s in ALL_FACES]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KIND = "ainnoface_d2 face dataset"


class DatasetExistsError(FileExistsError):
    """The split of a dataset name exists already (or the name belongs to another dataset)."""


def _atomic_json(obj, path, indent=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, indent=indent, separators=None if indent else (",", ":")))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_manifest(folder):
    path = os.path.join(folder, MANIFEST)
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if not isinstance(manifest, dict) or manifest.get("kind") != _KIND:
        raise ValueError(f"{path}: not a manifest written by datasets/prepare_faces.py")
    return manifest


def _split_paths(folder, entry):
    json_file = os.path.join(folder, entry["json_file"])
    image_root = os.path.join(folder, entry["image_root"])  # an absolute image_root is kept
    return os.path.normpath(json_file), os.path.normpath(image_root)


def _check_target(root, name, split, overwrite):
    """Refuse a name that is not a folder name, that a built-in dataset uses, or whose split
    exists (unless ``overwrite``). Returns the manifest to extend."""
    if not _NAME_RE.match(name):
        raise ValueError(
            f"--name {name!r}: use letters, digits, '_', '.' or '-' (it names a folder and the "
            "datasets <name>_<split>)"
        )
    folder = os.path.join(root, name)
    dataset = f"{name}_{split}"
    manifest = {"kind": _KIND, "name": name, "splits": {}}
    if os.path.isfile(os.path.join(folder, MANIFEST)):
        manifest = _read_manifest(folder)
    elif dataset in DatasetCatalog.list():
        raise DatasetExistsError(
            f"dataset {dataset!r} is already registered (not by datasets/prepare_faces.py); "
            "choose another --name"
        )
    json_file = os.path.join(folder, "annotations", f"{name}_{split}.json")
    if split in manifest["splits"] or os.path.exists(json_file):
        if not overwrite:
            raise DatasetExistsError(
                f"dataset {dataset!r} exists ({json_file}); pass --overwrite to replace it"
            )
        logger.warning("Replacing dataset %s (%s)", dataset, json_file)
    return manifest


def _image_root_entry(folder, image_root):
    """``image_root`` relative to the dataset folder when it is inside it, else absolute."""
    image_root = os.path.abspath(image_root)
    rel = os.path.relpath(image_root, os.path.abspath(folder))
    return image_root if rel.startswith("..") else rel


def convert_faces(
    fmt,
    images_dir,
    annotations,
    name,
    split,
    *,
    root=None,
    category=None,
    class_id=0,
    ignore_class=None,
    skip_missing=False,
    overwrite=False,
):
    """Convert a dataset in layout ``fmt`` and write split ``split`` of dataset ``name`` under
    ``root`` (default ``$DETECTRON2_DATASETS``). The JSON file, then the manifest, are replaced
    atomically, so that a failed conversion leaves what was there. Returns
    ``(json_file, FacesStats)``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = os.fspath(root) if root is not None else datasets_root()
    images_dir = os.fspath(images_dir)
    if not os.path.isdir(images_dir):
        raise FileNotFoundError(f"--images {images_dir}: no such folder")
    if not os.path.exists(annotations):
        raise FileNotFoundError(f"--annotations {annotations}: no such file or folder")
    manifest = _check_target(root, name, split, overwrite)
    images, other = read_faces(fmt, images_dir, annotations, category, class_id, ignore_class)
    description = f"{name} {split}, converted from {fmt} annotations by datasets/prepare_faces.py"
    coco, stats = build_faces_coco(
        images, images_dir, skip_missing=skip_missing, description=description
    )
    stats.other_categories = other
    folder = os.path.join(root, name)
    json_file = os.path.join(folder, "annotations", f"{name}_{split}.json")
    _atomic_json(coco, json_file)
    manifest["splits"][split] = {
        "json_file": os.path.relpath(json_file, folder),
        "image_root": _image_root_entry(folder, images_dir),
        "source": {"format": fmt, "annotations": os.path.abspath(annotations)},
        "stats": stats.as_dict(),
    }
    _atomic_json(manifest, os.path.join(folder, MANIFEST), indent=1)
    return json_file, stats


def _load(name, json_file, image_root):
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"Dataset '{name}': {json_file} does not exist. Write it again with "
            "datasets/prepare_faces.py"
        )
    return load_coco_json(json_file, image_root, name, extra_annotation_keys=OWN_ANNOTATION_KEYS)


def register_own_dataset(folder):
    """Register the splits of the dataset in ``folder`` (which holds a manifest) as
    ``<name>_<split>``; a name registered with other files is left as it is, with a warning.
    Returns the names registered."""
    manifest = _read_manifest(folder)
    name = os.path.basename(os.path.normpath(folder))
    names = []
    for split, entry in sorted(manifest["splits"].items()):
        dataset = f"{name}_{split}"
        json_file, image_root = _split_paths(folder, entry)
        if dataset in DatasetCatalog.list():
            registered = MetadataCatalog.get(dataset).get("json_file", None)
            if registered != json_file:
                logger.warning(
                    "Not registering %s from %s: the name is taken (%s)",
                    dataset,
                    json_file,
                    registered,
                )
            continue
        DatasetCatalog.register(
            dataset, lambda n=dataset, j=json_file, i=image_root: _load(n, j, i)
        )
        MetadataCatalog.get(dataset).set(
            thing_classes=["face"],
            evaluator_type="wider_face",
            wider_face_settings=ALL_FACES,
            json_file=json_file,
            image_root=image_root,
        )
        names.append(dataset)
    return names


def register_own_datasets(root=None):
    """Register every dataset that ``datasets/prepare_faces.py`` wrote under ``root`` (default
    the datasets root); a manifest that cannot be read is logged and skipped. Returns the names."""
    root = os.fspath(root) if root is not None else datasets_root()
    if not os.path.isdir(root):
        return []
    names = []
    for entry in sorted(os.listdir(root)):
        folder = os.path.join(root, entry)
        if not os.path.isfile(os.path.join(folder, MANIFEST)):
            continue
        try:
            names += register_own_dataset(folder)
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning("Skipping the face dataset in %s: %s", folder, e)
    return names


register_own_datasets()
