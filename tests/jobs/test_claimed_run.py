"""A job's claimed MLflow run: FINISHED with its block, FAILED with the error's message, a held date refused."""

from __future__ import annotations

import sqlite3
import time

import pytest

from hcmrm.errors import ClaimLost
from hcmrm.tracking.runs import DATE_TAG, JOB_TAG
from jobs.claimed_run import claimed_run

DAY = "2024-09-10"


@pytest.fixture
def store(settings):
    """(client, experiment id) of a fresh MLflow store."""
    from hcmrm.tracking.store import configure, use_experiment

    experiment_id = use_experiment(settings, "claimed-run-test")
    return configure(settings).MlflowClient(), experiment_id


def test_a_run_ends_finished_with_its_block_tagged_with_its_job_and_dates(store):
    client, experiment_id = store
    with claimed_run(client, experiment_id, "score", f"score {DAY}", [DAY], 24.0) as run:
        assert client.get_run(run.run_id).info.status == "RUNNING"
    done = client.get_run(run.run_id)
    assert done.info.status == "FINISHED" and done.info.run_name == f"score {DAY}"
    assert (done.data.tags[JOB_TAG], done.data.tags[DATE_TAG]) == ("score", DAY)


def test_a_run_whose_block_raises_ends_failed_with_the_message(store):
    client, experiment_id = store
    with pytest.raises(ValueError, match="bad input"):
        with claimed_run(client, experiment_id, "pretrain", "pretrain") as run:
            raise ValueError("bad input")
    failed = client.get_run(run.run_id)
    assert failed.info.status == "FAILED" and failed.data.tags["error"] == "bad input"
    assert DATE_TAG not in failed.data.tags  # no dates: nothing claimed


def test_a_second_run_of_a_held_date_stops_before_its_block_and_ends_failed(store):
    client, experiment_id = store
    with claimed_run(client, experiment_id, "score", "first", [DAY], 24.0) as first:
        time.sleep(0.01)  # the first started goes on: a later start time
        with pytest.raises(ClaimLost, match=f"another score of {DAY} is running: MLflow run {first.run_id}"):
            with claimed_run(client, experiment_id, "score", "second", [DAY, "2024-09-11"], 24.0, "before work"):
                raise AssertionError("the block of a run that lost its claim ran")
        with claimed_run(client, experiment_id, "score", "another day", ["2024-09-11"], 24.0):
            pass  # a date nobody holds
    runs = {r.info.run_name: r for r in client.search_runs([experiment_id])}
    assert runs["second"].info.status == "FAILED" and runs["second"].data.tags["error"].endswith("before work")
    assert runs["first"].info.status == runs["another day"].info.status == "FINISHED"


def test_finish_in_the_block_logs_metrics_and_a_store_failure_there_is_the_callers_to_handle(store, monkeypatch):
    from mlflow import MlflowClient

    client, experiment_id = store
    with claimed_run(client, experiment_id, "score", "metrics") as run:
        run.finish({"scored_pairs": 8.0})
    assert client.get_run(run.run_id).data.metrics == {"scored_pairs": 8.0}

    def read_only(*_, **__):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    with claimed_run(client, experiment_id, "score", "store fails") as run:
        monkeypatch.setattr(MlflowClient, "set_terminated", read_only)
        with pytest.raises(sqlite3.OperationalError):
            run.finish()
    monkeypatch.undo()  # the block's end did not try to close it again: it would have raised
    assert client.get_run(run.run_id).info.status == "RUNNING"
