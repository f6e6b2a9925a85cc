"""The score job's Spark benchmarks run end to end at toy sizes (smoke tests: a change to the job's tables or
its result type breaks them here, not in the next manual run). Each runs as `make bench-*` runs it, in its
own process with its own local Spark; its temp lake lands under the test's tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bench(tmp_path: Path, script: str, *args: str) -> str:
    """The benchmark's stdout; it must exit 0."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True,
                          text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_spark_overhead_scores_the_same_pairs_as_the_engine_alone(tmp_path):
    out = bench(tmp_path, "scoring_spark_overhead.py", "--preset", "tiny", "--repeat", "1")
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # the report comes last, indented
    report = json.loads("\n".join(lines[start:]))
    assert report["spark_job"]["pairs"] == report["engine_alone"]["pairs"] > 0
    assert report["ratio_spark_job_over_engine"] > 0 and report["ratio_scoring_stage_over_engine"] > 0


def test_incremental_carries_the_repeat_days_seen_pairs_only(tmp_path):
    out = bench(tmp_path, "scoring_incremental.py", "--preset", "tiny", "--ads", "4", "--queries-per-ad", "5",
                "--repeat-share", "0.8", "--rounds", "1")
    *days, report = json_lines(out)
    carried = {d["kind"]: (d["scored"], d["carried"]) for d in days}
    # every pair is in the day's scores; on the repeat day 4 of each ad's 5 queries come from the base day
    assert carried == {"fresh": (20, 0), "repeat": (20, 16)}
    assert report["repeat_over_fresh"]["median"] > 0


def test_lake_growth_scores_the_same_day_in_both_lakes(tmp_path):
    out = bench(tmp_path, "lake_growth.py", "--ads", "4", "--queries-per-ad", "3", "--frames", "1",
                "--frame-side", "64", "--other-dates", "2", "--growth", "3", "--rounds", "1")
    sizes, *nights, report = json_lines(out)
    assert sizes["videos_table_mb"]["3x"] > sizes["videos_table_mb"]["1x"]
    assert {(n["lake"], n["scored"]) for n in nights} == {("1x", 12), ("3x", 12)}
    assert report["night_ratio"] > 0 and report["other_videos"] == {"1x": 4, "3x": 12}


def test_compare_contenders_agree_and_the_repeat_day_is_carried(tmp_path):
    out = bench(tmp_path, "scoring_compare.py", "--preset", "tiny", "--queries-per-ad", "10", "--pairs", "200",
                "--repeat-share", "0.8", "--rounds", "1", "--warm-up-ads", "5")
    context, *_, ratios = json_lines(out)
    assert context["pairs_scored_before"] == 160 and context["warm_up_pairs"] == 50
    assert "pairs 200, of which the job carried 160 over" in out  # the warm-up day (after DATE) is never reused
    assert all(ratios[k] > 0 for k in ("spark_over_plain", "over_mlflow_spark_udf", "over_predict_batch_udf"))


def test_time_split_accounts_each_contenders_time_and_cpu(tmp_path):
    out = bench(tmp_path, "scoring_time_split.py", "--preset", "tiny", "--pairs", "200", "--queries-per-ad", "10",
                "--warm-up-ads", "5", "--sequence", "job,plain,mlflow_spark_udf")
    context, job, plain, stock, summary = json_lines(out)
    assert context["pairs"] == 200 and [r["contender"] for r in (job, plain, stock)] == ["job", "plain",
                                                                                        "mlflow_spark_udf"]
    # the job's three phases are its wall time, split at its longest stage
    assert all(v >= 0 for v in job["phases"].values())
    assert abs(sum(job["phases"].values()) - job["seconds"]) <= 0.5
    # the plain engine's processes are told apart from Spark's: its CPU is theirs, the job's is the JVM's
    assert plain["cpu"]["plain"] > 0 and job["cpu"]["jvm"] > 0 and job["jvm_threads"]
    assert summary["seconds"]["job"] == [job["seconds"]] and summary["job_phases"] == job["phases"]
