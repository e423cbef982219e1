"""A group's demand: its level now and its trend, from recent samples."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np


class DemandTracker:
    """Recent samples of a group's demand: its level now and its trend.

    The level is a least-squares line through the last ``window`` seconds, read at the
    newest sample (no lag on a ramp); the trend is the slope of a line through the last
    ``trend_window`` seconds, long enough that measurement noise does not swing it.
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
    def _line(samples: Sequence[tuple[float, float]], now: float) -> tuple[float, float]:
        t = np.array([s[0] for s in samples]) - now
        v = np.array([s[1] for s in samples])
        slope, intercept = np.polyfit(t, v, 1)
        return float(intercept), float(slope)

    def slope(self, now: float) -> float:
        """Trend [unit/s] over the trend window (0 with too few samples)."""
        recent = [s for s in self.samples if now - s[0] <= self.trend_window]
        return self._line(recent, now)[1] if len(recent) >= 8 else 0.0

    def estimate(self, now: float, lookahead: float) -> float:
        """The larger of the level now and where the trend takes it ``lookahead`` seconds on; NaN if none."""
        recent = [(t, v) for t, v in self.samples if now - t <= self.window]
        if not recent:
            return math.nan
        if len(recent) < 4:
            return max(v for _, v in recent)
        level, _ = self._line(recent, now)
        return float(max(level + max(self.slope(now), 0.0) * lookahead, 0.0))

