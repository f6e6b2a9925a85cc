"""build-lake: load the shipped sample (hcmrm/sample) into the lake as Delta tables, then summarize them.

    hcmrm build-lake [--sample-dir hcmrm/sample] [--lake lake]
    spark-submit jobs/build_lake.py [same flags]

Tables written (DESIGN.md section 2): `videos` and `query_ad_pairs` partitioned by `dt`, each date
of the sample replaced atomically (other dates of the table are left alone); `ads` and
`labeled_pairs` replaced whole. A rerun gives the same tables, one more version each.
The sample's deliberately bad rows are kept: rejecting them is the later jobs' work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hcmrm.labels import LABEL_VALUES
from hcmrm.settings import SAMPLE_DIR, Settings
from hcmrm.tables import ADS, LABELED_PAIRS, QUERY_AD_PAIRS, VIDEOS
from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.tables import conform, is_delta_table, overwrite_table, replace_partitions

COMMAND = "build-lake"
HELP = "load the shipped sample (hcmrm/sample) into the lake as Delta tables and print a summary"


SAMPLE_TABLES = (VIDEOS, ADS, QUERY_AD_PAIRS, LABELED_PAIRS)  # their layouts: hcmrm/tables.py
LAKE_TABLES = tuple(t.name for t in SAMPLE_TABLES)

# Sample files, relative to the sample folder.
SAMPLE_FILES = {
    VIDEOS.name: "videos.parquet",
    ADS.name: "ads.parquet",
    QUERY_AD_PAIRS.name: "query_ad_pairs.parquet",
    "labeled_train": "labeled/kuake_qtr_train.jsonl",
    "labeled_dev": "labeled/kuake_qtr_dev.jsonl",
}
LABELED_JSON_SCHEMA = "query string, title string, label int"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sample-dir", type=Path, default=SAMPLE_DIR, help=f"folder of the sample files (default {SAMPLE_DIR})"
    )


# --- read ---------------------------------------------------------------------------------------


def read_sample(spark: SparkSession, sample_dir: Path) -> dict[str, DataFrame]:
    """The sample files as DataFrames, keyed as SAMPLE_FILES; a clear error when one is missing."""
    sample_dir = Path(sample_dir).resolve()
    missing = [rel for rel in SAMPLE_FILES.values() if not (sample_dir / rel).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{sample_dir} lacks {missing}; regenerate it with `python scripts/make_sample.py`"
        )
    frames = {}
    for key, rel in SAMPLE_FILES.items():
        path = str(sample_dir / rel)
        if rel.endswith(".parquet"):
            frames[key] = spark.read.parquet(path)
        else:  # FAILFAST: a malformed line is an error, not a row of nulls
            frames[key] = spark.read.schema(LABELED_JSON_SCHEMA).option("mode", "FAILFAST").json(path)
    return frames


# --- transforms (DataFrame -> DataFrame) --------------------------------------------------------


def labeled_pairs(train: DataFrame, dev: DataFrame) -> DataFrame:
    """Train and dev graded pairs in one table, told apart by `split`."""
    return conform(
        train.withColumn("split", F.lit("train")).unionByName(dev.withColumn("split", F.lit("dev"))),
        LABELED_PAIRS,
        "labeled pairs",
    )


def lake_frames(sample: dict[str, DataFrame]) -> dict[str, DataFrame]:
    """The four lake tables from the sample files."""
    frames = {t.name: conform(sample[t.name], t) for t in (VIDEOS, ADS, QUERY_AD_PAIRS)}
    frames[LABELED_PAIRS.name] = labeled_pairs(sample["labeled_train"], sample["labeled_dev"])
    return frames


# --- write --------------------------------------------------------------------------------------


def partition_values(df: DataFrame, column: str, name: str) -> list[str]:
    values = [r[0] for r in df.select(column).distinct().collect()]
    if None in values:
        raise ValueError(f"{name} has rows with a null {column}: every row needs its partition")
    return sorted(values)


def build_lake(spark: SparkSession, settings: Settings, sample_dir: Path = SAMPLE_DIR) -> dict[str, str]:
    """Write the sample into the lake; returns {table name: path}."""
    written = {}
    frames = lake_frames(read_sample(spark, sample_dir))
    for table in SAMPLE_TABLES:
        df, path, column = frames[table.name], settings.table(table.name), table.partition
        if column:
            replace_partitions(df, path, partition_values(df, column, table.name), column=column)
        else:
            overwrite_table(df, path)
        written[table.name] = path
    return written


# --- summary ------------------------------------------------------------------------------------


def _n(x) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)


def is_blank(column) -> "F.Column":
    """True where a string column is null, empty or only whitespace (trim() keeps tabs and newlines)."""
    return F.coalesce(F.regexp_replace(column, r"\s+", ""), F.lit("")) == ""


def videos_facts(df: DataFrame) -> list[str]:
    blank = is_blank(F.concat_ws("", "title", "ocr_text", "asr_text"))
    rows = (
        df.groupBy("dt")
        .agg(
            F.count("*").alias("rows"),
            F.sum((F.size("frames") > 0).cast("int")).alias("with_frames"),
            F.sum(F.size("frames")).alias("frames"),
            F.sum(blank.cast("int")).alias("blank"),
        )
        .orderBy("dt")
        .collect()
    )
    return [
        f"dt={r.dt}: {_n(r.rows)} videos, {_n(r.with_frames)} with frames ({_n(r.frames)} frames), "
        f"{_n(r.rows - r.with_frames)} text only, {_n(r.blank)} without any text"
        for r in rows
    ]


def ads_facts(df: DataFrame) -> list[str]:
    r = df.agg(
        F.countDistinct("advertiser").alias("advertisers"),
        F.countDistinct("video_id").alias("videos"),
    ).first()
    top = df.groupBy("industry").count().orderBy(F.desc("count"), "industry").limit(6).collect()
    industries = ", ".join(f"{t.industry} {_n(t['count'])}" for t in top)
    return [f"{_n(r.advertisers)} advertisers, {_n(r.videos)} distinct videos", f"top industries: {industries}"]


def pairs_facts(df: DataFrame) -> list[str]:
    blank = is_blank(F.col("query"))
    rows = (
        df.groupBy("dt")
        .agg(
            F.count("*").alias("rows"),
            F.countDistinct("query").alias("queries"),
            F.countDistinct("ad_id").alias("ads"),
            F.sum("impressions").alias("impressions"),
            F.sum(blank.cast("int")).alias("blank"),
        )
        .orderBy("dt")
        .collect()
    )
    return [
        f"dt={r.dt}: {_n(r.rows)} pairs, {_n(r.queries)} queries, {_n(r.ads)} ads, "
        f"{_n(r.impressions)} impressions, {_n(r.blank)} with a blank query"
        for r in rows
    ]


def labeled_facts(df: DataFrame) -> list[str]:
    rows = df.groupBy("split").pivot("label", list(LABEL_VALUES)).count().fillna(0).orderBy(F.desc("split")).collect()
    counts = df.groupBy("split").agg(F.countDistinct("query").alias("queries")).collect()
    queries = {r.split: r.queries for r in counts}
    return [
        f"{r.split}: {_n(sum(r[str(k)] for k in LABEL_VALUES))} pairs, {_n(queries[r.split])} queries, "
        f"labels {'/'.join(map(str, LABEL_VALUES))} = {' / '.join(_n(r[str(k)]) for k in LABEL_VALUES)}"
        for r in rows
    ]


# Per-table facts for the summary; a later job can pass its own to summarize_table.
FACTS: dict[str, Callable[[DataFrame], list[str]]] = {
    VIDEOS.name: videos_facts,
    ADS.name: ads_facts,
    QUERY_AD_PAIRS.name: pairs_facts,
    LABELED_PAIRS.name: labeled_facts,
}


def summarize_table(
    spark: SparkSession, name: str, path: str, facts: Callable[[DataFrame], list[str]] | None = None
) -> list[str]:
    """Readable lines about one Delta table: version, files, rows, partitions, columns, then `facts`."""
    from delta.tables import DeltaTable

    if not is_delta_table(spark, path):
        return [f"{name}: no Delta table at {path}"]
    table = DeltaTable.forPath(spark, path)
    detail = table.detail().first()
    version = table.history(1).select("version", "operation").first()
    df = table.toDF()
    lines = [
        f"{name}  (Delta version {version.version}, last {version.operation}; {_n(detail.numFiles)} files, "
        f"{detail.sizeInBytes / 1e6:.2f} MB)  {path}"
    ]
    parts = list(detail.partitionColumns)
    if parts:
        counts = df.groupBy(*parts).count().orderBy(*parts).collect()
        by_part = ", ".join(f"{'/'.join(str(r[p]) for p in parts)} ({_n(r['count'])})" for r in counts)
        total = sum(r["count"] for r in counts)
        lines.append(f"  rows {_n(total)}; {len(counts)} partitions by {', '.join(parts)}: {by_part}")
    else:
        lines.append(f"  rows {_n(df.count())}")
    lines.append("  columns: " + ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in df.schema.fields))
    lines += [f"  {line}" for line in (facts(df) if facts else [])]
    return lines


def summarize_lake(spark: SparkSession, settings: Settings, tables: Iterable[str] = LAKE_TABLES) -> list[str]:
    """The summary of each table in `tables` (default: the ones build-lake writes), as printable lines."""
    lines = [f"lake: {settings.lake}"]
    for name in tables:
        lines += summarize_table(spark, name, settings.table(name), FACTS.get(name))
    return lines


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    spark = spark_from_args(args, settings, COMMAND)
    written = build_lake(spark, settings, args.sample_dir)
    print("\n".join(summarize_lake(spark, settings, written)))
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
