"""Backfill: every date once per model version, resumable after a failure, --force re-scores."""

from __future__ import annotations

import contextlib
import io

import pytest

from hcmrm.config import load
from jobs.backfill import CONF_FILE, BackfillConfig, DaySeen, plan, summary
from jobs.scoring_plan import DateResult
from tests.jobs.test_score import DAY1, DAY2, job_args, make_settings, read, register_tiny_model, write_lake

DAY3 = "2024-09-12"  # no pairs in the lake that day


def test_plan_skips_days_this_version_scored_on_the_same_input_and_says_why_for_every_day():
    dates = [DAY1, DAY2, DAY3]
    last = {DAY1: DaySeen("2", 16, 4), DAY2: DaySeen("1", 3, 4), DAY3: DaySeen("2", 0, 4)}
    rows_now = {DAY1: 16, DAY2: 3, DAY3: 1545}  # late rows arrived for DAY3
    assert plan(dates, last, "2", False, rows_now, {}) == {
        DAY1: ("skip", "done: scored by version 2 from the same input (16 rows at version 4, unchanged since)"),
        DAY2: ("score", "last scored by version 1"),
        DAY3: ("score", "input changed: 0 rows when last scored, 1545 now")}
    assert plan(dates, {}, "2", False, rows_now, {}) == {d: ("score", "never scored") for d in dates}
    assert {what for what, _ in plan(dates, last, "2", True, rows_now, {}).values()} == {"score"}
    changed = plan(dates, last, "2", False, rows_now, {DAY1: "DELETE at version 5 changed the day's rows"})
    assert changed[DAY1] == ("score", "input changed: DELETE at version 5 changed the day's rows")


def test_plan_calls_a_day_without_input_that_was_never_scored_empty_unless_input_is_required():
    last = {DAY2: DaySeen("2", 3, 4)}
    decided = plan([DAY1, DAY2], last, "2", True, {}, {})
    assert decided[DAY1][0] == "empty" and decided[DAY1][1].startswith("no input rows for the day")
    assert decided[DAY2] == ("score", "forced")  # it had rows: recorded empty, its old scores removed
    assert plan([DAY1], {}, "2", False, {}, {}, require_input=True)[DAY1] == ("score", "never scored")


def test_a_range_longer_than_max_days_or_backwards_is_a_usage_error():
    from argparse import Namespace

    from hcmrm.errors import UsageError
    from jobs.backfill import checked_range

    typo = Namespace(start="2024-09-01", end="2042-09-30", long_range=False)
    with pytest.raises(UsageError, match="is 6604 days, over the maximum of 92") as error:
        checked_range(typo, 92)
    assert error.value.exit_code == 2 and "pass --long-range" in error.value.line()
    assert len(checked_range(Namespace(**{**vars(typo), "long_range": True}), 92)) == 6604
    with pytest.raises(UsageError, match="--end 2024-09-01 is before --start 2024-09-02"):
        checked_range(Namespace(start="2024-09-02", end="2024-09-01", long_range=False), 92)


def test_backfill_yaml_holds_the_defaults_and_the_parallel_flag_wins():
    assert load(BackfillConfig, CONF_FILE) == BackfillConfig()
    assert load(BackfillConfig, CONF_FILE, {"parallel": 4}) == BackfillConfig(parallel=4, retries=2, max_days=92)


def test_summary_has_one_line_per_date_and_the_totals():
    text = summary([DateResult(DAY2, "failed", "1", error="boom"), DateResult(DAY1, "scored", "1", 10, 8, 2, 3, 3, 0.25)])
    lines = text.splitlines()
    assert lines[1].startswith(DAY1) and "0.2500" in lines[1] and lines[2].endswith("boom")
    assert lines[-1] == "1 scored, 0 empty, 0 skipped, 1 failed of 2 dates"


def test_a_date_another_score_holds_is_skipped_with_its_reason_not_retried_and_a_conflict_is_retried(monkeypatch):
    from hcmrm.errors import ClaimLost, ConcurrentWriteError
    from jobs import backfill
    from jobs.scoring_config import ScoreJobConfig
    from udfs.score import ModelRef

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


def backfill_args(settings, **flags):
    args = job_args(settings, start=DAY1, end=DAY3, parallel=None, force=False, backfill_config=CONF_FILE,
                    require_input=False, long_range=False)
    vars(args).update(flags)
    return args


