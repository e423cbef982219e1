"""``vfd-agent report``: per-drive and site totals from the ledger, as a table, CSV or JSON.

Reads the ledger through a read-only connection, so it works while the agent
runs. Figures are sums of the hourly rows, converted to kWh and kg at the edge.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, tzinfo
from enum import Enum
from pathlib import Path
from typing import Any

from agent.units import KWH_TO_J

SITE = "(site)"


class ReportFormat(Enum):
    """Output formats."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


@dataclass(frozen=True)
class Summary:
    """Totals of one drive (or of the site) over the report's period."""

    drive: str
    energy_kwh: float
    baseline_kwh: float
    saved_kwh: float  # net: against a baseline backed by a measurement (the VFD's claimable savings)
    stipulated_kwh: float  # net: against a stipulated baseline (shown, never turned into CO2 or money)
    optimizer_saved_kwh: float  # net: against the operator's setpoint (the agent's extra savings)
    # Modelled, not measured: the drive's own losses behind an output reading, already netted out of
    # saved_kwh and stipulated_kwh (0 for a mains-side reading, and in a ledger older than schema 6).
    drive_losses_kwh: float
    co2_avoided_kg: float
    money_saved: float
    currency: str
    covered_hours: float
    gaps: int
    counter_share: float  # fraction of covered time booked from the drive's energy counter
    first_hour: str
    last_hour: str


_SUMS = """
    SELECT drive, SUM(energy_j), SUM(baseline_energy_j), SUM(saved_vfd_j), SUM(saved_stipulated_j),
           SUM(saved_optimizer_j), {losses},
           SUM(co2_g), SUM(cost), GROUP_CONCAT(DISTINCT currency), SUM(covered_s), SUM(gaps),
           SUM(counter_s), MIN(hour), MAX(hour)
    FROM hourly WHERE hour >= ? AND hour < ? GROUP BY drive ORDER BY drive
"""


def period_bounds(start: date | None, end: date | None, tz: tzinfo) -> tuple[int, int]:
    """Unix bounds of [start 00:00, end + 1 day 00:00) in local time; open ends are unbounded."""
    low = int(datetime.combine(start, datetime.min.time(), tz).timestamp()) if start else -(2**62)
    high = (int(datetime.combine(end + timedelta(days=1), datetime.min.time(), tz).timestamp())
            if end else 2**62)
    return low, high


@dataclass(frozen=True)
class Report:
    """Per-drive summaries, and the site's kept apart (summing the drive rows never counts it twice)."""

    drives: list[Summary]
    site: Summary | None  # None when the period has no rows


def summarize(db: sqlite3.Connection, low: int, high: int, tz: tzinfo,
              drives: Sequence[str] | None = None) -> Report:
    """One summary per drive (only ``drives`` if given) and the site's, over hours in [low, high)."""
    # A ledger the agent has not yet migrated (read-only here) may lack the drive-loss column.
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(hourly)")}
    losses = "SUM(drive_losses_j)" if "drive_losses_j" in columns else "0.0"
    rows = db.execute(_SUMS.format(losses=losses), (low, high)).fetchall()
    summaries = [s for s in (_summary(row, tz) for row in rows) if drives is None or s.drive in drives]
    if not summaries:
        return Report([], None)
    currencies = {s.currency for s in summaries}
    site = Summary(
        drive=SITE,
        energy_kwh=sum(s.energy_kwh for s in summaries),
        baseline_kwh=sum(s.baseline_kwh for s in summaries),
        saved_kwh=sum(s.saved_kwh for s in summaries),
        stipulated_kwh=sum(s.stipulated_kwh for s in summaries),
        optimizer_saved_kwh=sum(s.optimizer_saved_kwh for s in summaries),
        drive_losses_kwh=sum(s.drive_losses_kwh for s in summaries),
        co2_avoided_kg=sum(s.co2_avoided_kg for s in summaries),
        money_saved=sum(s.money_saved for s in summaries) if len(currencies) == 1 else math.nan,
        currency=",".join(sorted(currencies)),
        covered_hours=sum(s.covered_hours for s in summaries),
        gaps=sum(s.gaps for s in summaries),
        counter_share=(sum(s.counter_share * s.covered_hours for s in summaries)
                       / max(sum(s.covered_hours for s in summaries), 1e-12)),
        first_hour=min(s.first_hour for s in summaries),
        last_hour=max(s.last_hour for s in summaries),
    )
    return Report(summaries, site)


