"""Backfill: every date once per model version, resumable after a failure, --force re-scores."""

from __future__ import annotations

import contextlib
import io

import pytest

from hcmrm.config import load
from jobs.backfill import CONF_FILE, BackfillConfig, is_conflict, plan, summary
from jobs.score import DateResult
from tests.jobs.test_score import DAY1, DAY2, job_args, make_settings, read, register_tiny_model, write_lake

DAY3 = "2024-09-12"  # no pairs in the lake that day


def test_plan_skips_what_this_version_scored_unless_forced():
    dates = [DAY1, DAY2, DAY3]
    done = {DAY1: {"2"}, DAY2: {"1"}}
    assert plan(dates, done, "2", force=False) == ([DAY2, DAY3], [DAY1])
    assert plan(dates, done, "2", force=True) == (dates, [])


def test_backfill_yaml_holds_the_defaults_and_the_parallel_flag_wins():
    assert load(BackfillConfig, CONF_FILE) == BackfillConfig()
    assert load(BackfillConfig, CONF_FILE, {"parallel": 4}) == BackfillConfig(parallel=4, retries=2)


def test_only_delta_write_conflicts_are_retried():
    assert is_conflict(RuntimeError("io.delta.exceptions.ConcurrentAppendException: Files were added"))
    assert not is_conflict(ValueError("table videos lacks columns ['frames']"))


def test_summary_has_one_line_per_date_and_the_totals():
    text = summary([DateResult(DAY2, "failed", "1", error="boom"), DateResult(DAY1, "scored", "1", 10, 8, 2, 3, 3, 0.25)])
    lines = text.splitlines()
    assert lines[1].startswith(DAY1) and "0.2500" in lines[1] and lines[2].endswith("boom")
    assert lines[-1] == "1 scored, 0 skipped, 1 failed of 2 dates"


@pytest.mark.spark
def test_backfill_resumes_after_a_failure_skips_done_days_and_force_rescores(spark, tmp_path, monkeypatch):
    from jobs import backfill, score

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    version = register_tiny_model(settings, tmp_path)

    def run(**flags):
        out = io.StringIO()
        args = job_args(settings, start=DAY1, end=DAY3, parallel=None, force=False, backfill_config=CONF_FILE)
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
    assert sorted(runs.dt) == [DAY1, DAY1, DAY2, DAY3] and (runs.vision_encodes == runs.distinct_ads).all()
