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
