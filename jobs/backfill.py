"""backfill: score every date of a range with one model version, skipping the days already done.

    hcmrm backfill --start 2024-09-01 --end 2024-09-30 [--parallel 2] [--force] [--model-version 3]
    spark-submit jobs/backfill.py [same flags]

The model is resolved once, so every date gets the same version even if `champion` moves meanwhile.
A date is done when its committed run (the latest in `scoring_runs`, the record the score job
writes last) is by that version and read the input the day has now (same row count; the same data
files when query_ad_pairs has moved on since); those are skipped unless --force. The log says why
each other date is scored (never scored, another version, input changed), and so does the summary. There is no other state: each
date is committed all or nothing by the score job, so after a kill the rerun of the same command
picks up where it stopped. Dates run --parallel at a time (concurrent Spark jobs of one
driver); a Delta write conflict between them is retried. A date that another score is running
(`hcmrm score`, another backfill) is skipped at once, never retried, and the summary says which run
has it. Ends with one summary line per date.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hcmrm.config import load
from hcmrm.settings import CONF_DIR, Settings
from hcmrm.errors import ClaimLost, classify, is_concurrent_write
from hcmrm.tables import QUERY_AD_PAIRS, SCORING_RUNS
from jobs.common import script_main
from jobs.score import (
    DateResult, ScoreJobConfig, add_model_arguments, add_require_input_argument, day, days_between, log, prepare,
    release_model, score_date,
)
from jobs.session import arrow_batch_rows
from jobs.tables import committed_runs, partition_files, read_table, table_version

COMMAND = "backfill"
HELP = "score every date from --start to --end with one model version; skips days already done; resumable"

CONF_FILE = CONF_DIR / "jobs" / "backfill.yaml"


@dataclass(frozen=True)
class BackfillConfig:
    parallel: int = 1  # dates scored at once (concurrent Spark jobs of one driver)
    retries: int = 2  # re-tries of a date after a Delta concurrent-write conflict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=day, required=True, help="first date, yyyy-mm-dd")
    parser.add_argument("--end", type=day, required=True, help="last date, yyyy-mm-dd (inclusive)")
    parser.add_argument("--parallel", type=int, help=f"dates scored at once (default: {CONF_FILE.name})")
    parser.add_argument("--force", action="store_true", help="re-score dates already scored by this version")
    add_model_arguments(parser)
    add_require_input_argument(parser, False)  # a range may have empty days: recorded, re-scored when rows arrive
    parser.add_argument("--backfill-config", type=Path, default=CONF_FILE, help=f"backfill defaults (default {CONF_FILE})")


@dataclass(frozen=True)
class DaySeen:
    """What a day's committed scoring run saw (its row in scoring_runs)."""

    model_version: str
    input_pairs: int  # rows of query_ad_pairs for the day
    input_version: int | None  # the Delta version they were read at (None: Parquet input, or an older run)


def last_runs(spark: SparkSession, settings: Settings, dates: list[str]) -> dict[str, DaySeen]:
    """{dt: what its committed run (the latest in scoring_runs) saw}, for the dates scored before."""
    path = settings.table(SCORING_RUNS.name)
    runs = committed_runs(spark, path, "scoring_run_id")
    if runs is None:
        return {}
    log = spark.read.format("delta").load(path).where(F.col("dt").isin(dates))
    if "input_version" not in log.columns:  # a log written before input versions were recorded
        log = log.withColumn("input_version", F.lit(None).cast("long"))
    rows = log.join(runs, "dt").where(F.col("scoring_run_id") == F.col("_committed_run")).collect()
    return {r["dt"]: DaySeen(r["model_version"], r["input_pairs"], r["input_version"]) for r in rows}


def input_now(spark: SparkSession, settings: Settings, dates: list[str]) -> tuple[dict[str, int], int | None]:
    """({dt: rows of query_ad_pairs now}, the table's Delta version they were counted at)."""
    path = settings.table(QUERY_AD_PAIRS.name)
    version = table_version(spark, path)
    pairs = read_table(spark, path, version)
    counts = pairs.where(F.col("dt").cast("string").isin(dates)).groupBy(F.col("dt").cast("string")).count().collect()
    return {r[0]: r[1] for r in counts}, version


def plan(dates: list[str], last: dict[str, DaySeen], version: str, force: bool, rows_now: dict[str, int],
         rewritten=lambda date: False) -> tuple[list[str], list[str], dict[str, str]]:
    """(dates to score, dates to skip, why each is scored). A day is skipped when its committed run is by
    `version` and its input is what that run read: the same row count and, when the table has moved on
    since, the same data files of the day (`rewritten(date)` says they differ)."""
    why = {}
    for d in dates:
        seen, now = last.get(d), rows_now.get(d, 0)
        if force:
            why[d] = "forced"
        elif seen is None:
            why[d] = "never scored"
        elif seen.model_version != version:
            why[d] = f"last scored by version {seen.model_version}"
        elif seen.input_pairs != now:
            why[d] = f"input changed: {seen.input_pairs} rows when last scored, {now} now"
        elif rewritten(d):
            why[d] = f"input changed: the day's files differ from version {seen.input_version} of query_ad_pairs"
    return [d for d in dates if d in why], [d for d in dates if d not in why], why


