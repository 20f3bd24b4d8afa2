"""A small built-in face dataset made of real faces, written in exactly the WIDER FACE layout.

WIDER FACE (Yang et al., CVPR 2016) is large and has to be downloaded by hand, so tests, CI and the
quickstart use this stand-in instead. It is generated deterministically from a seed, in a few
seconds, out of data that ships inside the scikit-image wheel (no network):

* faces: ``skimage.data.lfw_subset()``, 200 grayscale 25x25 crops from Labeled Faces in the Wild
  (Huang et al.); its docstring says the first 100 are faces and the last 100 are non-faces cut
  from the background of the same photos. Faces 0-69 go to train, 70-99 to val (and test); the
  non-faces are pasted as unannotated distractors (100-169 in train, 170-199 in val/test), except
  the few that show part of a face (an eye, a mouth, see ``_PARTIAL_FACE_NON_FACES``).
* backgrounds: random crops of the CC0 / public-domain photos ``brick``, ``grass``, ``gravel``,
  ``moon`` (grayscale, tinted), ``coffee``, ``rocket``, ``hubble_deep_field``,
  ``immunohistochemistry`` and the left ``stereo_motorcycle`` view. ``astronaut``, ``camera``,
  ``chelsea``/``cat`` and ``coins`` are left out on purpose: they show faces (coins: profile heads)
  that nobody annotated.

Faces are pasted at WIDER-like scales (many 6-32 px faces in "1--Crowd", a mix in "0--Synthetic",
a few 60-200 px faces in "2--Portrait"), colourised with a skin tone, contrast/brightness
jittered, sometimes blurred or partly covered, and blended with a feathered rectangular or oval
alpha mask so that a sharp square border does not give them away. Face boxes never intersect
one another (so every box is labelled completely) and distractors never touch a face box.

What is written under ``root`` (the official layout, see /work/shared/widerface/README.md):

* ``WIDER_{train,val,test}/images/<n>--<Event>/<n>_<Event>_<k>.jpg`` (cv2, JPEG quality 90);
* ``wider_face_split/wider_face_{train,val}_bbx_gt.txt``: per image the path, the box count, then
  ``x y w h blur expression illumination invalid occlusion pose `` lines (trailing space). A
  faceless image is written as count ``0`` plus one all-zero line in train, and as count ``1``
  plus that line in val, like the official files;
* ``wider_face_split/wider_face_{train,val,test}.mat``, ``wider_face_test_filelist.txt``;
* ``eval_tools/ground_truth/wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` with the
  same keys, nesting and dtypes as the official files (cells ``(n, 1)``, int32 ``Nx4`` boxes,
  uint8 ``Nx1`` labels, ``gt_list`` 1-based uint8/uint16 columns, an empty ``gt_list`` entry is
  ``(0, 0)`` for a one-box image and ``(0, 1)`` otherwise, as MATLAB wrote them).

Attributes (WIDER ``readme.txt`` meanings), from what the generator did to each face of box
height ``h``:

* blur: 2 if the 25x25 source was blurred with sigma >= 1.2 or ``h < 12``; else 1 if it was
  blurred at all, ``h < 24`` or ``h > 150`` (a 25 px source upsampled 6x is soft); else 0;
* illumination: 1 if the brightness gain is below 0.65 (a dark face), else 0;
* occlusion: 1 if 10-30 % of the box is covered by a background patch, 2 if more;
  invalid: 1 for the few faces covered 60-80 % (kept in the txt, ignored by the evaluation);
* expression, pose: always 0 (the LFW crops are frontal with ordinary expressions).

Evaluation settings (WIDER picks them by EdgeBox detection rate; the official Hard/Medium/Easy
sets keep boxes of height >= 9 / 16 / 34 px, so the same idea is written here as size rules):

* hard: ``invalid == 0`` and ``h >= 8``;
* medium: hard and ``h >= 16`` and ``occlusion <= 1``;
* easy: medium and ``h >= 32`` and ``blur <= 1`` and ``occlusion == 0``.

So Easy ⊆ Medium ⊆ Hard holds image by image; the faces that no setting keeps (faces under 8 px,
invalid ones, the dummy box of a faceless image) are "ignore" regions during evaluation.

A stamp file ``builtin_faces_stamp.json`` records the generator version, seed and image counts;
:func:`build_builtin_faces` skips the work when the stamp matches and rebuilds otherwise.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import scipy.io

logger = logging.getLogger(__name__)

__all__ = [
    "GENERATOR_VERSION",
    "EVENTS",
    "BuildSummary",
    "FaceRecord",
    "ImageRecord",
    "build_builtin_faces",
    "default_root",
    "eval_settings",
    "load_face_crops",
    "render_image",
]

# Bump whenever the output for a given seed changes, so old stamps no longer match.
GENERATOR_VERSION = 1
STAMP_NAME = "builtin_faces_stamp.json"
JPEG_QUALITY = 90

EVENTS = ("0--Synthetic", "1--Crowd", "2--Portrait")
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
# LFW indices: which faces / non-faces each split may use (val and test share, test has no GT).
_FACE_RANGE = {"train": range(0, 70), "val": range(70, 100), "test": range(70, 100)}
_NON_FACE_RANGE = {"train": range(100, 170), "val": range(170, 200), "test": range(170, 200)}
# Non-face crops that show an eye, eyes or a mouth (checked by eye): unannotated partial faces
# would teach the detector that face parts are background, so they are not used as distractors.
_PARTIAL_FACE_NON_FACES = frozenset({114, 124, 125, 130, 180, 196})
# One faceless image every this many images (image 0 included), to exercise WIDER's encodings.
FACELESS_EVERY = 40

_COLOUR_BACKGROUNDS = ("coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
_GRAY_BACKGROUNDS = ("brick", "grass", "gravel", "moon")
# Skin tones (RGB, 0-255) from light to dark, used to colourise the grayscale LFW faces.
_SKIN_TONES = np.array(
    [
        [255, 224, 196],
        [241, 194, 125],
        [224, 172, 105],
        [198, 134, 66],
        [141, 85, 36],
        [96, 60, 32],
    ],
    dtype=np.float32,
)
# The files that skimage.data reads for the sources above; all ship in the wheel.
_SKIMAGE_FILES = (
    "lfw_subset.npy",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "motorcycle_disp.npz",
)


def default_root() -> Path:
    """``$DETECTRON2_DATASETS/builtin_faces`` (``DETECTRON2_DATASETS`` defaults to ``datasets``)."""
    return Path(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))) / "builtin_faces"


@dataclass
class FaceRecord:
    """One pasted face: its box ``[x, y, w, h]`` (0-based pixels) and WIDER attributes."""

    box: tuple[int, int, int, int]
    source_index: int  # index into skimage.data.lfw_subset()
    blur: int
    expression: int
    illumination: int
    invalid: int
    occlusion: int
    pose: int
    # The part of the box covered by an occluder, [x, y, w, h], or None.
    occluder: tuple[int, int, int, int] | None = None

    @property
    def labels(self) -> tuple[int, int, int, int, int, int]:
        return (
            self.blur,
            self.expression,
            self.illumination,
            self.invalid,
            self.occlusion,
            self.pose,
        )


@dataclass
class ImageRecord:
    """One generated image and everything pasted into it."""

    split: str
    event: str
    name: str  # without ".jpg"
    width: int
    height: int
    faces: list[FaceRecord] = field(default_factory=list)
    # Unannotated non-face crops: ([x, y, w, h], lfw index).
    distractors: list[tuple[tuple[int, int, int, int], int]] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return f"{self.event}/{self.name}.jpg"


@dataclass
class BuildSummary:
    root: Path
    built: bool  # False when an up-to-date dataset was found and left alone
    seed: int
    num_images: dict[str, int]
    num_faces: dict[str, int]
    num_bytes: int
    seconds: float
    # Per split, the metadata of every image (empty when nothing was built).
    images: dict[str, list[ImageRecord]] = field(default_factory=dict)


def eval_settings(face: FaceRecord) -> tuple[bool, bool, bool]:
    """(easy, medium, hard) membership of a face; see the module docstring for the rule."""
    h = face.box[3]
    hard = face.invalid == 0 and h >= 8
    medium = hard and h >= 16 and face.occlusion <= 1
    easy = medium and h >= 32 and face.blur <= 1 and face.occlusion == 0
    return easy, medium, hard


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def _check_skimage_files() -> None:
    import skimage.data

    missing = [
        f for f in _SKIMAGE_FILES if not os.path.isfile(os.path.join(skimage.data.data_dir, f))
    ]
    if missing:
        # skimage would try to download them; this generator must work offline.
        raise FileNotFoundError(
            f"scikit-image {skimage.__version__} does not ship {missing} in "
            f"{skimage.data.data_dir}; "
            "the built-in face dataset needs the sample images of the scikit-image wheel "
            "(tested with scikit-image 0.26)."
        )


def load_face_crops() -> np.ndarray:
    """``skimage.data.lfw_subset()`` as float32 in [0, 1], shape (200, 25, 25)."""
    import skimage.data

    _check_skimage_files()
    crops = np.asarray(skimage.data.lfw_subset(), dtype=np.float32)
    if crops.shape != (200, 25, 25):
        raise ValueError(
            f"skimage.data.lfw_subset() has shape {crops.shape}, expected (200, 25, 25)"
        )
    return crops


def _load_backgrounds() -> list[np.ndarray]:
    """The background photos as float32 RGB in [0, 1]; grayscale ones keep a single channel."""
    import skimage.data

    _check_skimage_files()
    images = []
    for name in _COLOUR_BACKGROUNDS + _GRAY_BACKGROUNDS:
        images.append(getattr(skimage.data, name)())
    images.append(skimage.data.stereo_motorcycle()[0])
    out = []
    for im in images:
        im = np.asarray(im)
        if im.ndim == 3:
            im = im[..., :3]
        out.append(im.astype(np.float32) / 255.0)
    return out


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    shrink = w < img.shape[1] or h < img.shape[0]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _background(rng: np.random.Generator, sources: list[np.ndarray], w: int, h: int) -> np.ndarray:
    src = sources[int(rng.integers(len(sources)))]
    sh, sw = src.shape[:2]
    # A crop with the target's aspect ratio, 35-100 % of the largest such crop but never
    # upsampled more than 2x (a blocky background would be an easy cue next to sharp faces).
    aspect = w / h
    max_cw = min(sw, int(sh * aspect))
    cw = max(16, min(max_cw, max(int(max_cw * rng.uniform(0.35, 1.0)), w // 2)))
    ch = max(16, min(sh, int(round(cw / aspect))))
    x0 = int(rng.integers(0, sw - cw + 1))
    y0 = int(rng.integers(0, sh - ch + 1))
    crop = _resize(src[y0 : y0 + ch, x0 : x0 + cw], w, h)
    if crop.ndim == 2:
        tint = rng.uniform(0.55, 1.15, size=3).astype(np.float32)
        crop = crop[..., None] * tint
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.clip(crop * rng.uniform(0.7, 1.2), 0.0, 1.0).astype(np.float32)


def _alpha_mask(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A soft mask: a feathered rectangle or oval, so no sharp square border shows."""
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    if rng.random() < 0.5:
        # Oval: 1 inside, fading to 0 over the outer ~25 % of the radius.
        r = np.sqrt(((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2)
        t = np.clip((1.08 - r) / 0.3, 0.0, 1.0)
    else:
        feather = max(1.5, 0.18 * min(w, h))
        d = np.minimum(np.minimum(xs, w - xs), np.minimum(ys, h - ys))
        t = np.clip(d / feather, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep


def _prepare_crop(
    rng: np.random.Generator, crop: np.ndarray, w: int, h: int, blur_sigma: float, gain: float
) -> np.ndarray:
    """Grayscale 25x25 crop -> colourised, jittered RGB patch of size (h, w)."""
    if blur_sigma > 0:
        crop = cv2.GaussianBlur(crop, (0, 0), blur_sigma)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    g = _resize(np.ascontiguousarray(crop), w, h)
    # Contrast about the mean, then brightness gain and offset.
    g = (g - g.mean()) * rng.uniform(0.75, 1.3) + g.mean()
    g = g * gain + rng.uniform(-0.06, 0.06)
    skin = _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))] / 255.0
    rel = skin / skin.mean()
    sat = rng.uniform(0.4, 1.0)
    colour = (1 - sat) + sat * rel  # per channel multiplier, mean ~1 keeps the luminance
    return np.clip(g[..., None] * colour[None, None, :], 0.0, 1.0).astype(np.float32)


