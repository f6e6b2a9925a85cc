"""Delta table I/O shared by the jobs: the contracts as Spark schemas, atomic per-date replacement, reads."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from hcmrm.tables import CODE_SEPARATOR, Table


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


def reason_code(column: str = "reason") -> Column:
    """A written reject reason's code (the text before ':'), for counting rejects."""
    return F.substring_index(F.col(column), CODE_SEPARATOR, 1)


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
