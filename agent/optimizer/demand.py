"""A group's demand: its level now and its trend, from recent samples."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RISE_SHARE = 0.5  # a rise is read over this share of the level's window (the latest samples)
RISE_MIN_SAMPLES = 6  # fewer samples than this say nothing about a rise
RISE_Z = 2.0  # a slope beyond this many of its standard errors is a rise, not noise


@dataclass(frozen=True)
class Line:
    """A least-squares line through samples: its value at the samples' mean time, where it is surest."""

    centre: float  # the samples' mean time, from the time the line was taken at [s]
    value: float  # the line's value there
    slope: float
    slope_error: float  # the slope's standard error (inf from two samples)
    noise: float  # the residuals' standard deviation (inf from two samples)
    samples: int

    def at(self, t: float) -> float:
        """The line's value at ``t`` (from the time it was taken at)."""
        return self.value + self.slope * (t - self.centre)


@dataclass(frozen=True)
class Level:
    """A demand's level now and its standard error (from the samples' own scatter)."""

    value: float
    error: float


class DemandTracker:
    """Recent samples of a group's demand: its level now and its trend.

    The level is a least-squares line through the last ``window`` seconds, read at the
    newest sample (no lag on a ramp); the trend is the slope of a line through the last
    ``trend_window`` seconds, long enough that measurement noise does not swing it. A steep
    rise is read from the latest half of the window (``rise``) once it stands out of the noise:
    the long trend and the window's line lag a rise that starts or steepens.
    """

    def __init__(self, window: float, trend_window: float | None = None) -> None:
        self.window = window
        self.trend_window = max(trend_window or window, window)
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, t: float, value: float) -> None:
        """One sample (NaN and negative values are ignored)."""
        if math.isfinite(value) and value >= 0.0:
            self.samples.append((t, value))
        while self.samples and t - self.samples[0][0] > self.trend_window:
            self.samples.popleft()

    @staticmethod
    def _line(samples: Sequence[tuple[float, float]], now: float) -> Line:
        """The least-squares line through ``samples`` (times from ``now``): errors inf from two samples."""
        t = np.array([s[0] for s in samples]) - now
        v = np.array([s[1] for s in samples])
        slope, intercept = np.polyfit(t, v, 1)
        centre = float(t.mean())
        spread = float(np.sum((t - centre) ** 2))
        if len(t) <= 2 or spread <= 0.0:
            return Line(centre, float(intercept + slope * centre), float(slope), math.inf, math.inf, len(t))
        residual = v - (intercept + slope * t)
        noise = math.sqrt(float(np.sum(residual ** 2)) / (len(t) - 2))
        return Line(centre, float(intercept + slope * centre), float(slope), noise / math.sqrt(spread),
                    noise, len(t))

    def slope(self, now: float) -> float:
        """Trend [unit/s] over the trend window (0 with too few samples)."""
        recent = [s for s in self.samples if now - s[0] <= self.trend_window]
        return self._line(recent, now).slope if len(recent) >= 8 else 0.0

    def rise(self, now: float, trend: float = 0.0) -> tuple[float, float]:
        """(level, slope) of a line through the latest ``RISE_SHARE`` of the window, if it rises beyond noise.

        (NaN, 0) otherwise. The trend's line reads the slope half its window ago and the
        window's line reads an accelerating level low (by a·W²/6 for a demand rising as a·t²):
        on generated-1000 (27 -> 46 m³/h in 2.4 s of a 30 s day) the plan ran 1-3 % short for
        1.3 s. A short line is noisy, so it is believed only where its slope exceeds the
        ``trend`` by ``RISE_Z`` of its own standard error (a flat demand with 2 % noise passes
        about one read in 40): where the trend already follows the rise, the larger of two
        noisy estimates would only be a bias upward (ahu-fan's gentle rises cost 0.01-0.015 of
        the oracle's savings that way).
        """
        recent = [s for s in self.samples if now - s[0] <= RISE_SHARE * self.window]
        if len(recent) < RISE_MIN_SAMPLES:
            return math.nan, 0.0
        line = self._line(recent, now)
        if not line.slope - max(trend, 0.0) > RISE_Z * line.slope_error:
            return math.nan, 0.0
        return line.at(0.0), line.slope

    def level(self, now: float) -> Level:
        """The level now, the window's line read at its end, and that value's standard error.

        A line's end has the variance of an extrapolation (on evenly spaced samples twice its
        centre's standard error): generated-1002 read a level 1.5-2 % low from 1.7 % flow noise and
        the loads went short. The centre carried by the long trend is surer on a level but reads
        the start of a rise low until the two slopes part beyond noise (in a model with 1.7 %
        noise, cycles short at the margin 5.7 -> 10.7 %; in the batch generated-1002 went short
        2.6 s), so the end is kept and its error told. Fewer than 4 samples: the highest, error
        unknown.
        """
        recent = [(t, v) for t, v in self.samples if now - t <= self.window]
        if len(recent) < 4:
            return Level(max((v for _, v in recent), default=math.nan), math.inf)
        line = self._line(recent, now)
        error = math.sqrt(line.noise ** 2 / line.samples + (line.centre * line.slope_error) ** 2)
        return Level(line.at(0.0), error)

    def estimate(self, now: float, lookahead: float) -> float:
        """The larger of the level now and where the trend or a rise takes it ``lookahead`` on (NaN: none).

        The trend is carried ahead no faster than the window's own line allows (its slope plus
        ``RISE_Z`` of its standard error): the trend's line reads the slope half its long window
        ago, so at a peak and over the turn it still rose 8-9 % of the design flow per second
        where the demand had stopped, and the plan ran the header above the curve (the batch's
        largest loss against the oracle). On a rise that goes on the window's line reads the
        same slope, so the bound takes nothing from it but noise beyond two standard errors.
        """
        recent = [(t, v) for t, v in self.samples if now - t <= self.window]
        if len(recent) < 4:
            return self.level(now).value
        own = self._line(recent, now)
        level = own.at(0.0)  # ``level``'s value, from this one fit
        trend = self.slope(now)
        ahead = level + max(min(trend, own.slope + RISE_Z * own.slope_error), 0.0) * lookahead
        rising, slope = self.rise(now, trend)
        if math.isfinite(rising):
            ahead = max(ahead, max(level, rising) + slope * lookahead)
        return float(max(ahead, 0.0))
