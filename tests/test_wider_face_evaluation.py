"""Tests of the WIDER FACE evaluation (ainnoface_d2/evaluation/wider_face_evaluation.py).

Expected values are derived by hand in each test (PR points and VOCap arithmetic written out) or
come from ``_reference_ap``, a slow, literal transcription of the official MATLAB functions
(prediction loop, 1000-threshold loop, VOCap) written in this file, including MATLAB's int32 /
single-precision arithmetic for the "matlab" protocol.
"""

import math
import os
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import ainnoface_d2  # noqa: F401
from ainnoface_d2.evaluation import (
    WiderFaceEvaluator,
    WiderImageGT,
    evaluate,
    gt_from_dataset_dicts,
    load_eval_ground_truth,
    read_submission_dir,
    read_submission_file,
    voc_ap,
    write_submission_dir,
)

import numpy as np
import pytest
from _scripts import load_script

SHARED = Path(__file__).resolve().parents[2] / "shared"
GT_DIR = SHARED / "widerface" / "ground_truth"
INT32_MAX = 2**31 - 1


# ---------------------------------------------------------------------------------------------
# Literal reference implementation of the official MATLAB code (slow, for small inputs)
# ---------------------------------------------------------------------------------------------
def _mround(x):
    """MATLAB round (half away from zero), exact via Fraction, saturated to int32."""
    f = Fraction(x)
    a = abs(f)
    r = math.floor(a) + (1 if a - math.floor(a) >= Fraction(1, 2) else 0)
    r = r if f >= 0 else -r
    return max(-(2**31), min(INT32_MAX, r))


def _overlap_matlab(g, p):
    """boxoverlap(gt int32 [x1 y1 x2 y2], pred double [x1 y1 x2 y2]) in MATLAB's arithmetic."""
    x1 = max(g[0], _mround(p[0]))
    y1 = max(g[1], _mround(p[1]))
    x2 = min(g[2], _mround(p[2]))
    y2 = min(g[3], _mround(p[3]))
    w, h = x2 - x1 + 1, y2 - y1 + 1
    if w <= 0 or h <= 0:
        return 0
    inter = w * h
    aarea = (g[2] - g[0] + 1) * (g[3] - g[1] + 1)
    barea = (p[2] - p[0] + 1) * (p[3] - p[1] + 1)
    union = _mround(float(aarea) + barea) - inter
    if union == 0:
        return INT32_MAX
    return _mround(Fraction(inter, union))


