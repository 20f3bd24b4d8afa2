"""The official WIDER FACE validation protocol (easy / medium / hard AP) in numpy: matching,
precision-recall, AP and the submission files. :class:`ainnoface_d2.evaluation.WiderFaceEvaluator`
runs it inside Detectron2, ``tools/evaluate_wider_face.py`` on a submission folder.

Protocol: S. Yang, P. Luo, C. C. Loy, X. Tang, "WIDER FACE: A Face Detection Benchmark", CVPR 2016,
as implemented by the official MATLAB ``eval_tools`` (``wider_eval.m``, ``read_pred.m``,
``norm_score.m``, ``evaluation.m`` with ``image_evaluation`` / ``image_pr_info`` /
``dataset_pr_info``, ``boxoverlap.m`` and ``VOCap.m``). Written from the protocol, not ported:

1. Predictions ``[x y w h score]`` per image are sorted by descending score (stable, as MATLAB's
   ``sort``), and the scores are min-max normalised over the whole split.
2. Each prediction, in that order, takes one ground-truth face: the one ``max`` picks over the
   overlaps with every face of the image (inclusive-pixel boxes ``[x, y, x+w, y+h]``, areas
   ``(w+1)(h+1)``). If that overlap is >= 0.5: a face outside the setting's keep list
   (``gt_list``) makes the prediction *ignored* (neither a true nor a false positive); a kept
   face not yet recalled is recalled (true positive); a kept face already recalled leaves the
   prediction a false positive. Images without ground-truth boxes or without predictions are
   skipped (their kept faces still count in the recall denominator); images whose keep list is
   empty are *not* skipped: their predictions are ignored or false positives.
3. For thresholds ``t_k = 1 - k/1000``, ``k = 1..1000``, every image contributes, up to its last
   prediction with normalised score >= ``t_k``, the number of non-ignored predictions and of
   recalled kept faces. Summed over the split: precision = recalled / proposals, recall =
   recalled / kept faces (precision is NaN where there are no proposals).
4. AP is VOC's all-point average precision (``VOCap.m``): recall padded with 0 and 1, precision
   with 0 and 0, the precision envelope taken from the right, and ``sum(Δrecall * precision)`` where
   recall changes. MATLAB's ``max`` skips NaN, so NaN precisions never enter the envelope.

Two *scoring* protocols are offered (``PROTOCOLS``, the config key ``TEST.WIDER_FACE.PROTOCOL``),
because the official tool and the popular Python port (``wondervictor/WiderFace-Evaluation``, used
by many papers) differ in step 2. They are not the *test-size* protocols (``original``, ``vga``,
``multiscale``, ``pyramid``: how the images are fed to the detector,
``TEST.FACE.SIZE_PROTOCOLS``, see :mod:`ainnoface_d2.engine`):

``protocol="matlab"`` (default, the official numbers) reproduces what MATLAB really computes. The
ground truth in ``wider_face_val.mat`` is of class ``int32``, and MATLAB evaluates mixed
``int32``/``double`` expressions in ``int32``, rounding half away from zero. In ``boxoverlap.m``
this rounds the prediction's corners where they meet ground-truth corners, rounds ``area_gt +
area_pred`` (the prediction's area stays a double) and rounds the overlap ratio itself, so every
overlap is an integer, 0 or 1 in practice: a prediction takes the *first* face (in annotation order)
whose overlap is >= 0.5, not the best one. ``norm_score.m`` starts from ``realmin('single')`` /
``realmax('single')``, which makes the extremes and the normalised scores single precision.

``protocol="python"`` is the Python port: overlaps in float64, the best-overlapping face, min-max
normalisation in float64 starting from max=0 / min=1. Predictions are still sorted, so results
never depend on file order.

One deliberate deviation from both: when every score of the split is equal, min-max normalisation
divides 0 by 0 and both official tools get NaN scores and an AP of 0; here every normalised score
becomes 1 (a warning is logged), i.e. all predictions count at every threshold.
"""

import logging
import os
from dataclasses import dataclass

import numpy as np

