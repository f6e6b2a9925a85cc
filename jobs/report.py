"""report: plot the irrelevant-ad rate per day and model version -> a PNG and an HTML page around it.

    hcmrm report [--days 30] [--end 2024-09-11] [--out reports]
    spark-submit jobs/report.py [same flags]

Reads `irrelevant_rate_daily` (run `hcmrm irrelevant-rate` first), sums it over the dimensions,
keeps the --days days ending at --end (default: the latest day in the table), and writes
`<out>/irrelevant_rate.png` (over the days of that window that have data: the model's rate, the
prediction-powered estimate with its 95% band on audited days, a mark where the model version changes)
and `<out>/irrelevant_rate.html` (the numbers, and a table per industry for the last day); prints both paths.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import sys
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import functions as F

from hcmrm.config import load
from hcmrm.rates_plot import DailyRate, Estimate, plot_rates, write_html
from hcmrm.settings import CONF_DIR
from hcmrm.tables import IRRELEVANT_RATE_DAILY
from jobs.arguments import day
from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.irrelevant_rate import EXPECTED, by_day, rollup
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


def daily_rate(r, industry: str | None = None) -> DailyRate:
    """A rollup row of irrelevant_rate_daily (jobs.irrelevant_rate) as the report's DailyRate."""
    return DailyRate(r["dt"], r["model_version"], r["pairs"], r["irrelevant_pairs"], r["impressions"],
                     r["irrelevant_impressions"], r[EXPECTED], r["audited_pairs"] or 0,
                     Estimate.of(r["audited_rate"], r["audited_rate_low"], r["audited_rate_high"]),
                     Estimate.of(r["ppi_rate"], r["ppi_rate_low"], r["ppi_rate_high"]), industry)


def industries(rates, last: str | None) -> list[DailyRate]:
    """The last day's rows per industry and model version (none when the table has no industry)."""
    if last is None or "industry" not in rates.columns:
        return []
    keys = ("dt", "model_name", "model_version", "industry")
    return [daily_rate(r, r["industry"]) for r in rollup(rates.where(F.col("dt") == last), keys).collect()]


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
    rows = [daily_rate(r) for r in by_day(rates.where(F.col("dt").between(first, last))).collect()]
    shown = sorted({r.dt for r in rows})
    span = f"{shown[0]} .. {shown[-1]}" if shown else f"{first} .. {last}"
    title = f"Irrelevant-ad rate per day, {span} ({settings.model_name})"
    png = plot_rates(rows, out / "irrelevant_rate.png", title)
    page = write_html(rows, png, out / "irrelevant_rate.html", title, industries(rates, shown[-1] if shown else None))
    print(f"{len(rows)} (day, model version) points from {first} to {last} ({len(shown)} days with data)")
    print(f"plot: {png.resolve()}")
    print(f"page: {page.resolve()}")
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