def _overlap_float(g, p):
    iw = min(p[2], g[2]) - max(p[0], g[0]) + 1
    ih = min(p[3], g[3]) - max(p[1], g[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    ua = (p[2] - p[0] + 1) * (p[3] - p[1] + 1) + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - iw * ih
    return iw * ih / ua


def _reference_ap(preds, gt, protocol, settings=("easy", "medium", "hard")):
    """read_pred (sort) + norm_score + evaluation + dataset_pr_info + VOCap, loop by loop."""
    sorted_preds = {}
    for key, p in preds.items():
        rows = [list(map(float, r)) for r in p]
        order = sorted(range(len(rows)), key=lambda i: -rows[i][4])  # stable, descending
        sorted_preds[key] = [rows[i] for i in order]
    all_scores = [r[4] for p in sorted_preds.values() for r in p]
    if protocol == "matlab":
        hi = np.float32(np.finfo(np.float32).tiny)
        lo = np.float32(np.finfo(np.float32).max)
        for s in all_scores:
            hi = max(hi, np.float32(s))
            lo = min(lo, np.float32(s))

        def norm(s):
            return float((np.float32(s) - lo) / (hi - lo))

    else:
        hi, lo = 0.0, 1.0
        for s in all_scores:
            hi, lo = max(hi, s), min(lo, s)

        def norm(s):
            return (s - lo) / (hi - lo)

    aps = {}
    for setting in settings:
        org = [[0, 0] for _ in range(1000)]
        count_face = 0
        for key, g in gt.items():
            keep = set(np.flatnonzero(g.keep[setting]).tolist())
            count_face += len(keep)
            p = sorted_preds.get(key, [])
            if not p or len(g.boxes) == 0:
                continue
            gboxes = [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in g.boxes.tolist()]
            if protocol == "matlab":
                gboxes = [[int(v) for v in b] for b in gboxes]
            recall_list = [0] * len(gboxes)
            proposal = [1] * len(p)
            pred_recall = [0] * len(p)
            for h, r in enumerate(p):
                box = [r[0], r[1], r[0] + r[2], r[1] + r[3]]
                f = _overlap_matlab if protocol == "matlab" else _overlap_float
                ovs = [f(gb, box) for gb in gboxes]
                m = max(ovs)
                idx = ovs.index(m)  # first maximum
                if m >= 0.5:
                    if idx not in keep:
                        recall_list[idx] = -1
                        proposal[h] = -1
                    elif recall_list[idx] == 0:
                        recall_list[idx] = 1
                pred_recall[h] = recall_list.count(1)
            normed = [norm(r[4]) for r in p]
            for t in range(1, 1001):
                thresh = 1 - t / 1000
                passing = [h for h in range(len(p)) if normed[h] >= thresh]
                if passing:
                    r_index = passing[-1]
                    org[t - 1][0] += proposal[: r_index + 1].count(1)
                    org[t - 1][1] += pred_recall[r_index]
        prec = [r / q if q else float("nan") for q, r in org]
        rec = [r / count_face for _, r in org]
        mrec = [0.0] + rec + [1.0]
        mpre = [0.0] + prec + [0.0]
        for i in range(len(mpre) - 2, -1, -1):
            # MATLAB's max(a, b) returns the non-NaN one.
            a, b = mpre[i], mpre[i + 1]
            mpre[i] = b if math.isnan(a) else (a if math.isnan(b) else max(a, b))
        aps[setting] = sum(
            (mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]
        )
    return aps


def _gt(boxes, keep, setting="hard"):
    return WiderImageGT(np.asarray(boxes, dtype=np.int64).reshape(-1, 4), {setting: keep})


# ---------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------
def _hand_case():
    """Four images; 3 kept faces (g0, g1 in A, gc in C). Scores are binary fractions, exact in
    float32, and span [0, 1], so normalisation leaves them unchanged."""
    gt = OrderedDict()
    # A: g0, g1 kept; g2 outside the setting (ignored).
    gt[("ev", "A")] = _gt([[0, 0, 10, 10], [20, 0, 10, 10], [40, 0, 10, 10]], [1, 1, 0])
    # B: one face, not kept (empty keep list: the image is still evaluated).
    gt[("ev", "B")] = _gt([[0, 0, 10, 10]], [0])
    # C: one kept face, no predictions.
    gt[("ev", "C")] = _gt([[5, 5, 20, 20]], [1])
    # D: no ground-truth boxes at all: evaluation.m skips it.
    gt[("ev", "D")] = _gt(np.zeros((0, 4)), np.zeros(0, dtype=bool))
    preds = {
        ("ev", "A"): np.array(
            [
                [0, 0, 10, 10, 1.0],  # p1 -> g0: TP
                [0, 0, 10, 10, 0.875],  # p2 -> g0 again: FP
                [40, 0, 10, 10, 0.75],  # p3 -> g2 (not kept): ignored
                [100, 100, 10, 10, 0.625],  # p4: FP
                [20, 0, 10, 10, 0.5],  # p5 -> g1: TP
            ]
        ),
        ("ev", "B"): np.array(
            [[0, 0, 10, 10, 0.9375], [50, 50, 5, 5, 0.0]]  # ignored; FP at t = 0 only
        ),
        ("ev", "D"): np.array([[0, 0, 10, 10, 0.25]]),  # skipped (image has no GT boxes)
    }
    return gt, preds


@pytest.mark.parametrize("protocol", ["matlab", "python"])
def test_hand_example(protocol):
    gt, preds = _hand_case()
    res = evaluate(preds, gt, protocol=protocol)
    # Cumulative (proposals, recalled) as the threshold falls, 3 kept faces:
    #   score 1.0 p1 TP (1, 1); .9375 ignored; .875 p2 FP (2, 1); .75 ignored; .625 p4 FP (3, 1);
    #   .5 p5 TP (4, 2); .25 (image D, skipped); 0.0 FP (5, 2) only at the last threshold t = 0.
    curve = res["pr_curves"]["hard"]
    thr = curve["thresholds"]
    assert thr[0] == pytest.approx(0.999) and thr[-1] == 0.0

    def at(t):
        k = int(np.flatnonzero(np.isclose(thr, t))[0])
        return curve["proposals"][k], curve["recalled"][k]

    assert at(0.999) == (1, 1)
    assert at(0.9) == (1, 1)  # B's 0.9375 is ignored; p2 (0.875) is below 0.9
    assert at(0.87) == (2, 1)
    assert at(0.7) == (2, 1)
    assert at(0.6) == (3, 1)
    assert at(0.5) == (4, 2)
    assert at(0.001) == (4, 2)
    assert at(0.0) == (5, 2)
    assert curve["num_faces"] == 3
    # PR points: (R, P) = (1/3, 1), (1/3, 1/2), (1/3, 1/3), (2/3, 1/2), (2/3, 2/5).
    # VOCap: envelope at the recall steps: 1 at R = 1/3, max(1/2, 2/5) at R = 2/3, 0 at R = 1.
    expected = (1 / 3) * 1 + (1 / 3) * 0.5 + (1 / 3) * 0
    assert res["hard"] == pytest.approx(expected, abs=1e-12)
    assert _reference_ap(preds, gt, protocol, ("hard",))["hard"] == pytest.approx(expected)


@pytest.mark.parametrize("protocol", ["matlab", "python"])
def test_file_order_and_ties_do_not_matter(protocol):
    gt, preds = _hand_case()
    base = evaluate(preds, gt, protocol=protocol)["hard"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        shuffled = {k: v[rng.permutation(len(v))] for k, v in preds.items()}
        assert evaluate(shuffled, gt, protocol=protocol)["hard"] == base
    # Two equal-score predictions on g1: whichever comes first is the TP, the other the FP; both
    # enter at the same threshold, so the curve is the same in either order.
    tie = dict(preds)
    extra = np.array([[20, 0, 10, 10, 0.5], [20, 1, 10, 10, 0.5]])
    tie[("ev", "A")] = np.vstack([preds[("ev", "A")][:4], extra])
    tie_rev = dict(tie)
    tie_rev[("ev", "A")] = tie[("ev", "A")][::-1]
    a = evaluate(tie, gt, protocol=protocol)
    b = evaluate(tie_rev, gt, protocol=protocol)
    assert a["hard"] == b["hard"]
    # At score 0.5 now 5 proposals, 2 recalled; the envelope at R = 2/3 is max(2/5, 2/6) = 2/5.
    assert a["hard"] == pytest.approx(1 / 3 + (1 / 3) * 0.4, abs=1e-12)


def test_matlab_takes_first_face_with_overlap_not_best():
    # g0 = [0 0 9 9] and g1 = [2 0 9 9] (inclusive corners 0..9 and 2..11), both kept.
    # A prediction exactly on g1 overlaps g0 by 8*10 / (100 + 100 - 80) = 2/3 and g1 by 1.
    gt = {("e", "i"): _gt([[0, 0, 9, 9], [2, 0, 9, 9]], [1, 1])}
    preds = {("e", "i"): np.array([[2, 0, 9, 9, 1.0], [0, 0, 9, 9, 0.0]])}
    # Python port: p1 -> g1 (best), p2 -> g0: recall 1/2 at t > 0 (P = 1), 2/2 at t = 0 (P = 1).
    # AP = 1/2 * 1 + 1/2 * 1 = 1.
    assert evaluate(preds, gt, protocol="python")["hard"] == pytest.approx(1.0)
    # MATLAB: int32 overlaps round 2/3 and 1 both to 1, max() takes the first: p1 -> g0, and p2 ->
    # g0 again (FP). Points (R, P): (1/2, 1) for t > 0, (1/2, 1/2) at t = 0. AP = 1/2 * 1 + 1/2 * 0.
    assert evaluate(preds, gt, protocol="matlab")["hard"] == pytest.approx(0.5)
    for protocol, expected in (("python", 1.0), ("matlab", 0.5)):
        assert _reference_ap(preds, gt, protocol, ("hard",))["hard"] == pytest.approx(expected)


def test_matlab_rounds_prediction_corners():
    # GT [0 0 9 9]: corners 0..9, area 100. Prediction x = -3.5, w = 9: corners -3.5..5.5.
    # Float IoU: iw = 5.5 - 0 + 1 = 6.5, inter 65, union 100 + 100 - 65 = 135: 0.481 < 0.5.
    # MATLAB: max(0, round(-3.5) = -4) = 0, min(9, round(5.5) = 6) = 6: iw = 7, inter 70,
    # union = 200 - 70 = 130: 70/130 = 0.538 rounds to 1 >= 0.5: a match.
    gt = {("e", "i"): _gt([[0, 0, 9, 9]], [1])}
    preds = {("e", "i"): np.array([[-3.5, 0, 9, 9, 0.7], [500, 500, 4, 4, 0.1]])}
    # matlab: TP at the top score, FP at t = 0 only: AP = 1 * 1 (recall 1 reached with P = 1).
    assert evaluate(preds, gt, protocol="matlab")["hard"] == pytest.approx(1.0)
    # python: no match: recall stays 0, AP = 0.
    assert evaluate(preds, gt, protocol="python")["hard"] == 0.0


def test_voc_ap_by_hand():
    # mrec = [0, 0, 0, .5, .5, 1], mpre = [0, nan, nan, 1, .5, 0] -> envelope [1, 1, 1, 1, .5, 0]
    # (NaN skipped as MATLAB's max does); recall steps at positions 3 and 5: .5 * 1 + .5 * 0.
    assert voc_ap([0, 0, 0.5, 0.5], [np.nan, np.nan, 1, 0.5]) == pytest.approx(0.5)
    # Steps 0 -> .2 (env .9), .2 -> .6 (env .8), .6 -> 1 (0): .2 * .9 + .4 * .8 = .5
    assert voc_ap([0.2, 0.6, 0.6], [0.9, 0.8, 0.7]) == pytest.approx(0.5)


def test_constant_scores_count_at_every_threshold(caplog):
    gt, preds = _hand_case()
    flat = {k: np.column_stack([v[:, :4], np.full(len(v), 0.3)]) for k, v in preds.items()}
    with caplog.at_level("WARNING"):
        res = evaluate(flat, gt)
    assert "are equal" in caplog.text
    # All at once: 5 non-ignored proposals (p1, p2, p4, p5, B's FP), 2 recalled: one point
    # (R, P) = (2/3, 2/5) at every threshold; AP = 2/3 * 2/5.
    assert res["hard"] == pytest.approx(2 / 3 * 2 / 5)


def test_setting_without_faces_is_nan():
    gt = {("e", "i"): _gt([[0, 0, 9, 9]], [0])}
    res = evaluate({("e", "i"): np.array([[0, 0, 9, 9, 1.0]])}, gt)
    assert math.isnan(res["hard"])


def test_bad_predictions_are_rejected():
    gt = {("e", "i"): _gt([[0, 0, 9, 9]], [1])}
    with pytest.raises(ValueError, match="e/i"):
        evaluate({("e", "i"): np.array([[0, 0, 9, np.nan, 1.0]])}, gt)
    with pytest.raises(ValueError, match="shape"):
        evaluate({("e", "i"): np.array([[0, 0, 9, 1.0]])}, gt)


# ---------------------------------------------------------------------------------------------
# Submission files
# ---------------------------------------------------------------------------------------------
def test_submission_round_trip_and_unsorted_files(tmp_path):
    gt, preds = _hand_case()
    preds32 = {k: v.astype(np.float32).astype(np.float64) for k, v in preds.items()}
    # float32 values that are not short decimals, as a model's outputs.
    shifted = preds[("ev", "A")][:, :4].astype(np.float32) + np.float32(0.1)
    preds32[("ev", "A")][:, :4] = shifted.astype(np.float64)
    write_submission_dir(tmp_path / "sub", preds32)
    lines = (tmp_path / "sub" / "ev" / "A.txt").read_text().splitlines()
    assert lines[0] == "A" and lines[1] == "5" and len(lines) == 7
    scores = [float(line.split()[4]) for line in lines[2:]]
    assert scores == sorted(scores, reverse=True)
    back = read_submission_dir(tmp_path / "sub", gt)
    assert set(back) == {("ev", "A"), ("ev", "B"), ("ev", "D")}  # C has no file: no predictions
    for k in back:
        order = np.argsort(-preds32[k][:, 4], kind="stable")
        np.testing.assert_array_equal(back[k], preds32[k][order])
    # A hand-written unsorted file with a blank trailing line.
    f = tmp_path / "u.txt"
    f.write_text("img\n3\n1 2 3 4 0.2\n5 6 7 8 0.9\n9 9 9 9 0.5\n\n")
    np.testing.assert_array_equal(read_submission_file(f)[:, 4], [0.2, 0.9, 0.5])
    unsorted = {("ev", "A"): preds[("ev", "A")][::-1], ("ev", "B"): preds[("ev", "B")]}
    write_submission_dir(tmp_path / "s2", unsorted)
    assert evaluate(read_submission_dir(tmp_path / "s2"), gt)["hard"] == pytest.approx(0.5)


def test_bad_submission_files_name_file_and_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("img\n2\n1 2 3 4 0.5\n1 2 x 4 0.5\n")
    with pytest.raises(ValueError, match=r"bad\.txt:4"):
        read_submission_file(f)
    f.write_text("img\n3\n1 2 3 4 0.5\n")
    with pytest.raises(ValueError, match="announces 3 boxes"):
        read_submission_file(f)
    f.write_text("img\nthree\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2"):
        read_submission_file(f)
    f.write_text("img\n0\n")
    assert read_submission_file(f).shape == (0, 5)


# ---------------------------------------------------------------------------------------------
# .mat ground truth and the CLI
# ---------------------------------------------------------------------------------------------
def _cell(items):
    arr = np.empty((len(items), 1), dtype=object)
    for i, it in enumerate(items):
        arr[i, 0] = it
    return arr


def _write_mat_gt(d, gt):
    """Write a tiny ground truth in the official .mat layout (cell arrays, 1-based gt_list)."""
    import scipy.io

    events = sorted({e for e, _ in gt})
    files, boxes = [], []
    keeps = {s: [] for s in ("easy", "medium", "hard")}
    for e in events:
        keys = [k for k in gt if k[0] == e]
        files.append(_cell([np.array([n]) for _, n in keys]))
        boxes.append(_cell([gt[k].boxes.astype(np.int32) for k in keys]))
        for s in keeps:
            keeps[s].append(
                _cell([(np.flatnonzero(gt[k].keep["hard"]) + 1).reshape(-1, 1) for k in keys])
            )
    base = {
        "event_list": _cell([np.array([e]) for e in events]),
        "file_list": _cell(files),
        "face_bbx_list": _cell(boxes),
    }
    os.makedirs(d, exist_ok=True)
    scipy.io.savemat(os.path.join(d, "wider_face_val.mat"), base)
    for s, lists in keeps.items():
        scipy.io.savemat(os.path.join(d, f"wider_{s}_val.mat"), {**base, "gt_list": _cell(lists)})


def test_mat_loader_and_cli(tmp_path, capsys):

    gt, preds = _hand_case()
    gt.pop(("ev", "D"))  # scipy cannot store a 0x4 cell entry the way MATLAB does
    _write_mat_gt(tmp_path / "gt", gt)
    loaded = load_eval_ground_truth(tmp_path / "gt")
    assert list(loaded) == list(gt)
    for k in gt:
        np.testing.assert_array_equal(loaded[k].boxes, gt[k].boxes)
        for s in ("easy", "medium", "hard"):
            np.testing.assert_array_equal(loaded[k].keep[s], gt[k].keep["hard"])
    write_submission_dir(tmp_path / "pred", preds)
    cli = load_script("tools/evaluate_wider_face.py")
    res = cli.main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")])
    # Same as the hand example; image D (no GT boxes) is not in this ground truth, so its score
    # 0.25 is not read: min-max still spans [0, 1].
    assert res["hard"] == pytest.approx(0.5)
    assert "Hard   Val AP: 0.5000" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The real validation ground truth
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_gt():
    if not (GT_DIR / "wider_hard_val.mat").is_file():
        pytest.skip(f"official ground truth not found in {GT_DIR}")
    return load_eval_ground_truth(GT_DIR)


def test_real_gt_counts(real_gt):
    assert len(real_gt) == 3226
    assert sum(len(g.boxes) for g in real_gt.values()) == 39708
    assert [
        sum(int(g.keep[s].sum()) for g in real_gt.values()) for s in ("easy", "medium", "hard")
    ] == [
        7211,
        13319,
        31958,
    ]


def _matlab_pairs_first_face(g):
    """For GT-as-predictions with equal scores (file order): the face each box takes under the
    MATLAB rule (first face with rounded overlap >= 1), or None. Candidate pairs are found with a
    loose float prefilter, then decided with the literal MATLAB overlap."""
    b = g.boxes.astype(np.float64)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]) + 1
    ih = np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]) + 1
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    with np.errstate(all="ignore"):
        iou = iw * ih / (area[:, None] + area[None] - iw * ih)
    # Integer boxes: MATLAB's rounded overlap is >= 1 only if the exact ratio is >= 0.5.
    cand = (iw > 0) & (ih > 0) & (iou > 0.3)
    taken = []
    corners = [[int(v) for v in (a, c, e, f)] for a, c, e, f in zip(x1, y1, x2, y2)]
    for j in range(len(b)):
        faces = [i for i in np.flatnonzero(cand[:, j]) if _overlap_matlab(corners[i], corners[j])]
        taken.append(min(faces) if faces else None)
    return taken


