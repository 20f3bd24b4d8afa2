"""Drawing one built-in image: a scene, heads with real LFW faces, distractors, a camera finish.

What a detector trained on these images has to cope with in ordinary photographs, and what each
step puts in for it:

* scale: a close-up event with one or two faces of 30-75 % of the image's shorter side (up to
  ~540 px), a portrait event with 1-6 faces of one common size (group photos), a crowd event of
  6-32 px faces, and a mixed event; big faces are upsampled 25 px crops, so they carry the
  softness that implies (cubic upsampling, then the image's own noise);
* context: most faces get a head (hair, ears, neck, shoulders in clothing colours) drawn behind
  them, so that a face is not just a textured square pasted on a texture;
* colour and light: faces colourised with a skin tone, contrast / brightness jittered, a light
  gradient across some faces; some images turned grayscale, some blurred as a whole;
* backgrounds: photo crops (some defocused as behind a portrait) and plain studio backdrops;
* distractors that must not fire: LFW non-face crops, skin-coloured blobs (hands, arms) and
  pasted photo patches, all blended with the same feathered masks as the faces.

Face boxes never intersect one another (so every box is labelled completely) and distractors
never touch a face box. All randomness comes from the ``rng`` passed in.
"""

from __future__ import annotations

import cv2
import numpy as np

from .records import FaceRecord, ImageRecord
from .sources import FACE_RANGE, HAIR_TONES, NON_FACE_RANGE, PARTIAL_FACE_NON_FACES, SKIN_TONES

__all__ = ["render_image", "blur_label"]

# Probabilities of the scene-level steps.
STUDIO_BACKGROUND_PROB = 0.2
DEFOCUS_BACKGROUND_PROB = 0.35
HEAD_CONTEXT_PROB = 0.75
GRAYSCALE_PROB = 0.12
IMAGE_BLUR_PROB = 0.1


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    shrink = w < img.shape[1] or h < img.shape[0]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _photo_crop(rng: np.random.Generator, sources: list[np.ndarray], w: int, h: int) -> np.ndarray:
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


def _studio(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A plain backdrop: a gradient between two muted colours with a faint mottle."""
    a, b = rng.uniform(0.15, 0.85, size=(2, 3)).astype(np.float32)
    t = np.linspace(0.0, 1.0, h if rng.random() < 0.6 else w, dtype=np.float32)
    ramp = t[:, None] if len(t) == h else t[None, :]
    img = a * (1 - ramp[..., None]) + b * ramp[..., None]
    mottle = cv2.resize(rng.normal(0, 0.04, size=(6, 8)).astype(np.float32), (w, h))
    return np.broadcast_to(img, (h, w, 3)) + mottle[..., None]


def _scene(rng: np.random.Generator, sources: list[np.ndarray], w: int, h: int) -> np.ndarray:
    if rng.random() < STUDIO_BACKGROUND_PROB:
        return np.clip(_studio(rng, w, h), 0.0, 1.0).astype(np.float32)
    img = _photo_crop(rng, sources, w, h)
    if rng.random() < DEFOCUS_BACKGROUND_PROB:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(1.5, 6.0)))
    return np.ascontiguousarray(img)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _alpha_mask(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A soft mask: a feathered rectangle or oval, so no sharp square border shows."""
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    if rng.random() < 0.5:
        # Oval: 1 inside, fading to 0 over the outer ~25 % of the radius.
        r = np.sqrt(((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2)
        return _smoothstep((1.08 - r) / 0.3)
    feather = max(1.5, 0.18 * min(w, h))
    d = np.minimum(np.minimum(xs, w - xs), np.minimum(ys, h - ys))
    return _smoothstep(d / feather)


def _blend_ellipse(canvas, colour, cx, cy, ax, ay, feather=0.25, texture=None) -> None:
    """Blend a filled, feathered ellipse of ``colour`` (RGB) into ``canvas``, clipped to it."""
    hh, ww = canvas.shape[:2]
    x0, x1 = max(0, int(cx - ax - 1)), min(ww, int(cx + ax + 2))
    y0, y1 = max(0, int(cy - ay - 1)), min(hh, int(cy + ay + 2))
    if x1 <= x0 or y1 <= y0 or ax < 1 or ay < 1:
        return
    xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :] / ax
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None] / ay
    alpha = _smoothstep((1.0 - np.sqrt(xs**2 + ys**2)) / feather)[..., None]
    patch = np.broadcast_to(np.asarray(colour, np.float32), (y1 - y0, x1 - x0, 3))
    if texture is not None:
        patch = patch * _resize(texture, x1 - x0, y1 - y0)[..., None]
    region = canvas[y0:y1, x0:x1]
    region[...] = alpha * patch + (1 - alpha) * region


def _texture(rng: np.random.Generator, sources: list[np.ndarray], strength: float) -> np.ndarray:
    """A mean-1 luminance texture (a grayscale photo crop), for hair and clothes."""
    t = _photo_crop(rng, sources, 64, 64).mean(axis=2)
    return (1.0 + strength * (t - t.mean()) / (t.std() + 1e-3)).clip(0.3, 1.7).astype(np.float32)


def _draw_head(rng, canvas, box, skin: np.ndarray, sources) -> None:
    """Hair, ears, neck and shoulders around a face box, drawn before the face itself."""
    x, y, w, h = box
    cx = x + w / 2
    clothes = rng.uniform(0.05, 0.9, size=3).astype(np.float32)
    _blend_ellipse(
        canvas, clothes, cx, y + 2.1 * h, w * rng.uniform(1.2, 1.7), 0.95 * h,
        texture=_texture(rng, sources, 0.25),
    )  # fmt: skip
    neck = skin * rng.uniform(0.7, 0.9)
    _blend_ellipse(canvas, neck, cx, y + 1.05 * h, w * rng.uniform(0.22, 0.3), 0.4 * h)
    if rng.random() < 0.9:  # not bald
        hair = HAIR_TONES[int(rng.integers(len(HAIR_TONES)))] / 255.0 * rng.uniform(0.7, 1.2)
        _blend_ellipse(
            canvas, hair, cx, y + h * rng.uniform(0.3, 0.45), w * rng.uniform(0.58, 0.72),
            h * rng.uniform(0.58, 0.72), feather=0.15, texture=_texture(rng, sources, 0.5),
        )  # fmt: skip
    if rng.random() < 0.6:
        for ex in (x + 0.05 * w, x + 0.95 * w):
            _blend_ellipse(canvas, skin * 0.9, ex, y + 0.5 * h, 0.06 * w, 0.12 * h)


def _prepare_crop(rng, crop: np.ndarray, w: int, h: int, blur_sigma: float, gain: float, skin):
    """Grayscale 25x25 crop -> colourised, jittered RGB patch of size (h, w)."""
    if blur_sigma > 0:
        crop = cv2.GaussianBlur(crop, (0, 0), blur_sigma)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.ascontiguousarray(crop)
    if w > crop.shape[1]:  # cubic keeps the upsampled face a little crisper than bilinear
        g = cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        g = _resize(crop, w, h)
    # Contrast about the mean, then brightness gain and offset.
    g = (g - g.mean()) * rng.uniform(0.75, 1.3) + g.mean()
    g = g * gain + rng.uniform(-0.06, 0.06)
    if rng.random() < 0.35:  # light from one side: a mild gain ramp across the face
        ramp = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :] * rng.uniform(0.08, 0.2)
        g = g * (1.0 + (ramp if rng.random() < 0.5 else -ramp))
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