def _summary(row: tuple[Any, ...], tz: tzinfo) -> Summary:
    drive, energy, baseline, saved, stipulated, optimizer, losses, co2, cost, currency, covered, gaps, \
        counter, first, last = row
    covered_s = float(covered or 0.0)
    return Summary(
        drive=str(drive),
        energy_kwh=float(energy) / KWH_TO_J,
        baseline_kwh=float(baseline) / KWH_TO_J,
        saved_kwh=float(saved) / KWH_TO_J,
        stipulated_kwh=float(stipulated) / KWH_TO_J,
        optimizer_saved_kwh=float(optimizer) / KWH_TO_J,
        drive_losses_kwh=float(losses or 0.0) / KWH_TO_J,
        co2_avoided_kg=float(co2) / 1000.0,
        money_saved=float(cost),
        currency=str(currency or ""),
        covered_hours=covered_s / 3600.0,
        gaps=int(gaps or 0),
        counter_share=float(counter or 0.0) / covered_s if covered_s > 0 else 0.0,
        first_hour=datetime.fromtimestamp(int(first), tz).strftime("%Y-%m-%d %H:%M"),
        last_hour=datetime.fromtimestamp(int(last), tz).strftime("%Y-%m-%d %H:%M"),
    )


def _json_row(s: Summary) -> dict[str, Any]:
    # Money over several currencies has no sum: null rather than NaN, which JSON lacks.
    return {**asdict(s), "money_saved": s.money_saved if math.isfinite(s.money_saved) else None}


def render(report: Report, fmt: ReportFormat) -> str:
    """The report text in the requested format.

    JSON is ``{"drives": [...], "site": {...}}``; CSV has the drive rows only (the site is
    their column sum); the table shows the site below a rule.
    """
    if fmt is ReportFormat.JSON:
        body = {"drives": [_json_row(s) for s in report.drives],
                "site": _json_row(report.site) if report.site is not None else None}
        return json.dumps(body, indent=2, allow_nan=False) + "\n"
    if fmt is ReportFormat.CSV:
        out = io.StringIO()
        writer = csv.writer(out)
        names = list(Summary.__dataclass_fields__)
        writer.writerow(names)
        for s in report.drives:
            writer.writerow([getattr(s, n) for n in names])
        return out.getvalue()
    header = (f"{'drive':<20} {'energy kWh':>11} {'baseline kWh':>13} {'saved kWh':>10} "
              f"{'stipulated kWh':>14} {'optimizer kWh':>14} {'losses kWh*':>11} {'CO2 kg':>9} {'money':>12} "
              f"{'hours':>7} {'counter':>7}")
    lines = [header, "-" * len(header)]
    for s in report.drives + ([report.site] if report.site is not None else []):
        if s.drive == SITE:
            lines.append("-" * len(header))
        money = f"{s.money_saved:.2f} {s.currency}" if math.isfinite(s.money_saved) else "mixed"
        lines.append(
            f"{s.drive:<20} {s.energy_kwh:>11.3f} {s.baseline_kwh:>13.3f} {s.saved_kwh:>10.3f} "
            f"{s.stipulated_kwh:>14.3f} {s.optimizer_saved_kwh:>14.3f} {s.drive_losses_kwh:>11.3f} "
            f"{s.co2_avoided_kg:>9.3f} {money:>12} "
            f"{s.covered_hours:>7.2f} "
            f"{s.counter_share:>7.0%}"
        )
    if report.site is None:
        lines.append("(no ledger rows in this period)")
    elif report.site.drive_losses_kwh > 0.0:
        lines.append("* modelled, not measured: the drives' own losses behind their output readings, "
                     "netted out of the saved and stipulated kWh")
    return "\n".join(lines) + "\n"


