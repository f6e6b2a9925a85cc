"""The irrelevant-ad rate report: one PNG (rate per day, one line per model version, the prediction-powered
estimate's band beside it, a mark where the model version changes) and an HTML page with the numbers and a
table per industry for the last day.

Pure: it takes rows already aggregated per (dt, model_version[, industry]) and writes files; no Spark, no MLflow.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hcmrm.labels import IRRELEVANT_MAX_LABEL, IRRELEVANT_WORDS


@dataclass(frozen=True)
class Estimate:
    rate: float  # a point estimate of the true irrelevant rate
    low: float  # its 95% interval
    high: float

    @classmethod
    def of(cls, rate, low, high) -> "Estimate | None":
        return None if rate is None else cls(rate, low, high)

    def __str__(self) -> str:
        return f"{self.rate:.4f} [{self.low:.4f}, {self.high:.4f}]"


@dataclass(frozen=True)
class DailyRate:
    dt: str  # the day, yyyy-mm-dd
    model_version: str  # the registered model version that scored the day
    pairs: int  # scored (query, ad) pairs
    irrelevant_pairs: int  # pairs labeled Bad or Less (label <= 1)
    impressions: int | None = None  # impressions of those pairs; None when the input had none
    irrelevant_impressions: int | None = None  # impressions of the irrelevant pairs
    expected_irrelevant_pairs: float | None = None  # sum of p_bad + p_less; None in tables written before it
    audited_pairs: int = 0  # pairs with a rater's label (audit_labels)
    audited: Estimate | None = None  # the audited rate with its 95% interval (Wilson); None without audits
    ppi: Estimate | None = None  # the prediction-powered estimate with its 95% interval; None without audits
    industry: str | None = None  # the dimension value, in a per-industry row; None in a row of the whole day

    @property
    def rate(self) -> float:
        return self.irrelevant_pairs / self.pairs if self.pairs else float("nan")

    @property
    def expected_rate(self) -> float | None:
        """Mean P(Bad or Less): the rate a calibrated model expects, without the argmax's rounding."""
        if self.expected_irrelevant_pairs is None or not self.pairs:
            return None
        return self.expected_irrelevant_pairs / self.pairs

    @property
    def weighted_rate(self) -> float | None:
        if not self.impressions:
            return None
        return (self.irrelevant_impressions or 0) / self.impressions


def plot_rates(rows: Sequence[DailyRate], path: str | Path, title: str = "Irrelevant-ad rate per day") -> Path:
    """Write a PNG over the days the rows have: per model version the pair rate (solid), the expected rate
    (dotted) and the impression-weighted rate (dashed) where known, the prediction-powered estimate with its
    95% band where the day was audited, and a vertical mark on each day the model version changes."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9.0, 4.5), dpi=100)
    for version in sorted({r.model_version for r in rows}, key=_version_key):
        _plot_version(ax, sorted((r for r in rows if r.model_version == version), key=lambda r: r.dt), version)
    _mark_version_changes(ax, rows)
    set_day_axis(ax, [_day(r.dt) for r in rows])
    fig.autofmt_xdate()
    ax.set_ylabel(f"irrelevant rate (label {IRRELEVANT_WORDS})")
    tops = [v for r in rows for v in (r.rate, r.ppi.high if r.ppi else None) if v is not None]
    ax.set_ylim(0, min(1.0, max(tops, default=1.0) * 1.15 + 0.02))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(loc="upper left", fontsize="small", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no scored days", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _day(dt: str) -> datetime.date:
    return datetime.date.fromisoformat(dt)


def _plot_version(ax, mine: list[DailyRate], version: str) -> None:
    """One version's lines, in one colour; a real date axis, so a missing day shows as a gap."""
    line = ax.plot([_day(r.dt) for r in mine], [r.rate for r in mine], marker="o", label=f"v{version} model")[0]
    colour = line.get_color()
    expected = [(_day(r.dt), r.expected_rate) for r in mine if r.expected_rate is not None]
    if expected:
        ax.plot(*zip(*expected), marker=".", linestyle=":", color=colour, label=f"v{version} expected")
    weighted = [(_day(r.dt), r.weighted_rate) for r in mine if r.weighted_rate is not None]
    if weighted:
        ax.plot(*zip(*weighted), marker="x", linestyle="--", color=colour, alpha=0.6, label=f"v{version} impressions")
    audited = [r for r in mine if r.ppi is not None]
    if audited:
        xs, mid = [_day(r.dt) for r in audited], [r.ppi.rate for r in audited]
        low, high = [r.ppi.low for r in audited], [r.ppi.high for r in audited]
        ax.fill_between(xs, low, high, color="black", alpha=0.12, linewidth=0)
        ax.errorbar(xs, mid, yerr=[[m - lo for m, lo in zip(mid, low)], [hi - m for m, hi in zip(mid, high)]],
                    color="black", marker="s", capsize=4, linewidth=1.2,
                    label=f"v{version} prediction-powered (95% CI)")


