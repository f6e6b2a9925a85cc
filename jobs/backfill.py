"""backfill: score every date of a range with one model version, skipping the days already done.

    hcmrm backfill --start 2024-09-01 --end 2024-09-30 [--parallel 2] [--force] [--model-version 3]
    spark-submit jobs/backfill.py [same flags]

The model is resolved once, so every date gets the same version even if `champion` moves meanwhile.
A date is done when its committed run (the last committed in `scoring_runs`, the record the score
job writes last) is by that version and read the input the day has now: the same row count, and no
commit of query_ad_pairs since touched the day's partition (jobs.input_changes: new or removed files,
deletion vectors, RESTORE, overwrite); those are skipped unless --force. A day with no input rows
that was never scored is `empty` (nothing recorded). The log and the summary say why each date is
scored or skipped. A day whose input cannot be read (a corrupt file) fails alone, with the table,
partition and file named; the others go on, and the exit code is the failures' class. A range over
`max_days` (92) is refused unless --long-range. There is no other state: each date is committed all
or nothing by the score job, so after a kill the rerun of the same command picks up where it stopped. Dates run --parallel at a time (concurrent Spark jobs of one
driver); a Delta write conflict between them is retried. A date that another score is running
(`hcmrm score`, another backfill) is skipped at once, never retried, and the summary says which run
has it. Ends with one summary line per date.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hcmrm.config import load
from hcmrm.settings import CONF_DIR, Settings
from hcmrm.errors import INTERNAL, ClaimLost, HcmrmError, UsageError, classify, is_concurrent_write
from hcmrm.tables import QUERY_AD_PAIRS, SCORING_RUNS
from jobs.arguments import add_model_arguments, add_require_input_argument, day, days_between
from jobs.common import script_main
from jobs.input_changes import changes_since
from jobs.model_shipping import prepare_scoring, release_model
from jobs.score import score_date  # the score job's one day: backfill runs it per date
from jobs.scoring_config import ScoreJobConfig
from jobs.scoring_plan import DateResult
from jobs.session import arrow_batches
from jobs.tables import committed_runs, read_table, table_version

COMMAND = "backfill"
HELP = "score every date from --start to --end with one model version; skips days already done; resumable"

CONF_FILE = CONF_DIR / "jobs" / "backfill.yaml"

log = logging.getLogger("hcmrm.backfill")


@dataclass(frozen=True)
class BackfillConfig:
    parallel: int = 1  # dates scored at once (concurrent Spark jobs of one driver)
    retries: int = 2  # re-tries of a date after a Delta concurrent-write conflict
    max_days: int = 92  # a longer --start..--end is refused as a likely typo, unless --long-range


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=day, required=True, help="first date, yyyy-mm-dd")
    parser.add_argument("--end", type=day, required=True, help="last date, yyyy-mm-dd (inclusive)")
    parser.add_argument("--parallel", type=int, help=f"dates scored at once (default: {CONF_FILE.name})")
    parser.add_argument("--force", action="store_true", help="re-score dates already scored by this version")
    parser.add_argument("--long-range", action="store_true",
                        help=f"allow a range longer than max_days in {CONF_FILE.name} (92 days)")
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
    """{dt: what its committed run (jobs.tables.committed_runs: the last committed) saw}, for the dates
    scored before."""
    path = settings.table(SCORING_RUNS.name)
    runs = committed_runs(spark, path, "scoring_run_id")
    if runs is None:
        return {}
    log = spark.read.format("delta").load(path).where(F.col("dt").isin(dates))
    if "input_version" not in log.columns:  # a log written before input versions were recorded
        log = log.withColumn("input_version", F.lit(None).cast("long"))
    rows = log.join(runs, "dt").where(F.col("scoring_run_id") == F.col("_committed_run")).collect()
    return {r["dt"]: DaySeen(r["model_version"], r["input_pairs"], r["input_version"]) for r in rows}


@dataclass
class InputNow:
    """query_ad_pairs as the backfill found it: rows per day, at one version, and the days it could not read."""

    rows: dict[str, int]  # dt -> rows now
    version: int | None  # the Delta version counted (None: Parquet)
    unreadable: dict[str, HcmrmError]  # dt -> why its rows cannot be read (a corrupt file), classified


def input_now(spark: SparkSession, settings: Settings, dates: list[str]) -> InputNow:
    """The day's rows of query_ad_pairs now. A day that cannot be read (a corrupt file in its partition) is
    counted apart and set aside with its reason, so it does not stop the other days."""
    path = settings.table(QUERY_AD_PAIRS.name)
    version = table_version(spark, path)
    pairs = read_table(spark, path, version)
    day = F.col("dt").cast("string")

    def count(days: list[str]) -> dict[str, int]:
        return {r[0]: r[1] for r in pairs.where(day.isin(days)).groupBy(day).count().collect()}

    try:
        return InputNow(count(dates), version, {})
    except Exception:  # one unreadable day: find it, keep the others
        rows, unreadable = {}, {}
        for date in dates:
            try:
                rows.update(count([date]))
            except Exception as err:
                unreadable[date] = classify(err)
        return InputNow(rows, version, unreadable)


def plan(dates: list[str], last: dict[str, DaySeen], version: str, force: bool, rows_now: dict[str, int],
         changed: dict[str, str], require_input: bool = False) -> dict[str, tuple[str, str]]:
    """{date: (what to do, why)}: "score" a day whose committed run is by another version, or read another
    input (another row count, or a commit of query_ad_pairs since changed the day: `changed`, from
    jobs.input_changes); "skip" the others, "empty" a day with no rows that was never scored (nothing to
    record; it is scored once rows arrive, unless `require_input` makes it a failure)."""
    decided = {}
    for d in dates:
        seen, now = last.get(d), rows_now.get(d, 0)
        if seen is None and now == 0 and not require_input:
            decided[d] = ("empty", "no input rows for the day; nothing recorded, scored once rows arrive")
        elif force:
            decided[d] = ("score", "forced")
        elif seen is None:
            decided[d] = ("score", "never scored")
        elif seen.model_version != version:
            decided[d] = ("score", f"last scored by version {seen.model_version}")
        elif seen.input_pairs != now:
            decided[d] = ("score", f"input changed: {seen.input_pairs} rows when last scored, {now} now")
        elif d in changed:
            decided[d] = ("score", f"input changed: {changed[d]}")
        else:
            read = "" if seen.input_version is None else f" at version {seen.input_version}"
            decided[d] = ("skip", f"done: scored by version {version} from the same input ({now} rows{read}, "
                                  f"unchanged since)")
    return decided


def input_changes(spark: SparkSession, settings: Settings, last: dict[str, DaySeen], version: int | None):
    """{date: why} for the scored days whose partition of query_ad_pairs a commit since their run touched."""
    if version is None:  # Parquet input: the row count is all there is to compare
        return {}
    read_at = {d: seen.input_version for d, seen in last.items() if seen.input_version is not None}
    return changes_since(spark, settings.table(QUERY_AD_PAIRS.name), read_at, version)


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


STATUSES = ("scored", "empty", "skipped", "failed")  # empty: no input rows (recorded when it had rows before)


def summary(results: list[DateResult]) -> str:
    lines = [f"{'dt':<10}  {'status':<7}  {'version':>7}  {'input':>8}  {'scored':>8}  {'carried':>8}  "
             f"{'rejected':>8}  {'ads':>6}  {'encodes':>7}  {'irrelevant':>10}  {'seconds':>7}  note"]
    for r in sorted(results, key=lambda r: r.dt):
        rate = "" if r.irrelevant_rate is None else f"{r.irrelevant_rate:.4f}"
        counts = (f"{r.input_pairs:>8}  {r.scored_pairs:>8}  {r.carried_pairs:>8}  {r.rejected_pairs:>8}  "
                  f"{r.distinct_ads:>6}  {r.vision_encodes:>7}  {rate:>10}  {r.seconds:>7.1f}"
                  if r.status == "scored" else " " * 90)
        said = (r.error or (f"warning: {r.warning}" if r.warning else ""))[:300]
        note = f"{r.why}: {said}" if r.why and said else r.why or said
        lines.append(f"{r.dt:<10}  {r.status:<7}  {r.model_version:>7}  {counts}  {note}".rstrip())
    totals = {s: sum(r.status == s for r in results) for s in STATUSES}
    lines.append(", ".join(f"{n} {s}" for s, n in totals.items()) + f" of {len(results)} dates")
    return "\n".join(lines)


def checked_range(args: argparse.Namespace, max_days: int) -> list[str]:
    """The dates --start..--end; a range over `max_days` is refused (a mistyped year) unless --long-range."""
    dates = days_between(args.start, args.end)
    if len(dates) > max_days and not args.long_range:
        raise UsageError(f"--start {args.start} --end {args.end} is {len(dates)} days, over the maximum of "
                         f"{max_days} (max_days in {CONF_FILE.name})",
                         hint="check the dates, or pass --long-range to backfill them all")
    return dates


def exit_code(failures: list[HcmrmError]) -> int:
    """The failures' exit code when they share one class (3: the input data), else 1."""
    codes = {f.exit_code for f in failures}
    return codes.pop() if len(codes) == 1 else INTERNAL