from ..data.wider_face_format import SETTINGS, WiderImageGT
from ..file_io import atomic_path, atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "PROTOCOLS",
    "WiderImageGT",
    "evaluate",
    "voc_ap",
    "read_submission_dir",
    "read_submission_file",
    "write_submission_dir",
    "plot_pr_curves",
]

PROTOCOLS = ("matlab", "python")
IOU_THRESH = 0.5
THRESH_NUM = 1000

_REALMIN_SINGLE = np.float32(np.finfo(np.float32).tiny)
_REALMAX_SINGLE = np.float32(np.finfo(np.float32).max)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _round_half_away(x):
    """MATLAB's rounding (half away from zero), exact for every double."""
    a = np.abs(x)
    f = np.floor(a)
    return np.copysign(f + (a - f >= 0.5), x)


def _to_int32(x):
    """MATLAB's conversion of doubles to int32: round half away from zero, saturate, NaN -> 0."""
    x = np.asarray(x, dtype=np.float64)
    r = np.clip(_round_half_away(x), _INT32_MIN, _INT32_MAX)
    r[np.isnan(r)] = 0
    return r.astype(np.int64)


def _candidate_pairs(pred, gt):
    """Pairs (prediction, face) whose boxes intersect: ``iw = min(x2) - max(x1) + 1 > 0`` and
    likewise ``ih``. Returns rows, cols and the (positive) ``iw``, ``ih`` of those pairs."""
    iw = np.minimum(pred[:, None, 2], gt[None, :, 2]) - np.maximum(pred[:, None, 0], gt[None, :, 0])
    rows, cols = np.nonzero(iw > -1)
    iw = iw[rows, cols] + 1
    ih = np.minimum(pred[rows, 3], gt[cols, 3]) - np.maximum(pred[rows, 1], gt[cols, 1]) + 1
    ok = ih > 0
    return rows[ok], cols[ok], iw[ok], ih[ok]