@pytest.mark.spark
def test_backfill_resumes_after_a_failure_skips_done_days_and_force_rescores(spark, tmp_path, monkeypatch):
    from jobs import backfill, score
    from jobs.tables import table_version

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    version = register_tiny_model(settings, tmp_path)

    def run(**flags):
        out = io.StringIO()
        args = backfill_args(settings, **flags)
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
    assert run(parallel=2) == (1, {DAY1: "scored", DAY2: "failed", DAY3: "empty"})
    monkeypatch.setattr(backfill, "score_date", real)
    first = sorted(read(spark, settings, "relevance_scores").collect())

    # The same command again finishes the job, touching only DAY2.
    assert run() == (0, {DAY1: "skipped", DAY2: "scored", DAY3: "empty"})
    assert run() == (0, {DAY1: "skipped", DAY2: "skipped", DAY3: "empty"})
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
    assert sorted(runs.dt) == [DAY1, DAY1, DAY2]  # DAY3 had no rows: nothing recorded
    assert (runs.vision_encodes == runs.distinct_ads).where(runs.carried_pairs == 0, True).all()  # DAY2: carried

    # Late data: rows arrive for DAY3, which had none. The next backfill scores it and says why.
    late = spark.createDataFrame([(DAY3, "手机", "a2", 3), (DAY3, "英语", "a3", 1)],
                                 "dt string, query string, ad_id string, impressions long")
    late.write.format("delta").mode("append").save(settings.table("query_ad_pairs"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert backfill.run(backfill_args(settings)) == 0
    day3 = next(line for line in out.getvalue().splitlines() if line.startswith(DAY3))
    assert day3.split()[1] == "scored" and day3.endswith("never scored")
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


def day_keys(spark, settings, date):
    """(the day's input pairs, the pairs its committed run scored or rejected), as sorted (query, ad_id)."""
    from jobs.tables import read_table

    def keys(name):
        df = read_table(spark, settings.table(name))
        return sorted((str(r["query"]), str(r["ad_id"])) for r in df.where(df.dt == date).collect())

    return keys("query_ad_pairs"), sorted(keys("relevance_scores") + keys("scoring_rejects"))


@pytest.mark.spark
def test_a_restore_and_a_deletion_vector_delete_with_the_same_count_and_files_are_rescored(spark, tmp_path):
    from delta.tables import DeltaTable

    from jobs import backfill
    from jobs.tables import table_version

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)
    path = settings.table("query_ad_pairs")
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    before = table_version(spark, path)
    pairs = DeltaTable.forPath(spark, path)
    pairs.delete(f"dt = '{DAY1}' AND query = '拍照手机' AND ad_id = 'a2'")
    with contextlib.redirect_stdout(io.StringIO()):
        assert backfill.run(backfill_args(settings, end=DAY1)) == 0
    inputs, written = day_keys(spark, settings, DAY1)
    assert inputs == written and ("拍照手机", "a2") not in inputs

    pairs.restoreToVersion(before)  # the deleted pair is back ...
    pairs.delete(f"dt = '{DAY1}' AND query = '英语' AND ad_id = 'a3'")  # ... and another goes: same count, same file
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert backfill.run(backfill_args(settings, end=DAY1)) == 0
    line = next(x for x in out.getvalue().splitlines() if x.startswith(DAY1))
    assert line.split()[1] == "scored", line
    assert "input changed: RESTORE at version" in line and "DELETE at version" in line and "deletion vectors" in line
    inputs, written = day_keys(spark, settings, DAY1)
    assert inputs == written and ("拍照手机", "a2") in inputs and ("英语", "a3") not in inputs

    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # nothing changed since: skipped, and the line says why
        assert backfill.run(backfill_args(settings, end=DAY1)) == 0
    line = next(x for x in out.getvalue().splitlines() if x.startswith(DAY1))
    assert line.split()[1] == "skipped" and "done: scored by version" in line and "unchanged since" in line


@pytest.mark.spark
def test_a_corrupt_file_in_one_day_fails_that_day_alone_and_names_table_partition_and_file(spark, tmp_path):
    from pathlib import Path

    from jobs import backfill

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)
    corrupt = sorted(Path(settings.table("query_ad_pairs"), f"dt={DAY2}").glob("*.parquet"))[0]
    corrupt.write_bytes(b"not a parquet file at all" * 10)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert backfill.run(backfill_args(settings, end=DAY2)) == 3  # the failures' class: input data
    lines = {x.split()[0]: x for x in out.getvalue().splitlines() if x.startswith("2024")}
    assert lines[DAY1].split()[1] == "scored"
    assert lines[DAY2].split()[1] == "failed"
    assert f"table query_ad_pairs, partition dt={DAY2}: data file" in lines[DAY2] and corrupt.name in lines[DAY2]
    assert out.getvalue().splitlines()[-1] == "1 scored, 0 empty, 0 skipped, 1 failed of 2 dates"
    inputs, written = day_keys(spark, settings, DAY1)
    assert inputs == written