def run(args: argparse.Namespace) -> int:
    options = load(BackfillConfig, args.backfill_config, {"parallel": args.parallel})
    dates = checked_range(args, options.max_days)
    settings, config, spark, model, experiment_id = prepare_scoring(args, COMMAND)
    parallel = max(1, options.parallel)
    last = last_runs(spark, settings, dates)
    found = input_now(spark, settings, dates)
    decided = plan(dates, last, model.version, args.force, found.rows, input_changes(spark, settings, last,
                                                                                      found.version),
                   config.require_input)
    decided.update({d: ("failed", "its input cannot be read") for d in found.unreadable})
    todo = [d for d in dates if decided[d][0] == "score"]
    log.info("backfill %s..%s with %s v%s: %d to score, %d already done, %d without input, %d unreadable",
             args.start, args.end, model.name, model.version, len(todo), *(
                 sum(what == w for what, _ in decided.values()) for w in ("skip", "empty", "failed")))
    for date, (what, why) in decided.items():
        log.info("backfill %s: %s, %s", date, what, why)

    from hcmrm.tracking.runs import adopt_run
    from hcmrm.tracking.store import configure

    client = configure(settings).MlflowClient()
    parent = client.create_run(experiment_id, run_name=f"backfill {args.start}..{args.end}",
                               tags={"hcmrm.job": COMMAND}).info.run_id
    adopt_run(client, parent)  # KILLED if the command is stopped; closes a backfill a kill -9 left RUNNING
    for key, value in {"start": args.start, "end": args.end, "parallel": parallel, "force": args.force,
                       "model_version": model.version, "model_run_id": model.run_id}.items():
        client.log_param(parent, key, value)

    status = {"skip": "skipped", "empty": "empty", "failed": "failed"}
    unreadable = {d: error.line() for d, error in found.unreadable.items()}
    results = [DateResult(d, status[what], model_version=model.version, why=why, error=unreadable.get(d, ""))
               for d, (what, why) in decided.items() if what != "score"]
    failures = list(found.unreadable.values())
    started = time.perf_counter()
    try:
        with arrow_batches(spark, config.arrow_batch, config.pairs_per_row), ThreadPoolExecutor(parallel) as pool:
            futures = {pool.submit(score_with_retries, spark, settings, config, options.retries, d, model, experiment_id,
                                   parent): d for d in todo}
            for done, future in enumerate(as_completed(futures), 1):
                date = futures[future]
                try:
                    result = future.result()
                    if result.status == "scored" and result.input_pairs == 0:
                        result.status = "empty"  # recorded: the day had rows when it was last scored
                except Exception as err:  # one bad day does not stop the others
                    failures.append(classify(err))
                    result = DateResult(date, "failed", model.version, error=failures[-1].line())
                result.why = decided[date][1]
                results.append(result)
                elapsed = time.perf_counter() - started
                eta = elapsed / done * (len(todo) - done)
                log.info("backfill [%d/%d] %s %s: %d scored, %d rejected (%.0fs elapsed, ~%.0fs left)",
                         done, len(todo), date, result.status, result.scored_pairs, result.rejected_pairs, elapsed, eta)
    finally:
        release_model(model)
        for name in STATUSES:
            client.log_metric(parent, f"dates_{name}", sum(r.status == name for r in results))
        client.set_terminated(parent, "FAILED" if failures or len(results) < len(dates) else "FINISHED")

    print(f"backfill {args.start}..{args.end} with {model.name} v{model.version} (MLflow run {parent}):")
    print(summary(results))
    return exit_code(failures) if failures else 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
