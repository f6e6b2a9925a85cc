"""A command's runs and temporary folders: KILLED and removed when it is stopped; a kill -9's run closed later."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hcmrm.errors import Interrupted
from hcmrm.tracking import runs
from hcmrm.tracking.store import configure, use_experiment


@pytest.fixture
def client(settings):
    use_experiment(settings, "runs-test")
    return configure(settings).MlflowClient()


def new_run(client, settings, date="2024-09-10", job="score"):
    experiment = client.get_experiment_by_name("runs-test").experiment_id
    return client.create_run(experiment, tags={runs.JOB_TAG: job, runs.DATE_TAG: date}).info.run_id


def test_a_stopped_command_marks_its_open_runs_killed_and_removes_its_folders(client, settings):
    with pytest.raises(Interrupted):
        with runs.CommandScope() as scope:
            folder = runs.temp_dir("hcmrm-test-")
            done, failed_before, open_ = (new_run(client, settings) for _ in range(3))
            for run_id in (done, failed_before, open_):
                runs.adopt_run(client, run_id)
            client.set_terminated(done, "FINISHED")
            client.set_terminated(failed_before, "FAILED")
            time.sleep(0.01)
            raise Interrupted(signal.SIGTERM, time.time())
    status = {r: client.get_run(r).info.status for r in (done, failed_before, open_)}
    assert status == {done: "FINISHED", failed_before: "FAILED", open_: "KILLED"}
    assert scope.killed == [open_] and not folder.exists()
    assert client.get_run(open_).data.tags[runs.TEMP_TAG] == str(folder)


def test_a_run_closed_failed_by_the_stop_itself_becomes_killed(client, settings):
    with pytest.raises(Interrupted):
        with runs.CommandScope():
            run_id = new_run(client, settings)
            runs.adopt_run(client, run_id)
            try:
                raise Interrupted(signal.SIGINT, time.time())
            except BaseException:  # as score_date does: close the run FAILED, re-raise
                client.set_terminated(run_id, "FAILED")
                raise
    assert client.get_run(run_id).info.status == "KILLED"


def test_an_error_that_is_not_a_stop_leaves_runs_to_their_job_but_still_removes_folders(client, settings):
    with pytest.raises(ValueError):
        with runs.CommandScope():
            folder = runs.temp_dir("hcmrm-test-")
            run_id = new_run(client, settings)
            runs.adopt_run(client, run_id)
            raise ValueError("bad input")
    assert client.get_run(run_id).info.status == "RUNNING" and not folder.exists()
    assert runs.temp_dir("hcmrm-test-").exists()  # outside a command nothing removes it: the caller does


KILLED_PROCESS = textwrap.dedent("""
    import sys, time
    from hcmrm.settings import Settings
    from hcmrm.tracking import runs
    from hcmrm.tracking.store import configure
    settings = Settings(tracking_uri=sys.argv[1], lake="unused")
    client = configure(settings).MlflowClient()
    experiment = client.get_experiment_by_name("runs-test").experiment_id
    with runs.CommandScope():
        folder = runs.temp_dir("hcmrm-model-")
        run_id = client.create_run(experiment, tags={runs.JOB_TAG: "score", runs.DATE_TAG: "2024-09-10"}).info.run_id
        runs.adopt_run(client, run_id)
        print(run_id, folder, flush=True)
        time.sleep(600)
