"""A tracking store (MLflow) that fails: before the lake write the command stops in one line naming the store
(exit 6); after the day's commit the day is reported committed with a warning, and the run left RUNNING
does not block the next score of the date."""

from __future__ import annotations

import contextlib
import io
import sqlite3

import pytest

from tests.jobs.test_score import DAY1, job_args, make_settings, read, register_tiny_model, write_lake

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # two scorings of a day


def run_score(settings, capsys):
    """`hcmrm score --date DAY1` in this process: (exit code, its stderr lines)."""
    from jobs import score
    from jobs.common import run_command

    args = job_args(settings, date=DAY1, handler=score.run)
    with contextlib.redirect_stdout(io.StringIO()):
        code = run_command(args, "score")
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_store_that_fails_before_or_after_the_commit(spark, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from hcmrm.tracking.store import configure

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)

    def locked(*_, **__):
        raise sqlite3.OperationalError("database is locked")

    # Before anything is written: one line naming the store, exit 6, the lake untouched.
    monkeypatch.setattr(MlflowClient, "create_run", locked)
    code, lines = run_score(settings, capsys)
    monkeypatch.undo()
    assert code == 6, lines
    assert lines[-1] == (f"hcmrm score: the MLflow tracking store {settings.tracking_uri} is locked by another "
                         f"process; make the store writable (or wait for the process holding it), or point "
                         f"--tracking-uri at another; rerun")
    assert not (tmp_path / "lake" / "scoring_runs").exists()

    # After the commit: the store turns read-only. The day is committed and said so; exit 0 with a warning.
    real_set_terminated = MlflowClient.set_terminated

    def read_only(self, run_id, status=None, *rest, **kw):
        if status == "FINISHED":
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_set_terminated(self, run_id, status, *rest, **kw)

    monkeypatch.setattr(MlflowClient, "set_terminated", read_only)
    code, lines = run_score(settings, capsys)
    monkeypatch.undo()
    committed = [r.scoring_run_id for r in read(spark, settings, "scoring_runs", DAY1).collect()]
    assert code == 0 and len(committed) == 1, lines
    assert lines[-1].startswith(f"hcmrm score: warning: {DAY1} is committed (run {committed[0]} in scoring_runs), "
                                f"but its MLflow run was not updated: the MLflow tracking store "
                                f"{settings.tracking_uri} is read-only")
    client = configure(settings).MlflowClient()
    assert client.get_run(committed[0]).info.status == "RUNNING"  # what the store could not be told

    # The next score of the date is not blocked by it: the run committed its day, so it holds nothing.
    code, lines = run_score(settings, capsys)
    assert code == 0, lines
    left = client.get_run(committed[0])
    assert left.info.status == "FINISHED" and left.data.tags["hcmrm.closed_by"] != committed[0]
    assert len(read(spark, settings, "scoring_runs", DAY1).collect()) == 2