def rewritten_since(spark: SparkSession, settings: Settings, last: dict[str, DaySeen], version: int | None):
    """rewritten(date) for plan: the day's data files at the version its run read differ from those now."""
    path = settings.table(QUERY_AD_PAIRS.name)

    def rewritten(date: str) -> bool:
        seen = last[date].input_version
        if version is None or seen is None or seen == version:
            return False
        try:
            return partition_files(spark, path, date, seen) != partition_files(spark, path, date, version)
        except Exception:  # the version it read is gone (log cleanup): it cannot be shown unchanged
            return True

    return rewritten


def score_with_retries(spark, settings, config: ScoreJobConfig, retries: int, date, model, experiment_id,
                       parent) -> DateResult:
    """score_date, retried after a Delta commit conflict; a date another score holds is skipped, not retried
    (that run does the day, and a retry now would only lose the claim again)."""
    for attempt in range(retries + 1):
        try:
            return score_date(spark, settings, config, date, model, experiment_id, parent)
        except ClaimLost as lost:
            log.warning("%s: skipped, %s", date, lost)
            return DateResult(date, "skipped", model.version, error=str(lost))
        except Exception as err:
            if attempt == retries or not is_concurrent_write(err):
                raise
            log.warning("%s: concurrent Delta write, retrying (%d/%d)", date, attempt + 1, retries)
    raise AssertionError("unreachable")


def summary(results: list[DateResult]) -> str:
    lines = [f"{'dt':<10}  {'status':<7}  {'version':>7}  {'input':>8}  {'scored':>8}  {'carried':>8}  "
             f"{'rejected':>8}  {'ads':>6}  {'encodes':>7}  {'irrelevant':>10}  {'seconds':>7}  note"]
    for r in sorted(results, key=lambda r: r.dt):
        rate = "" if r.irrelevant_rate is None else f"{r.irrelevant_rate:.4f}"
        counts = (f"{r.input_pairs:>8}  {r.scored_pairs:>8}  {r.carried_pairs:>8}  {r.rejected_pairs:>8}  "
                  f"{r.distinct_ads:>6}  {r.vision_encodes:>7}  {rate:>10}  {r.seconds:>7.1f}"
                  if r.status == "scored" else " " * 90)
        note = f"{r.why}: {r.error[:200]}" if r.why and r.error else r.why or r.error[:200]
        lines.append(f"{r.dt:<10}  {r.status:<7}  {r.model_version:>7}  {counts}  {note}".rstrip())
    totals = {s: sum(r.status == s for r in results) for s in ("scored", "skipped", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in totals.items()) + f" of {len(results)} dates")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    dates = days_between(args.start, args.end)
    options = load(BackfillConfig, args.backfill_config, {"parallel": args.parallel})
    settings, config, spark, model, experiment_id = prepare(args, COMMAND)
    parallel = max(1, options.parallel)
    last = last_runs(spark, settings, dates)
    rows_now, version_now = input_now(spark, settings, dates)
    todo, skipped, why = plan(dates, last, model.version, args.force, rows_now,
                              rewritten_since(spark, settings, last, version_now))
    log.info("backfill %s..%s with %s v%s: %d to score, %d already done", args.start, args.end, model.name,
             model.version, len(todo), len(skipped))
    for date in todo:
        log.info("backfill %s: %s", date, why[date])

    from hcmrm.tracking.runs import adopt_run
    from hcmrm.tracking.store import configure

    client = configure(settings).MlflowClient()
    parent = client.create_run(experiment_id, run_name=f"backfill {args.start}..{args.end}",
                               tags={"hcmrm.job": COMMAND}).info.run_id
    adopt_run(client, parent)  # KILLED if the command is stopped; closes a backfill a kill -9 left RUNNING
    for key, value in {"start": args.start, "end": args.end, "parallel": parallel, "force": args.force,
                       "model_version": model.version, "model_run_id": model.run_id}.items():
        client.log_param(parent, key, value)

    results = [DateResult(d, "skipped", model_version=model.version) for d in skipped]
    started = time.perf_counter()
    try:
        with arrow_batch_rows(spark, config.ads_per_arrow_batch), ThreadPoolExecutor(parallel) as pool:
            futures = {pool.submit(score_with_retries, spark, settings, config, options.retries, d, model, experiment_id,
                                   parent): d for d in todo}
            for done, future in enumerate(as_completed(futures), 1):
                date = futures[future]
                try:
                    result = future.result()
                except Exception as err:  # one bad day does not stop the others
                    result = DateResult(date, "failed", model.version, error=classify(err).line())
                result.why = why[date]
                results.append(result)
                elapsed = time.perf_counter() - started
                eta = elapsed / done * (len(todo) - done)
                log.info("backfill [%d/%d] %s %s: %d scored, %d rejected (%.0fs elapsed, ~%.0fs left)",
                         done, len(todo), date, result.status, result.scored_pairs, result.rejected_pairs, elapsed, eta)
    finally:
        release_model(model)
        failed = sum(r.status == "failed" for r in results)
        for status in ("scored", "skipped", "failed"):
            client.log_metric(parent, f"dates_{status}", sum(r.status == status for r in results))
        client.set_terminated(parent, "FAILED" if failed or len(results) < len(dates) else "FINISHED")

    print(f"backfill {args.start}..{args.end} with {model.name} v{model.version} (MLflow run {parent}):")
    print(summary(results))
    return 1 if failed else 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
