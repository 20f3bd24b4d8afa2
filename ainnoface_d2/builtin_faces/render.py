"""Drawing one built-in image: real LFW faces and non-face distractors on a photo background.

Faces are pasted at WIDER-like scales (many 6-32 px faces in "1--Crowd", a mix in "0--Synthetic",
a few 60-200 px faces in "2--Portrait"), colourised with a skin tone, contrast/brightness
jittered, sometimes blurred or partly covered, and blended with a feathered rectangular or oval
alpha mask so that a sharp square border does not give them away. Face boxes never intersect
one another (so every box is labelled completely) and distractors never touch a face box. All
randomness comes from the ``rng`` passed in, in a fixed order (the output for a seed is part of
the dataset's version, :data:`~.records.GENERATOR_VERSION`).
"""

from __future__ import annotations

import cv2
import numpy as np

from .records import FaceRecord, ImageRecord
from .sources import FACE_RANGE, NON_FACE_RANGE, PARTIAL_FACE_NON_FACES, SKIN_TONES

__all__ = ["render_image", "render_photo_image", "photo_face_patches", "blur_label"]

# Train split with photos: the share of pasted faces that are real photo faces (the rest LFW).
PHOTO_FACE_PROB = 0.5
# Context kept around a photo face (fraction of its box side on each side), faded out by the mask.
PHOTO_FACE_MARGIN = 0.35
# Photo faces are FaceRecord.source_index PHOTO_FACE_INDEX + k (LFW faces are 0-99).
PHOTO_FACE_INDEX = 1000


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
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] / 255.0
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


def blur_label(sigma: float, h: int) -> int:
    """WIDER blur label of a face blurred with ``sigma`` (source pixels) at box height ``h``."""
    if sigma >= 1.2 or h < 12:
        return 2
    if sigma > 0 or h < 24 or h > 150:
        return 1
    return 0


