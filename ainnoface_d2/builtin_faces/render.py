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

__all__ = ["render_image", "blur_label"]


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


def _draw_faces(rng, canvas, record: ImageRecord, sizes: list[int], crops) -> list:
    """Paste LFW faces of the given widths where they fit; returns the boxes placed."""
    w_img, h_img = record.width, record.height
    face_ids = list(FACE_RANGE[record.split])
    placed: list[tuple[int, int, int, int]] = []
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
                blur=blur_label(sigma, h),
                expression=0,
                illumination=int(gain < 0.65),
                invalid=0,
                occlusion=0,
                pose=0,
            )
        )
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
) -> tuple[np.ndarray, ImageRecord]:
    """Draw one image. Returns (uint8 BGR image, its metadata)."""
    w_img = int(rng.integers(400, 801))
    h_img = int(rng.integers(360, 641))
    canvas = _background(rng, backgrounds, w_img, h_img)
    record = ImageRecord(split=split, event=event, name=name, width=w_img, height=h_img)
    sizes = [] if faceless else sorted(_face_sizes(rng, event), reverse=True)
    placed = _draw_faces(rng, canvas, record, sizes, crops)
    _draw_distractors(rng, canvas, record, placed, crops)
    _draw_occluders(rng, canvas, record, backgrounds)
    # Camera-like finish over everything: a colour cast and sensor noise.
    canvas = canvas * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    noise = rng.normal(0.0, rng.uniform(0.0, 3.0) / 255.0, size=canvas.shape).astype(np.float32)
    rgb = np.clip((canvas + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1]), record
