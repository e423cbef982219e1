"""Time-of-use schedules for tariffs and grid emission factors.

A schedule is a default value and periods of the local day (optionally on some
weekdays only) with other values. Energy saved is priced at the moment it is
saved, so the energy account splits every sample interval at each edge where a
rate changes and at each hour boundary (the ledger keeps one row per hour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

HOUR_S = 3600.0
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class Period:
    """A daily window [start, end) in local minutes of the day; end < start crosses midnight."""

    start_min: int
    end_min: int
    days: frozenset[int]  # weekday of the window's start, Monday = 0
    value: float

    def covers(self, local: datetime) -> bool:
        """True if the local time falls in this window."""
        minute = local.hour * 60 + local.minute + local.second / 60.0
        day = local.weekday()
        if self.start_min < self.end_min:
            return day in self.days and self.start_min <= minute < self.end_min
        return (day in self.days and minute >= self.start_min) or (
            (day - 1) % 7 in self.days and minute < self.end_min
        )


@dataclass(frozen=True)
class Schedule:
    """A value that may change with the local time of day and weekday (SI units)."""

    default: float
    periods: tuple[Period, ...] = ()

    def value_at(self, local: datetime) -> float:
        """The first period covering the time wins; else the default."""
        for period in self.periods:
            if period.covers(local):
                return period.value
        return self.default

    def edge_minutes(self) -> set[int]:
        """Minutes of the day at which the value may change."""
        return {m % MINUTES_PER_DAY for p in self.periods for m in (p.start_min, p.end_min)}


class TimeOfUse:
    """Tariff and emission factor over time, with the edges where either changes."""

    def __init__(self, price: Schedule, emission: Schedule, tz: tzinfo) -> None:
        self.price = price
        self.emission = emission
        self.tz = tz
        self._edge_minutes = sorted(price.edge_minutes() | emission.edge_minutes())

    def rates_at(self, wall: float) -> tuple[float, float]:
        """(price per J, kg CO2 per J) at a Unix time."""
        local = datetime.fromtimestamp(wall, self.tz)
        return self.price.value_at(local), self.emission.value_at(local)

    def next_edge(self, wall: float) -> float:
        """The first Unix time after ``wall`` at which a rate or the UTC hour may change."""
        edge = (math.floor(wall / HOUR_S) + 1) * HOUR_S
        if not self._edge_minutes:
            return edge
        local = datetime.fromtimestamp(wall, self.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        for day in (0, 1):
            for minute in self._edge_minutes:
                naive = midnight + timedelta(days=day, minutes=minute)
                candidate = naive.replace(tzinfo=self.tz).timestamp()
                if wall < candidate < edge:
                    return candidate
        return edge


def hour_start(wall: float) -> int:
    """The UTC hour (Unix seconds) a time belongs to: the ledger's row key."""
    return int(math.floor(wall / HOUR_S) * HOUR_S)
