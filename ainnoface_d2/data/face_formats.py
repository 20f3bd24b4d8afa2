"""Face annotations in the layouts annotation tools export, converted to the project's COCO JSON.

Four layouts are read, each into a list of :class:`FaceImage` (boxes in pixels, ``x1 y1 x2 y2``,
plus ignore regions that are neither faces nor background):

* ``coco``: one COCO JSON file; the faces are the annotations of one category (``face`` by default,
  ``category`` picks another by name or id), annotations of other categories are counted and left
  out, ``iscrowd=1`` annotations of the category are ignore regions.
* ``yolo``: one ``.txt`` per image (``labels/<path>.txt`` for ``images/<path>.jpg``), a line
  ``class cx cy w h`` per box, normalised by the image size (the 10 landmark numbers of
  yolov5-face's 15-field lines are not used). Boxes of ``class_id`` are faces, of ``ignore_class``
  ignore regions; an image without a label file has no faces.
* ``voc``: one Pascal VOC XML per image; ``<object>`` s named ``face`` (or ``category``), the
  ``difficult`` ones as ignore regions. VOC's 1-based pixel indices become 0-based corners as in
  Detectron2's ``load_voc_instances`` (``xmin - 1``, ``ymin - 1``, ``xmax``, ``ymax``).
* ``wider``: a WIDER FACE ``*_bbx_gt.txt`` file, read by
  :func:`~ainnoface_d2.data.wider_face_format.parse_bbx_gt`; ``invalid=1`` faces are ignore
  regions.

:func:`build_faces_coco` checks them against the images (sizes from the image headers, EXIF
orientation applied as Detectron2's ``read_image`` does), clips the boxes to the image and writes
each annotation with the fields the WIDER FACE evaluator reads, in one setting ``all`` (every face
that is not an ignore region; see :mod:`ainnoface_d2.data.own_datasets`). A malformed file raises
:class:`FaceFormatError` whose message starts with ``path:line:`` (``path:`` where the file has no
lines to point at, e.g. a JSON annotation or an XML element).
"""

import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field

from .wider_face import read_image_size
from .wider_face_format import ATTRIBUTE_NAMES, WiderFaceFormatError, image_key, parse_bbx_gt

logger = logging.getLogger(__name__)

__all__ = [
    "ALL_FACES",
    "FORMATS",
    "FaceBox",
    "FaceFormatError",
    "FaceImage",
    "FacesStats",
    "build_faces_coco",
    "read_coco",
    "read_faces",
    "read_voc",
    "read_wider",
    "read_yolo",
]