@pytest.mark.parametrize("protocol", ["python", "matlab"])
def test_real_gt_as_predictions(real_gt, protocol, caplog):
    """Every official box submitted with one common score: all predictions count at every
    threshold, so there is one PR point (R, P) and VOCap gives AP = R * P."""
    preds = {k: np.column_stack([g.boxes, np.ones(len(g.boxes))]) for k, g in real_gt.items()}
    res = evaluate(preds, real_gt, protocol=protocol)
    if protocol == "python":
        # Each box's best face is itself (overlap 1), except: the box 1026 474 -2 23 (inclusive
        # width -1: it overlaps nothing, not even itself) is a FP in every setting, and of the
        # duplicate pair in 21_Festival_Festival_21_604 (kept in Hard only) the second copy takes
        # the first face again: FP, its own face never recalled. Boxes outside a setting are
        # ignored. Easy: R = 1, P = 7211/7212; Medium 13319/13320; Hard R = P = 31956/31958.
        expected = {"easy": 7211 / 7212, "medium": 13319 / 13320, "hard": (31956 / 31958) ** 2}
    else:
        # MATLAB: a box takes the first face it overlaps with rounded overlap 1 (>= 0.5), which
        # for 13 pairs of overlapping faces is an earlier face, not itself. Count it literally.
        expected = {}
        for s in ("easy", "medium", "hard"):
            tp = fp = faces = 0
            for g in real_gt.values():
                keep = g.keep[s]
                faces += int(keep.sum())
                recalled = set()
                for i in _matlab_pairs_first_face(g):
                    if i is None:
                        fp += 1
                    elif not keep[i]:
                        pass  # ignored
                    elif i in recalled:
                        fp += 1
                    else:
                        recalled.add(i)
                        tp += 1
            expected[s] = (tp / faces) * (tp / (tp + fp))
        # The Hard value is below the Python port's (31956/31958)^2.
        assert expected["hard"] < (31956 / 31958) ** 2
    for s in ("easy", "medium", "hard"):
        assert res[s] == pytest.approx(expected[s], abs=1e-12), s


