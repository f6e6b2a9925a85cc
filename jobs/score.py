"""score: one day's (query, ad) pairs -> Delta `relevance_scores` (+ `scoring_rejects`), ad-major.

    hcmrm score --date 2024-09-10 [--model-uri models:/hcmrm@champion | --model-version 3]
    spark-submit jobs/score.py --date 2024-09-10 [same flags]

read:      query_ad_pairs for the day, ads, videos, video_texts (each video's text, built upstream by
           pseudo-queries); the model version resolved once on the driver (jobs.model_shipping)
transform: validate pairs (reason per bad row) -> group the good ones by ad (one row per ad, its
           queries in an array, the video's text and frames joined after grouping so they travel
           once per ad) -> score with the engine in mapInArrow (udfs/score.py) -> pair rows
           (the steps: jobs.scoring_plan)
write:     the day's rows of this run appended to scoring_rejects and relevance_scores (each row names
           its scoring_run_id), then the run's row in scoring_runs: the commit (jobs.commit), after which
           readers (jobs.tables.read_table) see this run's rows of the day and no other's; then the day's
           rows of earlier runs are deleted. A kill at any point leaves the last committed run whole in both
           tables, never a mix; a rerun replaces the day. An MLflow run holds the counts (jobs.claimed_run).
Input pairs = scored + rejected is checked before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt_
import logging
import sys
import time

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hcmrm.errors import InputDataError, TrackingStoreError, classify
from hcmrm.model.checkpoint import load_config_json
from hcmrm.settings import Settings
from hcmrm.tables import QUERY_AD_PAIRS, RELEVANCE_SCORES, SCORING_REJECTS, SCORING_RUNS
from jobs.arguments import add_model_arguments, add_require_input_argument, day
from jobs.claimed_run import claimed_run
from jobs.common import script_main
from jobs.commit import append_run, commit_run, committed_among
from jobs.model_shipping import prepare_scoring, release_model
from jobs.scoring_config import ScoreJobConfig
from jobs.scoring_plan import (
    DateResult, ad_major, carry_over, dimension_columns, earlier_scores, fingerprint_salt, needed_dates, output_rows,
    read_inputs, tally, validate_pairs, video_content, video_texts_keyed, with_carried,
)
from jobs.session import arrow_batches
from jobs.tables import check_output, spark_schema
from udfs.score import ModelRef, score_ads

COMMAND = "score"
HELP = "score one day's query_ad_pairs with a registered model -> relevance_scores (+ scoring_rejects)"

log = logging.getLogger("hcmrm.score")

RUN_ID = RELEVANCE_SCORES.run_column  # scoring_run_id: the column that names a scoring run in every table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=day, required=True, help="the dt of query_ad_pairs to score, yyyy-mm-dd")
    add_model_arguments(parser)
    add_require_input_argument(parser, None)


# --- one day -----------------------------------------------------------------------------------------


def score_date(
    spark: SparkSession,
    settings: Settings,
    config: ScoreJobConfig,
    date: str,
    model: ModelRef,
    experiment_id: str,
    parent_run_id: str | None = None,
) -> DateResult:
    """Score `date` with `model` and write it, in a claimed MLflow run of the date (closed FAILED if anything
    raises). Once the day is committed, a tracking failure is the result's warning, not a failed day."""
    from hcmrm.tracking.store import configure

    client = configure(settings).MlflowClient()

    def committed(run_ids: list[str]) -> set[str]:  # a rival run that is in scoring_runs committed its day
        return committed_among(spark, settings.table(SCORING_RUNS.name), RUN_ID, run_ids)

    # One score of a date at a time (a backfill's dates included): the loser stops before reading anything.
    with claimed_run(client, experiment_id, COMMAND, f"score {date}", [date], config.claim_hours,
                     "before reading anything", committed,
                     {"mlflow.parentRunId": parent_run_id} if parent_run_id else None) as run:
        for key, value in {
            "date": date, "model_name": model.name, "model_version": model.version, "model_run_id": model.run_id,
            "device": config.device, "spark_profile": settings.spark_profile,
            **{f"engine.{k}": v for k, v in dataclasses.asdict(config.engine).items()},
        }.items():
            client.log_param(run.run_id, key, value)
        result = _score_and_write(spark, settings, config, date, model, run.run_id)
        result.warning = finish_committed(run, result, settings)
    return result


def finish_committed(run, result: DateResult, settings: Settings) -> str:
    """End the day's run FINISHED with its metrics. The day is committed: a tracking failure now is the
    warning returned (the command exits 0 and says so), not a failed day."""
    try:
        run.finish(result.metrics())
        return ""
    except Exception as err:
        failure = classify(err)
        if isinstance(failure, TrackingStoreError):
            failure.store = settings.tracking_uri
        warning = (f"{result.dt} is committed (run {run.run_id} in scoring_runs), but its MLflow run was not "
                   f"updated: {failure.line()}")
        log.warning("%s", warning)
        return warning