FORMATS = ("coco", "yolo", "voc", "wider")
# The one WIDER FACE evaluation setting of a dataset without easy/medium/hard: every face.
ALL_FACES = ("all",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_INVALID = ATTRIBUTE_NAMES.index("invalid")
# Normalised coordinates written as decimals put a box that ends at the image border a hair
# beyond it: such boxes are clipped without being counted as reaching outside (pixels).
_CLIP_TOLERANCE = 1e-3


class FaceFormatError(ValueError):
    """An annotation file does not have the expected layout; the message names the file (and the
    line where there is one)."""


@dataclass
class FaceBox:
    """A box in pixels (``x2``/``y2`` exclusive, continuous coordinates) and where it was read."""

    x1: float
    y1: float
    x2: float
    y2: float
    ignore: bool
    where: str


@dataclass
class FaceImage:
    """One image: its path relative to the images folder, where its annotation is, its boxes, the
    size the annotation states (checked against the image) and whether the boxes are fractions of
    the image size (YOLO)."""

    file_name: str
    where: str
    boxes: list = field(default_factory=list)
    size: tuple | None = None
    normalised: bool = False


@dataclass
class FacesStats:
    """What :func:`build_faces_coco` read and wrote. ``clipped``: faces cut to the image;
    ``outside`` / ``degenerate``: boxes left out for having no area inside the image / a width or
    height <= 0 in the file; ``other_categories``: boxes of other classes left out."""

    images: int = 0
    images_written: int = 0
    missing_images: int = 0
    faceless_images: int = 0
    faces: int = 0
    ignore_regions: int = 0
    clipped: int = 0
    outside: int = 0
    degenerate: int = 0
    other_categories: int = 0

    def as_dict(self):
        return asdict(self)

    def summary(self):
        return (
            f"{self.images_written} images ({self.missing_images} skipped as missing, "
            f"{self.faceless_images} without faces), {self.faces} faces, {self.ignore_regions} "
            f"ignore regions; {self.clipped} boxes clipped to the image, {self.outside} outside "
            f"it and {self.degenerate} with width or height <= 0 left out, "
            f"{self.other_categories} boxes of other categories left out"
        )


def _fmt(path):
    return os.fspath(path)


# ---------------------------------------------------------------------------------------------
# COCO JSON
# ---------------------------------------------------------------------------------------------
def _load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise FaceFormatError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise FaceFormatError(f"{path}: not a UTF-8 text file: {e}") from None


def _coco_category(path, categories, category):
    """The id of the face category: ``category`` as a name or an id, default the one named
    ``face``."""
    wanted = "face" if category is None else str(category)
    by_name = [c["id"] for c in categories if str(c.get("name")) == wanted]
    by_id = [c["id"] for c in categories if str(c.get("id")) == wanted]
    found = by_name or by_id
    if len(found) != 1:
        names = ", ".join(f"{c.get('id')}: {c.get('name')!r}" for c in categories) or "none"
        what = "no" if not found else "more than one"
        raise FaceFormatError(
            f"{path}: {what} category named or numbered {wanted!r} (categories: {names}); "
            "pick one with --category NAME or ID"
        )
    return found[0]


def _coco_lists(path, data):
    if not isinstance(data, dict):
        raise FaceFormatError(f"{path}: expected a COCO JSON object, got {type(data).__name__}")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise FaceFormatError(f"{path}: not a COCO detection file: no {', '.join(missing)}")
    return data["images"], data["annotations"], data["categories"]


def _coco_images(path, images):
    out, by_id = [], {}
    for k, img in enumerate(images):
        where = f"{path}: images[{k}]"
        try:
            image_id, file_name = img["id"], str(img["file_name"])
            size = (int(img["width"]), int(img["height"])) if "width" in img else None
        except (KeyError, TypeError, ValueError) as e:
            raise FaceFormatError(
                f"{where}: needs id, file_name (and width, height): {e}"
            ) from None
        if image_id in by_id:
            raise FaceFormatError(f"{where}: image id {image_id} is used twice")
        by_id[image_id] = FaceImage(file_name.replace("\\", "/"), where, size=size)
        out.append(by_id[image_id])
    return out, by_id


def _coco_box(where, ann):
    bbox = ann.get("bbox")
    ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4
    try:
        x, y, w, h = (float(v) for v in bbox) if ok else (None,) * 4
    except (TypeError, ValueError):
        ok = False
    if not ok or not all(math.isfinite(v) for v in (x, y, w, h)):
        raise FaceFormatError(f"{where}: expected bbox [x, y, width, height], got {bbox!r}")
    return FaceBox(x, y, x + w, y + h, bool(ann.get("iscrowd", 0)), where)


def read_coco(annotation_file, category=None):
    """Read a COCO JSON file. Returns ``(images, other_categories)``: the :class:`FaceImage` s in
    file order and the number of annotations of other categories."""
    path = _fmt(annotation_file)
    images, anns, categories = _coco_lists(path, _load_json(path))
    face_id = _coco_category(path, categories, category)
    out, by_id = _coco_images(path, images)
    other = 0
    for k, ann in enumerate(anns):
        where = f"{path}: annotations[{k}] (id {ann.get('id')})"
        if ann.get("category_id") != face_id:
            other += 1
            continue
        image = by_id.get(ann.get("image_id"))
        if image is None:
            raise FaceFormatError(f"{where}: image_id {ann.get('image_id')!r} is not in images")
        image.boxes.append(_coco_box(where, ann))
    return out, other


# ---------------------------------------------------------------------------------------------
# YOLO
# ---------------------------------------------------------------------------------------------
def _list_images(images_dir):
    """Every image under ``images_dir`` (relative posix paths, sorted)."""
    return _list_files(images_dir, IMAGE_EXTENSIONS)


def _list_files(folder, extension):
    """Every file under ``folder`` whose lower-case name ends with ``extension`` (a string or a
    tuple of them): relative posix paths, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = os.path.relpath(dirpath, folder)
        for name in sorted(filenames):
            if name.lower().endswith(extension):
                found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return found


def _read_text_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise FaceFormatError(f"{path}: not a UTF-8 text file: {e}") from None


def _yolo_line(where, text, class_id, ignore_class):
    """``FaceBox`` of one label line in fractions of the image, ``None`` for another class."""
    fields = text.split()
    if len(fields) not in (5, 15):
        raise FaceFormatError(
            f"{where}: expected 'class cx cy w h' (5 numbers, or 15 with yolov5-face's "
            f"landmarks), got {len(fields)} fields: {text.strip()!r}"
        )
    try:
        cls = int(fields[0])
        cx, cy, w, h = (float(v) for v in fields[1:5])
    except ValueError:
        raise FaceFormatError(
            f"{where}: expected an integer class and 4 numbers, got {text.strip()!r}"
        ) from None
    if not all(math.isfinite(v) for v in (cx, cy, w, h)):
        raise FaceFormatError(f"{where}: non-finite number in {text.strip()!r}")
    if cls != class_id and cls != ignore_class:
        return None
    return FaceBox(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, cls != class_id, where)


def read_yolo(images_dir, labels_dir, class_id=0, ignore_class=None):
    """Read YOLO labels: ``labels_dir/<path>.txt`` for each ``images_dir/<path>.<ext>``. Returns
    ``(images, other_categories)``. A label file without an image raises."""
    images_dir, labels_dir = _fmt(images_dir), _fmt(labels_dir)
    if not os.path.isdir(labels_dir):
        raise FaceFormatError(f"{labels_dir}: YOLO labels must be a folder of .txt files")
    images = _list_images(images_dir)
    if not images:
        raise FaceFormatError(f"{images_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    by_stem = {}
    for name in images:
        stem = os.path.splitext(name)[0]
        if stem in by_stem:
            raise FaceFormatError(
                f"{images_dir}: images {by_stem[stem]} and {name} share the label file {stem}.txt"
            )
        by_stem[stem] = name
    labels = _list_files(labels_dir, ".txt")
    if not labels:
        raise FaceFormatError(f"{labels_dir}: no .txt label files")
    for label in labels:
        if label[:-4] not in by_stem and os.path.basename(label) != "classes.txt":
            raise FaceFormatError(
                f"{os.path.join(labels_dir, label)}: no image {label[:-4]}.<jpg|png|...> "
                f"in {images_dir}"
            )
    out, other = [], 0
    for name in images:
        path = os.path.join(labels_dir, os.path.splitext(name)[0] + ".txt")
        image = FaceImage(name, path, normalised=True)
        lines = _read_text_lines(path) if os.path.isfile(path) else []
        for lineno, text in enumerate(lines, 1):
            if text.strip():
                box = _yolo_line(f"{path}:{lineno}", text, class_id, ignore_class)
                other += box is None
                image.boxes += [box] if box is not None else []
        out.append(image)
    return out, other


# ---------------------------------------------------------------------------------------------
# Pascal VOC
# ---------------------------------------------------------------------------------------------
def _xml_number(where, node, tag, cast=float):
    child = node.find(tag)
    text = child.text.strip() if child is not None and child.text else ""
    try:
        value = cast(float(text)) if cast is int else cast(text)
    except ValueError:
        raise FaceFormatError(f"{where}: <{tag}> must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise FaceFormatError(f"{where}: <{tag}> must be finite, got {text!r}")
    return value


def _voc_file(path, rel, images_dir, category):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise FaceFormatError(f"{path}:{e.position[0]}: not valid XML: {e}") from None
    if root.tag != "annotation":
        raise FaceFormatError(f"{path}: expected a Pascal VOC <annotation>, got <{root.tag}>")
    folder = os.path.dirname(rel)
    filename = (root.findtext("filename") or "").strip()
    if filename:
        name = f"{folder}/{os.path.basename(filename)}" if folder else os.path.basename(filename)
    else:  # no <filename>: the image of the same stem
        stem = os.path.splitext(rel)[0]
        matches = [stem + e for e in IMAGE_EXTENSIONS if os.path.isfile(f"{images_dir}/{stem}{e}")]
        name = matches[0] if matches else stem + ".jpg"
    size, other = None, 0
    node = root.find("size")
    if node is not None and node.find("width") is not None:
        size = (_xml_number(path, node, "width", int), _xml_number(path, node, "height", int))
        size = size if size[0] > 0 and size[1] > 0 else None  # some tools write 0
    image = FaceImage(name, path, size=size)
    for k, obj in enumerate(root.iter("object")):
        where = f"{path}: <object> {k + 1}"
        if (obj.findtext("name") or "").strip() != category:
            other += 1
            continue
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise FaceFormatError(f"{where}: has no <bndbox>")
        x1, y1, x2, y2 = (_xml_number(where, bndbox, t) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise FaceFormatError(f"{where}: <difficult> must be 0 or 1, got {difficult!r}")
        image.boxes.append(FaceBox(x1 - 1, y1 - 1, x2, y2, difficult == "1", where))
    return image, other


def read_voc(images_dir, annotations_dir, category=None):
    """Read Pascal VOC XML files (one per image, ``annotations_dir/<path>.xml``). Returns
    ``(images, other_categories)``."""
    images_dir, annotations_dir = _fmt(images_dir), _fmt(annotations_dir)
    if not os.path.isdir(annotations_dir):
        raise FaceFormatError(f"{annotations_dir}: Pascal VOC annotations must be a folder of .xml")
    out, other = [], 0
    for rel in _list_files(annotations_dir, ".xml"):
        image, n = _voc_file(
            os.path.join(annotations_dir, rel), rel, images_dir, category or "face"
        )
        out.append(image)
        other += n
    if not out:
        raise FaceFormatError(f"{annotations_dir}: no .xml files")
    return out, other


# ---------------------------------------------------------------------------------------------
# WIDER FACE
# ---------------------------------------------------------------------------------------------
def read_wider(annotation_file):
    """Read a WIDER FACE ``*_bbx_gt.txt``; ``invalid=1`` faces are ignore regions, the all-zero
    placeholder of a faceless image is no box. Returns ``(images, 0)``."""
    path = _fmt(annotation_file)
    try:
        parsed = parse_bbx_gt(path)
    except WiderFaceFormatError as e:
        raise FaceFormatError(str(e)) from None
    out = []
    for image in parsed:
        face_image = FaceImage(image.file_name, f"{path}:{image.line}")
        if not image.faceless:
            rows = zip(image.boxes.tolist(), image.attributes.tolist(), image.box_lines)
            for (x, y, w, h), attrs, line in rows:
                face_image.boxes.append(
                    FaceBox(x, y, x + w, y + h, bool(attrs[_INVALID]), f"{path}:{line}")
                )
        out.append(face_image)
    return out, 0


def read_faces(fmt, images_dir, annotations, category=None, class_id=0, ignore_class=None):
    """Read ``annotations`` in layout ``fmt`` (one of :data:`FORMATS`); ``(images, other)``."""
    if fmt == "coco":
        return read_coco(annotations, category)
    if fmt == "yolo":
        return read_yolo(images_dir, annotations, class_id, ignore_class)
    if fmt == "voc":
        return read_voc(images_dir, annotations, category)
    if fmt == "wider":
        return read_wider(annotations)
    raise ValueError(f"unknown layout {fmt!r}, expected one of {FORMATS}")


# ---------------------------------------------------------------------------------------------
# The project's COCO JSON
# ---------------------------------------------------------------------------------------------
def _round(v):
    return int(math.floor(v + 0.5))


def _image_size(image, image_root, stats, skip_missing):
    path = os.path.join(image_root, image.file_name)
    try:
        width, height = read_image_size(path)
    except OSError as e:
        stats.missing_images += 1
        if skip_missing:
            logger.warning("Skipping %s (annotated in %s): %s", path, image.where, e)
            return None
        raise FileNotFoundError(
            f"cannot read image {path} annotated in {image.where}: {e}; pass --skip-missing to "
            "skip such images"
        ) from e
    if image.size is not None and tuple(image.size) != (width, height):
        raise FaceFormatError(
            f"{image.where}: states the size {image.size[0]}x{image.size[1]} for {path}, "
            f"which is {width}x{height} (as read with its EXIF orientation applied)"
        )
    return width, height


def _annotations(image, size, stats, examples):
    width, height = size
    sx, sy = (width, height) if image.normalised else (1, 1)
    anns = []
    for box in image.boxes:
        x1, y1, x2, y2 = box.x1 * sx, box.y1 * sy, box.x2 * sx, box.y2 * sy
        if x2 <= x1 or y2 <= y1:
            stats.degenerate += 1
            examples.setdefault("degenerate", box.where)
            continue
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if cx2 <= cx1 or cy2 <= cy1:
            stats.outside += 1
            examples.setdefault("outside", box.where)
            continue
        moved = max(abs(a - b) for a, b in zip((cx1, cy1, cx2, cy2), (x1, y1, x2, y2)))
        if moved > _CLIP_TOLERANCE:
            stats.clipped += 1
            examples.setdefault("clipped", box.where)
        bbox = [cx1, cy1, cx2 - cx1, cy2 - cy1]
        # The WIDER FACE protocol scores integer pixel boxes (int32 in the official tool).
        rx1, ry1 = _round(cx1), _round(cy1)
        wider_bbox = [rx1, ry1, _round(cx2) - rx1, _round(cy2) - ry1]
        ann = {"category_id": 1, "bbox": bbox, "area": bbox[2] * bbox[3]}
        ann["iscrowd"] = int(box.ignore)
        ann.update(wider_index=len(anns), wider_bbox=wider_bbox, wider_all=not box.ignore)
        anns.append(ann)
    return anns


def _check_keys(images, image_root):
    """The WIDER FACE evaluator and its submission folder key images by (folder, name without
    extension): two images with the same key could not be told apart."""
    seen = {}
    for image in images:
        key = image_key(os.path.join(image_root, image.file_name))
        if key in seen:
            raise FaceFormatError(
                f"{image.where}: image {image.file_name} and {seen[key]} have the same folder and "
                "name without extension, which the WIDER FACE evaluation cannot tell apart"
            )
        seen[key] = image.file_name


def build_faces_coco(images, image_root, *, skip_missing=False, description=""):
    """The COCO dict of :class:`FaceImage` s whose files are under ``image_root``, and its
    :class:`FacesStats`. Missing or unreadable images raise ``FileNotFoundError`` naming them
    (``skip_missing``: logged, counted and left out); a stated size that differs from the
    image's raises :class:`FaceFormatError`.

    Every image is written (``file_name`` relative to ``image_root``, the size read from it), and
    per box an annotation with ``category_id`` 1 (``face``), ``bbox`` ``[x, y, w, h]`` clipped to
    the image, ``area``, ``iscrowd`` (1 for an ignore region) and the WIDER FACE evaluator's
    fields: ``wider_index`` (its position in the image), ``wider_bbox`` (the box with its corners
    rounded to whole pixels, as the protocol's integer ground truth) and ``wider_all`` (a face,
    not an ignore region)."""
    image_root = _fmt(image_root)
    _check_keys(images, image_root)
    stats = FacesStats(images=len(images))
    coco_images, coco_anns, examples = [], [], {}
    for image in images:
        size = _image_size(image, image_root, stats, skip_missing)
        if size is None:
            continue
        image_id = len(coco_images) + 1
        coco_images.append(
            {"id": image_id, "file_name": image.file_name, "width": size[0], "height": size[1]}
        )
        anns = _annotations(image, size, stats, examples)
        faces = sum(1 for a in anns if not a["iscrowd"])
        stats.faces += faces
        stats.ignore_regions += len(anns) - faces
        stats.faceless_images += faces == 0
        for ann in anns:
            coco_anns.append({"id": len(coco_anns) + 1, "image_id": image_id, **ann})
    stats.images_written = len(coco_images)
    if coco_images and not coco_anns:
        logger.warning("No face in any of the %d images: check the annotations.", len(coco_images))
    for what, where in examples.items():
        logger.warning("%d boxes %s, e.g. %s", getattr(stats, what), _EXAMPLE_TEXT[what], where)
    coco = {
        "info": {"description": description},
        "images": coco_images,
        "annotations": coco_anns,
        "categories": [{"id": 1, "name": "face"}],
    }
    return coco, stats


_EXAMPLE_TEXT = {
    "clipped": "reach outside their image and were clipped to it",
    "outside": "lie entirely outside their image and were left out",
    "degenerate": "have a width or height <= 0 and were left out",
}
