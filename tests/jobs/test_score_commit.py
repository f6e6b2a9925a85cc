"""A scoring day is all or nothing across relevance_scores and scoring_rejects: a job killed between its
commits (simulated by an exception, then for real: the driver's JVM killed) leaves readers the last
committed run, whole, and a rerun heals the day."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.jobs.test_score import ADS, DAY1, PAIRS, job_args, make_settings, read, register_tiny_model, write_lake

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # four scorings of a day: ~2 min on the shared machine


class Killed(Exception):
    """The driver dying at a chosen point (the job's code after it never runs)."""


def committed_day(spark, settings):
    """(scores, rejects) of DAY1 as every reader sees them (jobs.tables.read_table), as pandas."""
    from jobs.tables import read_table

    def day(name):
        df = read_table(spark, settings.table(name))
        return df.where(df.dt == DAY1).toPandas()

    return day("relevance_scores"), day("scoring_rejects")


def assert_one_whole_run(scores, rejects) -> str:
    """Input = scored + rejected, one run id across both tables, no pair scored and rejected (a repeated
    pair's second row is a duplicate_pair reject by design); the run id."""
    assert len(scores) + len(rejects) == len(PAIRS[DAY1])
    runs = set(scores.scoring_run_id) | set(rejects.scoring_run_id)
    assert len(runs) == 1, runs
    keys = set(zip(scores["query"], scores.ad_id))
    assert not [k for k, r in zip(zip(rejects["query"], rejects.ad_id), rejects.reason)
                if k in keys and not r.startswith("duplicate_pair")]
    return runs.pop()


def test_a_crash_between_the_commits_leaves_the_last_committed_run_and_a_rerun_heals(spark, tmp_path, monkeypatch):
    from jobs import score
    from jobs.irrelevant_rate import daily_rates
    from jobs.tables import read_table

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)

    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            return score.run(job_args(settings, date=DAY1))

    assert run() == 0
    scores_a, rejects_a = committed_day(spark, settings)
    run_a = assert_one_whole_run(scores_a, rejects_a)
    assert "a2" in set(scores_a.ad_id)

    # The input changes: a2's video is gone, so a2's pairs (scored by A) are rejects from now on.
    from jobs.tables import overwrite_table

    ads = [(a, "gone" if a == "a2" else v, adv, ind) for a, v, adv, ind in ADS]
    overwrite_table(spark.createDataFrame(ads, "ad_id string, video_id string, advertiser string, industry string"),
                    settings.table("ads"))

    # Killed after the rejects are written, before the scores are: readers still see A, whole.
    real_append = score.append_run

    def killed_before_scores(df, path, *rest):
        if path.endswith("relevance_scores"):
            raise Killed("driver killed between the two table commits")
        return real_append(df, path, *rest)

    monkeypatch.setattr(score, "append_run", killed_before_scores)
    with pytest.raises(Killed):
        run()
    monkeypatch.setattr(score, "append_run", real_append)
    assert read(spark, settings, "scoring_rejects", DAY1).count() > len(rejects_a)  # B's rejects are in the table
    scores, rejects = committed_day(spark, settings)
    assert assert_one_whole_run(scores, rejects) == run_a
    assert sorted(scores.scoring_run_id + scores["query"] + scores.ad_id) == sorted(
        scores_a.scoring_run_id + scores_a["query"] + scores_a.ad_id)
    rates = daily_rates(read_table(spark, settings.table("relevance_scores"))).collect()
    assert [r.pairs for r in rates if r.dt == DAY1] == [len(scores_a)]  # irrelevant-rate reads A too

    # Killed after the commit, before the old rows are deleted: readers see B, whole, a2 only rejected.
    def killed_after_the_commit(*_):
        raise Killed("driver killed after the commit")

    from jobs import commit

    monkeypatch.setattr(commit, "drop_superseded", killed_after_the_commit)
    with pytest.raises(Killed):
        run()
    monkeypatch.undo()
    scores_b, rejects_b = committed_day(spark, settings)
    run_b = assert_one_whole_run(scores_b, rejects_b)
    assert run_b != run_a and "a2" not in set(scores_b.ad_id) and "a2" in set(rejects_b.ad_id)

    # A rerun heals the day: one run, and the tables hold nothing else of the day.
    assert run() == 0
    scores_c, rejects_c = committed_day(spark, settings)
    run_c = assert_one_whole_run(scores_c, rejects_c)
    assert run_c not in (run_a, run_b) and len(scores_c) == len(scores_b)
    for name in ("relevance_scores", "scoring_rejects"):
        assert {r.scoring_run_id for r in read(spark, settings, name, DAY1).collect()} == {run_c}


# --- the driver's JVM killed for real --------------------------------------------------------------


def jvm_of(pid: int) -> int:
    """The pid of the Spark driver JVM that the command `pid` started: its java child (found by parent pid
    in /proc, never by name across the machine)."""
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and (entry / "cmdline").read_bytes().split(b"\0")[0].endswith(b"java"):
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    raise LookupError(f"process {pid} has no java child")