@pytest.mark.parametrize("protocol", ["matlab", "python"])
def test_degraded_predictions_match_literal_reference(real_gt, protocol):
    """A random subset of real images with degraded predictions: every other kept Hard face
    dropped, jitter (with .5 coordinates, which MATLAB rounds), duplicates, low-score false
    positives, scores with few decimals (ties). Compared with the loop-by-loop reference."""
    rng = np.random.default_rng(7)
    keys = list(real_gt)
    subset = [keys[i] for i in rng.choice(len(keys), 25, replace=False)]
    gt = OrderedDict((k, real_gt[k]) for k in subset)
    preds = {}
    for k, g in gt.items():
        rows = []
        hard_seen = 0
        for j, (x, y, w, h) in enumerate(g.boxes.astype(float)):
            if g.keep["hard"][j]:
                hard_seen += 1
                if hard_seen % 2 == 0:
                    continue
            s = max(w, h, 1.0)
            for _ in range(rng.choice([1, 1, 2])):
                d = rng.normal(0, 0.15, 4) * s
                box = [x + d[0], y + d[1], max(w + d[2], 0.5), max(h + d[3], 0.5)]
                if rng.random() < 0.3:
                    box = [np.round(v * 2) / 2 for v in box]
                rows.append(box + [np.round(rng.uniform(0.3, 1.0), 2)])
        for _ in range(rng.integers(0, 6)):
            rows.append([*rng.uniform(0, 500, 2), *rng.uniform(5, 50, 2), rng.uniform(0, 0.3)])
        if rows:
            preds[k] = np.array(rows)[rng.permutation(len(rows))]
    res = evaluate(preds, gt, protocol=protocol)
    ref = _reference_ap(preds, gt, protocol)
    for s in ("easy", "medium", "hard"):
        assert 0.05 < res[s] < 0.95
        assert res[s] == pytest.approx(ref[s], abs=1e-12), s