def _score_and_write(spark, settings, config, date, model, run_id) -> DateResult:
    started = time.perf_counter()
    now = dt_.datetime.now(dt_.timezone.utc).replace(tzinfo=None)
    pairs, ads, videos, video_texts, input_version = read_inputs(spark, settings, date, config.dimensions)
    if config.require_input and pairs.limit(1).count() == 0:
        raise InputDataError(f"query_ad_pairs has no rows for dt {date} at {settings.table(QUERY_AD_PAIRS.name)}: "
                             f"the day's partition is empty or missing",
                             hint="rerun when upstream has written it, or pass --no-require-input to record an "
                                  "empty day")
    from_pairs, from_ads = dimension_columns(pairs, ads, config.dimensions)
    impressions = ["impressions"] if "impressions" in pairs.columns else []

    validated = validate_pairs(pairs, ads, videos, video_texts, config.dimensions).persist(StorageLevel.MEMORY_AND_DISK)
    valid = validated.where(F.col("reason").isNull())
    dates = needed_dates(valid, videos)
    keyed = video_texts_keyed(spark, settings, valid, videos, video_texts, dates, fingerprint_salt(config),
                              config.engine.frame_limits, load_config_json(model.local_dir).max_frames)
    earlier = earlier_scores(spark, settings, date, model, config.carry_over_days)
    # The lookup's misses and carried rows (and through the misses, the engine's rows) share one fingerprint
    # per video: only the small (video_id, fingerprint) rows are kept.
    fingerprints = None if earlier is None else keyed.select("video_id", "ad_fingerprint").persist(
        StorageLevel.MEMORY_AND_DISK)
    misses, carried = carry_over(valid, fingerprints, earlier)
    content = video_content(misses, videos, keyed, dates)
    ad_rows = ad_major(misses, content, ["query", *impressions, *from_pairs], from_ads, config.pairs_per_row)
    scored = score_ads(ad_rows, model, config.engine, config.device, config.require_text)
    scored = with_carried(scored, carried).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        scores, rejects = output_rows(date, validated, scored, [*impressions, *from_pairs, *from_ads], model,
                                      run_id, now)
        for table, rows in ((RELEVANCE_SCORES, scores), (SCORING_REJECTS, rejects)):  # before the scoring stage
            check_output(spark, rows, settings.table(table.name), table.name)
        # The next action runs the scorer; tally raises before anything is written.
        t = tally(date, pairs, validated, scored, config.pairs_per_row)
        # The day's rows of this run are added next to the last committed run's; readers see them once
        # the run's row is in scoring_runs (commit_day below, the commit).
        append_run(rejects, settings.table(SCORING_REJECTS.name))
        append_run(scores, settings.table(RELEVANCE_SCORES.name))
    finally:
        for df in (scored, fingerprints, validated):
            if df is not None:
                df.unpersist()
        # The scores' append re-caches `scored` (its plan reads relevance_scores for the carry-over) under a
        # plan that unpersist no longer finds; left there, every later write to the lake re-plans it, slower
        # each day of a backfill. The job owns its session, so nothing else of it is cached.
        spark.catalog.clearCache()

    result = dataclasses.replace(t, model_version=model.version, seconds=time.perf_counter() - started,
                                 run_id=run_id, input_version=input_version)
    commit_day(spark, settings, result, model)  # from here readers see this run's rows
    log.info(
        "%s: %d pairs -> %d scored (%d carried over) + %d rejected; %d distinct ads, %d engine rows, %d vision "
        "encodes; %.1f pairs/s", date, t.input_pairs, t.scored_pairs, t.carried_pairs, t.rejected_pairs,
        t.distinct_ads, t.ad_rows, t.vision_encodes, t.pairs_per_second,
    )
    return result


def commit_day(spark: SparkSession, settings: Settings, result: DateResult, model: ModelRef) -> None:
    """The run's row in Delta `scoring_runs`, from the day's result, commits the day's rows (jobs.commit),
    then the day's rows of other runs are deleted."""
    values = {
        **dataclasses.asdict(result), "model_name": model.name, "model_run_id": model.run_id,
        "scoring_run_id": result.run_id,
        "finished_at": dt_.datetime.now(dt_.timezone.utc).replace(tzinfo=None),  # for people: order is the commit's
    }
    row = spark.createDataFrame([tuple(values[c] for c in SCORING_RUNS.columns)], spark_schema(SCORING_RUNS))
    commit_run(spark, row, settings.table(SCORING_RUNS.name), RUN_ID, result.run_id,
               [(t, settings.table(t.name)) for t in (SCORING_REJECTS, RELEVANCE_SCORES)])


# --- the command -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    settings, config, spark, model, experiment_id = prepare_scoring(args, COMMAND)
    try:
        with arrow_batches(spark, config.arrow_batch, config.pairs_per_row):
            r = score_date(spark, settings, config, args.date, model, experiment_id)
    finally:
        release_model(model)
    rate = "n/a" if r.irrelevant_rate is None else f"{r.irrelevant_rate:.4f}"
    print(f"scored {r.dt} with {model.name} v{model.version}: {r.input_pairs} pairs = {r.scored_pairs} scored "
          f"+ {r.rejected_pairs} rejected {r.rejects_by_reason}")
    print(f"  distinct ads {r.distinct_ads} in {r.ad_rows} rows, vision encodes {r.vision_encodes}; "
          f"{r.carried_pairs} pairs carried over from earlier days; irrelevant rate {rate}; "
          f"{r.pairs_per_second:.1f} pairs/s; {r.seconds:.1f} s")
    for table in (RELEVANCE_SCORES, SCORING_REJECTS):
        print(f"  {table.name}: {settings.table(table.name)}")
    print(f"  MLflow run {r.run_id} at {settings.tracking_uri}")
    if r.warning:
        print(f"hcmrm score: warning: {r.warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
