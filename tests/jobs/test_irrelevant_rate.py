"""Irrelevant-ad rates: per day, model version and dimension; impression-weighted; a SQL view."""

from __future__ import annotations

import contextlib
import io
from argparse import Namespace

import pytest

from hcmrm.rate_estimates import prediction_powered, wilson
from hcmrm.tables import AUDIT_COUNTS, AUDIT_ESTIMATES, IRRELEVANT_RATE_DAILY
from tests.jobs.test_tables import assert_written_as_contract

pytestmark = pytest.mark.spark

SCORES = "dt string, query string, ad_id string, impressions long, advertiser string, industry string, " \
         "label int, model_name string, model_version string"
ROWS = [  # label <= 1 is irrelevant
    ("2024-09-10", "q1", "a1", 10, "s1", "fashion", 0, "m", "1"),
    ("2024-09-10", "q2", "a1", 30, "s1", "fashion", 3, "m", "1"),
    ("2024-09-10", "q1", "a2", 60, "s2", "digital", 1, "m", "1"),
    ("2024-09-10", "q3", "a2", None, "s2", "digital", 2, "m", "1"),
    ("2024-09-11", "q1", "a1", 5, "s1", "fashion", 2, "m", "2"),
]


AUDIT_LAYOUT = ", ".join([*(f"{c} long" for c in AUDIT_COUNTS), *(f"{c} double" for c in AUDIT_ESTIMATES)])
NO_AUDIT = (0, 0, 0, 0, None, None, None, None, None, None)  # no pair audited: counts 0, no estimates
AUDITS = "dt string, query string, ad_id string, label int, rater string"
DAY1 = "2024-09-10"


def args(settings, **extra):
    values = dict(lake=settings.lake, tracking_uri=settings.tracking_uri, artifact_root=settings.artifact_root,
                  model_name=settings.model_name, spark_profile="test", conf=[], date=None, start=None, end=None,
                  sql=None)
    values.update(extra)
    from jobs.scoring_config import CONF_FILE

    return Namespace(job_config=CONF_FILE, **values)


def test_daily_rates_per_dimension_with_impression_weights(spark):
    from pyspark.testing import assertDataFrameEqual

    from jobs.irrelevant_rate import daily_rates

    got = daily_rates(spark.createDataFrame(ROWS, SCORES), ["advertiser", "industry", "not_there"])
    expected = spark.createDataFrame(
        [("2024-09-10", "m", "1", "s1", "fashion", 2, 1, 40, 10, 0.5, 0.25, None, None, *NO_AUDIT),
         ("2024-09-10", "m", "1", "s2", "digital", 2, 1, 60, 60, 0.5, 1.0, None, None, *NO_AUDIT),
         ("2024-09-11", "m", "2", "s1", "fashion", 1, 0, 5, 0, 0.0, 0.0, None, None, *NO_AUDIT)],
        "dt string, model_name string, model_version string, advertiser string, industry string, pairs long, "
        "irrelevant_pairs long, impressions long, irrelevant_impressions long, rate double, "
        "impression_weighted_rate double, expected_irrelevant_pairs double, expected_rate double, "  # no probabilities
        + AUDIT_LAYOUT,
    )
    assertDataFrameEqual(got, expected)


def test_the_expected_rate_is_the_mean_probability_of_bad_or_less_and_sums_over_dimensions(spark):
    from jobs.irrelevant_rate import by_day, daily_rates

    scores = spark.createDataFrame(
        [  # the argmax says relevant for the first two pairs, yet each is 40-45% likely irrelevant
            ("2024-09-10", "q1", "a1", "s1", 0.20, 0.20, 0.30, 0.30, 3, "m", "1"),
            ("2024-09-10", "q2", "a1", "s1", 0.05, 0.40, 0.50, 0.05, 2, "m", "1"),
            ("2024-09-10", "q1", "a2", "s2", 0.70, 0.20, 0.05, 0.05, 0, "m", "1"),
        ],
        "dt string, query string, ad_id string, advertiser string, p_bad double, p_less double, p_good double, "
        "p_excellent double, label int, model_name string, model_version string",
    )
    rates = daily_rates(scores, ["advertiser"])
    per_advertiser = {r.advertiser: (r.rate, r.expected_irrelevant_pairs, r.expected_rate) for r in rates.collect()}
    assert per_advertiser["s1"] == pytest.approx((0.0, 0.85, 0.425))
    assert per_advertiser["s2"] == pytest.approx((1.0, 0.9, 0.9))
    (day,) = by_day(rates).collect()
    assert (day.rate, day.expected_rate) == pytest.approx((1 / 3, 1.75 / 3))
    old = by_day(rates.drop("expected_irrelevant_pairs", "expected_rate")).first()  # a table written before it
    assert old.rate == pytest.approx(1 / 3) and old.expected_rate is None


