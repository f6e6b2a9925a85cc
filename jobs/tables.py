"""Delta table I/O shared by the jobs: the contracts as Spark schemas, atomic per-date replacement, reads
(a table with a run log shows each day's committed run; the writer's side is jobs.commit)."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from hcmrm.tables import CODE_SEPARATOR, TABLES, Table


log = logging.getLogger("hcmrm.tables")

# Input types a contract column accepts besides its own, widened on read without loss.
WIDENS_TO = {"bigint": ("tinyint", "smallint", "int"), "int": ("tinyint", "smallint"), "double": ("float",),
             "string": ("date",)}  # a date column (dt) reads as its yyyy-mm-dd text


def spark_schema(contract: Table | pa.Schema) -> StructType:
    """The Spark schema of a table contract (hcmrm.tables) or of an Arrow schema."""
    return from_arrow_schema(contract.schema if isinstance(contract, Table) else contract)


def conform(df: DataFrame, contract: Table | StructType, name: str | None = None) -> DataFrame:
    """`df` with exactly the contract's columns, in its order and types; extra columns are dropped."""
    schema = spark_schema(contract) if isinstance(contract, Table) else contract
    name = name or (contract.name if isinstance(contract, Table) else "input")
    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {df.columns}")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def check_contract(df: DataFrame, contract: Table, where: str) -> DataFrame:
    """`df` (the table `contract` read from `where`) checked against its contract before any work: every
    required column present and every contract column of the contract's type (a narrower integer or float
    is widened to it); other columns pass through. InputDataError names the table, column and both types."""
    from hcmrm.errors import InputDataError

    missing = [c for c in contract.required if c not in df.columns]
    if missing:
        raise InputDataError(f"table {contract.name} at {where} lacks columns {missing}; it has {df.columns}")
    casts = {}
    for field in spark_schema(contract).fields:
        if field.name not in df.columns:
            continue
        found, expected = df.schema[field.name].dataType, field.dataType
        if found.simpleString() == expected.simpleString():
            continue
        if found.simpleString() not in WIDENS_TO.get(expected.simpleString(), ()):
            raise InputDataError(f"table {contract.name} at {where}: column {field.name} is {found.simpleString()}, "
                                 f"expected {expected.simpleString()}")
        casts[field.name] = F.col(field.name).cast(expected)
    return df.withColumns(casts) if casts else df


def contract_columns(df: DataFrame, contract: Table, dimensions=()) -> DataFrame:
    """`df` with only its contract's columns and the `dimensions` it has: an extra column passes unread, so
    one named like a column a job makes (`score`, `label`, `reason`) cannot clash with it."""
    keep = [c for c in df.columns if c in contract.columns or c in dimensions]
    extra = [c for c in df.columns if c not in keep]
    if extra:
        log.info("%s: columns %s are not in its contract and are not read", contract.name, extra)
    return df.select(*keep)


def check_output(spark: SparkSession, df: DataFrame, path: str, name: str) -> None:
    """The rows `df` can be added to the table at `path` (when there is one): a column both have is of the
    same type in both. Checked before the work that makes the rows, so an incompatible table fails in
    seconds, not at the write."""
    from hcmrm.errors import InputDataError

    if not is_delta_table(spark, path):
        return
    existing = {f.name: f.dataType.simpleString() for f in spark.read.format("delta").load(path).schema.fields}
    for field in df.schema.fields:
        have = existing.get(field.name)
        if have is not None and have != field.dataType.simpleString():
            raise InputDataError(f"output table {name} at {path}: column {field.name} is {have}, this job writes "
                                 f"{field.dataType.simpleString()}", hint="fix or move the table, then rerun")


def reason_code(column: str = "reason") -> Column:
    """A written reject reason's code (the text before ':'), for counting rejects."""
    return F.substring_index(F.col(column), CODE_SEPARATOR, 1)