def _image_size(rng: np.random.Generator, event: str) -> tuple[int, int]:
    if event == "3--Closeup":
        return int(rng.integers(360, 721)), int(rng.integers(400, 721))
    return int(rng.integers(400, 801)), int(rng.integers(360, 641))


def _face_sizes(rng: np.random.Generator, event: str, w_img: int, h_img: int) -> list[int]:
    """Face widths in pixels for one image of ``event``."""
    if event == "1--Crowd":
        n = int(rng.integers(12, 41))
        return [int(round(np.exp(rng.uniform(np.log(6), np.log(32))))) for _ in range(n)]
    if event == "2--Portrait":  # a group photo: faces of about one size
        n = int(rng.integers(1, 7))
        base = np.exp(rng.uniform(np.log(36), np.log(220)))
        return [int(round(base * rng.uniform(0.8, 1.2))) for _ in range(n)]
    if event == "3--Closeup":
        n = 1 if rng.random() < 0.8 else 2
        short = min(w_img, h_img)
        return [int(round(short * rng.uniform(0.3, 0.75) / n**0.5)) for _ in range(n)]
    n = int(rng.integers(3, 13))
    return [int(round(np.exp(rng.uniform(np.log(10), np.log(160))))) for _ in range(n)]


def blur_label(sigma: float, h: int) -> int:
    """WIDER blur label of a face blurred with ``sigma`` (in source pixels) at box height ``h``."""
    if sigma >= 1.2 or h < 12:
        return 2
    if sigma > 0 or h < 24 or h > 150:
        return 1
    return 0


def _place_boxes(rng, sizes: list[int], w_img: int, h_img: int) -> list[tuple[int, int, int, int]]:
    placed: list[tuple[int, int, int, int]] = []
    for s in sizes:
        w = min(s, w_img - 2)
        h = min(int(round(s * rng.uniform(1.0, 1.25))), h_img - 2)
        for _ in range(60):
            x = int(rng.integers(0, w_img - w + 1))
            y = int(rng.integers(0, h_img - h + 1))
            if not _intersects((x, y, w, h), placed):
                placed.append((x, y, w, h))
                break
        # else: no room left, fewer faces than drawn; the record stays exact
    return placed