def _overlaps_matlab(pred, gt):
    """``boxoverlap(gt_bbx, pred)`` exactly as MATLAB evaluates it with int32 ground truth, on the
    intersecting pairs only (the others are 0: ``o(w <= 0) = 0; o(h <= 0) = 0``).

    ``pred``: ``(N, 4)`` float64 ``[x1 y1 x2 y2]``; ``gt``: ``(G, 4)`` int64 ``[x1 y1 x2 y2]``.
    Returns rows, cols and the int overlaps MATLAB's int32 result holds for those pairs.
    """
    # max/min of int32 and double are int32: the prediction's corners are rounded.
    rows, cols, iw, ih = _candidate_pairs(_to_int32(pred), gt)
    inter = iw * ih
    gt_area = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    pred_area = (pred[:, 2] - pred[:, 0] + 1) * (pred[:, 3] - pred[:, 1] + 1)  # stays a double
    # int32 + double is rounded; int32 ./ int32 is the rounded quotient, and x/0 saturates.
    union = _to_int32(gt_area[cols] + pred_area[rows]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.where(union == 0, _INT32_MAX, _to_int32(inter / union))
    return rows, cols, o


def _overlaps_float(pred, gt):
    """Inclusive-pixel IoU in float64 (the Python port's ``bbox_overlaps``) on the intersecting
    pairs; the others are 0."""
    rows, cols, iw, ih = _candidate_pairs(pred, gt)
    inter = iw * ih
    gt_area = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    pred_area = (pred[:, 2] - pred[:, 0] + 1) * (pred[:, 3] - pred[:, 1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.nan_to_num(inter / (pred_area[rows] + gt_area[cols] - inter), nan=0.0)
    return rows, cols, o


def _corners(xywh, dtype):
    box = np.array(xywh, dtype=dtype).reshape(-1, 4)
    box[:, 2] += box[:, 0]
    box[:, 3] += box[:, 1]
    return box


def _match(pred_xyxy, gt_xyxy, protocol):
    """For predictions in evaluation order: the face each one takes and whether the overlap
    reaches the threshold. MATLAB's ``max`` takes the first maximum; when the maximum is below the
    threshold, which face it is does not matter (reported as 0)."""
    overlaps = _overlaps_matlab if protocol == "matlab" else _overlaps_float
    rows, cols, o = overlaps(pred_xyxy, gt_xyxy)
    hit = o >= IOU_THRESH
    rows, cols, o = rows[hit], cols[hit], o[hit]
    order = np.lexsort((cols, -o, rows))  # per prediction: largest overlap, then first face
    rows, cols = rows[order], cols[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    idx = np.zeros(len(pred_xyxy), dtype=np.int64)
    idx[rows[first]] = cols[first]
    matched = np.zeros(len(pred_xyxy), dtype=bool)
    matched[rows[first]] = True
    return idx, matched


def _normalise_scores(scores, protocol):
    """Min-max normalisation over the split (``norm_score.m`` / the port's ``norm_score``)."""
    if scores.size == 0:
        return scores
    if protocol == "matlab":
        # realmin/realmax('single') as starting values make every step single precision.
        s32 = scores.astype(np.float32)
        lo = np.minimum(_REALMAX_SINGLE, s32.min())
        hi = np.maximum(_REALMIN_SINGLE, s32.max())
        diff = hi - lo
        normed = ((s32 - lo) / diff).astype(np.float64) if diff != 0 else None
    else:
        lo = min(1.0, float(scores.min()))
        hi = max(0.0, float(scores.max()))
        diff = hi - lo
        normed = (scores - lo) / diff if diff != 0 else None
    if normed is None:
        logger.warning(
            "All %d prediction scores are equal (%g): min-max normalisation divides by zero (the "
            "official tools then score nothing); every prediction gets normalised score 1.",
            scores.size,
            float(scores[0]),
        )
        normed = np.ones_like(scores, dtype=np.float64)
    return normed


def voc_ap(recall, precision):
    """VOC all-point AP exactly as ``VOCap.m`` (NaN precisions are skipped by the envelope)."""
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    # mpre(i) = max(mpre(i), mpre(i+1)) from the right; MATLAB's max skips NaN, as fmax does.
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _as_pred_array(value, key):
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 5:
        raise ValueError(
            f"predictions of {key[0]}/{key[1]} must be an (N, 5) array [x y w h score], "
            f"got shape {arr.shape}"
        )
    arr = arr[:, :5]
    if not np.isfinite(arr).all():
        raise ValueError(f"predictions of {key[0]}/{key[1]} contain NaN or infinite values")
    return arr


def _evaluated_settings(gt, settings):
    if settings is not None:
        return list(settings)
    present = set().union(*(g.keep.keys() for g in gt.values())) if gt else set()
    return [s for s in SETTINGS if s in present] + sorted(present - set(SETTINGS))


def _match_image(p, g, key, protocol):
    """One image: its predictions sorted as ``read_pred.m`` does, the face each one takes and
    whether it reaches the threshold (see :func:`_match`)."""
    p = p[np.argsort(-p[:, 4], kind="stable")]  # read_pred.m: sort(..., 'descend')
    if protocol == "matlab":
        if not np.array_equal(np.round(g.boxes), g.boxes):
            raise ValueError(
                f"ground truth of {key[0]}/{key[1]}: the MATLAB protocol needs integer boxes "
                "(int32 in wider_face_val.mat)"
            )
        if np.abs(p[:, :4]).max() >= 2**29:
            # MATLAB's int32 arithmetic would saturate: not emulated.
            raise ValueError(f"predictions of {key[0]}/{key[1]} have coordinates beyond +-2^29")
        gt_xyxy = _corners(g.boxes, np.int64)
    else:
        gt_xyxy = _corners(g.boxes, np.float64)
    idx, ok = _match(_corners(p[:, :4], np.float64), gt_xyxy, protocol)
    return p[:, 4], ok, idx


@dataclass
class _SplitMatches:
    """Every prediction of the split in evaluation order: its raw score, whether it reaches a face
    (``matched``) and which one (``taken``, an index into the concatenated faces of the split), and
    per setting the concatenated keep masks and the number of kept faces."""

    scores: np.ndarray
    matched: np.ndarray
    taken: np.ndarray
    keep: dict
    num_faces: dict


def _match_split(predictions, gt, protocol, settings):
    num_faces = {s: 0 for s in settings}
    keep = {s: [] for s in settings}
    scores, matched, taken = [np.zeros(0)], [np.zeros(0, dtype=bool)], [np.zeros(0, np.int64)]
    gt_offset = 0
    for key, g in gt.items():
        for s in settings:
            if s not in g.keep:
                raise ValueError(f"ground truth of {key[0]}/{key[1]} has no {s!r} keep list")
            num_faces[s] += int(g.keep[s].sum())
            keep[s].append(g.keep[s])
        p = predictions.get(key)
        p = _as_pred_array(p, key) if p is not None else None
        # evaluation.m: `if isempty(gt_bbx) || isempty(pred_info) continue`.
        if p is not None and len(p) and len(g.boxes):
            s, ok, idx = _match_image(p, g, key, protocol)
            scores.append(s)
            matched.append(ok)
            taken.append(idx + gt_offset)
        gt_offset += len(g.boxes)
    keep = {s: np.concatenate(k) if k else np.zeros(0, dtype=bool) for s, k in keep.items()}
    return _SplitMatches(
        np.concatenate(scores), np.concatenate(matched), np.concatenate(taken), keep, num_faces
    )


def _pr_curve(first_k, is_proposal, is_tp, num_faces, thresholds):
    """Summed proposals and recalled faces at each threshold, with precision and recall."""
    proposals = np.bincount(first_k, weights=is_proposal, minlength=THRESH_NUM + 1)
    recalled = np.bincount(first_k, weights=is_tp, minlength=THRESH_NUM + 1)
    proposals = np.cumsum(proposals[:THRESH_NUM])
    recalled = np.cumsum(recalled[:THRESH_NUM])
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = recalled / proposals
    recall = recalled / num_faces if num_faces else np.full(THRESH_NUM, np.nan)
    return {
        "thresholds": thresholds,
        "precision": precision,
        "recall": recall,
        "proposals": proposals,
        "recalled": recalled,
        "num_faces": num_faces,
    }


def evaluate(predictions, gt, protocol="matlab", settings=None):
    """Evaluate predictions with the WIDER FACE protocol.

    Args:
        predictions: mapping ``(event, image name) -> (N, 5)`` array ``[x y w h score]`` in any
            order. Ground-truth images without an entry have no predictions; entries for images not
            in ``gt`` are ignored with a warning.
        gt: mapping ``(event, image name) -> WiderImageGT``
            (:func:`ainnoface_d2.data.wider_face_format.load_eval_ground_truth` or
            :func:`ainnoface_d2.evaluation.gt_from_dataset_dicts`).
        protocol: ``"matlab"`` (official tool, default) or ``"python"`` (the Python port).
        settings: settings to evaluate (default: those in ``gt``, in easy/medium/hard order).

    Returns:
        dict: setting -> AP (fraction in [0, 1]; NaN for a setting without kept faces), and
        ``"pr_curves"``: setting -> dict with ``thresholds`` (the 1000 score thresholds,
        descending), ``precision``, ``recall``, ``proposals`` and ``recalled`` (summed counts) and
        ``num_faces``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    settings = _evaluated_settings(gt, settings)
    unknown = [k for k in predictions if k not in gt]
    if unknown:
        logger.warning(
            "%d predicted images are not in the ground truth and are ignored, e.g. %s",
            len(unknown),
            "/".join(unknown[0]),
        )
    m = _match_split(predictions, gt, protocol, settings)
    # A face is recalled by the first prediction (in evaluation order) that takes it; the
    # predictions of one image are contiguous and in that order, and face indices are global.
    first = np.zeros(len(m.scores), dtype=bool)
    rows = np.flatnonzero(m.matched)
    first[rows[np.unique(m.taken[rows], return_index=True)[1]]] = True

    # Image by image, "up to the last prediction with score >= t" is the set of predictions with
    # score >= t (scores do not increase in evaluation order), so the per-image sums are counts
    # over the split: prediction i counts at the thresholds t_k <= its normalised score.
    thresholds = 1 - np.arange(1, THRESH_NUM + 1) / THRESH_NUM
    normed = _normalise_scores(m.scores, protocol)
    first_k = THRESH_NUM - np.searchsorted(thresholds[::-1], normed, side="right")

    results = {"pr_curves": {}}
    for s in settings:
        kept = m.keep[s][m.taken]
        curve = _pr_curve(
            first_k, ~(m.matched & ~kept), first & m.matched & kept, m.num_faces[s], thresholds
        )
        if m.num_faces[s]:
            results[s] = voc_ap(curve["recall"], curve["precision"])
        else:
            logger.warning("Setting %r has no kept faces: its AP is NaN.", s)
            results[s] = float("nan")
        results["pr_curves"][s] = curve
    return results


# ---------------------------------------------------------------------------------------------
# Submission files: <dir>/<event>/<image name>.txt
# ---------------------------------------------------------------------------------------------
def _read_lines(path):
    """``[(line number, stripped text)]`` of the non-blank lines of a UTF-8 file (BOM allowed)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        lineno = data[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{lineno}: byte 0x{data[e.start]:02x} is not UTF-8 text: expected the image "
            "name, the number of boxes and 'x y w h score' lines in ASCII"
        ) from None
    numbered = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
    return [(i, line) for i, line in numbered if line]


def _check_name(path, lineno, text, name):
    """Line 1 names the image: ``name``, optionally with a folder and an extension."""
    given = text.replace("\\", "/").rsplit("/", 1)[-1]
    if name not in (given, os.path.splitext(given)[0]):
        raise ValueError(
            f"{path}:{lineno}: names image {text!r}; expected {name!r} (the file's name): a "
            "prediction file of another image"
        )


def _check_sizes(path, arr, rows):
    """Boxes are ``x y w h``: a width or height <= 0 (e.g. ``x2 y2`` written where ``w h`` is
    expected) is an error, not a box that silently matches nothing."""
    bad = np.flatnonzero((arr[:, 2] <= 0) | (arr[:, 3] <= 0))
    if bad.size:
        lineno, line = rows[bad[0]]
        raise ValueError(
            f"{path}:{lineno}: box with width or height <= 0 ({line!r}): expected 'x y w h score' "
            f"with w > 0 and h > 0 ({bad.size} such boxes in the file)"
        )
    return arr


def read_submission_file(path, name=None):
    """Read one prediction file of the official layout.

    Line 1 is the image name (with ``name``, it must be that image's, optionally with a folder and
    an extension), line 2 the number of boxes, then one ``x y w h score`` line per box with w > 0
    and h > 0 (extra columns are ignored; blank lines are skipped). Boxes need not be sorted.
    Returns an ``(N, 5)`` float64 array.
    """
    numbered = _read_lines(path)
    if name is not None and numbered:
        _check_name(path, *numbered[0], name)
    if len(numbered) < 2:
        raise ValueError(
            f"{path}:{len(numbered) + 1}: the file ended early: expected the image name and the "
            "number of boxes on two lines"
        )
    lineno, text = numbered[1]
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: expected the number of boxes, got {text!r}") from None
    if count < 0:
        raise ValueError(f"{path}:{lineno}: negative number of boxes {count}")
    rows = numbered[2:]
    if len(rows) < count:
        raise ValueError(
            f"{path}:{lineno}: announces {count} boxes, the file has {len(rows)} box lines"
        )
    if len(rows) > count:
        logger.warning(
            "%s: %d lines after the %d announced boxes are ignored (from line %d)",
            path,
            len(rows) - count,
            count,
            rows[count][0],
        )
    rows = rows[:count]
    if count == 0:
        return np.zeros((0, 5), dtype=np.float64)
    tokens = " ".join(line for _, line in rows).split()
    try:
        if len(tokens) == 5 * count:
            arr = np.array(tokens, dtype=np.float64).reshape(count, 5)
            if np.isfinite(arr).all():
                return _check_sizes(path, arr, rows)
    except ValueError:
        pass
    out = np.zeros((count, 5), dtype=np.float64)
    for k, (lineno, line) in enumerate(rows):
        parts = line.split()
        try:
            values = [float(v) for v in parts[:5]]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'x y w h score', got {line!r}") from None
        if len(values) < 5 or not np.isfinite(values).all():
            raise ValueError(f"{path}:{lineno}: expected 5 finite numbers, got {line!r}")
        out[k] = values
    return _check_sizes(path, out, rows)


def events_without_predictions(missing, gt):
    """The events of ``gt`` none of whose images is in ``preds`` or has a file: ``missing`` holds
    the ``(event, name)`` keys without a prediction file."""
    missing = set(missing)
    events = list(dict.fromkeys(event for event, _ in gt))
    return [e for e in events if all(k in missing for k in gt if k[0] == e)]


def read_submission_dir(pred_dir, gt=None, missing=None):
    """Read ``<pred_dir>/<event>/<name>.txt`` files.

    With ``gt``, exactly the ground-truth images are read, as ``read_pred.m`` does: a missing file
    means no predictions for that image (logged, with the events that have no file at all; their
    ``(event, name)`` keys are appended to the list ``missing`` when given); a folder with no
    file for any of them raises ``FileNotFoundError`` (a wrong folder, not a detector without
    detections). Line 1 of each file must name its image. Without ``gt``, every ``*.txt`` two
    levels down is read. Returns ``{(event, name): (N, 5) array}``.
    """
    if not os.path.isdir(pred_dir):
        raise FileNotFoundError(f"prediction directory not found: {pred_dir}")
    preds = {}
    if gt is not None:
        absent = []
        for event, name in gt:
            path = os.path.join(pred_dir, event, name + ".txt")
            if os.path.isfile(path):
                preds[(event, name)] = read_submission_file(path, name)
            else:
                absent.append((event, name))
        if missing is not None:
            missing.extend(absent)
        paths = [os.path.join(pred_dir, e, n + ".txt") for e, n in absent]
        if gt and not preds:
            raise FileNotFoundError(
                f"{pred_dir}: no prediction file for any of the {len(gt)} ground-truth images "
                f"(expected <event>/<image name>.txt, e.g. {paths[0]})"
            )
        if paths:
            events = events_without_predictions(absent, gt)
            logger.warning(
                "%d of %d prediction files are missing (those images have no predictions), e.g. "
                "%s; %d event(s) have no file at all%s",
                len(paths),
                len(gt),
                paths[0],
                len(events),
                f": {', '.join(events)}" if events else "",
            )
        return preds
    for event in sorted(os.listdir(pred_dir)):
        event_dir = os.path.join(pred_dir, event)
        if not os.path.isdir(event_dir):
            continue
        for fname in sorted(os.listdir(event_dir)):
            if fname.endswith(".txt"):
                path = os.path.join(event_dir, fname)
                preds[(event, fname[:-4])] = read_submission_file(path, fname[:-4])
    return preds


def write_submission_dir(out_dir, predictions):
    """Write predictions ``{(event, name): (N, 5) [x y w h score]}`` in the official layout.

    Each file has the image name (without ``.jpg``) on line 1, the number of boxes on line 2, then
    ``x y w h score`` lines by descending score. Numbers are written in full (Python's ``repr``),
    so reading the files back gives exactly the evaluated values.
    """
    for (event, name), arr in predictions.items():
        arr = _as_pred_array(arr, (event, name))
        arr = arr[np.argsort(-arr[:, 4], kind="stable")]
        os.makedirs(os.path.join(out_dir, event), exist_ok=True)
        lines = [name, str(len(arr))]
        # repr: the shortest text that reads back as the same double.
        lines += [" ".join(map(repr, row)) for row in arr.tolist()]
        path = os.path.join(out_dir, event, name + ".txt")
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def plot_pr_curves(results, path, title="WIDER FACE val"):
    """Save the precision-recall curves of :func:`evaluate`'s result as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for s, curve in results["pr_curves"].items():
        ax.plot(curve["recall"], curve["precision"], label=f"{s}: AP {100 * results[s]:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall", ylabel="Precision", title=title)
    ax.grid(True)
    ax.legend(loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
