"""true-rate: the sample's true rate over a day's scored pairs, printed beside the estimates."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jobs.true_rate import line, true_rates


@pytest.mark.spark
def test_the_true_rate_counts_the_scored_pairs_that_have_a_truth(spark):
    scores = spark.createDataFrame([("2024-09-10", f"q{i}", "a", "1") for i in range(5)],
                                   "dt string, query string, ad_id string, model_version string")
    truth = spark.createDataFrame([("2024-09-10", f"q{i}", "a", label) for i, label in enumerate([0, 1, 2, 3])]
                                  + [("2024-09-10", "never scored", "a", 0)],
                                  "dt string, query string, ad_id string, label int")
    assert true_rates(scores, truth) == {("2024-09-10", "1"): (4, 0.5, 1)}  # q4 has no truth


def test_a_line_says_whether_the_truth_is_inside_the_prediction_powered_interval():
    row = SimpleNamespace(dt="2024-09-10", model_version="1", rate=0.6, expected_rate=0.55, audited_pairs=20,
                          audited_rate=0.3, audited_rate_low=0.2, audited_rate_high=0.4,
                          ppi_rate=0.32, ppi_rate_low=0.25, ppi_rate_high=0.39)
    inside = line(row, {("2024-09-10", "1"): (100, 0.3, 0)})
    assert inside == ("2024-09-10 v1: model 0.6000 | expected 0.5500 | audited 0.3000 [0.2000, 0.4000] (n=20) | "
                      "PPI 0.3200 [0.2500, 0.3900] | true 0.3000 (100 pairs); inside the PPI interval")
    assert line(row, {("2024-09-10", "1"): (100, 0.45, 3)}).endswith(
        "true 0.4500 (100 pairs, 3 without a truth); OUTSIDE the PPI interval")
    unaudited = SimpleNamespace(**{**vars(row), "audited_rate": None, "ppi_rate": None, "audited_pairs": 0})
    assert "audited n/a (n=0) | PPI n/a" in line(unaudited, {})
