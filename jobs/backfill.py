"""backfill: score every date of a range with one model version, skipping the days already done.

    hcmrm backfill --start 2024-09-01 --end 2024-09-30 [--parallel 2] [--force] [--model-version 3]
    spark-submit jobs/backfill.py [same flags]

The model is resolved once, so every date gets the same version even if `champion` moves meanwhile.
A date is done when `relevance_scores` holds it scored by that version (a day with no scoreable
pair is done when `scoring_runs` says so); those are skipped unless --force. There is no other
state: each date is written atomically by the score job, so after a kill the rerun of the same
command picks up where it stopped. Dates run --parallel at a time (concurrent Spark jobs of one
driver); a Delta write conflict between them is retried. Ends with one summary line per date.
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
from hcmrm.tables import RELEVANCE_SCORES, SCORING_RUNS
from jobs.common import script_main
from jobs.score import (
    DateResult, ScoreJobConfig, add_model_arguments, day, days_between, log, prepare, release_model, score_date,
)
from jobs.session import arrow_batch_rows
from jobs.tables import is_delta_table

COMMAND = "backfill"
HELP = "score every date from --start to --end with one model version; skips days already done; resumable"

# Delta's optimistic-concurrency errors: another date's write won the commit; retrying is safe.
CONFLICTS = ("ConcurrentAppend", "ConcurrentWrite", "ConcurrentDelete", "ConcurrentTransaction",
             "ProtocolChanged", "MetadataChanged", "DELTA_CONCURRENT")
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
    parser.add_argument("--backfill-config", type=Path, default=CONF_FILE, help=f"backfill defaults (default {CONF_FILE})")


def done_versions(spark: SparkSession, settings: Settings, dates: list[str]) -> dict[str, set[str]]:
    """{dt: model versions that have scored it}, read from the tables themselves."""
    done: dict[str, set[str]] = {}
    scores, runs = settings.table(RELEVANCE_SCORES.name), settings.table(SCORING_RUNS.name)
    if is_delta_table(spark, scores):
        rows = (spark.read.format("delta").load(scores).where(F.col("dt").isin(dates))
                .select("dt", "model_version").distinct().collect())
        for r in rows:
            done.setdefault(r["dt"], set()).add(r["model_version"])
    if is_delta_table(spark, runs):  # days with nothing to score leave no rows in relevance_scores
        rows = (spark.read.format("delta").load(runs).where(F.col("dt").isin(dates) & (F.col("scored_pairs") == 0))
                .select("dt", "model_version").distinct().collect())
        for r in rows:
            if r["dt"] not in done:
                done[r["dt"]] = {r["model_version"]}
    return done


def plan(dates: list[str], done: dict[str, set[str]], version: str, force: bool) -> tuple[list[str], list[str]]:
    """(dates to score, dates to skip): skip what `version` already scored, unless forced."""
    todo = [d for d in dates if force or version not in done.get(d, set())]
    return todo, [d for d in dates if d not in todo]


def is_conflict(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}"
    return any(name in text for name in CONFLICTS)


def score_with_retries(spark, settings, config: ScoreJobConfig, retries: int, date, model, experiment_id,
                       parent) -> DateResult:
    for attempt in range(retries + 1):
        try:
            return score_date(spark, settings, config, date, model, experiment_id, parent)
        except Exception as err:
            if attempt == retries or not is_conflict(err):
                raise
            log.warning("%s: concurrent Delta write, retrying (%d/%d)", date, attempt + 1, retries)
    raise AssertionError("unreachable")


def summary(results: list[DateResult]) -> str:
    lines = [f"{'dt':<10}  {'status':<7}  {'version':>7}  {'input':>8}  {'scored':>8}  {'rejected':>8}  "
             f"{'ads':>6}  {'encodes':>7}  {'irrelevant':>10}  {'seconds':>7}  note"]
    for r in sorted(results, key=lambda r: r.dt):
        rate = "" if r.irrelevant_rate is None else f"{r.irrelevant_rate:.4f}"
        counts = (f"{r.input_pairs:>8}  {r.scored_pairs:>8}  {r.rejected_pairs:>8}  {r.distinct_ads:>6}  "
                  f"{r.vision_encodes:>7}  {rate:>10}  {r.seconds:>7.1f}" if r.status == "scored" else " " * 80)
        lines.append(f"{r.dt:<10}  {r.status:<7}  {r.model_version:>7}  {counts}  {r.error[:200]}".rstrip())
    totals = {s: sum(r.status == s for r in results) for s in ("scored", "skipped", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in totals.items()) + f" of {len(results)} dates")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    dates = days_between(args.start, args.end)
    options = load(BackfillConfig, args.backfill_config, {"parallel": args.parallel})
    settings, config, spark, model, experiment_id = prepare(args, COMMAND)
    parallel = max(1, options.parallel)
    todo, skipped = plan(dates, done_versions(spark, settings, dates), model.version, args.force)
    log.info("backfill %s..%s with %s v%s: %d to score, %d already done", args.start, args.end, model.name,
             model.version, len(todo), len(skipped))

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
                    result = DateResult(date, "failed", model.version, error=f"{type(err).__name__}: {err}".split("\n")[0])
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