@dataclass
class _Day:
    energy_kwh: float = 0.0
    baseline_kwh: float = 0.0
    saved_kwh: float = 0.0  # net, against the baseline
    co2_kg: float = 0.0
    money: float = 0.0


def daily(db: sqlite3.Connection, low: int, high: int, tz: tzinfo,
          drives: Sequence[str] | None = None) -> dict[str, dict[date, _Day]]:
    """Per-day sums of each series, per drive, or for the whole site under ``SITE``."""
    out: dict[str, dict[date, _Day]] = {}
    for drive, hour, energy, baseline, saved, co2, cost in db.execute(
        "SELECT drive, hour, energy_j, baseline_energy_j, saved_vfd_j, co2_g, cost FROM hourly "
        "WHERE hour >= ? AND hour < ? ORDER BY hour", (low, high),
    ):
        if drives is not None and drive not in drives:
            continue
        key = str(drive) if drives is not None else SITE
        day = out.setdefault(key, {}).setdefault(datetime.fromtimestamp(hour, tz).date(), _Day())
        day.energy_kwh += energy / KWH_TO_J
        day.baseline_kwh += baseline / KWH_TO_J
        day.saved_kwh += saved / KWH_TO_J
        day.co2_kg += co2 / 1000.0
        day.money += cost
    return out


def require_plotting() -> None:
    """ImportError before anything is printed if matplotlib (the ``plot`` extra) is missing."""
    import matplotlib  # noqa: F401


def plot(db: sqlite3.Connection, low: int, high: int, tz: tzinfo, path: Path, currency: str,
         drives: Sequence[str] | None = None) -> dict[str, list[float]]:
    """Draw a PNG: one row for the site, or one per drive of ``drives``.

    Left: daily energy against baseline (bars) and the cumulative net savings (a line from
    zero); right: daily CO2 avoided and money saved. Returns each row's cumulative line as drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = daily(db, low, high, tz, drives)
    names = sorted(series) or [SITE]
    lines: dict[str, list[float]] = {}
    span = max((len(series.get(n, {})) for n in names), default=1)
    fig, axes = plt.subplots(len(names), 2, figsize=(max(9.0, 0.6 * span + 6), 3.8 * len(names)),
                             squeeze=False)
    for row, name in zip(axes, names, strict=True):
        days = series.get(name, {})
        ordered = sorted(days)
        x = list(range(len(ordered)))
        labels = [d.isoformat() for d in ordered]
        left, right = row
        left.bar([i - 0.2 for i in x], [days[d].baseline_kwh for d in ordered], width=0.4,
                 label="baseline (no VFD)")
        left.bar([i + 0.2 for i in x], [days[d].energy_kwh for d in ordered], width=0.4, label="energy drawn")
        left.set_ylabel("kWh per day")
        left.set_xticks(x, labels, rotation=45, ha="right")
        cumulative = list(itertools.accumulate(days[d].saved_kwh for d in ordered))
        twin = left.twinx()
        # The line starts at zero before the first day, so a single day is a rising segment, not a dot.
        lines[name] = [0.0, *cumulative]
        twin.plot([-0.5, *x], lines[name], color="black", marker="o", label="cumulative net savings")
        twin.set_ylabel("kWh saved, cumulative")
        twin.set_ylim(bottom=min(0.0, *cumulative))
        handles = left.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        left.legend(handles, [str(h.get_label()) for h in handles], loc="upper left", fontsize="small")
        left.set_title(f"{name}: energy against baseline")
        right.bar([i - 0.2 for i in x], [days[d].co2_kg for d in ordered], width=0.4, color="tab:green",
                  label="CO2 avoided, kg")
        money = right.twinx()
        money.bar([i + 0.2 for i in x], [days[d].money for d in ordered], width=0.4, color="tab:orange",
                  label=f"money saved, {currency}")
        right.set_ylabel("kg CO2 per day")
        money.set_ylabel(f"{currency} per day")
        right.set_xticks(x, labels, rotation=45, ha="right")
        handles = right.get_legend_handles_labels()[0] + money.get_legend_handles_labels()[0]
        right.legend(handles, [str(h.get_label()) for h in handles], loc="upper left", fontsize="small")
        right.set_title(f"{name}: CO2 and money")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return lines
