"""Temperature scaling of P(label >= 2): recover a known temperature, rescale probabilities consistently."""

import numpy as np
import pytest
from scipy.special import expit

from hcmrm.train.calibration import binary_nll, fit_temperature, relevance_logit, with_temperature


def grade_probs(r, g, b):
    """The hierarchical head's four probabilities from its logits (r, g, b), as numpy."""
    pos, exc, less = expit(r), expit(g), expit(b)
    return np.stack([(1 - pos) * (1 - less), (1 - pos) * less, pos * (1 - exc), pos * exc], axis=1)


def test_the_fit_recovers_the_temperature_the_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logit = rng.normal(0, 4, 20000)  # an over-confident model: the truth is sigmoid(logit / 2)
    positive = rng.random(20000) < expit(logit / 2.0)
    fit = fit_temperature(positive, logit)
    assert fit.temperature == pytest.approx(2.0, rel=0.05)
    assert fit.nll_after < fit.nll_before == pytest.approx(binary_nll(positive, logit))
    assert fit.n == 20000


def test_the_logit_comes_back_from_the_probabilities_and_rescaling_keeps_the_inner_splits():
    r, g, b = np.array([-9.0, -1.0, 0.0, 2.0, 16.0]), np.array([0.5, -2, 1, 3, -1]), np.array([1.0, 0, -3, 2, 0])
    probs = grade_probs(r, g, b).astype(np.float32)  # as the scoring engine returns them
    np.testing.assert_allclose(relevance_logit(probs), r, atol=1e-4)  # even where P(label >= 2) rounds to 1
    scaled = with_temperature(probs, 2.0)
    np.testing.assert_allclose(scaled, grade_probs(r / 2, g, b), atol=1e-6)
    np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(with_temperature(probs, 1.0), probs, atol=1e-7)


def test_one_class_cannot_be_fitted():
    with pytest.raises(ValueError, match="both relevant and irrelevant"):
        fit_temperature([True, True], np.array([1.0, 2.0]))