def version_changes(rows: Sequence[DailyRate]) -> list[tuple[str, list[str]]]:
    """(day, its model versions) for each day whose versions differ from those of the day with data before it."""
    by_day: dict[str, set[str]] = {}
    for r in rows:
        by_day.setdefault(r.dt, set()).add(r.model_version)
    days = sorted(by_day)
    return [(now, sorted(by_day[now], key=_version_key)) for before, now in zip(days, days[1:])
            if by_day[now] != by_day[before]]


def _mark_version_changes(ax, rows: Sequence[DailyRate]) -> None:
    """A dashed vertical line, labelled, on each day the model version changes."""
    for dt, versions in version_changes(rows):
        ax.axvline(_day(dt), color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"model {', '.join(f'v{v}' for v in versions)}", (_day(dt), 1.0),
                    xycoords=("data", "axes fraction"), xytext=(3, -12), textcoords="offset points",
                    fontsize="small", color="grey")


def set_day_axis(ax, days: list[datetime.date], max_ticks: int = 10) -> None:
    """Ticks on whole days only, at most `max_ticks`, half a day of margin: an automatic locator
    puts hourly ticks on a short span, every one labelled with the same date."""
    import matplotlib.dates as mdates

    if days:
        first, last = min(days), max(days)
        interval = max(1, -(-(last - first).days // max_ticks))
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=interval))
        margin = datetime.timedelta(hours=12)  # on datetimes: a date minus 12 hours is the same date
        start = datetime.datetime.combine(first, datetime.time()) - margin
        ax.set_xlim(start, datetime.datetime.combine(last, datetime.time()) + margin)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))


def write_html(rows: Sequence[DailyRate], png_path: str | Path, path: str | Path, title: str = "Irrelevant-ad rate",
               industries: Sequence[DailyRate] = ()) -> Path:
    """Write an HTML page: the plot (linked relatively) above a table of the numbers it draws and, given
    `industries` (rows of one day, one per industry and model version), a table per industry."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Path(png_path)
    src = png.name if png.parent.resolve() == path.parent.resolve() else png.resolve().as_uri()
    days = sorted(rows, key=lambda r: (r.dt, _version_key(r.model_version)))
    per_industry = sorted(industries, key=lambda r: (r.industry or "", _version_key(r.model_version)))
    last = f" on {per_industry[0].dt}" if per_industry else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Irrelevant = predicted label {IRRELEVANT_WORDS} (label &le; {IRRELEVANT_MAX_LABEL}). Rate = irrelevant pairs / scored pairs;
expected rate = mean P({IRRELEVANT_WORDS}), the rate a calibrated model expects; the weighted rate uses the pairs' impressions.
Audited = the raters' share on the audited pairs (Wilson 95% interval); prediction-powered = the model's rate plus the mean
of (audited irrelevant &minus; model irrelevant) over the audited pairs, with its 95% interval: the estimate of the true rate.</p>
<img src="{html.escape(src)}" alt="irrelevant-ad rate per day">
<h2>Per day</h2>
{_table(days, ["dt", "model", "pairs", "irrelevant", "rate", "expected rate", "weighted rate", "audited pairs",
               "audited rate [95% CI]", "prediction-powered [95% CI]"], _day_cells)}
<h2>Per industry{html.escape(last)}</h2>
{_table(per_industry, ["industry", "model", "pairs", "irrelevant", "rate", "expected rate", "audited pairs",
                       "audited rate [95% CI]", "prediction-powered [95% CI]"], _industry_cells) if per_industry
 else "<p>no per-industry rows</p>"}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _rates_cells(r: DailyRate) -> list[str]:
    return [f"v{r.model_version}", f"{r.pairs:,}", f"{r.irrelevant_pairs:,}", f"{r.rate:.4f}", _fmt(r.expected_rate)]


def _audit_cells(r: DailyRate) -> list[str]:
    return [f"{r.audited_pairs:,}", str(r.audited or ""), str(r.ppi or "")]


def _day_cells(r: DailyRate) -> list[str]:
    return [r.dt, *_rates_cells(r), _fmt(r.weighted_rate), *_audit_cells(r)]


def _industry_cells(r: DailyRate) -> list[str]:
    return [r.industry or "(none)", *_rates_cells(r), *_audit_cells(r)]


def _table(rows: Sequence[DailyRate], header: list[str], cells) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    body = ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells(r)) + "</tr>" for r in rows]
    return "<table>" + "\n".join([head, *body]) + "</table>"


def _version_key(version: str):
    return (0, int(version), "") if str(version).isdigit() else (1, 0, str(version))