def _draw_faces(rng, canvas, record: ImageRecord, boxes, crops, sources) -> None:
    face_ids = list(FACE_RANGE[record.split])
    styles = []
    for box in boxes:
        skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] / 255.0
        gain = float(rng.uniform(0.5, 1.4))
        styles.append((skin, gain))
        if box[2] >= 20 and rng.random() < HEAD_CONTEXT_PROB:
            _draw_head(rng, canvas, box, skin * gain, sources)
    for (x, y, w, h), (skin, gain) in zip(boxes, styles):
        src = int(face_ids[int(rng.integers(len(face_ids)))])
        sigma = float(rng.uniform(0.5, 2.0)) if rng.random() < 0.25 else 0.0
        patch = _prepare_crop(rng, crops[src], w, h, sigma, gain, skin)
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


def _random_box(rng, lo: float, hi: float, w_img: int, h_img: int, aspect=(0.8, 1.3)):
    s = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
    w, h = min(s, w_img - 2), min(int(round(s * rng.uniform(*aspect))), h_img - 2)
    return int(rng.integers(0, w_img - w + 1)), int(rng.integers(0, h_img - h + 1)), w, h


def _draw_distractors(rng, canvas, record: ImageRecord, crops, sources) -> None:
    """Non-face LFW crops, skin-coloured blobs and photo patches, never touching a face box."""
    w_img, h_img = record.width, record.height
    faces = [f.box for f in record.faces]
    non_face_ids = [i for i in NON_FACE_RANGE[record.split] if i not in PARTIAL_FACE_NON_FACES]
    for _ in range(int(rng.integers(2, 6)) + len(record.faces) // 3):
        box = _random_box(rng, 10, 90, w_img, h_img)
        if _intersects(box, faces):
            continue
        x, y, w, h = box
        src = int(non_face_ids[int(rng.integers(len(non_face_ids)))])
        skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] / 255.0
        patch = _prepare_crop(rng, crops[src], w, h, 0.0, float(rng.uniform(0.6, 1.4)), skin)
        _paste(canvas, patch, _alpha_mask(rng, w, h), x, y)
        record.distractors.append((box, src))
    for _ in range(int(rng.integers(0, 4))):  # hands, arms: skin without a face
        x, y, w, h = _random_box(rng, 16, 220, w_img, h_img, aspect=(0.4, 2.5))
        if _intersects((x, y, w, h), faces):
            continue
        skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] / 255.0 * rng.uniform(0.5, 1.3)
        tex = _texture(rng, sources, 0.08)
        _blend_ellipse(canvas, skin, x + w / 2, y + h / 2, w / 2, h / 2, 0.3, tex)
    for _ in range(int(rng.integers(0, 4))):  # pasted photo patches: a soft blob is no face
        x, y, w, h = _random_box(rng, 16, 160, w_img, h_img)
        if _intersects((x, y, w, h), faces):
            continue
        _paste(canvas, _photo_crop(rng, sources, w, h), _alpha_mask(rng, w, h), x, y)


def _draw_occluders(rng, canvas, record: ImageRecord, sources) -> None:
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
        canvas[oy : oy + oh, ox : ox + ow] = _photo_crop(rng, sources, ow, oh)


def _finish(rng, canvas: np.ndarray, record: ImageRecord) -> np.ndarray:
    """Camera-like finish: a colour cast, sometimes grayscale or soft, and sensor noise."""
    canvas = canvas * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    gray = rng.random() < GRAYSCALE_PROB
    if gray:  # a black-and-white photo: one channel, monochrome grain
        luma = canvas @ np.array([0.299, 0.587, 0.114], np.float32)
        canvas = np.repeat(luma[..., None], 3, axis=2)
    if rng.random() < IMAGE_BLUR_PROB:
        canvas = cv2.GaussianBlur(canvas, (0, 0), float(rng.uniform(0.6, 1.4)))
        for face in record.faces:
            face.blur = max(face.blur, 1)
    shape = (*canvas.shape[:2], 1) if gray else canvas.shape
    noise = rng.normal(0.0, rng.uniform(0.0, 3.0) / 255.0, size=shape).astype(np.float32)
    rgb = np.clip((canvas + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])


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
    w_img, h_img = _image_size(rng, event)
    canvas = _scene(rng, backgrounds, w_img, h_img)
    record = ImageRecord(split=split, event=event, name=name, width=w_img, height=h_img)
    sizes = [] if faceless else sorted(_face_sizes(rng, event, w_img, h_img), reverse=True)
    _draw_faces(rng, canvas, record, _place_boxes(rng, sizes, w_img, h_img), crops, backgrounds)
    _draw_distractors(rng, canvas, record, crops, backgrounds)
    _draw_occluders(rng, canvas, record, backgrounds)
    return _finish(rng, canvas, record), record