def test_without_impressions_the_weighted_rate_is_null(spark):
    from jobs.irrelevant_rate import daily_rates

    scores = spark.createDataFrame(ROWS, SCORES).drop("impressions", "advertiser", "industry")
    (row,) = daily_rates(scores).where("dt = '2024-09-10'").collect()
    assert (row.pairs, row.irrelevant_pairs, row.rate) == (4, 2, 0.5)
    assert row.impressions is None and row.impression_weighted_rate is None


def test_job_writes_the_table_per_date_and_analysts_query_the_views(spark, settings):
    from jobs import irrelevant_rate
    from jobs.tables import replace_partitions

    replace_partitions(spark.createDataFrame(ROWS, SCORES), settings.table("relevance_scores"),
                       ["2024-09-10", "2024-09-11"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert irrelevant_rate.run(args(settings, sql="SELECT dt, rate FROM irrelevant_rate_by_day ORDER BY dt")) == 0
    assert "2 dates written" in out.getvalue()
    table = spark.read.format("delta").load(settings.table("irrelevant_rate_daily"))
    assert table.count() == 3
    assert_written_as_contract(spark, settings, IRRELEVANT_RATE_DAILY)
    by_day = {r.dt: (r.pairs, r.irrelevant_pairs, r.rate, r.impression_weighted_rate)
              for r in spark.sql("SELECT * FROM irrelevant_rate_by_day").collect()}
    assert by_day == {"2024-09-10": (4, 2, 0.5, 70 / 100), "2024-09-11": (1, 0, 0.0, 0.0)}
    assert spark.sql("SELECT sum(pairs) FROM irrelevant_rate_daily WHERE industry = 'fashion'").first()[0] == 3

    # Re-scored with another version, a day's rates are replaced, not added.
    rescored = [(*r[:-1], "3") for r in ROWS if r[0] == "2024-09-11"]
    replace_partitions(spark.createDataFrame(rescored, SCORES), settings.table("relevance_scores"), ["2024-09-11"])
    with contextlib.redirect_stdout(io.StringIO()):
        assert irrelevant_rate.run(args(settings, date="2024-09-11")) == 0
    versions = spark.sql("SELECT dt, model_version FROM irrelevant_rate_by_day ORDER BY dt").collect()
    assert [tuple(r) for r in versions] == [("2024-09-10", "1"), ("2024-09-11", "3")]


def test_audited_pairs_give_the_audited_and_the_prediction_powered_rate_per_group_and_per_day(spark):
    from jobs.irrelevant_rate import by_day, daily_rates

    # s1: 20 pairs, every 4th irrelevant by the model; s2: 10 pairs, all irrelevant by the model
    rows = [(DAY1, f"q{i}", "a1", None, "s1", "fashion", 0 if i % 4 == 0 else 3, "m", "1") for i in range(20)]
    rows += [(DAY1, f"q{i}", "a2", None, "s2", "digital", 1, "m", "1") for i in range(10)]
    rows += [("2024-09-11", "q1", "a1", 5, "s1", "fashion", 2, "m", "2")]
    # the raters: s1's first 12 pairs as the model says; s2's 10 pairs, 4 of them relevant; q9: never scored
    labels = [(DAY1, f"q{i}", "a1", 0 if i % 4 == 0 else 3, "r") for i in range(12)]
    labels += [(DAY1, f"q{i}", "a2", 2 if i < 4 else 0, "r") for i in range(10)] + [("2024-09-11", "q9", "a9", 0, "r")]
    rates = daily_rates(spark.createDataFrame(rows, SCORES), ["advertiser"], spark.createDataFrame(labels, AUDITS))
    got = {(r.dt, r.advertiser): r for r in rates.collect()}
    s1, s2, day2 = got[DAY1, "s1"], got[DAY1, "s2"], got["2024-09-11", "s1"]
    assert [s1[c] for c in AUDIT_COUNTS] == [12, 3, 3, 0] and [s2[c] for c in AUDIT_COUNTS] == [10, 6, 10, 4]
    assert [day2[c] for c in AUDIT_COUNTS] == [0, 0, 0, 0] and day2.ppi_rate is None and day2.audited_rate is None
    assert s1.ppi_rate == pytest.approx(0.25)  # no disagreement: the model's rate, with the model's variance only
    expected = prediction_powered(10, 10, 10, 6, 10, 4)
    assert (s2.ppi_rate, s2.ppi_rate_low, s2.ppi_rate_high) == pytest.approx(
        (float(expected.estimate), float(expected.low), float(expected.high)))
    assert s2.ppi_rate == pytest.approx(0.6)
    (day,) = by_day(rates).where(f"dt = '{DAY1}'").collect()
    assert [day[c] for c in AUDIT_COUNTS] == [22, 9, 13, 4]  # the day sums its groups' counts
    audit = wilson(9, 22)
    assert (day.audited_rate, day.audited_rate_low, day.audited_rate_high) == pytest.approx(
        (9 / 22, float(audit.low), float(audit.high)))
    assert day.ppi_rate == pytest.approx(15 / 30 + (9 - 13) / 22)
