"""Command-line arguments more than one job takes: dates, date ranges, the model to score with."""

from __future__ import annotations

import argparse
import datetime as dt_
from pathlib import Path

from hcmrm.errors import UsageError
from hcmrm.settings import Settings
from jobs.scoring_config import CONF_FILE


def day(text: str) -> str:
    """A yyyy-mm-dd date (argparse type)."""
    try:
        return dt_.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date yyyy-mm-dd, got {text!r}") from None


def days_between(start: str, end: str) -> list[str]:
    first, last = dt_.date.fromisoformat(start), dt_.date.fromisoformat(end)
    if last < first:
        raise UsageError(f"--end {end} is before --start {start}", hint="swap them, or check the dates")
    return [(first + dt_.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model-uri / --model-version / --device / --job-config / --full-rescore: score and backfill."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model-uri", help="models:/<name>@<alias> or models:/<name>/<version> (default: @champion)")
    which.add_argument("--model-version", type=int, help="a version number of the registered model (--model-name)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the workers score (default: conf)")
    parser.add_argument("--job-config", type=Path, default=CONF_FILE, help=f"job defaults (default {CONF_FILE})")
    parser.add_argument("--full-rescore", action="store_true",
                        help="score every pair, reusing no earlier day's score (carry_over_days: 0)")


def add_require_input_argument(parser: argparse.ArgumentParser, default: bool | None) -> None:
    parser.add_argument("--require-input", action=argparse.BooleanOptionalAction, default=default,
                        help="fail (exit 3) when the day has no rows in query_ad_pairs, instead of recording an "
                             "empty day (score: on, from score.yaml; backfill: off)")


def model_uri_from_args(args: argparse.Namespace, settings: Settings) -> str:
    from hcmrm.tracking.model_uri import champion_uri, version_uri

    if getattr(args, "model_version", None) is not None:
        return version_uri(settings.model_name, args.model_version)
    return args.model_uri or champion_uri(settings.model_name)
