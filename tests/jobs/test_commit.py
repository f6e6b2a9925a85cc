"""The commit protocol (jobs.commit): a day's committed run is the last one committed to the run log, and a
run that finds another committed after it says so instead of cleaning up."""

from __future__ import annotations

import datetime as dt

import pytest

from hcmrm.tables import PSEUDO_QUERY_RUNS, VIDEO_TEXTS

pytestmark = pytest.mark.spark

LATER = dt.datetime(2030, 1, 1)  # a clock far ahead: it must not decide anything
NOW = dt.datetime(2024, 9, 10, 12)


def log_rows(spark, rows):
    from jobs.tables import spark_schema

    return spark.createDataFrame(rows, spark_schema(PSEUDO_QUERY_RUNS))


def texts(spark, run_id):
    from jobs.tables import spark_schema

    row = {"video_id": "v1", "dt": "d1", "video_text": f"text of {run_id}", "text_settings": "{}",
           "text_fingerprint": "test", "pseudo_query_run_id": run_id}  # the other columns null
    return spark.createDataFrame([tuple(row.get(c) for c in VIDEO_TEXTS.columns)], spark_schema(VIDEO_TEXTS))


def committed(spark, log_path):
    from jobs.tables import committed_runs

    return dict(committed_runs(spark, log_path, "pseudo_query_run_id").collect())


def test_the_last_commit_wins_over_a_later_finished_at_and_the_cleanup_keeps_it(spark, tmp_path):
    from jobs.commit import append_run, commit_run
    from jobs.tables import read_table

    lake = tmp_path / "lake"
    log_path, table_path = str(lake / "pseudo_query_runs"), str(lake / "video_texts")
    tables = [(VIDEO_TEXTS, table_path)]
    append_run(texts(spark, "a"), table_path)
    commit_run(spark, log_rows(spark, [("d1", "a", LATER)]), log_path, "pseudo_query_run_id", "a", tables)
    append_run(texts(spark, "b"), table_path)
    commit_run(spark, log_rows(spark, [("d1", "b", NOW)]), log_path, "pseudo_query_run_id", "b", tables)

    assert committed(spark, log_path) == {"d1": "b"}
    assert [r.pseudo_query_run_id for r in read_table(spark, table_path).collect()] == ["b"]
    assert [r.pseudo_query_run_id for r in spark.read.format("delta").load(table_path).collect()] == ["b"]


def test_a_log_written_before_commit_order_was_recorded_is_upgraded_and_the_next_commit_wins(spark, tmp_path):
    from jobs.commit import commit_run
    from jobs.tables import has_row_tracking

    log_path = str(tmp_path / "pseudo_query_runs")
    log_rows(spark, [("d1", "old", LATER), ("d2", "old2", NOW)]).write.format("delta").save(log_path)  # as before
    assert not has_row_tracking(spark, log_path)
    commit_run(spark, log_rows(spark, [("d1", "new", NOW)]), log_path, "pseudo_query_run_id", "new", [])
    assert has_row_tracking(spark, log_path)
    assert committed(spark, log_path) == {"d1": "new", "d2": "old2"}


def test_a_run_that_another_commits_after_fails_loudly_and_leaves_the_winners_rows(spark, tmp_path, monkeypatch):
    from hcmrm.errors import ConcurrentWriteError
    from jobs import commit

    lake = tmp_path / "lake"
    log_path, table_path = str(lake / "pseudo_query_runs"), str(lake / "video_texts")
    commit.append_run(texts(spark, "mine"), table_path)
    commit.append_run(texts(spark, "theirs"), table_path)
    real_committed_runs = commit.committed_runs

    def another_run_commits_right_after_mine(*args):  # the log re-read finds a later commit
        log_rows(spark, [("d1", "theirs", NOW)]).write.format("delta").mode("append").save(log_path)
        monkeypatch.setattr(commit, "committed_runs", real_committed_runs)
        return real_committed_runs(*args)

    monkeypatch.setattr(commit, "committed_runs", another_run_commits_right_after_mine)
    with pytest.raises(ConcurrentWriteError, match="run mine is not the committed run of dt d1.*run theirs"):
        commit.commit_run(spark, log_rows(spark, [("d1", "mine", LATER)]), log_path, "pseudo_query_run_id", "mine",
                          [(VIDEO_TEXTS, table_path)])
    assert committed(spark, log_path) == {"d1": "theirs"}
    assert {r.pseudo_query_run_id for r in spark.read.format("delta").load(table_path).collect()} == {"mine", "theirs"}
