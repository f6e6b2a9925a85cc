"""audit-sample: a seeded random sample of a day's scored pairs for human raters -> CSV + Parquet.

    hcmrm audit-sample --date D (--n N | --fraction F) [--by industry] [--seed 0] [--out audits]
    spark-submit jobs/audit_sample.py [same flags]

Draws N of the day's pairs in `relevance_scores` (its committed run), each with what a rater needs to
judge it: the query, the ad's video title and text, its video_id and frame ids (`<video_id>#<i>`), the
ad's advertiser and industry, and empty `label` and `rater` columns to fill (a grade 0..3 or its name:
bad, less, good, excellent). `hcmrm audit-import FILE` then adds the labels to `audit_labels`.

The draw is a simple random sample: pairs ordered by a seeded hash of their key, the first N kept, so
the same seed gives the same sample however Spark partitions the day. With --by, it is stratified with
proportional allocation (each value gets its share of N, largest remainder first), which keeps every
pair about equally likely, as the prediction-powered estimate of `irrelevant-rate` assumes.
Files: <out>/audit_sample_<D>.csv and .parquet, each written beside and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from hcmrm.errors import InputDataError, UsageError
from hcmrm.tables import ADS, AUDIT_SAMPLE, DIMENSIONS, RELEVANCE_SCORES, VIDEOS
from jobs.arguments import day
from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.tables import conform, is_delta_table, read_table

COMMAND = "audit-sample"
HELP = "draw a seeded random sample of a day's scored pairs for raters: CSV + Parquet with the ad's title and text"

KEY = list(RELEVANCE_SCORES.key)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=day, required=True, help="the scored day to sample")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--n", type=int, help="pairs to draw (all of them when the day has fewer)")
    size.add_argument("--fraction", type=float, help="the share of the day's pairs to draw, e.g. 0.1")
    parser.add_argument("--by", choices=DIMENSIONS, help="stratify by this dimension (proportional allocation)")
    parser.add_argument("--seed", type=int, default=0, help="the draw's seed (default 0)")
    parser.add_argument("--out", type=Path, default=Path("audits"), help="output folder (default audits)")


def quotas(sizes: dict, n: int) -> dict:
    """Pairs to draw per stratum: n split in proportion to the sizes, largest remainder first."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    exact = {k: n * size / total for k, size in sizes.items()}
    out = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], str(k)))[: n - sum(out.values())]:
        out[k] += 1
    return out


def draw(scores: DataFrame, n: int, seed: int, by: str | None = None) -> DataFrame:
    """n pairs of `scores`: the first by a seeded hash of the key within each stratum of `by`."""
    stratum = F.coalesce(F.col(by), F.lit("")) if by else F.lit("")
    scores = scores.withColumn("_stratum", stratum).withColumn("_order", F.xxhash64(*KEY, F.lit(seed)))
    sizes = {r["_stratum"]: r["count"] for r in scores.groupBy("_stratum").count().collect()}
    quota = F.create_map(*[F.lit(v) for kv in quotas(sizes, n).items() for v in kv])
    rank = F.row_number().over(Window.partitionBy("_stratum").orderBy("_order", *KEY))
    return scores.withColumn("_rank", rank).where(F.col("_rank") <= quota[F.col("_stratum")]) \
        .drop("_stratum", "_order", "_rank")


def for_raters(sample: DataFrame, ads: DataFrame, videos: DataFrame) -> DataFrame:
    """The sampled pairs with their ad's video title, text and frame ids, in the audit_sample layout."""
    latest = Window.partitionBy("video_id").orderBy(F.col("dt").desc())
    video = (videos.withColumn("_n", F.row_number().over(latest)).where("_n = 1")
             .select("video_id", "title", F.concat_ws("。", "ocr_text", "asr_text").alias("text"),
                     F.size("frames").alias("_frames")))
    ids = F.transform(F.sequence(F.lit(0), F.col("_frames") - 1), lambda i: F.concat(F.col("video_id"), F.lit("#"), i))
    rows = (sample.join(ads.select("ad_id", "video_id"), "ad_id", "left").join(video, "video_id", "left")
            .withColumn("frame_ids", F.when(F.col("_frames") > 0, F.array_join(ids, ",")).otherwise(""))
            .withColumn("label", F.lit(None).cast("string")).withColumn("rater", F.lit(None).cast("string")))
    for d in DIMENSIONS:
        if d not in rows.columns:
            rows = rows.withColumn(d, F.lit(None).cast("string"))
    return conform(rows, AUDIT_SAMPLE).orderBy(*KEY)


def write_files(rows: DataFrame, out: Path, date: str) -> tuple[Path, Path]:
    """The sample as CSV and Parquet, each written to a temp name then renamed: never half a file."""
    out.mkdir(parents=True, exist_ok=True)
    frame = rows.toPandas()
    paths = out / f"audit_sample_{date}.csv", out / f"audit_sample_{date}.parquet"
    for path, write in zip(paths, (lambda p: frame.to_csv(p, index=False), lambda p: frame.to_parquet(p, index=False))):
        partial = path.with_name(f".{path.name}.partial")
        write(partial)
        os.replace(partial, path)
    return paths


def read_inputs(spark: SparkSession, settings, date: str) -> tuple[DataFrame, DataFrame, DataFrame]:
    tables = {}
    for contract in (RELEVANCE_SCORES, ADS, VIDEOS):
        path = settings.table(contract.name)
        if not is_delta_table(spark, path):
            raise InputDataError(f"no {contract.name} table at {path}")
        tables[contract.name] = read_table(spark, path)
    scores = tables[RELEVANCE_SCORES.name].where(F.col("dt") == date)
    return scores, tables[ADS.name], tables[VIDEOS.name]


def sample_size(args: argparse.Namespace, pairs: int) -> int:
    """--n, or --fraction of the day's pairs rounded (at least 1)."""
    if args.n is not None and args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if args.fraction is not None and not 0 < args.fraction <= 1:
        raise UsageError(f"--fraction must be in (0, 1], got {args.fraction}")
    return args.n if args.n is not None else max(1, round(args.fraction * pairs))


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    spark = spark_from_args(args, settings, COMMAND)
    scores, ads, videos = read_inputs(spark, settings, args.date)
    if args.by and args.by not in scores.columns:
        raise InputDataError(f"{RELEVANCE_SCORES.name} has no column {args.by} to stratify by")
    n = sample_size(args, scores.count())
    sample = draw(scores.select(*KEY, *[d for d in DIMENSIONS if d in scores.columns]), n, args.seed, args.by)
    rows = for_raters(sample, ads, videos).cache()
    drawn = rows.count()
    if drawn == 0:
        raise InputDataError(f"{RELEVANCE_SCORES.name} has no scored pairs on {args.date}",
                             hint=f"run `hcmrm score --date {args.date}` first")
    csv, parquet = write_files(rows, args.out, args.date)
    by = f", stratified by {args.by}" if args.by else ""
    print(f"audit sample {args.date}: {drawn} of the day's scored pairs (seed {args.seed}{by})")
    print(f"  for raters: {csv.resolve()}\n  and: {parquet.resolve()}")
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
