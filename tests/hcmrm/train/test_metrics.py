"""Offline metrics on hand-checkable cases: AUC with ties, Spearman, accuracy, per-query NDCG, calibration."""

import json
import math

import pytest

from hcmrm.train.metrics import (
    auc,
    binary_accuracy,
    brier_score,
    expected_calibration_error,
    ndcg,
    p_at_least,
    relevance_metrics,
    reliability_table,
    spearman,
)


def test_auc_counts_pairs_and_ties_half():
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    # one positive-negative pair tied, three ordered correctly: (3 + 0.5) / 4
    assert auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(3.5 / 4)
    assert auc([0, 0, 1, 1], [0.7] * 4) == 0.5
    assert math.isnan(auc([1, 1], [0.1, 0.2]))  # one class only: undefined, not 1.0


def test_spearman_uses_ranks_and_is_undefined_for_constants():
    assert spearman([0, 1, 2, 3], [1.0, 10.0, 100.0, 1000.0]) == pytest.approx(1.0)
    assert spearman([0, 1, 2, 3], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([0, 1, 2], [5, 5, 5]))


def test_binary_accuracy_at_half():
    assert binary_accuracy([True, False, True, False], [0.9, 0.1, 0.4, 0.6]) == 0.5


def test_ndcg_per_query_skips_single_candidate_queries():
    queries = ["a", "a", "a", "b"]
    labels = [3, 0, 1, 2]
    perfect = ndcg(queries, labels, [0.9, 0.1, 0.5, 0.0])
    assert perfect == pytest.approx(1.0)
    worst = ndcg(queries, labels, [0.1, 0.9, 0.5, 0.0])
    ideal = 7 + 1 / math.log2(3)  # gains 2^3-1, 2^1-1, 0
    assert worst == pytest.approx((0 + 1 / math.log2(3) + 7 / 2) / ideal)
    assert ndcg(["a", "b"], [3, 1], [0.1, 0.2]) is None  # pointwise data: no query to rank


def test_relevance_metrics_as_json():
    m = relevance_metrics(
        labels=[0, 1, 2, 3], scores=[0.1, 0.5, 1.5, 2.8], p_positive=[0.1, 0.3, 0.6, 0.9], queries=["q"] * 4
    )
    assert (m.auc, m.accuracy, m.n) == (1.0, 1.0, 4)
    assert m.spearman == pytest.approx(1.0) and m.ndcg == pytest.approx(1.0)
    assert json.loads(json.dumps(m.as_dict())).keys() == {"auc", "spearman", "accuracy", "ndcg", "n", "ece", "brier"}
    constant = relevance_metrics([0, 2], [1.0, 1.0], [0.5, 0.5])
    assert constant.as_dict()["spearman"] is None  # NaN never reaches JSON


def test_three_level_scale_uses_positive_label():
    m = relevance_metrics(labels=[0, 1, 2], scores=[0.1, 2.0, 2.5], p_positive=[0.1, 0.8, 0.9], positive_label=2)
    assert m.auc == 1.0  # only label 2 is positive
    assert m.accuracy == pytest.approx(2 / 3)  # label 1 predicted positive


def test_ece_weighs_each_bin_gap_by_its_share_of_pairs():
    positive = [False, True, True, True]
    # bin 0.1-0.2: predicts 0.12 and 0.18 (mean 0.15), one of two positive; bin 0.9-1.0: predicts 0.9 twice, both positive
    p = [0.12, 0.18, 0.9, 0.9]
    assert expected_calibration_error(positive, p) == pytest.approx(2 / 4 * abs(0.15 - 0.5) + 2 / 4 * abs(0.9 - 1.0))
    assert expected_calibration_error([False, True], [0.0, 1.0]) == 0.0  # p = 1.0 falls in the last bin
    assert [(row["n"], row["observed"]) for row in reliability_table(positive, p)] == [(2, 0.5), (2, 1.0)]
    assert brier_score(positive, p) == pytest.approx((0.12**2 + 0.82**2 + 0.1**2 + 0.1**2) / 4)


def test_positive_label_picks_the_models_probability_for_accuracy_and_calibration():
    probs = [[0.6, 0.3, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]]
    assert p_at_least(probs, 2).tolist() == pytest.approx([0.1, 0.7])
    assert p_at_least(probs, 1).tolist() == pytest.approx([0.4, 0.9])
    labels, scores = [1, 3], [0.5, 2.0]
    at_two = relevance_metrics(labels, scores, p_at_least(probs, 2), positive_label=2)
    at_one = relevance_metrics(labels, scores, p_at_least(probs, 1), positive_label=1)
    assert at_two.accuracy == 1.0  # label 1 is irrelevant and P(>= 2) = 0.1 says so
    assert at_one.accuracy == 0.5  # label 1 is relevant at threshold 1, but P(>= 1) = 0.4
    assert at_one.ece == pytest.approx((0.6 + 0.1) / 2)
