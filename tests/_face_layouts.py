"""Test helpers: a small face dataset drawn with numpy/PIL, and writers of its annotations in the
four layouts ``datasets/prepare_faces.py`` reads (COCO JSON, YOLO, Pascal VOC, WIDER FACE).

A dataset is a list of records ``{"file_name", "width", "height", "boxes"}``, ``file_name``
relative to the images folder (``<event>/<name>.jpg``, the one path form every layout can hold) and
``boxes`` a list of ``(x1, y1, x2, y2, ignore)`` in pixels with integer corners (WIDER FACE writes
integers). The writers also add boxes of another category, which the converter must leave out.
"""

import json
import os
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

# Corners in pixels. One box reaches 4 px outside its image (clipped by
# the converter), one is an ignore region, one image has no face.
SMALL_DATASET = [
    ("0--Parade/parade_1.jpg", 160, 120, [(20, 30, 60, 78, False), (-4, 50, 30, 90, False)]),
    ("0--Parade/parade_2.jpg", 128, 128, [(40, 40, 90, 100, False), (100, 5, 120, 25, True)]),
    ("1--Street/street_1.jpg", 200, 150, [(10, 10, 50, 60, False), (120, 60, 180, 130, False)]),
    ("1--Street/street_2.jpg", 96, 128, []),
    ("1--Street/street_3.jpg", 144, 112, [(30, 20, 100, 100, False)]),
]


def make_dataset(images_dir, layout=SMALL_DATASET, seed=0):
    """Draw the images of ``layout`` under ``images_dir`` (a bright ellipse with two dark eyes
    in each box, on noise); returns the records."""
    rng = np.random.RandomState(seed)
    records = []
    for file_name, width, height, boxes in layout:
        img = (rng.rand(height, width, 3) * 80).astype(np.uint8)
        yy, xx = np.mgrid[:height, :width]
        for x1, y1, x2, y2, _ in boxes:
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            img[inside] = (190, 160, 140)
            for ex in (cx - rx / 2.5, cx + rx / 2.5):
                eye = ((xx - ex) / (rx / 6)) ** 2 + ((yy - cy + ry / 4) / (ry / 8)) ** 2 <= 1
                img[eye] = (30, 20, 20)
        path = os.path.join(images_dir, file_name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(img).save(path, quality=95)
        records.append({"file_name": file_name, "width": width, "height": height, "boxes": boxes})
    return records


def _other_box(rec):
    """A box of another category in every image (a 'person')."""
    return (1, 1, rec["width"] // 2, rec["height"] // 2)


def write_coco(records, path, face_name="face", face_id=3):
    images, anns = [], []
    categories = [{"id": 1, "name": "person"}, {"id": face_id, "name": face_name}]
    for i, rec in enumerate(records, 1):
        images.append({"id": 100 + i, "file_name": rec["file_name"]})
        images[-1].update(width=rec["width"], height=rec["height"])
        boxes = [(*b[:4], b[4], face_id) for b in rec["boxes"]] + [(*_other_box(rec), False, 1)]
        for x1, y1, x2, y2, ignore, cat in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 100 + i,
                    "category_id": cat,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(ignore),
                }
            )
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": anns, "categories": categories}, f)
    return path


def write_yolo(records, labels_dir, face_class=0, ignore_class=1, other_class=2, decimals=6):
    for rec in records:
        w, h = rec["width"], rec["height"]
        path = os.path.join(labels_dir, os.path.splitext(rec["file_name"])[0] + ".txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lines = []
        boxes = [(*b[:4], ignore_class if b[4] else face_class) for b in rec["boxes"]]
        for x1, y1, x2, y2, cls in boxes + [(*_other_box(rec), other_class)]:
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{cls} " + " ".join(f"{v:.{decimals}f}" for v in (cx, cy, bw, bh)))
        if rec["boxes"]:  # an image without faces has no label file, as YOLO tools write it
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    return labels_dir


def write_voc(records, annotations_dir, face_name="face"):
    for rec in records:
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = os.path.basename(rec["file_name"])
        size = ET.SubElement(root, "size")
        for tag, value in (("width", rec["width"]), ("height", rec["height"]), ("depth", 3)):
            ET.SubElement(size, tag).text = str(value)
        objects = [(face_name, *b) for b in rec["boxes"]] + [("person", *_other_box(rec), False)]
        for name, x1, y1, x2, y2, ignore in objects:
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = name
            ET.SubElement(obj, "difficult").text = str(int(ignore))
            box = ET.SubElement(obj, "bndbox")
            # VOC: 1-based pixel indices, the last pixel inclusive.
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1 + 1, y1 + 1, x2, y2)):
                ET.SubElement(box, tag).text = str(value)
        path = os.path.join(annotations_dir, os.path.splitext(rec["file_name"])[0] + ".xml")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ET.ElementTree(root).write(path)
    return annotations_dir


def write_wider(records, path):
    lines = []
    for rec in records:
        lines += [rec["file_name"], str(len(rec["boxes"]))]
        if not rec["boxes"]:
            lines.append("0 0 0 0 0 0 0 0 0 0")
        for x1, y1, x2, y2, ignore in rec["boxes"]:
            lines.append(f"{x1} {y1} {x2 - x1} {y2 - y1} 0 0 0 {int(ignore)} 0 0")
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


WRITERS = {
    "coco": lambda recs, d: write_coco(recs, os.path.join(d, "faces.json")),
    "yolo": lambda recs, d: write_yolo(recs, os.path.join(d, "labels")),
    "voc": lambda recs, d: write_voc(recs, os.path.join(d, "Annotations")),
    "wider": lambda recs, d: write_wider(recs, os.path.join(d, "bbx_gt.txt")),
}
# The options each layout needs for the writers' conventions.
OPTIONS = {"coco": [], "yolo": ["--ignore-class", "1"], "voc": [], "wider": []}


def records_from_dataset_dicts(dicts, image_root):
    """Records of a registered dataset (e.g. ``builtin_faces_val``): the ``iscrowd=0`` boxes as
    faces, the ``iscrowd=1`` boxes with an area as ignore regions, corners rounded to pixels."""
    records = []
    for d in dicts:
        boxes = []
        for a in d.get("annotations", []):
            x, y, w, h = a["bbox"]
            if w > 0 and h > 0:
                x1, y1, x2, y2 = (int(round(v)) for v in (x, y, x + w, y + h))
                boxes.append((x1, y1, x2, y2, bool(a.get("iscrowd", 0))))
        name = os.path.relpath(d["file_name"], image_root).replace(os.sep, "/")
        records.append(
            {"file_name": name, "width": d["width"], "height": d["height"], "boxes": boxes}
        )
    return records
