"""report: plot the irrelevant-ad rate per day and model version -> a PNG and an HTML page around it.

    hcmrm report [--days 30] [--end 2024-09-11] [--out reports]
    spark-submit jobs/report.py [same flags]

Reads `irrelevant_rate_daily` (run `hcmrm irrelevant-rate` first), sums it over the dimensions,
keeps the --days days ending at --end (default: the latest day in the table), and writes
`<out>/irrelevant_rate.png` and `<out>/irrelevant_rate.html`; prints both paths.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import sys
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import functions as F

from hcmrm.config import load
from hcmrm.rates_plot import DailyRate, plot_rates, write_html
from hcmrm.settings import CONF_DIR
from hcmrm.tables import IRRELEVANT_RATE_DAILY
from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.irrelevant_rate import EXPECTED, by_day
from jobs.score import day
from jobs.tables import is_delta_table

COMMAND = "report"
HELP = "plot the irrelevant-ad rate per day and model version: a PNG and an HTML page (prints their paths)"
CONF_FILE = CONF_DIR / "jobs" / "report.yaml"


@dataclass(frozen=True)
class ReportConfig:
    days: int = 30  # days plotted, ending at --end or the latest day in irrelevant_rate_daily
    out: str = "reports"  # folder of irrelevant_rate.png and irrelevant_rate.html


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, help=f"days plotted (default: {CONF_FILE.name} days)")
    parser.add_argument("--end", type=day, help="last day plotted (default: the latest in the table)")
    parser.add_argument("--out", type=Path, help=f"output folder (default: {CONF_FILE.name} out)")
    parser.add_argument("--job-config", type=Path, default=CONF_FILE, help=f"report defaults (default {CONF_FILE})")


def window(end: str, days: int) -> tuple[str, str]:
    """(first, last) day of the `days` days ending at `end`."""
    if days < 1:
        raise SystemExit(f"--days must be >= 1, got {days}")
    last = dt_.date.fromisoformat(end)
    return (last - dt_.timedelta(days=days - 1)).isoformat(), last.isoformat()


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    config = load(ReportConfig, args.job_config, {"days": args.days, "out": args.out})
    days, out = config.days, Path(config.out)
    spark = spark_from_args(args, settings, COMMAND)
    name = IRRELEVANT_RATE_DAILY.name
    path = settings.table(name)
    if not is_delta_table(spark, path):
        raise SystemExit(f"no {name} table at {path}: run `hcmrm irrelevant-rate` first")
    rates = spark.read.format("delta").load(path)
    end = args.end or rates.agg(F.max("dt")).first()[0]
    if end is None:
        raise SystemExit(f"{name} at {path} is empty")
    first, last = window(end, days)
    rows = [
        DailyRate(r["dt"], r["model_version"], r["pairs"], r["irrelevant_pairs"], r["impressions"],
                  r["irrelevant_impressions"], r[EXPECTED])
        for r in by_day(rates.where(F.col("dt").between(first, last))).collect()
    ]
    title = f"Irrelevant-ad rate per day, {first} .. {last} ({settings.model_name})"
    png = plot_rates(rows, out / "irrelevant_rate.png", title, window=(first, last))
    page = write_html(rows, png, out / "irrelevant_rate.html", title)
    print(f"{len(rows)} (day, model version) points from {first} to {last}")
    print(f"plot: {png.resolve()}")
    print(f"page: {page.resolve()}")
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
