"""How a job commits a day across the tables it writes (score, pseudo-queries): one home for the protocol.

    append_run(rows, path)              # each table: the run's rows, beside the committed run's
    commit_run(spark, log_path, ...)    # the run's row(s) in the run log: the commit, then the cleanup

A day's committed run is the run whose log row was committed last, in Delta's commit order
(jobs.tables.committed_runs), never by a clock: a host whose clock runs ahead cannot hide a later run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hcmrm.errors import ConcurrentWriteError, is_concurrent_write
from hcmrm.tables import Table
from jobs.tables import ROW_TRACKING, committed_runs, has_row_tracking, is_delta_table, run_log_path, sql_string

log = logging.getLogger("hcmrm.commit")


def append_run(df: DataFrame, path: str, column: str = "dt") -> None:
    """Add one run's rows (stamped with its run id) to the table at `path` in one commit; earlier runs'
    rows stay until the commit's cleanup, so readers keep the committed run's rows meanwhile."""
    df.write.format("delta").mode("append").option("mergeSchema", "true").partitionBy(column).save(path)


def record_commit_order(spark: SparkSession, log_path: str) -> None:
    """Turn on row tracking in the run log, so each row carries the version that committed it. A log
    written before has its rows tie on the version that turns it on (they keep their finished_at order)."""
    if is_delta_table(spark, log_path) and not has_row_tracking(spark, log_path):
        spark.sql(f"ALTER TABLE delta.`{log_path}` SET TBLPROPERTIES ('{ROW_TRACKING}' = 'true')")


def commit_run(spark: SparkSession, log_rows: DataFrame, log_path: str, run_column: str, run_id: str,
               tables: Iterable[tuple[Table, str]]) -> None:
    """Commit run `run_id`: append its `log_rows` (one per dt) to the run log at `log_path`, check from the
    log itself that the run is now the committed one of each of its dts, then delete those dts' rows of
    every other run from `tables` ((contract, path) pairs). ConcurrentWriteError when another run committed
    one of the dts after this one: that run's rows are the day, this run leaves them alone."""
    dates = sorted({r["dt"] for r in log_rows.select("dt").collect()})
    record_commit_order(spark, log_path)
    (log_rows.write.format("delta").mode("append").option(f"{ROW_TRACKING}", "true")
     .option("mergeSchema", "true").save(log_path))
    committed = dict(committed_runs(spark, log_path, run_column).where(F.col("dt").isin(dates)).collect())
    lost = {d: committed.get(d) for d in dates if committed.get(d) != run_id}
    if lost:
        first = min(lost)
        raise ConcurrentWriteError(
            f"run {run_id} is not the committed run of dt {first} after its commit: run {lost[first]} committed "
            f"the day after it ({len(lost)} dt(s) in all); the day holds that run's rows",
            hint="nothing to undo; rerun only if that run is not the one you want")
    for contract, path in tables:
        drop_superseded(spark, path, contract, dates)


def drop_superseded(spark: SparkSession, path: str, contract: Table, dates: Iterable[str]) -> None:
    """Delete the rows of `dates` that are not of the dt's committed run: superseded runs, runs killed before
    their commit, rows that name no run. One commit, reading only the rows of `dates`. A commit conflict
    leaves them to the next run (readers already ignore them: the day is committed)."""
    from delta.tables import DeltaTable

    runs = committed_runs(spark, run_log_path(path, contract), contract.run_column)
    if runs is None or not is_delta_table(spark, path):
        return
    committed = runs.where(F.col("dt").isin(list(dates))).collect()
    if not committed:
        return
    column = contract.run_column
    condition = " OR ".join(
        f"(dt = {sql_string(r['dt'])} AND ({column} IS NULL OR {column} <> {sql_string(r[1])}))" for r in committed)
    try:
        DeltaTable.forPath(spark, path).delete(condition)
    except Exception as err:
        if not is_concurrent_write(err):
            raise
        log.warning("%s: rows of superseded runs of %s not removed (%s); the next run removes them",
                    contract.name, ", ".join(sorted(r["dt"] for r in committed)), str(err).splitlines()[0])


def committed_among(spark: SparkSession, log_path: str, run_column: str, run_ids: list[str]) -> set[str]:
    """The runs of `run_ids` that have a row in the run log: they committed (whatever their MLflow run says)."""
    if not run_ids or not is_delta_table(spark, log_path):
        return set()
    rows = spark.read.format("delta").load(log_path).where(F.col(run_column).isin(run_ids))
    return {r[0] for r in rows.select(run_column).distinct().collect()}