# ---------------------------------------------------------------------------------------------
# Detectron2 evaluator
# ---------------------------------------------------------------------------------------------
def _dataset_dicts(gt):
    dicts = []
    for (event, name), g in gt.items():
        anns = [
            {
                "bbox": [float(v) for v in b],
                "bbox_mode": 1,
                "category_id": 0,
                "iscrowd": 0 if g.keep["hard"][k] else 1,
                "wider_index": k,
                "wider_bbox": [int(v) for v in b],
                "wider_easy": bool(g.keep["hard"][k]),
                "wider_medium": bool(g.keep["hard"][k]),
                "wider_hard": bool(g.keep["hard"][k]),
            }
            for k, b in enumerate(g.boxes)
        ]
        # Annotations in another order than wider_index: the evaluator must not care.
        dicts.append({"file_name": f"/data/images/{event}/{name}.jpg", "annotations": anns[::-1]})
    return dicts


def test_dataset_evaluator(tmp_path):
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Boxes, Instances

    gt, preds = _hand_case()
    name = "wider_face_eval_test_tiny"
    dicts = _dataset_dicts(gt)
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: dicts)
    assert list(gt_from_dataset_dicts(dicts)) == list(gt)

    ev = WiderFaceEvaluator(name, output_dir=str(tmp_path))  # distributed, one process
    ev.reset()
    for d in dicts:
        key = tuple(Path(d["file_name"]).with_suffix("").parts[-2:])
        p = preds.get(key, np.zeros((0, 5)))
        inst = Instances((600, 800))
        xyxy = np.column_stack([p[:, 0], p[:, 1], p[:, 0] + p[:, 2], p[:, 1] + p[:, 3]])
        inst.pred_boxes = Boxes(torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.tensor(p[:, 4], dtype=torch.float32)
        inst.pred_classes = torch.zeros(len(p), dtype=torch.int64)
        ev.process([{"file_name": d["file_name"], "image_id": 0}], [{"instances": inst}])
    out = ev.evaluate()
    # The hand example in percent: 50, for every setting (all three keep lists are the same here).
    assert list(out["wider_face"]) == ["AP_easy", "AP_medium", "AP_hard"]
    for v in out["wider_face"].values():
        assert v == pytest.approx(50.0)
    assert (tmp_path / "wider_face_pr_curves.png").stat().st_size > 0
    assert (tmp_path / "wider_face_metrics.json").is_file()
    # The metrics carry both protocols: the test size (a label given by the caller) and scoring.
    import json

    metrics = json.loads((tmp_path / "wider_face_metrics.json").read_text())
    assert metrics["size_protocol"] == "original" and metrics["scoring_protocol"] == "matlab"
    assert metrics["AP_hard"] == pytest.approx(50.0) and metrics["dataset"] == name
    sub = read_submission_dir(tmp_path / "wider_face_submission", gt)
    assert evaluate(sub, gt)["hard"] == pytest.approx(0.5)
    assert sub[("ev", "C")].shape == (0, 5)  # an image without predictions gets a 0-box file

    # A split without the official evaluation fields (e.g. train) is refused clearly.
    train = [{"file_name": "/x/e/i.jpg", "annotations": [{"bbox": [0, 0, 5, 5], "bbox_mode": 1}]}]
    with pytest.raises(ValueError, match="wider_index"):
        gt_from_dataset_dicts(train, "some_train")


# ---------------------------------------------------------------------------------------------
# tools/evaluate_wider_face.py: errors are one line with the file (and line) and exit status 2
# ---------------------------------------------------------------------------------------------
def _cli_error(tmp_path, capsys, pred, gt):

    cli = load_script("tools/evaluate_wider_face.py")
    with pytest.raises(SystemExit) as e:
        cli.main(["--pred", str(pred), "--gt", str(gt)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("evaluate_wider_face.py: error: ")
    return err[0]


def test_cli_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    gt, preds = _hand_case()
    gt.pop(("ev", "D"))
    _write_mat_gt(tmp_path / "gt", gt)
    pred = tmp_path / "pred"
    write_submission_dir(pred, preds)

    bad = pred / "ev" / "A.txt"
    bad.write_text("A\n2\n0 0 10 10 1.0\n0 0 ten 10 0.875\n")
    assert f"{bad}:4: expected 'x y w h score'" in _cli_error(
        tmp_path, capsys, pred, tmp_path / "gt"
    )
    bad.write_text("A\n5\n0 0 10 10 1.0\n")
    assert f"{bad}:2: announces 5 boxes" in _cli_error(tmp_path, capsys, pred, tmp_path / "gt")
    bad.write_text("A\n")
    assert f"{bad}:2: the file ended early" in _cli_error(tmp_path, capsys, pred, tmp_path / "gt")
    write_submission_dir(pred, preds)

    line = _cli_error(tmp_path, capsys, pred, tmp_path / "nowhere")
    assert f"not found: {tmp_path / 'nowhere' / 'wider_face_val.mat'}" in line
    (tmp_path / "gt" / "wider_medium_val.mat").unlink()
    assert "wider_medium_val.mat" in _cli_error(tmp_path, capsys, pred, tmp_path / "gt")
    _write_mat_gt(tmp_path / "gt", gt)

    # A folder without a file for any val image (e.g. one level too high) is an error, not AP 0.
    line = _cli_error(tmp_path, capsys, tmp_path, tmp_path / "gt")
    assert f"{tmp_path}: no prediction file for any of the 3 ground-truth images" in line
    assert _cli_error(tmp_path, capsys, tmp_path / "missing", tmp_path / "gt").endswith(
        f"prediction directory not found: {tmp_path / 'missing'}"
    )


def test_cli_labels_every_ap_with_both_protocols(tmp_path, capsys):
    import json

    gt, preds = _hand_case()
    gt.pop(("ev", "D"))
    _write_mat_gt(tmp_path / "gt", gt)
    write_submission_dir(tmp_path / "pred", preds)
    cli = load_script("tools/evaluate_wider_face.py")
    argv = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--size-protocol"]
    cli.main(argv + ["vga", "--protocol", "python", "--json", str(tmp_path / "m.json")])
    lines = [line for line in capsys.readouterr().out.splitlines() if "Val AP" in line]
    assert len(lines) == 3
    assert all(line.endswith("(test size: vga, scoring: python)") for line in lines), lines
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["size_protocol"] == "vga" and metrics["scoring_protocol"] == "python"
    assert metrics["hard"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="size_protocol must be one of"):
        WiderFaceEvaluator("any", size_protocol="640x480")
