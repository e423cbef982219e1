"""``vfd-agent report``: per-drive and site totals from the ledger, as a table, CSV or JSON.

Reads the ledger through a read-only connection, so it works while the agent
runs. Figures are sums of the hourly rows, converted to kWh and kg at the edge.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
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
    saved_kwh: float  # net: against the baseline (the VFD's savings)
    optimizer_saved_kwh: float  # net: against the operator's setpoint (the agent's extra savings)
    co2_avoided_kg: float
    money_saved: float
    currency: str
    covered_hours: float
    gaps: int
    counter_share: float  # fraction of covered time booked from the drive's energy counter
    first_hour: str
    last_hour: str


_SUMS = """
    SELECT drive, SUM(energy_j), SUM(baseline_energy_j), SUM(saved_vfd_j), SUM(saved_optimizer_j),
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


def summarize(db: sqlite3.Connection, low: int, high: int, tz: tzinfo) -> list[Summary]:
    """One summary per drive, then the site's, over hours in [low, high)."""
    rows = db.execute(_SUMS, (low, high)).fetchall()
    summaries = [_summary(row, tz) for row in rows]
    if summaries:
        currencies = {s.currency for s in summaries}
        summaries.append(Summary(
            drive=SITE,
            energy_kwh=sum(s.energy_kwh for s in summaries),
            baseline_kwh=sum(s.baseline_kwh for s in summaries),
            saved_kwh=sum(s.saved_kwh for s in summaries),
            optimizer_saved_kwh=sum(s.optimizer_saved_kwh for s in summaries),
            co2_avoided_kg=sum(s.co2_avoided_kg for s in summaries),
            money_saved=sum(s.money_saved for s in summaries) if len(currencies) == 1 else math.nan,
            currency=",".join(sorted(currencies)),
            covered_hours=sum(s.covered_hours for s in summaries),
            gaps=sum(s.gaps for s in summaries),
            counter_share=(sum(s.counter_share * s.covered_hours for s in summaries)
                           / max(sum(s.covered_hours for s in summaries), 1e-12)),
            first_hour=min(s.first_hour for s in summaries),
            last_hour=max(s.last_hour for s in summaries),
        ))
    return summaries


def _summary(row: tuple[Any, ...], tz: tzinfo) -> Summary:
    drive, energy, baseline, saved, optimizer, co2, cost, currency, covered, gaps, counter, first, last = row
    covered_s = float(covered or 0.0)
    return Summary(
        drive=str(drive),
        energy_kwh=float(energy) / KWH_TO_J,
        baseline_kwh=float(baseline) / KWH_TO_J,
        saved_kwh=float(saved) / KWH_TO_J,
        optimizer_saved_kwh=float(optimizer) / KWH_TO_J,
        co2_avoided_kg=float(co2) / 1000.0,
        money_saved=float(cost),
        currency=str(currency or ""),
        covered_hours=covered_s / 3600.0,
        gaps=int(gaps or 0),
        counter_share=float(counter or 0.0) / covered_s if covered_s > 0 else 0.0,
        first_hour=datetime.fromtimestamp(int(first), tz).strftime("%Y-%m-%d %H:%M"),
        last_hour=datetime.fromtimestamp(int(last), tz).strftime("%Y-%m-%d %H:%M"),
    )


def render(summaries: list[Summary], fmt: ReportFormat) -> str:
    """The report text in the requested format."""
    if fmt is ReportFormat.JSON:
        # Money over several currencies has no sum: null rather than NaN, which JSON lacks.
        rows = [{**asdict(s), "money_saved": s.money_saved if math.isfinite(s.money_saved) else None}
                for s in summaries]
        return json.dumps(rows, indent=2, allow_nan=False) + "\n"
    if fmt is ReportFormat.CSV:
        out = io.StringIO()
        writer = csv.writer(out)
        names = list(Summary.__dataclass_fields__)
        writer.writerow(names)
        for s in summaries:
            writer.writerow([getattr(s, n) for n in names])
        return out.getvalue()
    header = (f"{'drive':<20} {'energy kWh':>11} {'baseline kWh':>13} {'saved kWh':>10} "
              f"{'optimizer kWh':>14} {'CO2 kg':>9} {'money':>12} {'hours':>7} {'counter':>7}")
    lines = [header, "-" * len(header)]
    for s in summaries:
        if s.drive == SITE:
            lines.append("-" * len(header))
        money = f"{s.money_saved:.2f} {s.currency}" if math.isfinite(s.money_saved) else "mixed"
        lines.append(
            f"{s.drive:<20} {s.energy_kwh:>11.3f} {s.baseline_kwh:>13.3f} {s.saved_kwh:>10.3f} "
            f"{s.optimizer_saved_kwh:>14.3f} {s.co2_avoided_kg:>9.3f} {money:>12} {s.covered_hours:>7.2f} "
            f"{s.counter_share:>7.0%}"
        )
    if not summaries:
        lines.append("(no ledger rows in this period)")
    return "\n".join(lines) + "\n"


def plot(db: sqlite3.Connection, low: int, high: int, tz: tzinfo, path: Path) -> None:
    """Daily energy against baseline (bars) and cumulative net savings (line), all drives."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days: dict[date, list[float]] = {}
    for hour, energy, baseline, saved in db.execute(
        "SELECT hour, SUM(energy_j), SUM(baseline_energy_j), SUM(saved_vfd_j) FROM hourly "
        "WHERE hour >= ? AND hour < ? GROUP BY hour ORDER BY hour", (low, high),
    ):
        day = datetime.fromtimestamp(hour, tz).date()
        sums = days.setdefault(day, [0.0, 0.0, 0.0])
        sums[0] += energy / KWH_TO_J
        sums[1] += baseline / KWH_TO_J
        sums[2] += saved / KWH_TO_J
    ordered = sorted(days)
    x = range(len(ordered))
    fig, left = plt.subplots(figsize=(max(6.0, 0.5 * len(ordered) + 3), 4.5))
    left.bar([i - 0.2 for i in x], [days[d][1] for d in ordered], width=0.4, label="baseline (no VFD)")
    left.bar([i + 0.2 for i in x], [days[d][0] for d in ordered], width=0.4, label="energy drawn")
    left.set_ylabel("kWh per day")
    left.set_xticks(list(x), [d.isoformat() for d in ordered], rotation=45, ha="right")
    right = left.twinx()
    cumulative, total = [], 0.0
    for d in ordered:
        total += days[d][2]
        cumulative.append(total)
    right.plot(list(x), cumulative, color="black", marker="o", label="cumulative net savings")
    right.set_ylabel("kWh saved, cumulative")
    right.set_ylim(bottom=min(0.0, *cumulative) if cumulative else 0.0)  # an honest zero
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [str(h.get_label()) for h in handles], loc="upper left")
    left.set_title("vfd-agent: energy against baseline")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
