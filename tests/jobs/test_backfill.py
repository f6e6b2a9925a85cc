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


def test_a_date_another_score_holds_is_skipped_with_its_reason_not_retried_and_a_conflict_is_retried(monkeypatch):
    from hcmrm.errors import ClaimLost, ConcurrentWriteError
    from jobs import backfill
    from jobs.score import ModelRef, ScoreJobConfig

    model = ModelRef("hcmrm", "2", "r", "/m", None, "/m")
    outcomes = {DAY1: [ClaimLost(f"another score of {DAY1} is running: MLflow run abc (host h, pid 1); this run "
                                 "stopped before reading anything")],
                DAY2: [ConcurrentWriteError("ConcurrentAppendException"), DateResult(DAY2, "scored", "2")]}
    calls = []

    def score_date(spark, settings, config, date, *_):
        calls.append(date)
        outcome = outcomes[date].pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(backfill, "score_date", score_date)
    lost = backfill.score_with_retries(None, None, ScoreJobConfig(), 2, DAY1, model, "0", "parent")
    assert calls == [DAY1] and (lost.status, lost.model_version) == ("skipped", "2")
    lost.why = "never scored"
    assert summary([lost]).splitlines()[1].endswith(f"never scored: another score of {DAY1} is running: MLflow run "
                                                    "abc (host h, pid 1); this run stopped before reading anything")
    assert backfill.score_with_retries(None, None, ScoreJobConfig(), 2, DAY2, model, "0", "parent").status == "scored"
    assert calls == [DAY1, DAY2, DAY2]  # a Delta commit conflict is retried


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


# Each command holds a date it won for a while before scoring it, so that the other command, started at the
# same time, makes its claim while the date is held (on a loaded machine one JVM may start much later).
HOLD_AFTER_CLAIM = """
import sys, time
from hcmrm.tracking import runs

claim = runs.claim_dates

def held(*args, **kwargs):
    claim(*args, **kwargs)
    time.sleep(20)

runs.claim_dates = held
from jobs.cli import main
main(sys.argv[1:])
"""


@pytest.mark.spark
@pytest.mark.slow  # two commands with their own JVMs at once: ~1.5 min on the shared machine
def test_a_backfill_and_a_score_of_the_same_date_at_once_leave_one_complete_run(spark, tmp_path):
    import subprocess
    import sys

    from hcmrm.tracking.store import configure, use_experiment
    from tests.jobs.test_clean_failures import environment, flags
    from tests.jobs.test_score_commit import assert_one_whole_run, committed_day

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)
    use_experiment(settings, "hcmrm-scoring")  # not created by both commands at once (a race of its own)
    common = flags(settings)[2:]  # without --date
    commands = {"score": ["score", "--date", DAY1, *common],
                "backfill": ["backfill", "--start", DAY1, "--end", DAY1, *common]}
    processes = {name: subprocess.Popen([sys.executable, "-c", HOLD_AFTER_CLAIM, *argv], env=environment(),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name, argv in commands.items()}
    try:
        done = {name: (p.communicate(timeout=400), p.returncode) for name, p in processes.items()}
    finally:
        for p in processes.values():
            p.kill()
    (_, score_err), score_code = done["score"]
    (backfill_out, backfill_err), backfill_code = done["backfill"]
    day = next(line for line in backfill_out.splitlines() if line.startswith(DAY1))

    client = configure(settings).MlflowClient()
    exp = client.get_experiment_by_name("hcmrm-scoring").experiment_id
    finished = client.search_runs([exp], f"tags.`hcmrm.date` = '{DAY1}' and attributes.status = 'FINISHED'")
    assert len(finished) == 1, (score_err[-2000:], backfill_err[-2000:])  # exactly one scored the day
    winner = finished[0].info.run_id
    held = f"another score of {DAY1} is running: MLflow run {winner} (host "
    if score_code == 5:  # the backfill won; the score stopped before reading anything, in one line
        line = score_err.strip().splitlines()[-1]
        assert line.startswith(f"hcmrm score: {held}") and "this run stopped before reading anything" in line
        assert backfill_code == 0 and day.split()[1] == "scored"
    else:  # the score won; the backfill skipped the date, once, and says which run has it
        assert score_code == 0 and backfill_code == 0, (score_err[-2000:], backfill_err[-2000:])
        assert day.split()[1] == "skipped" and f"never scored: {held}" in day
        assert backfill_err.count("is running: MLflow run") == 1  # logged once: the lost claim was not retried
    runs = spark.read.format("delta").load(settings.table("scoring_runs")).collect()
    assert [r.scoring_run_id for r in runs] == [winner]
    scores, rejects = committed_day(spark, settings)
    assert assert_one_whole_run(scores, rejects) == winner
    assert len(set(zip(scores["query"], scores.ad_id))) == len(scores)
    for name in ("relevance_scores", "scoring_rejects"):
        assert {r.scoring_run_id for r in read(spark, settings, name, DAY1).collect()} == {winner}
