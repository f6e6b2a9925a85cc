"""The report: the rate per day and model version as a PNG inside an HTML page, paths printed."""

from __future__ import annotations

import contextlib
import io
from argparse import Namespace

import pytest
from PIL import Image

from hcmrm.config import load
from jobs.report import CONF_FILE, ReportConfig, window


def test_report_yaml_holds_the_defaults_and_flags_win():
    assert load(ReportConfig, CONF_FILE) == ReportConfig()
    assert load(ReportConfig, CONF_FILE, {"days": 7, "out": None}) == ReportConfig(days=7, out="reports")


def test_window_is_the_last_n_days_ending_at_end():
    assert window("2024-09-11", 1) == ("2024-09-11", "2024-09-11")
    assert window("2024-03-01", 2) == ("2024-02-29", "2024-03-01")
    with pytest.raises(SystemExit):
        window("2024-09-11", 0)


@pytest.mark.spark
def test_report_plots_the_last_days_of_irrelevant_rate_daily(spark, settings, tmp_path):
    from jobs import report
    from jobs.tables import replace_partitions

    rows = [(f"2024-09-{d:02d}", "m", v, adv, 10, 2 + d % 3, 100, 20) for d in range(1, 11)
            for v, adv in (("1", "s1"), ("1", "s2"))] + [("2024-09-10", "m", "2", "s1", 10, 1, None, None)]
    rates = spark.createDataFrame(
        rows, "dt string, model_name string, model_version string, advertiser string, pairs long, "
              "irrelevant_pairs long, impressions long, irrelevant_impressions long")
    replace_partitions(rates, settings.table("irrelevant_rate_daily"), sorted({r[0] for r in rows}))

    out = io.StringIO()
    args = Namespace(lake=settings.lake, tracking_uri=settings.tracking_uri, artifact_root=settings.artifact_root,
                     model_name=settings.model_name, spark_profile="test", conf=[], days=3, end=None,
                     out=tmp_path / "reports", job_config=report.CONF_FILE)
    with contextlib.redirect_stdout(out):
        assert report.run(args) == 0
    printed = out.getvalue()
    assert "4 (day, model version) points from 2024-09-08 to 2024-09-10 (3 days with data)" in printed
    png, page = tmp_path / "reports" / "irrelevant_rate.png", tmp_path / "reports" / "irrelevant_rate.html"
    assert f"plot: {png}" in printed and f"page: {page}" in printed
    with Image.open(png) as image:
        assert image.format == "PNG"
    html = page.read_text()
    assert "<td>2024-09-10</td><td>v2</td><td>10</td><td>1</td><td>0.1000</td><td></td><td></td><td>0</td>" in html
    # a table written before the expected rate and the audits: their columns stay empty
    assert "<td>2024-09-08</td><td>v1</td><td>20</td><td>8</td><td>0.4000</td><td></td><td>0.2000</td><td>0</td>" in html
    assert "2024-09-07" not in html
    assert "no per-industry rows" in html  # this table has no industry column


@pytest.mark.spark
def test_the_page_has_the_prediction_powered_interval_and_a_table_per_industry_for_the_last_day(spark, settings,
                                                                                               tmp_path):
    from jobs import report
    from jobs.irrelevant_rate import daily_rates
    from jobs.tables import replace_partitions

    scores = spark.createDataFrame(
        [(dt, f"q{i}", f"a{i % 3}", ["pets", "games", "tech"][i % 3], i % 4, "m", "1")
         for dt in ("2024-09-10", "2024-09-11") for i in range(30)],
        "dt string, query string, ad_id string, industry string, label int, model_name string, model_version string")
    audits = spark.createDataFrame([("2024-09-11", f"q{i}", f"a{i % 3}", i % 2) for i in range(30)],  # 10 per industry
                                   "dt string, query string, ad_id string, label int")
    rates = daily_rates(scores, ["industry"], audits)
    replace_partitions(rates, settings.table("irrelevant_rate_daily"), ["2024-09-10", "2024-09-11"])
    args = Namespace(lake=settings.lake, tracking_uri=settings.tracking_uri, artifact_root=settings.artifact_root,
                     model_name=settings.model_name, spark_profile="test", conf=[], days=7, end=None,
                     out=tmp_path / "reports", job_config=report.CONF_FILE)
    with contextlib.redirect_stdout(io.StringIO()):
        assert report.run(args) == 0
    html = (tmp_path / "reports" / "irrelevant_rate.html").read_text()
    assert "Irrelevant-ad rate per day, 2024-09-10 .. 2024-09-11" in html  # the days with data, not the 7 asked
    assert "<h2>Per industry on 2024-09-11</h2>" in html
    day = next(r for r in rates.collect() if r.dt == "2024-09-11" and r.industry == "pets")
    assert "<td>pets</td><td>v1</td><td>10</td>" in html and day.ppi_rate is not None
    assert f"{day.ppi_rate:.4f} [{day.ppi_rate_low:.4f}, {day.ppi_rate_high:.4f}]" in html
