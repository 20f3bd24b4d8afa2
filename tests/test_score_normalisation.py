"""The WIDER FACE evaluator's min-max score normalisation, checked directly: the official
``norm_score.m`` maps the split's scores to [0, 1] by (s - min) / (max - min), with min and max
starting from realmax / realmin('single') (so in single precision) for the MATLAB protocol and
from 1 / 0 for the Python port."""

import ainnoface_d2  # noqa: F401
from ainnoface_d2.evaluation.wider_face_protocol import _normalise_scores

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
