"""irrelevant-rate: the share of irrelevant ads per day, model version and dimension -> Delta + SQL views.

    hcmrm irrelevant-rate [--date D | --start S --end E] [--sql "SELECT ... FROM irrelevant_rate_by_day"]
    spark-submit jobs/irrelevant_rate.py [same flags]

Irrelevant = the predicted label is Bad or Less (label <= 1). From `relevance_scores`, per (dt,
model_name, model_version, the dimensions present: advertiser, industry, ...): pairs,
irrelevant_pairs, rate = irrelevant_pairs / pairs and, where the input had impressions,
impressions, irrelevant_impressions and impression_weighted_rate (pairs with null impressions
weigh 0). Beside the argmax rate, the expected rate: expected_irrelevant_pairs = the sum of
p_bad + p_less, expected_rate = its mean. It counts a 55/45 pair as 0.55 irrelevant instead of 1,
so on a calibrated model it equals the true rate on average (docs/training.md, Calibration); the
argmax rate drifts from it whenever many pairs sit near the boundary. Null where relevance_scores
has no probabilities. Written to `irrelevant_rate_daily` per dt (replaceWhere, like relevance_scores: a
re-scored day gets its rates replaced). With no date, every dt in relevance_scores is done.

With audit labels (`audit_labels`, from `hcmrm audit-sample` + `audit-import`), per group also: the
audited pairs and their counts (AUDIT_COUNTS in hcmrm/tables.py), the audited rate with its Wilson 95%
interval, and the prediction-powered estimate of the true rate with its 95% interval (hcmrm.rate_estimates:
the model's rate over all the group's pairs plus the mean of audited irrelevant - model irrelevant over its
audited pairs). "Model irrelevant" is the argmax label above; the audit labels are the raters', whichever
model version scored the day. Null without audited pairs (the PPI: with fewer than MIN_AUDITED, 10).

Views for analysts in this Spark session: `irrelevant_rate_daily` (the table) and
`irrelevant_rate_by_day` (summed over the dimensions, one row per dt and model version).
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hcmrm.config import load
from hcmrm.labels import IRRELEVANT_GRADES, IRRELEVANT_MAX_LABEL
from hcmrm.settings import Settings
from hcmrm.tables import AUDIT_COUNTS, AUDIT_ESTIMATES, AUDIT_LABELS, IRRELEVANT_RATE_DAILY, RELEVANCE_SCORES
from jobs.arguments import day, days_between
from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.scoring_config import CONF_FILE, ScoreJobConfig
from jobs.tables import is_delta_table, read_table, replace_partitions
from udfs.rates import with_estimates

COMMAND = "irrelevant-rate"
HELP = "irrelevant-ad rate per day, model version and dimension -> Delta irrelevant_rate_daily + SQL views"

RATES = IRRELEVANT_RATE_DAILY.name  # the table, and the SQL view over it
BY_DAY_VIEW = "irrelevant_rate_by_day"
COUNTS = ("pairs", "irrelevant_pairs", "impressions", "irrelevant_impressions")
EXPECTED = "expected_irrelevant_pairs"  # a sum of probabilities: a double, summed like the counts
IRRELEVANT_PROBS = tuple(f"p_{name}" for name in IRRELEVANT_GRADES)  # p_bad, p_less


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=day, help="one dt (default: every dt in relevance_scores)")
    parser.add_argument("--start", type=day, help="first dt of a range (with --end)")
    parser.add_argument("--end", type=day, help="last dt of a range (with --start)")
    parser.add_argument("--sql", help=f"a query to print afterwards, over the views {RATES} and {BY_DAY_VIEW}")
    parser.add_argument("--job-config", default=CONF_FILE, help="job defaults (the dimensions)")


AUDIT = "_audit_label"  # the raters' label of a scored pair, null where it was not audited


def audit_counts(irrelevant) -> list:
    """The AUDIT_COUNTS aggregates over scores joined with their audit labels (AUDIT)."""
    audited = F.col(AUDIT).isNotNull()
    said = F.col(AUDIT) <= IRRELEVANT_MAX_LABEL
    return [F.count(F.when(audited, 1)), F.count(F.when(audited & said, 1)),
            F.count(F.when(audited & irrelevant, 1)), F.count(F.when(audited & (said != irrelevant), 1))]


def with_audits(scores: DataFrame, audits: DataFrame | None) -> DataFrame:
    """scores with AUDIT: the audit label of each scored pair (null when none, or no audits at all)."""
    if audits is None:
        return scores.withColumn(AUDIT, F.lit(None).cast("int"))
    key = list(AUDIT_LABELS.key)
    return scores.join(audits.select(*key, F.col("label").alias(AUDIT)), key, "left")


def daily_rates(scores: DataFrame, dimensions=(), audits: DataFrame | None = None) -> DataFrame:
    """relevance_scores rows (and audit_labels, when any) -> one row per (dt, model_name, model_version,
    *dimensions present)."""
    dims = [d for d in dimensions if d in scores.columns]
    scores = with_audits(scores, audits)
    irrelevant = F.col("label") <= IRRELEVANT_MAX_LABEL
    if "impressions" in scores.columns:
        impressions = F.sum("impressions").cast("long")
        irrelevant_impressions = F.sum(F.when(irrelevant, F.col("impressions")).otherwise(0)).cast("long")
    else:
        impressions = irrelevant_impressions = F.lit(None).cast("long")
    if set(IRRELEVANT_PROBS) <= set(scores.columns):
        expected = F.sum(sum((F.col(c) for c in IRRELEVANT_PROBS[1:]), F.col(IRRELEVANT_PROBS[0]))).cast("double")
    else:
        expected = F.lit(None).cast("double")
    out = scores.groupBy("dt", "model_name", "model_version", *dims).agg(
        F.count(F.lit(1)).alias("pairs"),
        F.count(F.when(irrelevant, 1)).alias("irrelevant_pairs"),
        impressions.alias("impressions"),
        irrelevant_impressions.alias("irrelevant_impressions"),
        expected.alias(EXPECTED),
        *(c.cast("long").alias(name) for c, name in zip(audit_counts(irrelevant), AUDIT_COUNTS)),
    )
    return with_rates(out).select("dt", "model_name", "model_version", *dims, *COUNTS, "rate",
                                  "impression_weighted_rate", EXPECTED, "expected_rate", *AUDIT_COUNTS,
                                  *AUDIT_ESTIMATES)


def with_rates(counts: DataFrame) -> DataFrame:
    """Add rate, impression_weighted_rate (null when there are no impressions), expected_rate and the audit's
    estimates (udfs.rates) to summed counts."""
    return with_estimates(counts.withColumn("rate", F.col("irrelevant_pairs") / F.col("pairs")).withColumn(
        "impression_weighted_rate",
        F.when(F.col("impressions") > 0, F.col("irrelevant_impressions") / F.col("impressions")),
    ).withColumn("expected_rate", F.col(EXPECTED) / F.col("pairs")))


def rollup(rates: DataFrame, keys=("dt", "model_name", "model_version")) -> DataFrame:
    """irrelevant_rate_daily summed over the dimensions not in `keys`, with its rates and estimates."""
    if EXPECTED not in rates.columns:  # a table written before the expected rate
        rates = rates.withColumn(EXPECTED, F.lit(None).cast("double"))
    rates = rates.withColumns({c: F.lit(0).cast("long") for c in AUDIT_COUNTS if c not in rates.columns})
    counts = rates.groupBy(*keys).agg(
        *[F.sum(c).cast("long").alias(c) for c in (*COUNTS, *AUDIT_COUNTS)], F.sum(EXPECTED).alias(EXPECTED)
    )
    return with_rates(counts)


def by_day(rates: DataFrame) -> DataFrame:
    """irrelevant_rate_daily summed over its dimensions: one row per (dt, model_name, model_version)."""
    return rollup(rates).orderBy("dt", "model_version")


def register_views(spark: SparkSession, settings: Settings) -> list[str]:
    """Temp views over the table for Spark SQL in this session; their names."""
    rates = spark.read.format("delta").load(settings.table(RATES))
    rates.createOrReplaceTempView(RATES)
    by_day(rates).createOrReplaceTempView(BY_DAY_VIEW)
    return [RATES, BY_DAY_VIEW]


def target_dates(spark: SparkSession, scores: DataFrame, args: argparse.Namespace) -> list[str]:
    if args.date and (args.start or args.end):
        raise SystemExit("give --date or --start/--end, not both")
    if bool(args.start) != bool(args.end):
        raise SystemExit("--start and --end go together")
    if args.date:
        return [args.date]
    if args.start:
        return days_between(args.start, args.end)
    return sorted(r[0] for r in scores.select("dt").distinct().collect())


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    config = load(ScoreJobConfig, args.job_config)
    spark = spark_from_args(args, settings, COMMAND)
    path = settings.table(RELEVANCE_SCORES.name)
    if not is_delta_table(spark, path):
        raise SystemExit(f"no {RELEVANCE_SCORES.name} table at {path}: run `hcmrm score --date D` first")
    scores = read_table(spark, path)  # each day's committed scoring run only
    dates = target_dates(spark, scores, args)
    scores = scores.where(F.col("dt").isin(dates))
    present = sorted(r[0] for r in scores.select("dt").distinct().collect())
    missing = sorted(set(dates) - set(present))
    if missing:
        print(f"not scored yet, left out: {', '.join(missing)}")
    audits_path = settings.table(AUDIT_LABELS.name)
    audits = read_table(spark, audits_path) if is_delta_table(spark, audits_path) else None
    if present:
        replace_partitions(daily_rates(scores, config.dimensions, audits), settings.table(RATES), present)
    if not is_delta_table(spark, settings.table(RATES)):
        print("no irrelevant rates yet: nothing scored")
        return 1
    views = register_views(spark, settings)
    print(f"{RATES}: {len(present)} dates written to {settings.table(RATES)}; temp views: {', '.join(views)}")
    day_columns = ["dt", "model_version", "pairs", "rate", "expected_rate", "audited_pairs", *AUDIT_ESTIMATES]
    spark.table(BY_DAY_VIEW).where(F.col("dt").isin(present)).select(*day_columns).show(50, truncate=False)
    if args.sql:
        spark.sql(args.sql).show(100, truncate=False)
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
