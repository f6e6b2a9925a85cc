"""true-rate: on a lake whose truth is known (the shipped sample), print per day the five figures side by side.

    hcmrm true-rate [--start S --end E] [--truth hcmrm/sample/truth.parquet]

Per (dt, model version) of `irrelevant_rate_daily` (summed over the dimensions): the model's rate, the
expected rate, the audited rate with its 95% interval, the prediction-powered estimate with its 95%
interval, and the true rate: the share of the day's scored pairs whose true label (the truth file) is
Bad or Less, and whether it falls inside the prediction-powered interval. A measurement, not a check:
it exits 0 either way. Only the demo needs this; a real lake has no truth file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pyspark.sql import functions as F

from hcmrm.errors import InputDataError
from hcmrm.labels import IRRELEVANT_MAX_LABEL
from hcmrm.settings import SAMPLE_TRUTH
from hcmrm.tables import IRRELEVANT_RATE_DAILY, RELEVANCE_SCORES
from jobs.arguments import day
from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.irrelevant_rate import by_day
from jobs.tables import is_delta_table, read_table

COMMAND = "true-rate"
HELP = "on the sample lake: per day the model's, expected, audited and prediction-powered rates next to the true one"

KEY = list(RELEVANCE_SCORES.key)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=day, help="first dt (default: every dt in irrelevant_rate_daily)")
    parser.add_argument("--end", type=day, help="last dt")
    parser.add_argument("--truth", type=Path, default=SAMPLE_TRUTH, help=f"true labels (default {SAMPLE_TRUTH})")


def true_rates(scores, truth):
    """(dt, model_version) -> (pairs with a truth, their true irrelevant share, scored pairs without one)."""
    joined = scores.join(truth.select(*KEY, F.col("label").alias("_truth")), KEY, "left")
    rows = joined.groupBy("dt", "model_version").agg(
        F.count("_truth").alias("known"), F.avg((F.col("_truth") <= IRRELEVANT_MAX_LABEL).cast("double")).alias("rate"),
        F.count(F.when(F.col("_truth").isNull(), 1)).alias("unknown")).collect()
    return {(r.dt, r.model_version): (r.known, r.rate, r.unknown) for r in rows}


def interval(rate, low, high) -> str:
    return "n/a" if rate is None else f"{rate:.4f} [{low:.4f}, {high:.4f}]"


def line(r, truth) -> str:
    known, rate, unknown = truth.get((r.dt, r.model_version), (0, None, 0))
    inside = "" if rate is None or r.ppi_rate is None else \
        ("inside" if r.ppi_rate_low <= rate <= r.ppi_rate_high else "OUTSIDE") + " the PPI interval"
    true = "n/a" if rate is None else f"{rate:.4f} ({known:,} pairs{f', {unknown:,} without a truth' if unknown else ''})"
    return (f"{r.dt} v{r.model_version}: model {r.rate:.4f} | expected {r.expected_rate:.4f} | audited "
            f"{interval(r.audited_rate, r.audited_rate_low, r.audited_rate_high)} (n={r.audited_pairs}) | PPI "
            f"{interval(r.ppi_rate, r.ppi_rate_low, r.ppi_rate_high)} | true {true}; {inside}")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    spark = spark_from_args(args, settings, COMMAND)
    if not args.truth.is_file():
        raise InputDataError(f"no truth file at {args.truth}", hint="only the shipped sample has one")
    rates_path = settings.table(IRRELEVANT_RATE_DAILY.name)
    if not is_delta_table(spark, rates_path):
        raise InputDataError(f"no {IRRELEVANT_RATE_DAILY.name} table at {rates_path}",
                             hint="run `hcmrm irrelevant-rate` first")
    rates = spark.read.format("delta").load(rates_path)
    scores = read_table(spark, settings.table(RELEVANCE_SCORES.name))
    if args.start or args.end:
        window = F.col("dt").between(args.start or "0000-00-00", args.end or "9999-99-99")
        rates, scores = rates.where(window), scores.where(window)
    truth = true_rates(scores, spark.read.parquet(str(args.truth.resolve())))
    print("per day: the model's rate | expected rate | audited rate [95% CI] | prediction-powered [95% CI] | true")
    for r in by_day(rates).collect():
        print(line(r, truth))
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
