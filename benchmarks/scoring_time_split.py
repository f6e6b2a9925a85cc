"""Where the score job's time and CPU go, beside mlflow.pyfunc.spark_udf and the plain engine (Linux: /proc).

    make bench-time-split                    # 1,000,000 pairs: job, plain, mlflow_spark_udf, job
    .venv/bin/python benchmarks/scoring_time_split.py --pairs 200000 --sequence job,job

The day, lake and model of `make bench-compare` (benchmarks/scoring_compare.py: 40 queries an ad, `small`,
cached text attention, the `local` profile's 2 Python workers), except that `video_texts` carries each
video's content fingerprint as pseudo-queries writes it (scoring_incremental.write_video_texts), so the job
hashes no frame. After a warm-up of each contender on the warm-up day, the contenders of --sequence score
the day one after another; per run it prints one line: wall seconds, the CPU seconds of the JVM, of Spark's
Python workers and of the plain engine's processes, and the JVM's CPU by thread kind (JIT compilers, task
threads, GC, the driver's threads). For the job also its three phases from Spark's stages (REST API):
before the scoring stage (reads, validation, fingerprints, the shuffles that build the ad rows), the
scoring stage (mapInArrow, the engine), after it (Delta writes, commit, MLflow).

One run per line, not rounds: this splits the time, `make bench-compare` compares. A Python worker that
Spark stops while idle takes its CPU seconds with it, so that column can read low or negative for a run
that starts new workers. The last line is one JSON object: per contender its runs' seconds, and the job's
median phases and CPU split.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt_
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import scoring_compare as compare  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


# --- CPU seconds from /proc ---------------------------------------------------------------------


def _stat_fields(path: str) -> tuple[str, list[str]]:
    text = open(path).read()
    return text[text.index("(") + 1: text.rindex(")")], text.rsplit(")", 1)[1].split()


def process_kind(pid: int, plain_pids: set[int]) -> str | None:
    """jvm, spark_python (pyspark's daemon and workers), plain (the engine's pool) or None."""
    if pid in plain_pids:
        return "plain"
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return None
    if argv and argv[0].endswith(b"/java"):
        return "jvm"
    return "spark_python" if any(b"pyspark.daemon" in a or b"pyspark.worker" in a for a in argv) else None


def cpu_by_kind(plain_pids: set[int]) -> collections.Counter:
    """CPU seconds (user + system, with reaped children's) of every live process, summed by process_kind;
    the JVM's by thread kind too, under `jvm:<thread name without digits>`."""
    seconds = collections.Counter()
    for entry in os.listdir("/proc"):
        kind = process_kind(int(entry), plain_pids) if entry.isdigit() else None
        if kind is None:
            continue
        try:
            _, fields = _stat_fields(f"/proc/{entry}/stat")
            seconds[kind] += sum(int(f) for f in fields[11:15]) / TICK
            if kind == "jvm":
                for tid in os.listdir(f"/proc/{entry}/task"):
                    name, fields = _stat_fields(f"/proc/{entry}/task/{tid}/stat")
                    seconds["jvm:" + re.sub(r"\d+", "#", name)] += (int(fields[11]) + int(fields[12])) / TICK
        except OSError:  # the process or thread ended meanwhile
            continue
    return seconds


# --- the job's phases from Spark's REST API -----------------------------------------------------


def _epoch(stamp: str) -> float:
    return dt_.datetime.strptime(stamp.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def stage_spans(spark, since: float) -> list[tuple[float, float]]:
    """(submitted, completed) epoch seconds of the completed stages submitted after `since`."""
    base = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{spark.sparkContext.applicationId}"
    stages = json.load(urllib.request.urlopen(f"{base}/stages?status=complete"))
    return sorted((_epoch(s["submissionTime"]), _epoch(s["completionTime"])) for s in stages
                  if "submissionTime" in s and _epoch(s["submissionTime"]) >= since)


def phases(spans: list[tuple[float, float]], started: float, ended: float) -> dict:
    """The run's seconds before its longest stage (the scoring stage), in it, and after it."""
    first, last = max(spans, key=lambda s: s[1] - s[0])
    return {"before_stage": round(first - started, 1), "scoring_stage": round(last - first, 1),
            "after_stage": round(ended - last, 1)}


# --- runs -----------------------------------------------------------------------------------------


def timed(name: str, run, spark, plain_pids: set[int]) -> dict:
    """Run `run` once on the day; its seconds, CPU split and (the job) phases."""
    before, started = cpu_by_kind(plain_pids), time.time()
    run(compare.DATE)
    ended, after = time.time(), cpu_by_kind(plain_pids)
    used = {k: round(after[k] - before.get(k, 0.0), 1) for k in after}
    row = {"contender": name, "seconds": round(ended - started, 1),
           "cpu": {k: v for k, v in used.items() if ":" not in k},
           "jvm_threads": dict(sorted(((k[4:], v) for k, v in used.items() if k.startswith("jvm:") and v >= 0.5),
                                      key=lambda kv: -kv[1]))}
    if name == "job":
        row["phases"] = phases(stage_spans(spark, started), started, ended)
    print(json.dumps(row), flush=True)
    return row


def job_summary(rows: list[dict]) -> dict:
    jobs = [r for r in rows if r["contender"] == "job"]
    if not jobs:
        return {}

    def median(get):
        return round(statistics.median(get(r) for r in jobs), 1)

    threads = {k for r in jobs for k in r["jvm_threads"]}
    return {"job_phases": {k: median(lambda r: r["phases"][k]) for k in jobs[0]["phases"]},
            "job_cpu": {k: median(lambda r: r["cpu"].get(k, 0.0)) for k in ("jvm", "spark_python")},
            "job_jvm_threads": dict(sorted(((k, median(lambda r: r["jvm_threads"].get(k, 0.0))) for k in threads),
                                           key=lambda kv: -kv[1])[:6])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--queries-per-ad", type=int, default=40)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--sequence", default="job,plain,mlflow_spark_udf,job",
                        help="contenders to run in this order: job, mlflow_spark_udf, plain")
    parser.add_argument("--warm-up-ads", type=int, default=200)
    args = parser.parse_args()
    order = args.sequence.split(",")
    if unknown := set(order) - {"job", "mlflow_spark_udf", "plain"}:
        parser.error(f"unknown contenders {sorted(unknown)}")

    from hcmrm.config import load
    from hcmrm.settings import Settings
    from hcmrm.tracking.pyfunc import save_pyfunc
    from hcmrm.tracking.store import use_experiment
    from jobs.scoring_config import CONF_FILE, ScoreJobConfig
    from jobs.session import spark_session
    from scoring_engine import video_texts
    from scoring_incremental import write_video_texts
    from scoring_scale import synthetic_day
    from scoring_spark_overhead import job_model, register, write_lake

    ads = max(1, args.pairs // args.queries_per_ad)
    root = Path(tempfile.mkdtemp(prefix="hcmrm-time-split-"))
    synthetic_day(ads * args.queries_per_ad, root / "day", sizes=np.full(ads, args.queries_per_ad))
    pairs, ad_rows, videos = (pd.read_parquet(root / "day" / f"{n}.parquet") for n in ("query_ad_pairs", "ads", "videos"))
    settings = Settings(lake=str(root / "lake"), tracking_uri=f"sqlite:///{root / 'mlruns.db'}",
                        artifact_root=str(root / "mlartifacts"), model_name="bench", spark_profile="local")
    register(settings, args.preset, root, text_attention="cached")
    spark = spark_session("local", app_name="hcmrm-bench-time-split")
    workers = spark.sparkContext.defaultParallelism
    warm_pairs, warm_ads, warm_videos = compare.warm_up_day(pairs, ad_rows, videos, args.warm_up_ads)
    all_videos = pd.concat([videos, warm_videos], ignore_index=True)
    texts = video_texts(all_videos)
    write_lake(spark, settings, pd.concat([pairs, warm_pairs]), pd.concat([ad_rows, warm_ads]), all_videos, texts)
    write_video_texts(spark, settings, [(v, d, texts[v]) for v, d in zip(all_videos.video_id, all_videos.dt)])
    config = load(ScoreJobConfig, CONF_FILE)
    experiment = use_experiment(settings, config.experiment)
    model = job_model(spark, settings, config)
    udf = compare.mlflow_udf(spark, save_pyfunc(model.local_dir, root / "pyfunc"))

    def job(date):
        return compare.job_run(spark, settings, config, model, experiment, date)

    print(json.dumps({"pairs": len(pairs), "ads": ads, "preset": args.preset, "python_workers": workers,
                      "load_average_before": round(os.getloadavg()[0], 1)}), flush=True)
    with multiprocessing.get_context("spawn").Pool(workers, compare.plain_init, (model.local_dir,)) as pool:
        plain_pids = {p.pid for p in pool._pool}  # noqa: SLF001 - the pool's processes, to tell their CPU apart
        runs = {
            "job": job,
            "mlflow_spark_udf": lambda date: compare.stock_run(
                spark, compare.pairs_with_videos(spark, settings, date), udf, root / "out" / "mlflow"),
            "plain": lambda date: compare.plain_run(pool, settings.lake, date, workers, root / "out" / "plain"),
        }
        for name in dict.fromkeys(order):
            runs[name](compare.WARM_UP_DATE)
        rows = [timed(name, runs[name], spark, plain_pids) for name in order]
    spark.stop()
    seconds = {name: [r["seconds"] for r in rows if r["contender"] == name] for name in dict.fromkeys(order)}
    print(f"load average after {os.getloadavg()[0]:.1f}", flush=True)
    print(json.dumps({"seconds": seconds, **job_summary(rows)}))


if __name__ == "__main__":
    main()