def is_delta_table(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def table_version(spark: SparkSession, path: str) -> int | None:
    """The latest version of the Delta table at `path`; None when it is not a Delta table."""
    from delta.tables import DeltaTable

    if not is_delta_table(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).first()["version"]


def read_table(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """A Delta table by path (at `version` when given), or Parquet when the folder is not a Delta table.

    A lake table written run by run (a contract with a run log, found by the folder's name) shows only
    the rows of each day's committed run: every job reads it as `read_committed` does."""
    if not is_delta_table(spark, path):
        return spark.read.format("parquet").load(path)
    if version is not None:
        return spark.read.format("delta").option("versionAsOf", version).load(path)
    contract = TABLES.get(posixpath.basename(path.rstrip("/")))
    if contract is not None and contract.run_log:
        return read_committed(spark, path, contract)
    return spark.read.format("delta").load(path)


def run_log_path(path: str, contract: Table) -> str:
    """The run log of the table at `path`: the folder of that name beside it, in the same lake."""
    return posixpath.join(posixpath.dirname(path.rstrip("/")), contract.run_log)


COMMIT_VERSION = "_metadata.row_commit_version"  # the Delta version that added a row (row tracking)
ROW_TRACKING = "delta.enableRowTracking"


def has_row_tracking(spark: SparkSession, path: str) -> bool:
    """True when the Delta table at `path` records each row's commit version (jobs.commit turns it on)."""
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).detail().first()["properties"].get(ROW_TRACKING) == "true"


def committed_runs(spark: SparkSession, log_path: str, run_column: str) -> DataFrame | None:
    """(dt, committed run): for each dt, the run whose log row was committed last, by commit order (the Delta
    version that added the row), never by a clock; None when there is no log yet. Rows committed before the
    log recorded versions tie on the version that turned it on and are told apart by finished_at, then id."""
    if not is_delta_table(spark, log_path):
        return None
    log = spark.read.format("delta").load(log_path)
    order = [F.col(COMMIT_VERSION)] if has_row_tracking(spark, log_path) else []
    latest = F.max_by(F.col(run_column), F.struct(*order, F.col("finished_at"), F.col(run_column)))
    return log.groupBy("dt").agg(latest.alias("_committed_run"))


def read_committed(spark: SparkSession, path: str, contract: Table) -> DataFrame:
    """The Delta table at `path` as readers must see it: for each dt, only the rows of its committed run.

    A run appends its rows to every table, then its row to the run log (the commit), then removes the
    rows of earlier runs; a run killed before its log row leaves rows no reader sees. A dt the log has
    no run for shows the rows that name no run (written before runs were recorded).
    """
    df = spark.read.format("delta").load(path)
    runs = committed_runs(spark, run_log_path(path, contract), contract.run_column)
    if runs is None or contract.run_column not in df.columns:
        return df
    run = F.col(contract.run_column)
    return (df.join(F.broadcast(runs), "dt", "left").where(run.eqNullSafe(F.col("_committed_run")))
            .select(*df.columns))


def _in_list(column: str, values: Iterable[str]) -> str:
    quoted = ", ".join(sql_string(v) for v in sorted(set(values)))
    return f"{column} IN ({quoted})"


def replace_partitions(df: DataFrame, path: str, dates: Iterable[str], column: str = "dt") -> None:
    """Write `df` as exactly the `dates` partitions of the Delta table at `path`, in one commit.

    A rerun of a date replaces it (`replaceWhere`), never duplicates it; a row of `df` outside
    `dates` fails the write instead of landing. New columns are added by schema evolution.
    """
    dates = list(dates)
    if not dates:
        raise ValueError(f"no {column} given for {path}")
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", _in_list(column, dates))
        .option("mergeSchema", "true")
        .partitionBy(column)
        .save(path)
    )


def sql_string(value: str) -> str:
    """`value` as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def overwrite_table(df: DataFrame, path: str, partition_by: str | None = None) -> None:
    """Replace a whole (small, unpartitioned or fully rebuilt) Delta table in one commit."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.save(path)
