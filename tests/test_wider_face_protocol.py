"""ainnoface_d2/evaluation/wider_face_protocol.py: the min-max score normalisation, checked
directly and through the AP it changes. The official ``norm_score.m`` maps the split's scores to
[0, 1] by (s - min) / (max - min), with min and max starting from realmax / realmin('single') (so
in single precision) for the MATLAB protocol and from 1 / 0 for the Python port."""

import ainnoface_d2  # noqa: F401
from ainnoface_d2.data.wider_face_format import WiderImageGT
from ainnoface_d2.evaluation.wider_face_protocol import _normalise_scores, evaluate

import numpy as np
import pytest


@pytest.mark.parametrize("protocol", ["matlab", "python"])
def test_min_max_normalisation_by_hand(protocol):
    scores = np.array([0.2, 0.6, 0.4, 0.7])
    expected = (scores - 0.2) / 0.5
    np.testing.assert_allclose(_normalise_scores(scores, protocol), expected, atol=1e-6)


def test_python_port_starts_from_one_and_zero():
    # scores above 1 or below 0: the port's extremes start at max = 0 and min = 1, so scores
    # inside (0, 1) keep their extremes; here all above 1: min stays 1
    scores = np.array([2.0, 3.0])
    np.testing.assert_allclose(_normalise_scores(scores, "python"), [0.5, 1.0])
    np.testing.assert_allclose(_normalise_scores(scores, "matlab"), [0.0, 1.0])


def test_equal_scores_get_one():
    np.testing.assert_array_equal(_normalise_scores(np.array([0.3, 0.3]), "matlab"), [1.0, 1.0])
    assert _normalise_scores(np.zeros(0), "python").size == 0


@pytest.mark.parametrize("protocol", ["matlab", "python"])
def test_ap_is_computed_on_normalised_scores(protocol):
    """Three predictions whose raw scores fall between the same two thresholds t_k = 1 - k/1000
    (0.5001-0.5003): raw, they enter the PR curve together; normalised to 1, 0.5 and 0 they
    enter one by one, and the AP is that of the official protocol by hand."""
    gt = {("ev", "a"): WiderImageGT([[0, 0, 10, 10], [40, 0, 10, 10]], {"hard": [True, True]})}
    preds = {
        ("ev", "a"): np.array(
            [
                [0, 0, 10, 10, 0.5003],  # face 0: TP, normalised 1
                [100, 100, 10, 10, 0.5002],  # nothing: FP, normalised 0.5
                [40, 0, 10, 10, 0.5001],  # face 1: TP, normalised 0 (counts at t = 0 only)
            ]
        )
    }
    res = evaluate(preds, gt, protocol=protocol)
    curve = res["pr_curves"]["hard"]
    # By hand: t in [0.501, 0.999]: 1 proposal, 1 recalled (R 1/2, P 1); t in [0.001, 0.5]
    # (float32 rounding puts the FP's 0.5 on either side of t = 0.5): 2, 1 (R 1/2, P 1/2); t = 0:
    # 3, 2 (R 1, P 2/3). VOC AP: envelope 1 on (0, 1/2], 2/3 on (1/2, 1].
    assert (curve["proposals"][0], curve["recalled"][0]) == (1, 1)
    assert (curve["proposals"][-2], curve["recalled"][-2]) == (2, 1)
    assert (curve["proposals"][-1], curve["recalled"][-1]) == (3, 2)
    assert res["hard"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-9)
    # Raw scores would give one PR point (R 1, P 2/3) and AP 2/3: the normalisation matters.
    assert abs(res["hard"] - 2 / 3) > 0.1
