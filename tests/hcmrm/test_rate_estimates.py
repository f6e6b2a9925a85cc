"""The audited and prediction-powered rates: exact small cases, then coverage over simulated days."""

from __future__ import annotations

import numpy as np
import pytest

from hcmrm.rate_estimates import MIN_AUDITED, prediction_powered, wilson, z_value

DAYS = 2000  # simulated days per check
PAIRS = 4000  # pairs per day
AUDITED = 200  # pairs audited per day (5%)


def test_z_is_the_two_sided_normal_quantile():
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-6)


def test_wilson_matches_the_textbook_case_and_stays_inside_0_1():
    got = wilson(10, 100)
    assert (got.estimate, got.low, got.high) == pytest.approx((0.1, 0.05523, 0.17437), abs=1e-5)
    zero = wilson(0, 20)
    assert zero.low == 0 and 0 < zero.high < 0.2
    assert np.isnan(wilson(0, 0).estimate)


def test_prediction_powered_is_the_model_rate_plus_the_audited_correction():
    # 1,000 pairs, the model says 300 irrelevant; of 10 audited, raters say 5, the model 3, differing on 2
    got = prediction_powered(1000, 300, 10, 5, 3, 2, min_audited=2)
    assert got.estimate == pytest.approx(0.3 + 0.2)
    var = 0.3 * 0.7 / 1000 + (2 - 10 * 0.2**2) / 9 / 10
    assert (got.low, got.high) == pytest.approx((0.5 - z_value() * var**0.5, 0.5 + z_value() * var**0.5))


def test_with_too_few_audited_pairs_there_is_no_interval():
    assert np.isnan(prediction_powered(100, 60, 3, 0, 3, 3).estimate)  # 3 disagreements: variance 0, no interval
    assert np.isnan(prediction_powered(100, 10, 1, 1, 0, 1, min_audited=1).estimate)  # never below 2
    assert np.isnan(prediction_powered(100, 10, 0, 0, 0, 0).low)
    assert not np.isnan(prediction_powered(100, 60, MIN_AUDITED, 5, 6, 3).estimate)


def simulate_days(rng, true_rate, miss, false_alarm):
    """Counts of DAYS days: each pair irrelevant with `true_rate`; the model misses an irrelevant pair with
    `miss` and calls a relevant one irrelevant with `false_alarm` (a biased model); AUDITED pairs audited
    at random without replacement. Returns the day's true rate and the estimators' inputs."""
    truth = rng.random((DAYS, PAIRS)) < true_rate
    model = np.where(truth, rng.random(truth.shape) >= miss, rng.random(truth.shape) < false_alarm)
    audit = np.argsort(rng.random(truth.shape), axis=1)[:, :AUDITED]
    y, f = np.take_along_axis(truth, audit, 1), np.take_along_axis(model, audit, 1)
    counts = dict(pairs=PAIRS, model_irrelevant=model.sum(1), audited=AUDITED, audited_irrelevant=y.sum(1),
                  audited_model_irrelevant=f.sum(1), disagreements=(y != f).sum(1))
    return truth.mean(1), counts


@pytest.mark.parametrize("true_rate, miss, false_alarm", [(0.25, 0.30, 0.05), (0.10, 0.05, 0.20), (0.35, 0.5, 0.0)])
def test_the_interval_covers_the_true_rate_of_simulated_days_despite_a_biased_model(true_rate, miss, false_alarm):
    truth, counts = simulate_days(np.random.default_rng(7), true_rate, miss, false_alarm)
    ppi = prediction_powered(**counts)
    model_rate = counts["model_irrelevant"] / PAIRS
    assert abs(np.mean(model_rate - truth)) > 0.02  # the model alone is biased: its rate misses the truth
    covered = np.mean((ppi.low <= truth) & (truth <= ppi.high))
    assert covered >= 0.93, f"covered {covered:.3f} of {DAYS} days"


def test_with_a_good_model_the_interval_is_narrower_than_the_audit_alone():
    truth, counts = simulate_days(np.random.default_rng(11), 0.25, 0.08, 0.02)
    ppi = prediction_powered(**counts)
    audit = wilson(counts["audited_irrelevant"], AUDITED)
    assert np.mean((ppi.low <= truth) & (truth <= ppi.high)) >= 0.93
    assert np.median(ppi.high - ppi.low) < 0.7 * np.median(audit.high - audit.low)
