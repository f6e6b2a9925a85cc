"""The irrelevant-ad rate report: one PNG (rate per day, one line per model version) and an HTML page.

Pure: it takes rows already aggregated per (dt, model_version) and writes files; no Spark, no MLflow.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hcmrm.labels import IRRELEVANT_MAX_LABEL, IRRELEVANT_WORDS


@dataclass(frozen=True)
class DailyRate:
    dt: str  # the day, yyyy-mm-dd
    model_version: str  # the registered model version that scored the day
    pairs: int  # scored (query, ad) pairs
    irrelevant_pairs: int  # pairs labeled Bad or Less (label <= 1)
    impressions: int | None = None  # impressions of those pairs; None when the input had none
    irrelevant_impressions: int | None = None  # impressions of the irrelevant pairs
    expected_irrelevant_pairs: float | None = None  # sum of p_bad + p_less; None in tables written before it

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


def plot_rates(rows: Sequence[DailyRate], path: str | Path, title: str = "Irrelevant-ad rate per day",
               window: tuple[str, str] | None = None) -> Path:
    """Write a PNG: the pair rate (solid), the expected rate (dotted, where the table has it) and, where
    impressions exist, the weighted rate (dashed).

    `window` (first, last day) sets the date axis; by default it spans the rows' days."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x_of = {r.dt: datetime.date.fromisoformat(r.dt) for r in rows}  # a real date axis: missing days show as gaps
    fig, ax = plt.subplots(figsize=(8.0, 4.0), dpi=100)
    for version in sorted({r.model_version for r in rows}, key=_version_key):
        mine = sorted((r for r in rows if r.model_version == version), key=lambda r: r.dt)
        xs = [x_of[r.dt] for r in mine]
        line = ax.plot(xs, [r.rate for r in mine], marker="o", label=f"v{version} pairs")[0]
        expected = [(x_of[r.dt], r.expected_rate) for r in mine if r.expected_rate is not None]
        if expected:
            ax.plot(*zip(*expected), marker=".", linestyle=":", color=line.get_color(), label=f"v{version} expected")
        weighted = [(x_of[r.dt], r.weighted_rate) for r in mine if r.weighted_rate is not None]
        if weighted:
            ax.plot(*zip(*weighted), marker="x", linestyle="--", color=line.get_color(), label=f"v{version} impressions")
    days = [datetime.date.fromisoformat(d) for d in window] if window else list(x_of.values())
    set_day_axis(ax, days)
    fig.autofmt_xdate()
    ax.set_ylabel(f"irrelevant rate (label {IRRELEVANT_WORDS})")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no scored days", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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


def write_html(rows: Sequence[DailyRate], png_path: str | Path, path: str | Path, title: str = "Irrelevant-ad rate") -> Path:
    """Write an HTML page: the plot (linked relatively) above a table of the numbers it draws."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Path(png_path)
    src = png.name if png.parent.resolve() == path.parent.resolve() else png.resolve().as_uri()
    lines = []
    for r in sorted(rows, key=lambda r: (r.dt, _version_key(r.model_version))):
        weighted = "" if r.weighted_rate is None else f"{r.weighted_rate:.4f}"
        expected = "" if r.expected_rate is None else f"{r.expected_rate:.4f}"
        cells = [r.dt, f"v{r.model_version}", f"{r.pairs:,}", f"{r.irrelevant_pairs:,}", f"{r.rate:.4f}", expected,
                 weighted]
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Irrelevant = predicted label {IRRELEVANT_WORDS} (label &le; {IRRELEVANT_MAX_LABEL}). Rate = irrelevant pairs / scored pairs;
expected rate = mean P({IRRELEVANT_WORDS}), the rate a calibrated model expects; the weighted rate uses the pairs' impressions.</p>
<img src="{html.escape(src)}" alt="irrelevant-ad rate per day">
<table><tr><th>dt</th><th>model</th><th>pairs</th><th>irrelevant</th><th>rate</th><th>expected rate</th>
<th>weighted rate</th></tr>
{chr(10).join(lines)}
</table></body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def _version_key(version: str):
    return (0, int(version), "") if str(version).isdigit() else (1, 0, str(version))
