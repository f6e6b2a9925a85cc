"""`score` submitted with spark-submit to a local standalone cluster (a master + two workers on
127.0.0.1, scripts/standalone_cluster.py) writes the same rows as a local-mode run of the same day,
and still writes every pair exactly once when an executor JVM is killed mid-scoring; with the `gpu`
profile on workers that offer a (fake) GPU, only the scoring stage asks for it."""

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


@contextlib.contextmanager
def running_cluster(state: Path, *flags: str):
    """The master URL of a standalone cluster started with `flags`, stopped (by its pids) afterwards."""
    up = subprocess.run([sys.executable, str(CLUSTER), "start", "--state", str(state), *flags], capture_output=True,
                        text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        yield up.stdout.strip()
    finally:
        if state.exists():
            pids = json.loads(state.read_text())["pids"]
            subprocess.run([sys.executable, str(CLUSTER), "stop", "--state", str(state)], timeout=120, check=True)
            assert not [p for p in pids if not ended(p)], "cluster processes left running"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("cluster") / "state.json") as url:
        yield url


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory):
    """(master URL, state folder) of two workers with 2 cores and one GPU each, its address 7."""
    state = tmp_path_factory.mktemp("gpu-cluster") / "state.json"
    with running_cluster(state, "--cores", "2", "--fake-gpu", "7") as url:
        yield url, state.parent


def ended(pid: int) -> bool:
    """Gone, or a zombie (exited; the daemons were re-parented to an init that may reap late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def submit_command(settings, date: str, profile: str = "cluster", device: str = "cpu") -> list[str]:
    """The README's standalone command, on the test's lake and MLflow store."""
    flags = ["--lake", settings.lake, "--tracking-uri", settings.tracking_uri, "--artifact-root",
             settings.artifact_root, "--model-name", settings.model_name, "--device", device]
    return [str(REPO / "bin" / "spark-submit-local"), "jobs/score.py", "--date", date, "--spark-profile", profile,
            *flags]


def submit_options(master: str) -> dict:
    env = dict(os.environ, SPARK_MASTER=master, PYTHONPATH=str(REPO))
    return dict(cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def submit(settings, master: str, date: str, command: list[str] | None = None) -> str:
    """Run the submit command (or `command`) to the end; its stdout."""
    done = subprocess.run(command or submit_command(settings, date), **submit_options(master), timeout=900)
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
    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)

    printed = submit(settings, cluster, DAY1)
    assert "16 pairs = 8 scored + 8 rejected" in printed
    assert_local_mode_gives_the_same_rows(spark, settings)


def assert_local_mode_gives_the_same_rows(spark, settings):
    """The day a cluster run left in the lake equals a local-mode run of the same day and model."""
    from jobs import score

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


def test_the_gpu_profile_gives_the_scoring_stage_alone_a_gpu_mapped_through_cuda_visible_devices(
        spark, gpu_cluster, tmp_path):
    master, state_dir = gpu_cluster
    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)
    events = tmp_path / "events"
    events.mkdir()
    # The README's GPU command on workers of 2 cores (gpu.yaml's 8 would not fit), CUDA absent: --device auto
    # falls back to the CPU after choosing the task's GPU. The executor sees the GPU as CUDA device 7.
    command = submit_command(settings, DAY1, profile="gpu", device="auto") + [
        "--conf", "spark.executor.cores=2", "--conf", "spark.executorEnv.CUDA_VISIBLE_DEVICES=7",
        "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events.as_uri()}",
        "--conf", "spark.eventLog.compress=false", "--conf", "spark.eventLog.rolling.enabled=false"]  # plain JSON
    assert "16 pairs = 8 scored + 8 rejected" in submit(settings, master, DAY1, command)

    profiles, stages = stage_profiles(events)
    scoring = {stage for stage, (profile, scopes) in stages.items() if "MapInArrow" in scopes}
    assert scoring and {stages[s][0] for s in scoring} == {1}  # every scoring stage, and only those, on profile 1
    assert {profile for stage, (profile, _) in stages.items() if stage not in scoring} == {0}
    assert profiles[1] == {"cpus": 2.0, "gpu": 1.0}  # one GPU and the executor's 2 cores per scoring task

    logs = "".join(p.read_text(errors="replace") for p in state_dir.glob("worker-*/app-*/*/stderr"))
    assert "task GPU 7 -> cuda ordinal 0 (CUDA_VISIBLE_DEVICES=7)" in logs
    assert "task cpus 2: 2 torch threads, 0 prepare threads" in logs  # on the CPU, where no core is spare
    assert_local_mode_gives_the_same_rows(spark, settings)


def stage_profiles(events: Path) -> tuple[dict, dict]:
    """From a Spark event log: {profile id: {resource: amount per task}}, {stage id: (profile id, RDD scopes)}."""
    profiles, stages = {}, {}
    logs = [p for p in events.rglob("*") if p.is_file() and not p.name.startswith(".")]  # not Hadoop's .crc
    assert logs, f"no event log under {events}"
    for line in (line for log in logs for line in log.read_text().splitlines()):
        event = json.loads(line)
        if event["Event"] == "SparkListenerResourceProfileAdded":
            profiles[event["Resource Profile Id"]] = {
                name: request["Amount"] for name, request in event["Task Resource Requests"].items()}
        elif event["Event"] == "SparkListenerStageSubmitted":
            info = event["Stage Info"]
            scopes = " ".join(rdd.get("Scope", "") for rdd in info["RDD Info"])
            stages[info["Stage ID"]] = (info["Resource Profile Id"], scopes)
    return profiles, stages