def _paste(canvas: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h, w = alpha.shape
    region = canvas[y : y + h, x : x + w]
    a = alpha[..., None]
    region[...] = a * patch + (1 - a) * region


def _intersects(box, boxes, gap: int = 1) -> bool:
    x, y, w, h = box
    for bx, by, bw, bh in boxes:
        if x < bx + bw + gap and bx < x + w + gap and y < by + bh + gap and by < y + h + gap:
            return True
    return False


def _face_sizes(rng: np.random.Generator, event: str) -> list[int]:
    """Face widths in pixels for one image of ``event`` (WIDER-like: mostly small)."""
    if event == "1--Crowd":
        n = int(rng.integers(12, 41))
        return [int(round(np.exp(rng.uniform(np.log(6), np.log(32))))) for _ in range(n)]
    if event == "2--Portrait":
        n = int(rng.integers(1, 4))
        return [int(rng.integers(60, 201)) for _ in range(n)]
    n = int(rng.integers(3, 13))
    return [int(round(np.exp(rng.uniform(np.log(10), np.log(120))))) for _ in range(n)]


def _blur_label(sigma: float, h: int) -> int:
    if sigma >= 1.2 or h < 12:
        return 2
    if sigma > 0 or h < 24 or h > 150:
        return 1
    return 0


def render_image(
    rng: np.random.Generator,
    crops: np.ndarray,
    backgrounds: list[np.ndarray],
    split: str,
    event: str,
    name: str,
    faceless: bool = False,
) -> tuple[np.ndarray, ImageRecord]:
    """Draw one image. Returns (uint8 BGR image, its metadata)."""
    w_img = int(rng.integers(400, 801))
    h_img = int(rng.integers(360, 641))
    canvas = _background(rng, backgrounds, w_img, h_img)
    record = ImageRecord(split=split, event=event, name=name, width=w_img, height=h_img)

    face_ids = list(_FACE_RANGE[split])
    non_face_ids = [i for i in _NON_FACE_RANGE[split] if i not in _PARTIAL_FACE_NON_FACES]

    placed: list[tuple[int, int, int, int]] = []
    sizes = [] if faceless else sorted(_face_sizes(rng, event), reverse=True)
    for s in sizes:
        w = min(s, w_img - 2)
        h = min(int(round(s * rng.uniform(1.0, 1.25))), h_img - 2)
        for _ in range(60):
            x = int(rng.integers(0, w_img - w + 1))
            y = int(rng.integers(0, h_img - h + 1))
            if not _intersects((x, y, w, h), placed):
                break
        else:
            continue  # no room left: fewer faces than drawn, the record stays exact
        placed.append((x, y, w, h))
        src = int(face_ids[int(rng.integers(len(face_ids)))])
        sigma = float(rng.uniform(0.5, 2.0)) if rng.random() < 0.25 else 0.0
        gain = float(rng.uniform(0.5, 1.4))
        patch = _prepare_crop(rng, crops[src], w, h, sigma, gain)
        _paste(canvas, patch, _alpha_mask(rng, w, h), x, y)
        record.faces.append(
            FaceRecord(
                box=(x, y, w, h),
                source_index=src,
                blur=_blur_label(sigma, h),
                expression=0,
                illumination=int(gain < 0.65),
                invalid=0,
                occlusion=0,
                pose=0,
            )
        )

    # Distractors: non-face crops pasted the same way, never touching a face box.
    n_distractors = int(rng.integers(2, 6)) + len(record.faces) // 3
    for _ in range(n_distractors):
        s = int(round(np.exp(rng.uniform(np.log(10), np.log(90)))))
        w, h = min(s, w_img - 2), min(int(round(s * rng.uniform(0.8, 1.3))), h_img - 2)
        x = int(rng.integers(0, w_img - w + 1))
        y = int(rng.integers(0, h_img - h + 1))
        if _intersects((x, y, w, h), placed):
            continue
        src = int(non_face_ids[int(rng.integers(len(non_face_ids)))])
        patch = _prepare_crop(rng, crops[src], w, h, 0.0, float(rng.uniform(0.6, 1.4)))
        _paste(canvas, patch, _alpha_mask(rng, w, h), x, y)
        record.distractors.append(((x, y, w, h), src))

    # Occluders: a background patch over one side of a few faces.
    for face in record.faces:
        x, y, w, h = face.box
        if min(w, h) < 16:
            continue
        u = rng.random()
        if u < 0.03:
            frac, face.invalid = rng.uniform(0.6, 0.8), 1
        elif u < 0.15:
            frac = rng.uniform(0.1, 0.5)
        else:
            continue
        side = int(rng.integers(4))
        if side in (0, 1):  # left / right
            ow, oh = max(1, int(round(frac * w))), h
            ox, oy = (x, y) if side == 0 else (x + w - ow, y)
        else:  # top / bottom
            ow, oh = w, max(1, int(round(frac * h)))
            ox, oy = (x, y) if side == 2 else (x, y + h - oh)
        covered = (ow * oh) / (w * h)
        face.occlusion = 1 if covered <= 0.3 else 2
        face.occluder = (ox, oy, ow, oh)
        occ = _background(rng, backgrounds, ow, oh)
        canvas[oy : oy + oh, ox : ox + ow] = occ

    # Camera-like finish over everything: a colour cast and sensor noise.
    canvas = canvas * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    noise = rng.normal(0.0, rng.uniform(0.0, 3.0) / 255.0, size=canvas.shape).astype(np.float32)
    rgb = np.clip((canvas + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1]), record


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def _image_plan(split: str, n: int) -> list[tuple[str, str, bool]]:
    """(event, name, faceless) for each image of a split, in file order (grouped by event)."""
    counters = dict.fromkeys(EVENTS, 0)
    plan = []
    for i in range(n):
        event = EVENTS[i % len(EVENTS)]
        num, label = event.split("--", 1)
        counters[event] += 1
        plan.append((event, f"{num}_{label}_{counters[event]}", i % FACELESS_EVERY == 0))
    order = {e: k for k, e in enumerate(EVENTS)}
    return sorted(plan, key=lambda p: (order[p[0]], int(p[1].rsplit("_", 1)[1])))


def _by_event(records: list[ImageRecord]) -> list[tuple[str, list[ImageRecord]]]:
    return [
        (e, [r for r in records if r.event == e])
        for e in EVENTS
        if any(r.event == e for r in records)
    ]


def _write_txt(path: Path, records: list[ImageRecord], split: str) -> None:
    lines = []
    for r in records:
        lines.append(r.file_name)
        if r.faces:
            lines.append(str(len(r.faces)))
            for f in r.faces:
                lines.append(" ".join(str(v) for v in (*f.box, *f.labels)) + " ")
        else:
            # The official files: train says 0 faces, val 1 face, both followed by a dummy box.
            lines.append("0" if split == "train" else "1")
            lines.append("0 0 0 0 0 0 0 0 0 0 ")
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def _cell(items) -> np.ndarray:
    arr = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        arr[i, 0] = item
    return arr


def _savemat(path: Path, data: dict) -> None:
    buf = io.BytesIO()
    scipy.io.savemat(buf, data, do_compression=True)
    raw = bytearray(buf.getvalue())
    # scipy stamps the current time into the 116-byte text header; a fixed one keeps the file
    # byte-identical across runs.
    header = (
        "MATLAB 5.0 MAT-file, Platform: posix, "
        f"Created by: ainnoface_d2 builtin_faces v{GENERATOR_VERSION}"
    )
    raw[:116] = header.encode("ascii").ljust(116, b" ")
    path.write_bytes(bytes(raw))


def _mat_annotations(records: list[ImageRecord]) -> dict:
    """The arrays of wider_face_{train,val}.mat; a faceless image gets one all-zero box."""
    groups = _by_event(records)
    keys = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    boxes, labels = [], {k: [] for k in keys}
    for _, recs in groups:
        ev_boxes, ev_labels = [], {k: [] for k in keys}
        for r in recs:
            n = max(1, len(r.faces))
            b = np.zeros((n, 4), dtype=np.int32)
            lab = np.zeros((n, len(keys)), dtype=np.uint8)
            for j, f in enumerate(r.faces):
                b[j] = f.box
                lab[j] = f.labels
            ev_boxes.append(b)
            for k_i, k in enumerate(keys):
                ev_labels[k].append(np.ascontiguousarray(lab[:, k_i : k_i + 1]))
        boxes.append(_cell(ev_boxes))
        for k in keys:
            labels[k].append(_cell(ev_labels[k]))
    data = {
        "event_list": _cell([e for e, _ in groups]),
        "file_list": _cell([_cell([r.name for r in recs]) for _, recs in groups]),
        "face_bbx_list": _cell(boxes),
    }
    for k in keys:
        data[f"{k}_label_list"] = _cell(labels[k])
    return data


def _gt_list(records: list[ImageRecord], setting: int) -> np.ndarray:
    per_event = []
    for _, recs in _by_event(records):
        cells = []
        for r in recs:
            keep = [j + 1 for j, f in enumerate(r.faces) if eval_settings(f)[setting]]
            if keep:
                dtype = np.uint8 if max(keep) <= 255 else np.uint16
                cells.append(np.asarray(keep, dtype=dtype).reshape(-1, 1))
            else:
                # MATLAB's logical indexing of a one-box image gives 0x0, of a longer list 0x1.
                shape = (0, 0) if max(1, len(r.faces)) == 1 else (0, 1)
                cells.append(np.zeros(shape, dtype=np.uint8))
        per_event.append(_cell(cells))
    return _cell(per_event)


def _write_split_files(out: Path, records: dict[str, list[ImageRecord]]) -> None:
    split_dir = out / "wider_face_split"
    gt_dir = out / "eval_tools" / "ground_truth"
    split_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        _write_txt(split_dir / f"wider_face_{split}_bbx_gt.txt", records[split], split)
        _savemat(split_dir / f"wider_face_{split}.mat", _mat_annotations(records[split]))
    test = records["test"]
    (split_dir / "wider_face_test_filelist.txt").write_text(
        "".join(r.file_name + "\n" for r in test), encoding="ascii"
    )
    groups = _by_event(test)
    _savemat(
        split_dir / "wider_face_test.mat",
        {
            "event_list": _cell([e for e, _ in groups]),
            "file_list": _cell([_cell([r.name for r in recs]) for _, recs in groups]),
        },
    )
    val = _mat_annotations(records["val"])
    _savemat(gt_dir / "wider_face_val.mat", val)
    for i, setting in enumerate(("easy", "medium", "hard")):
        _savemat(
            gt_dir / f"wider_{setting}_val.mat", {**val, "gt_list": _gt_list(records["val"], i)}
        )
    (out / "README.txt").write_text(
        "Built-in face dataset generated by ainnoface_d2.data.builtin_faces "
        f"(version {GENERATOR_VERSION}) in the WIDER FACE layout.\n"
        "Faces: skimage.data.lfw_subset() (Labeled Faces in the Wild, Huang et al.), shipped by\n"
        "scikit-image. Backgrounds: CC0 / public-domain sample images of scikit-image.\n",
        encoding="ascii",
    )


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

# What a build owns under root; a rebuild removes exactly these (the converted COCO JSON in
# annotations/ is derived from the old images, so it goes too).
_OWNED = (
    "WIDER_train",
    "WIDER_val",
    "WIDER_test",
    "wider_face_split",
    "eval_tools",
    "annotations",
    "README.txt",
    STAMP_NAME,
)


def _stamp_key(seed: int, counts: dict[str, int]) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "num_images": counts}


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_builtin_faces(
    root: str | os.PathLike | None = None,
    seed: int = 0,
    num_train: int = 120,
    num_val: int = 40,
    num_test: int = 10,
    force: bool = False,
) -> BuildSummary:
    """Write the built-in dataset under ``root`` (default :func:`default_root`).

    Skips the work when ``root`` holds a stamp with the same generator version, seed and counts
    (unless ``force``). A stamp with other values is rebuilt. A non-empty ``root`` without a
    stamp is not ours: it is an error unless ``force``.
    """
    root = Path(root) if root is not None else default_root()
    counts = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
    for split, n in counts.items():
        if n < 0:
            raise ValueError(f"number of {split} images must be >= 0, got {n}")
    if counts["val"] < 1:
        raise ValueError("the val split needs at least 1 image (the evaluation .mat files)")
    key = _stamp_key(seed, counts)
    stamp = root / STAMP_NAME

    if stamp.is_file() and not force:
        old = json.loads(stamp.read_text())
        if {k: old.get(k) for k in key} == key:
            logger.info("Built-in faces already in %s (stamp matches), skipping.", root)
            return BuildSummary(
                root=root,
                built=False,
                seed=seed,
                num_images={s: old["num_images"][s] for s in SPLITS},
                num_faces={s: old["num_faces"][s] for s in SPLITS},
                num_bytes=_dir_bytes(root),
                seconds=0.0,
            )
        logger.info("Stamp in %s is for %s; rebuilding for %s.", root, old, key)
    elif root.is_dir() and any(root.iterdir()) and not stamp.is_file() and not force:
        raise FileExistsError(
            f"{root} is not empty and has no {STAMP_NAME}: not a built-in faces directory. "
            "Pass force=True (--force) to overwrite the generated parts of it."
        )

    start = time.perf_counter()
    crops = load_face_crops()
    backgrounds = _load_backgrounds()

    # Build next to root and move in at the end, so an interrupted build never looks complete.
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    records: dict[str, list[ImageRecord]] = {}
    try:
        for split in SPLITS:
            records[split] = []
            for idx, (event, name, faceless) in enumerate(_image_plan(split, counts[split])):
                # One stream per image: changing a count does not change the other images.
                rng = np.random.default_rng([seed, _SPLIT_CODE[split], idx])
                img, rec = render_image(rng, crops, backgrounds, split, event, name, faceless)
                out_dir = tmp / f"WIDER_{split}" / "images" / event
                out_dir.mkdir(parents=True, exist_ok=True)
                ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise RuntimeError(f"cv2 could not encode {rec.file_name}")
                (out_dir / f"{name}.jpg").write_bytes(enc.tobytes())
                records[split].append(rec)
        _write_split_files(tmp, records)

        root.mkdir(parents=True, exist_ok=True)
        for entry in _OWNED:
            p = root / entry
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        for p in sorted(tmp.iterdir()):
            p.rename(root / p.name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)

    num_faces = {s: sum(len(r.faces) for r in records[s]) for s in SPLITS}
    stamp.write_text(json.dumps({**key, "num_faces": num_faces}, indent=2, sort_keys=True) + "\n")
    summary = BuildSummary(
        root=root,
        built=True,
        seed=seed,
        num_images=counts,
        num_faces=num_faces,
        num_bytes=_dir_bytes(root),
        seconds=time.perf_counter() - start,
        images=records,
    )
    logger.info(
        "Wrote built-in faces to %s in %.1f s: images %s, faces %s",
        root,
        summary.seconds,
        counts,
        num_faces,
    )
    return summary
