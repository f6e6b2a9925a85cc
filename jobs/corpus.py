"""A training corpus as its files, never its rows: what a training job hands the processes that stream it.

A Delta table is pinned to its latest version and read through the Parquet files of that version (the
chosen dates' partitions only); Spark answers from the table's log, so no row reaches the driver. Rows that
a deletion vector hides are still in those files: such a table is refused until it is purged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hcmrm.errors import InputDataError
from hcmrm.train.shards import Shard, list_shards


@dataclass(frozen=True)
class Corpus:
    path: str  # the table or files given
    version: int | None  # the Delta version read (None: plain files)
    shards: list[Shard]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)


def is_delta(path: str) -> bool:
    return "://" in path or (Path(path) / "_delta_log").is_dir()


def plain_corpus(path: str, dates: list[str] | None) -> Corpus:
    """Parquet / JSON-lines files or folders, read as they are."""
    if dates:
        raise InputDataError(f"--date selects partitions of a Delta table; {path} is plain files: filter them yourself")
    return Corpus(path, None, list_shards([path]))


def delta_corpus(spark, path: str, dates: list[str] | None) -> Corpus:
    """The files of the Delta table at `path` (latest version, the `dates` partitions), checked for deletion vectors."""
    from pyspark.sql import functions as F

    from jobs.tables import table_version

    version = table_version(spark, path)
    if version is None:
        raise InputDataError(f"{path} is not a Delta table (no _delta_log): pass Parquet or JSON-lines files as --input")
    df = spark.read.format("delta").option("versionAsOf", version).load(path)
    if dates:
        df = df.where(F.col("dt").isin(dates))
    corpus = Corpus(path, version, list_shards(sorted(df.inputFiles())) if df.inputFiles() else [])
    visible = df.count()  # Delta's count, deletion vectors applied; the files' footers count every row
    if visible != corpus.rows:
        raise InputDataError(
            f"{path} at version {version}: {corpus.rows - visible} deleted rows are still in its files (deletion "
            f"vectors); run REORG TABLE delta.`{path}` APPLY (PURGE), then train again"
        )
    return corpus