def delta_versions(path: str) -> int:
    """How many commits the Delta table at `path` has (0 when there is none)."""
    log = Path(path) / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def kill_jvm_at_commit(process: subprocess.Popen, tables: list[str], timeout: float = 300) -> str:
    """SIGKILL `process`'s driver JVM as soon as one of `tables` has a commit it did not have: the table
    that moved. The JVM is looked up once it exists; the Python driver survives it."""
    before = {t: delta_versions(t) for t in tables}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        moved = [t for t in tables if delta_versions(t) > before[t]]
        if moved:
            os.kill(jvm_of(process.pid), signal.SIGKILL)
            return moved[0]
        time.sleep(0.02)
    raise AssertionError(f"no new commit in {tables} (exit {process.poll()}): {process.stderr.read()[-2000:]}")


def test_the_driver_jvm_killed_after_the_first_commit_leaves_the_committed_run_and_a_rerun_heals(spark, tmp_path):
    from hcmrm.tracking.store import configure
    from jobs import score
    from jobs.tables import overwrite_table
    from tests.jobs.test_clean_failures import environment, flags

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        assert score.run(job_args(settings, date=DAY1)) == 0
    scores_a, rejects_a = committed_day(spark, settings)
    run_a = assert_one_whole_run(scores_a, rejects_a)
    ads = [(a, "gone" if a == "a2" else v, adv, ind) for a, v, adv, ind in ADS]  # a2's pairs: rejects from now on
    overwrite_table(spark.createDataFrame(ads, "ad_id string, video_id string, advertiser string, industry string"),
                    settings.table("ads"))

    process = subprocess.Popen([sys.executable, "-m", "jobs.cli", "score", *flags(settings)], env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        moved = kill_jvm_at_commit(process, [settings.table("scoring_rejects"), settings.table("relevance_scores")])
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    lines = err.strip().splitlines()
    assert moved.endswith("scoring_rejects") and process.returncode == 1, err[-3000:]
    assert sum(x.startswith("hcmrm score: ") for x in lines) == 1, err[-3000:]  # one line, the Py4J error's
    assert not [x for x in lines if x.startswith("\tat ")], err[-3000:]
    runs = spark.read.format("delta").load(settings.table("scoring_runs")).where(f"dt = '{DAY1}'").collect()
    assert [r.scoring_run_id for r in runs] == [run_a]  # killed before its commit (the run log's row)
    killed = configure(settings).MlflowClient().search_runs(
        [configure(settings).get_experiment_by_name("hcmrm-scoring").experiment_id],
        order_by=["attributes.start_time DESC"])[0]
    assert killed.info.run_id != run_a and killed.info.status == "FAILED"  # its Python driver closed it

    # Readers see run A, whole; the killed run's rejects are in the table, shown to nobody.
    assert {r.scoring_run_id for r in read(spark, settings, "scoring_rejects", DAY1).collect()} == {
        run_a, killed.info.run_id}
    scores, rejects = committed_day(spark, settings)
    assert assert_one_whole_run(scores, rejects) == run_a and len(scores) == len(scores_a)
    assert len(set(zip(scores["query"], scores.ad_id))) == len(scores)  # no (dt, query, ad_id) twice

    with contextlib.redirect_stdout(io.StringIO()):  # a rerun completes the day
        assert score.run(job_args(settings, date=DAY1)) == 0
    scores_c, rejects_c = committed_day(spark, settings)
    run_c = assert_one_whole_run(scores_c, rejects_c)
    assert run_c not in (run_a, killed.info.run_id) and "a2" in set(rejects_c.ad_id) and "a2" not in set(scores_c.ad_id)
    for name in ("relevance_scores", "scoring_rejects"):
        assert {r.scoring_run_id for r in read(spark, settings, name, DAY1).collect()} == {run_c}


def test_a_rescore_after_a_run_whose_clock_ran_ahead_is_the_committed_one(spark, tmp_path):
    """The committed run is the last one committed, whatever the hosts' clocks said: with the earlier run's
    finished_at 3 hours in the future (another host's fast clock), the rescore still is the day."""
    from delta.tables import DeltaTable

    from jobs import score
    from jobs.tables import overwrite_table

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        assert score.run(job_args(settings, date=DAY1)) == 0
    run_a = assert_one_whole_run(*committed_day(spark, settings))
    DeltaTable.forPath(spark, settings.table("scoring_runs")).update(
        f"scoring_run_id = '{run_a}'", {"finished_at": "finished_at + INTERVAL 3 HOURS"})
    ads = [(a, "gone" if a == "a2" else v, adv, ind) for a, v, adv, ind in ADS]  # a2's pairs: rejects from now on
    overwrite_table(spark.createDataFrame(ads, "ad_id string, video_id string, advertiser string, industry string"),
                    settings.table("ads"))

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert score.run(job_args(settings, date=DAY1)) == 0
    run_b = out.getvalue().split("MLflow run ")[1].split()[0]
    scores, rejects = committed_day(spark, settings)
    assert assert_one_whole_run(scores, rejects) == run_b != run_a
    assert "a2" in set(rejects.ad_id) and "a2" not in set(scores.ad_id)
    for name in ("relevance_scores", "scoring_rejects"):  # the cleanup removed A's rows, not B's
        assert {r.scoring_run_id for r in read(spark, settings, name, DAY1).collect()} == {run_b}
