"""Backfill: every date once per model version, resumable after a failure, --force re-scores."""

from __future__ import annotations

import contextlib
import io

import pytest

from hcmrm.config import load
from jobs.backfill import CONF_FILE, BackfillConfig, DaySeen, plan, summary
from jobs.score import DateResult
from tests.jobs.test_score import DAY1, DAY2, job_args, make_settings, read, register_tiny_model, write_lake

DAY3 = "2024-09-12"  # no pairs in the lake that day


def test_plan_skips_days_this_version_scored_on_the_same_input_and_says_why_it_scores_the_others():
    dates = [DAY1, DAY2, DAY3]
    last = {DAY1: DaySeen("2", 16, 4), DAY2: DaySeen("1", 3, 4), DAY3: DaySeen("2", 0, 4)}
    rows_now = {DAY1: 16, DAY2: 3, DAY3: 1545}  # late rows arrived for DAY3
    assert plan(dates, last, "2", False, rows_now) == ([DAY2, DAY3], [DAY1], {
        DAY2: "last scored by version 1", DAY3: "input changed: 0 rows when last scored, 1545 now"})
    assert plan(dates, {}, "2", False, rows_now)[2] == {d: "never scored" for d in dates}
    assert plan(dates, last, "2", True, rows_now)[:2] == (dates, [])
    rewritten = plan(dates, last, "2", False, rows_now, rewritten=lambda d: d == DAY1)  # same count, new files
    assert rewritten[2][DAY1] == "input changed: the day's files differ from version 4 of query_ad_pairs"


def test_backfill_yaml_holds_the_defaults_and_the_parallel_flag_wins():
    assert load(BackfillConfig, CONF_FILE) == BackfillConfig()
    assert load(BackfillConfig, CONF_FILE, {"parallel": 4}) == BackfillConfig(parallel=4, retries=2)


def test_summary_has_one_line_per_date_and_the_totals():
    text = summary([DateResult(DAY2, "failed", "1", error="boom"), DateResult(DAY1, "scored", "1", 10, 8, 2, 3, 3, 0.25)])
    lines = text.splitlines()
    assert lines[1].startswith(DAY1) and "0.2500" in lines[1] and lines[2].endswith("boom")
    assert lines[-1] == "1 scored, 0 skipped, 1 failed of 2 dates"


@pytest.mark.spark
def test_backfill_resumes_after_a_failure_skips_done_days_and_force_rescores(spark, tmp_path, monkeypatch):
    from jobs import backfill, score
    from jobs.tables import table_version

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    version = register_tiny_model(settings, tmp_path)

    def run(**flags):
        out = io.StringIO()
        args = job_args(settings, start=DAY1, end=DAY3, parallel=None, force=False, backfill_config=CONF_FILE,
                        require_input=False)
        vars(args).update(flags)
        with contextlib.redirect_stdout(out):
            rc = backfill.run(args)
        return rc, {line.split()[0]: line.split()[1] for line in out.getvalue().splitlines() if line[:4] == "2024"}

    # A first backfill dies on DAY2 (as if killed): DAY1 and DAY3 land, DAY2 does not.
    real = score.score_date

    def crash_on_day2(spark_, settings_, config, date, *rest):
        if date == DAY2:
            raise RuntimeError("executor lost")
        return real(spark_, settings_, config, date, *rest)

    monkeypatch.setattr(backfill, "score_date", crash_on_day2)
    assert run(parallel=2) == (1, {DAY1: "scored", DAY2: "failed", DAY3: "scored"})
    monkeypatch.setattr(backfill, "score_date", real)
    first = sorted(read(spark, settings, "relevance_scores").collect())

    # The same command again finishes the job, touching only DAY2.
    assert run() == (0, {DAY1: "skipped", DAY2: "scored", DAY3: "skipped"})
    assert run() == (0, {DAY1: "skipped", DAY2: "skipped", DAY3: "skipped"})
    scores = read(spark, settings, "relevance_scores")
    assert sorted(scores.where(scores.dt == DAY1).collect()) == [r for r in first if r.dt == DAY1]
    assert {r.dt: r[1] for r in scores.groupBy("dt").count().collect()} == {DAY1: 8, DAY2: 3}

    # --force re-scores (new scoring run ids), and the day still holds each pair once.
    assert run(force=True, end=DAY1) == (0, {DAY1: "scored"})
    again = read(spark, settings, "relevance_scores", DAY1)
    assert again.count() == 8 and {r.model_version for r in again.collect()} == {version}
    new_ids = {r.scoring_run_id for r in again.collect()}
    assert len(new_ids) == 1 and new_ids.isdisjoint({r.scoring_run_id for r in first})
    runs = read(spark, settings, "scoring_runs").toPandas()
    assert sorted(runs.dt) == [DAY1, DAY1, DAY2, DAY3]
    assert (runs.vision_encodes == runs.distinct_ads).where(runs.carried_pairs == 0, True).all()  # DAY2: carried

    # Late data: rows arrive for DAY3, recorded as an empty day. The next backfill re-scores it and says why.
    late = spark.createDataFrame([(DAY3, "手机", "a2", 3), (DAY3, "英语", "a3", 1)],
                                 "dt string, query string, ad_id string, impressions long")
    late.write.format("delta").mode("append").save(settings.table("query_ad_pairs"))
    out = io.StringIO()
    args = job_args(settings, start=DAY1, end=DAY3, parallel=None, force=False, backfill_config=CONF_FILE,
                    require_input=False)
    with contextlib.redirect_stdout(out):
        assert backfill.run(args) == 0
    day3 = next(line for line in out.getvalue().splitlines() if line.startswith(DAY3))
    assert day3.split()[1] == "scored" and day3.endswith("input changed: 0 rows when last scored, 2 now")
    assert read(spark, settings, "relevance_scores", DAY3).count() == 2
    last = read(spark, settings, "scoring_runs", DAY3).orderBy("finished_at").toPandas().iloc[-1]
    assert last.input_pairs == 2 and last.input_version == table_version(spark, settings.table("query_ad_pairs"))
