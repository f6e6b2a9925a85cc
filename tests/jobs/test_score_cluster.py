"""`score` submitted with spark-submit to a local standalone cluster (a master + two workers on
127.0.0.1, scripts/standalone_cluster.py) writes the same rows as a local-mode run of the same day,
and still writes every pair exactly once when an executor JVM is killed mid-scoring."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.jobs.test_score import DAY1, EXPECTED_REJECTS, job_args, make_settings, read, register_tiny_model, write_lake

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "standalone_cluster.py"
PROBS = ["p_bad", "p_less", "p_good", "p_excellent", "score"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The master URL of a running standalone cluster, stopped (by its pids) after the module."""
    state = tmp_path_factory.mktemp("cluster") / "state.json"
    up = subprocess.run([sys.executable, str(CLUSTER), "start", "--state", str(state)], capture_output=True,
                        text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        yield up.stdout.strip()
    finally:
        if state.exists():
            pids = json.loads(state.read_text())["pids"]
            subprocess.run([sys.executable, str(CLUSTER), "stop", "--state", str(state)], timeout=120, check=True)
            assert not [p for p in pids if not ended(p)], "cluster processes left running"


def ended(pid: int) -> bool:
    """Gone, or a zombie (exited; the daemons were re-parented to an init that may reap late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def submit_command(settings, date: str) -> list[str]:
    """The README's standalone command, on the test's lake and MLflow store."""
    flags = ["--lake", settings.lake, "--tracking-uri", settings.tracking_uri, "--artifact-root",
             settings.artifact_root, "--model-name", settings.model_name, "--device", "cpu"]
    return [str(REPO / "bin" / "spark-submit-local"), "jobs/score.py", "--date", date, "--spark-profile", "cluster",
            *flags]


def submit_options(master: str) -> dict:
    env = dict(os.environ, SPARK_MASTER=master, PYTHONPATH=str(REPO))
    return dict(cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def submit(settings, master: str, date: str) -> str:
    """Run the submit command to the end; its stdout."""
    done = subprocess.run(submit_command(settings, date), **submit_options(master), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def day_rows(spark, settings, date):
    """(scores as {(query, ad_id): (probs..., label, version)}, rejects as {(query, ad_id, reason)}, run ids)."""
    scores = read(spark, settings, "relevance_scores", date).toPandas()
    rejects = read(spark, settings, "scoring_rejects", date).toPandas()
    by_pair = {(r.query, r.ad_id): (*[getattr(r, c) for c in PROBS], r.label, r.model_version)
               for r in scores.itertuples()}
    assert len(by_pair) == len(scores)  # no duplicate pair
    reasons = {(r.query, r.ad_id, r.reason.split(":")[0]) for r in rejects.itertuples()}
    return by_pair, reasons, set(scores.scoring_run_id)


def test_score_on_a_standalone_cluster_equals_local_mode(spark, cluster, tmp_path):
    from jobs import score

    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)

    printed = submit(settings, cluster, DAY1)
    assert "16 pairs = 8 scored + 8 rejected" in printed
    on_cluster, cluster_rejects, cluster_run = day_rows(spark, settings, DAY1)

    with contextlib.redirect_stdout(io.StringIO()):  # the same day and model in local mode replaces the day
        assert score.run(job_args(settings, date=DAY1)) == 0
    local, local_rejects, local_run = day_rows(spark, settings, DAY1)

    assert cluster_run != local_run  # the local run did replace the cluster's rows
    assert on_cluster.keys() == local.keys() and len(local) == 8
    for pair, values in local.items():
        assert on_cluster[pair][:-2] == pytest.approx(values[:-2], abs=1e-6), pair
        assert on_cluster[pair][-2:] == values[-2:]  # label, model version
    assert cluster_rejects == local_rejects and len(local_rejects) == 8


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            found[int(entry.name)] = (ppid, cmdline)
    return found


def executor_running_python(deadline: float) -> int:
    """The pid of an executor JVM once one has a Python worker: scoring has started on it (the score
    stage is the job's only Python UDF, and a worker spends seconds importing torch and the model)."""
    while time.monotonic() < deadline:
        table = processes()
        for pid, (ppid, cmdline) in table.items():
            parent = table.get(ppid, (0, ""))[1]
            if "pyspark.daemon" in cmdline and "CoarseGrainedExecutorBackend" in parent:
                return ppid
        time.sleep(0.05)
    raise AssertionError("no executor started a Python worker")


def test_an_executor_killed_mid_scoring_still_gives_every_pair_exactly_once(spark, cluster, tmp_path):
    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)

    job = subprocess.Popen(submit_command(settings, DAY1), **submit_options(cluster))
    try:
        victim = executor_running_python(time.monotonic() + 600)
        os.kill(victim, signal.SIGKILL)
        out, err = job.communicate(timeout=900)
    finally:
        job.kill()
    assert job.returncode == 0, err[-3000:]
    assert victim not in processes()

    assert "16 pairs = 8 scored + 8 rejected" in out  # the day's input, counted once
    scores, rejects, run_ids = day_rows(spark, settings, DAY1)  # day_rows asserts no pair is scored twice
    assert len(scores) == 8 and len(rejects) == 8 and len(run_ids) == 1
    assert {code for _, _, code in rejects} == set(EXPECTED_REJECTS)  # each bad input row once, with its reason
    in_both = set(scores) & {(query, ad) for query, ad, _ in rejects}
    assert in_both == {("连衣裙", "a1")}  # the input holds it twice: scored once, its copy a duplicate_pair
