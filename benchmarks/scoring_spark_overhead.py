"""Spark's overhead on scoring: the score job against the engine alone, same pairs, same model, CPU.

Inputs: one day of the shipped sample (hcmrm/sample; --repeat N copies with fresh ad and video ids
for a longer run), written as Delta tables in a temp lake; a --preset model with random weights
(speed does not depend on training) registered as champion in a temp MLflow.

- Spark: `jobs.score.score_date` on the `local` profile (local[*]: one Python worker per core, one
  torch thread each), the whole job: Delta reads, validation, ad-major grouping, mapInArrow scoring,
  relevance_scores + scoring_rejects written, counts reconciled, MLflow run. Also its scoring stage
  alone (the action that runs the scorer; `pairs_per_second` of the job's own log).
- Engine: one Python process, torch threads = cores: pandas reads the same Parquet, groups by ad,
  decodes and scores (hcmrm.scoring.Scorer), nothing written. Neither side builds video texts: they
  are made upstream, once (the job reads the `video_texts` table written here from the same texts).

Warm-up first (JVM, Python workers with torch and the model loaded; the engine once), then one
timed run of each. Ratio = Spark pairs/s over engine pairs/s. The machine may be shared: the load
average is printed before and after.

    .venv/bin/python benchmarks/scoring_spark_overhead.py [--preset tiny] [--repeat 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from scoring_engine import SAMPLE, group_ads, read_sample, video_texts  # noqa: E402


def register(settings, preset: str, root: Path, **overrides) -> None:
    """A random-weight `preset` model (+ hcmrm.model.config overrides, e.g. text_attention) as the champion."""
    import torch

    from hcmrm.model.checkpoint import save_model
    from hcmrm.model.network import build_model
    from hcmrm.tracking.registry import log_model_dir, register_version, set_alias
    from hcmrm.tracking.store import configure, use_experiment

    torch.manual_seed(0)
    save_model(build_model(preset, **overrides).eval(), root / "model")
    mlflow = configure(settings)
    use_experiment(settings, "benchmark")
    with mlflow.start_run() as run:
        source = log_model_dir(root / "model")
    set_alias(settings, register_version(settings, run.info.run_id, source).version)


def write_lake(spark, settings, pairs, ads, videos, texts: dict) -> None:
    """The day's input tables as the job reads them; `video_texts` from `texts` (built upstream, once).
    Each with its contract's schema: a column that is null on every row would otherwise be typed void."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from hcmrm.tables import ADS, QUERY_AD_PAIRS, VIDEO_TEXTS, VIDEOS
    from jobs.tables import overwrite_table

    rows = videos[["video_id", "dt"]].assign(video_text=videos.video_id.map(texts), text_settings="{}",
                                             text_fingerprint="benchmark", pseudo_query_run_id=None,
                                             content_fingerprint=None, videos_version=None,  # scoring hashes
                                             n_frames=None, frame_problems=None, frame_limits=None)  # and decodes
    videos = videos.assign(frames=[None if v is None else list(v) for v in videos.frames])
    for table, df in ((QUERY_AD_PAIRS, pairs), (ADS, ads), (VIDEOS, videos), (VIDEO_TEXTS, rows)):
        frame = spark.createDataFrame(df[table.schema.names], schema=from_arrow_schema(table.schema))
        overwrite_table(frame, settings.table(table.name), table.partition)


def job_model(spark, settings, config):
    """The champion resolved, checked and shipped to the executors as `hcmrm score` does (jobs.model_shipping.prepare_scoring)."""
    from hcmrm.tracking.model_uri import champion_uri
    from jobs.model_shipping import resolve_model, ship_model

    return ship_model(spark, resolve_model(settings, champion_uri(settings.model_name), config.engine))


def engine_run(sample: Path, date: str, repeat: int, model_dir: Path, threads: int, texts: dict) -> dict:
    import torch

    from hcmrm.config import load
    from hcmrm.scoring import Scorer
    from jobs.scoring_config import CONF_FILE, ScoreJobConfig

    torch.set_num_threads(threads)
    config = load(ScoreJobConfig, CONF_FILE).engine
    scorer = Scorer.from_dir(model_dir, config)
    scorer.score(group_ads(*read_sample(sample, date, repeat), texts)[:8])  # warm-up
    start = time.perf_counter()
    ads = group_ads(*read_sample(sample, date, repeat), texts)
    results = scorer.score(ads)
    seconds = time.perf_counter() - start
    pairs = sum(len(a.queries) for a, r in zip(ads, results) if r.reason is None)
    return {"pairs": pairs, "seconds": round(seconds, 2), "pairs_per_s": round(pairs / seconds, 1),
            "torch_threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--date", default="2024-09-10")
    parser.add_argument("--repeat", type=int, default=2, help="copies of the day, with fresh ad and video ids")
    parser.add_argument("--profile", default="local", help="Spark profile (conf/spark)")
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    args = parser.parse_args()

    from hcmrm.settings import Settings
    from hcmrm.tracking.store import use_experiment
    from hcmrm.config import load
    from jobs.score import score_date
    from jobs.scoring_config import CONF_FILE, ScoreJobConfig
    from jobs.session import arrow_batches, spark_session

    root = Path(tempfile.mkdtemp(prefix="hcmrm-bench-"))
    settings = Settings(lake=str(root / "lake"), tracking_uri=f"sqlite:///{root / 'mlruns.db'}",
                        artifact_root=str(root / "mlartifacts"), model_name="bench", spark_profile=args.profile)
    register(settings, args.preset, root)
    spark = spark_session(args.profile, app_name="hcmrm-bench-score")
    cores = spark.sparkContext.defaultParallelism
    pairs, ads, videos = read_sample(args.sample, args.date, args.repeat)
    texts = video_texts(videos)
    write_lake(spark, settings, pairs, ads, videos, texts)

    config = load(ScoreJobConfig, CONF_FILE)
    experiment = use_experiment(settings, config.experiment)
    model = job_model(spark, settings, config)
    load_before = os.getloadavg()[0]
    with arrow_batches(spark, config.arrow_batch, config.pairs_per_row), contextlib.redirect_stderr(io.StringIO()):
        score_date(spark, settings, config, args.date, model, experiment)  # warm-up: workers load torch + model
        start = time.perf_counter()
        result = score_date(spark, settings, config, args.date, model, experiment)
        job_seconds = time.perf_counter() - start
    spark_side = {
        "pairs": result.scored_pairs, "rejected": result.rejected_pairs, "distinct_ads": result.distinct_ads,
        "vision_encodes": result.vision_encodes, "job_seconds": round(job_seconds, 2),
        "job_pairs_per_s": round(result.scored_pairs / job_seconds, 1),
        "scoring_stage_pairs_per_s": round(result.pairs_per_second, 1), "python_workers": cores,
    }
    model_dir = model.local_dir
    engine = engine_run(args.sample, args.date, args.repeat, model_dir, cores, texts)
    report = {
        "preset": args.preset, "profile": args.profile, "date": args.date, "repeat": args.repeat,
        "spark_job": spark_side, "engine_alone": engine,
        "ratio_spark_job_over_engine": round(spark_side["job_pairs_per_s"] / engine["pairs_per_s"], 3),
        "ratio_scoring_stage_over_engine": round(spark_side["scoring_stage_pairs_per_s"] / engine["pairs_per_s"], 3),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)], "lake": str(root),
    }
    spark.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