""")


def test_a_run_left_running_by_kill_9_is_closed_killed_by_the_next_run_of_its_job_and_date(client, settings):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    process = subprocess.Popen([sys.executable, "-c", KILLED_PROCESS, settings.tracking_uri], stdout=subprocess.PIPE,
                               text=True, env=env)
    try:
        stale, folder = process.stdout.readline().split()
    finally:
        process.kill()  # SIGKILL: no handler, no finally
        process.wait()
    assert client.get_run(stale).info.status == "RUNNING" and Path(folder).exists()

    other_date = new_run(client, settings, date="2024-09-11")
    assert runs.adopt_run(client, other_date) == []  # another day's run leaves it alone
    current = new_run(client, settings)
    assert runs.adopt_run(client, current) == [stale]
    assert client.get_run(stale).info.status == "KILLED" and not Path(folder).exists()
    assert client.get_run(stale).data.tags[runs.CLOSED_BY_TAG] == current


def test_a_running_run_of_a_live_process_or_another_host_is_left_alone(client, settings):
    alive = new_run(client, settings)
    runs.adopt_run(client, alive)  # this process: alive
    elsewhere = new_run(client, settings)
    client.set_tag(elsewhere, runs.HOST_TAG, "another-host")
    client.set_tag(elsewhere, runs.PID_TAG, "999999")
    assert runs.adopt_run(client, new_run(client, settings)) == []
    assert {client.get_run(r).info.status for r in (alive, elsewhere)} == {"RUNNING"}


def claimant(client, settings, dates, job="pseudo-queries", pid=None) -> str:
    """A RUNNING run of `job` for `dates`, of this host and a live process (this one) unless `pid` says."""
    import socket

    run_id = new_run(client, settings, runs.date_tag(dates), job)
    client.set_tag(run_id, runs.HOST_TAG, socket.gethostname())
    client.set_tag(run_id, runs.PID_TAG, str(pid or os.getpid()))
    time.sleep(0.005)  # distinct start times: the first started wins
    return run_id


def test_of_runs_sharing_a_date_the_first_started_goes_on_and_the_later_stops_naming_it(client, settings):
    from hcmrm.errors import ClaimLost

    first = claimant(client, settings, ["2024-08-18", "2024-08-19"])
    later = claimant(client, settings, ["2024-08-19", "2024-08-20"])
    elsewhere = claimant(client, settings, ["2024-08-21"])
    other_job = claimant(client, settings, ["2024-08-18"], job="score")
    for run_id in (first, elsewhere, other_job):
        runs.claim_dates(client, client.get_run(run_id), 24)  # no earlier run of its job holds its dates
    with pytest.raises(ClaimLost) as lost:
        runs.claim_dates(client, client.get_run(later), 24, "before building anything")
    assert lost.value.exit_code == 5
    assert lost.value.line().startswith(f"another pseudo-queries of 2024-08-19 is running: MLflow run {first} (host ")
    assert "this run stopped before building anything; rerun when it has finished" in lost.value.line()
    client.set_terminated(first, "FINISHED")
    runs.claim_dates(client, client.get_run(later), 24)  # the holder has finished: the date is free


def test_a_claim_ignores_a_holder_whose_process_is_gone_or_older_than_claim_hours(client, settings):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    claimant(client, settings, ["2024-08-18"], pid=gone.pid)  # killed with -9: its process no longer exists
    mine = claimant(client, settings, ["2024-08-18"])
    runs.claim_dates(client, client.get_run(mine), 24)
    live = claimant(client, settings, ["2024-08-19"])
    later = claimant(client, settings, ["2024-08-19"])
    time.sleep(0.05)
    runs.claim_dates(client, client.get_run(later), 0.01 / 3600)  # the holder started over 10 ms ago: expired
    client.set_terminated(live, "FINISHED")


def test_a_date_list_too_long_for_a_tag_is_claimed_as_a_range_and_overlaps_as_one():
    import datetime as dt

    days = [(dt.date(2020, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(1000)]
    tag = runs.date_tag(reversed(days))
    assert tag == "2020-01-01..2022-09-26" and runs.date_tag(days[:3]) == "2020-01-01,2020-01-02,2020-01-03"
    assert runs._shared(tag, "2019-12-31,2021-06-01") == ["2021-06-01"]
    assert runs._shared(tag, "2022-09-01..2023-01-01") == ["2022-09-01..2022-09-26"]
    assert runs._shared("2024-01-01,2024-01-02", "2024-01-02") == ["2024-01-02"]
    assert runs._shared(tag, "2023-01-01") == [] and runs._shared("", "2024-01-01") == []
