"""Delta table I/O shared by the jobs: atomic per-date replacement, reads, existence checks."""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import DataFrame, SparkSession


def is_delta_table(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def read_table(spark: SparkSession, path: str) -> DataFrame:
    """A Delta table by path, or Parquet when the folder is not a Delta table (input tables)."""
    fmt = "delta" if is_delta_table(spark, path) else "parquet"
    return spark.read.format(fmt).load(path)


def _in_list(column: str, values: Iterable[str]) -> str:
    quoted = ", ".join("'" + str(v).replace("'", "''") + "'" for v in sorted(set(values)))
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


def overwrite_table(df: DataFrame, path: str, partition_by: str | None = None) -> None:
    """Replace a whole (small, unpartitioned or fully rebuilt) Delta table in one commit."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.save(path)