def photo_face_patches(photos) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Each face of ``photos`` ((RGB, boxes) pairs) with :data:`PHOTO_FACE_MARGIN` of context:
    (patch, its face box ``[x, y, w, h]`` inside the patch)."""
    out = []
    for img, boxes in photos:
        ih, iw = img.shape[:2]
        for x, y, w, h in boxes:
            m = PHOTO_FACE_MARGIN
            x0, y0 = max(0, int(x - m * w)), max(0, int(y - m * h))
            x1, y1 = min(iw, int(x + w + m * w)), min(ih, int(y + h + m * h))
            out.append((img[y0:y1, x0:x1].copy(), (int(x - x0), int(y - y0), int(w), int(h))))
    return out


def _photo_face(rng, patch_src, w: int, max_w: int, max_h: int):
    """A photo face rescaled to face width ``w`` and jittered: (patch, alpha, face box in it,
    blur sigma, gain), or None when it does not fit."""
    src, (fx, fy, fw, fh) = patch_src
    k = w / fw
    pw, ph = round(src.shape[1] * k), round(src.shape[0] * k)
    if pw > max_w or ph > max_h or pw < 2 or ph < 2:
        return None
    box = (round(fx * k), round(fy * k), w, max(1, round(fh * k)))
    patch = _resize(src, pw, ph)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
        box = (pw - box[0] - box[2], box[1], box[2], box[3])
    sigma = float(rng.uniform(0.5, 2.0)) if rng.random() < 0.25 else 0.0
    if sigma > 0:
        patch = cv2.GaussianBlur(np.ascontiguousarray(patch), (0, 0), sigma)
    if rng.random() < 0.2:
        patch = np.repeat(patch.mean(axis=2, keepdims=True), 3, axis=2)
    gain = float(rng.uniform(0.5, 1.4))
    mean = patch.mean()
    patch = (patch - mean) * rng.uniform(0.75, 1.3) + mean
    patch = np.clip(patch * gain + rng.uniform(-0.06, 0.06), 0.0, 1.0).astype(np.float32)
    # Oval alpha that is 1 over the face and fades out over the context around it.
    ys = (np.arange(ph, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(pw, dtype=np.float32) + 0.5)[None, :]
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    r = np.sqrt(((xs - cx) / (0.5 * pw)) ** 2 + ((ys - cy) / (0.5 * ph)) ** 2)
    t = np.clip((1.0 - r) / 0.35, 0.0, 1.0)
    alpha = np.maximum(t * t * (3 - 2 * t), _inside(box, pw, ph)).astype(np.float32)
    return patch, alpha, box, sigma, gain


def _inside(box, w: int, h: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.float32)
    x, y, bw, bh = box
    m[max(0, y) : y + bh, max(0, x) : x + bw] = 1.0
    return m


def _draw_photo_face(rng, canvas, record: ImageRecord, s: int, placed, photo_faces) -> None:
    """One real photo face of width ``s``, placed where its patch touches no other face."""
    k = int(rng.integers(len(photo_faces)))
    made = _photo_face(rng, photo_faces[k], s, record.width - 2, record.height - 2)
    if made is None:
        return
    patch, alpha, (fx, fy, fw, fh), sigma, gain = made
    ph, pw = alpha.shape
    for _ in range(60):
        x = int(rng.integers(0, record.width - pw + 1))
        y = int(rng.integers(0, record.height - ph + 1))
        if not _intersects((x, y, pw, ph), placed):
            break
    else:
        return
    placed.append((x, y, pw, ph))
    _paste(canvas, patch, alpha, x, y)
    box = (x + fx, y + fy, fw, min(fh, record.height - y - fy))
    record.faces.append(_pasted_face(box, PHOTO_FACE_INDEX + k, sigma, gain))


def _pasted_face(box, source_index: int, sigma: float, gain: float) -> FaceRecord:
    """The record of a whole, unoccluded pasted face (occluders may change it later)."""
    return FaceRecord(
        box=box,
        source_index=source_index,
        blur=blur_label(sigma, box[3]),
        expression=0,
        illumination=int(gain < 0.65),
        invalid=0,
        occlusion=0,
        pose=0,
    )


def _draw_faces(rng, canvas, record: ImageRecord, sizes: list[int], crops, photo_faces=()) -> list:
    """Paste LFW faces (and, given ``photo_faces``, real photo faces) of the given widths where
    they fit; returns the regions placed."""
    w_img, h_img = record.width, record.height
    face_ids = list(FACE_RANGE[record.split])
    placed: list[tuple[int, int, int, int]] = []
    for s in sizes:
        if photo_faces and rng.random() < PHOTO_FACE_PROB:
            _draw_photo_face(rng, canvas, record, s, placed, photo_faces)
            continue
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
        record.faces.append(_pasted_face((x, y, w, h), src, sigma, gain))
    return placed


def _draw_distractors(rng, canvas, record: ImageRecord, placed, crops) -> None:
    """Non-face crops pasted the same way as the faces, never touching a face box."""
    w_img, h_img = record.width, record.height
    non_face_ids = [i for i in NON_FACE_RANGE[record.split] if i not in PARTIAL_FACE_NON_FACES]
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


def _draw_occluders(rng, canvas, record: ImageRecord, backgrounds) -> None:
    """A background patch over one side of a few faces (occlusion / invalid labels)."""
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


def render_image(
    rng: np.random.Generator,
    crops: np.ndarray,
    backgrounds: list[np.ndarray],
    split: str,
    event: str,
    name: str,
    faceless: bool = False,
    photo_faces=(),
    size: tuple[int, int] | None = None,
    face_widths=None,
) -> tuple[np.ndarray, ImageRecord]:
    """Draw one image. Returns (uint8 BGR image, its metadata).

    ``size`` (width, height) and ``face_widths`` (pixels) replace the event's random image size
    and face widths; the dataset itself always draws them (both None).
    """
    if size is None:
        w_img = int(rng.integers(400, 801))
        h_img = int(rng.integers(360, 641))
    else:
        w_img, h_img = (int(v) for v in size)
    canvas = _background(rng, backgrounds, w_img, h_img)
    record = ImageRecord(split=split, event=event, name=name, width=w_img, height=h_img)
    if faceless:
        sizes = []
    elif face_widths is not None:
        sizes = sorted((int(v) for v in face_widths), reverse=True)
    else:
        sizes = sorted(_face_sizes(rng, event), reverse=True)
    placed = _draw_faces(rng, canvas, record, sizes, crops, photo_faces)
    _draw_distractors(rng, canvas, record, placed, crops)
    _draw_occluders(rng, canvas, record, backgrounds)
    return _finish(rng, canvas), record


def _finish(rng, canvas: np.ndarray) -> np.ndarray:
    """Camera-like finish over everything: a colour cast and sensor noise; RGB float -> BGR."""
    canvas = canvas * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    noise = rng.normal(0.0, rng.uniform(0.0, 3.0) / 255.0, size=canvas.shape).astype(np.float32)
    rgb = np.clip((canvas + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])


def render_photo_image(
    rng: np.random.Generator,
    photo: tuple[np.ndarray, np.ndarray],
    backgrounds: list[np.ndarray],
    split: str,
    event: str,
    name: str,
) -> tuple[np.ndarray, ImageRecord]:
    """One real photo, rescaled so its faces are 12-400 px wide, cropped to (or placed on a
    background of) a 400-800 x 360-640 canvas, colour / blur / greyscale jittered. Faces cut by
    the crop keep their visible part; one less than half visible is marked invalid (ignored)."""
    img, boxes = photo
    w_img = int(rng.integers(400, 801))
    h_img = int(rng.integers(360, 641))
    ref = float(np.median(boxes[:, 2])) if len(boxes) else 150.0
    k = float(np.exp(rng.uniform(np.log(12), np.log(400)))) / ref
    sh, sw = max(1, round(img.shape[0] * k)), max(1, round(img.shape[1] * k))
    scaled = _resize(img, sw, sh)
    if rng.random() < 0.5:
        scaled = scaled[:, ::-1]
        boxes = boxes.copy()
        boxes[:, 0] = img.shape[1] - boxes[:, 0] - boxes[:, 2]
    canvas = _background(rng, backgrounds, w_img, h_img)
    # Offset of the scaled photo in the canvas: a random crop where it is larger, a random
    # placement where it is smaller.
    ox = int(rng.integers(min(0, w_img - sw), max(0, w_img - sw) + 1))
    oy = int(rng.integers(min(0, h_img - sh), max(0, h_img - sh) + 1))
    cx0, cy0 = max(0, ox), max(0, oy)
    cx1, cy1 = min(w_img, ox + sw), min(h_img, oy + sh)
    canvas[cy0:cy1, cx0:cx1] = scaled[cy0 - oy : cy1 - oy, cx0 - ox : cx1 - ox]
    if rng.random() < 0.2:
        canvas = np.repeat(canvas.mean(axis=2, keepdims=True), 3, axis=2)
    sigma = float(rng.uniform(0.5, 2.5)) if rng.random() < 0.25 else 0.0
    if sigma > 0:
        canvas = cv2.GaussianBlur(np.ascontiguousarray(canvas), (0, 0), sigma)
    gain = float(rng.uniform(0.55, 1.3))
    canvas = np.clip(canvas * gain, 0.0, 1.0).astype(np.float32)
    record = ImageRecord(split=split, event=event, name=name, width=w_img, height=h_img)
    for i, (x, y, w, h) in enumerate(boxes):
        x0, y0 = ox + x * k, oy + y * k
        x1, y1 = x0 + w * k, y0 + h * k
        vx0, vy0 = max(0.0, x0), max(0.0, y0)
        vx1, vy1 = min(float(w_img), x1), min(float(h_img), y1)
        if vx1 - vx0 < 1 or vy1 - vy0 < 1:
            continue
        visible = (vx1 - vx0) * (vy1 - vy0) / ((x1 - x0) * (y1 - y0))
        bx, by = int(round(vx0)), int(round(vy0))
        bw = max(1, min(w_img - bx, int(round(vx1 - vx0))))
        bh = max(1, min(h_img - by, int(round(vy1 - vy0))))
        face = _pasted_face((bx, by, bw, bh), PHOTO_FACE_INDEX + i, sigma, gain)
        face.invalid = int(visible < 0.5)
        face.occlusion = 0 if visible >= 0.9 else (1 if visible >= 0.7 else 2)
        record.faces.append(face)
    return _finish(rng, canvas), record
