"""A drive's energy counter, turned into steps the account can trust.

A counter that wraps (16/32-bit) is followed across the wrap; one that goes backwards (a
drive restart) or rises faster than the drive could draw is not booked; one that saturates
(SINAMICS r0039) hands over to power integration. Each such event is counted.
"""

from __future__ import annotations

import math
from collections import Counter
from enum import Enum

from agent.config.profile import Point
from agent.units import MAX_POWER_OVER_RATED


class CounterEvent(Enum):
    """Things an energy counter does that the account must not book as energy."""

    WRAP = "wrap"  # rolled over at its modulus: booked correctly
    RESET = "reset"  # went backwards, e.g. the drive restarted: not booked, power used instead
    JUMP = "jump"  # rose faster than the drive could draw: not booked
    SATURATED = "saturated"  # stuck at its maximum (SINAMICS r0039): power used from then on


class EnergyCounter:
    """Turns successive readings of a drive's energy counter into trustworthy steps [J]."""

    def __init__(self, point: Point, rated_power: float) -> None:
        self.modulus = point.counter_modulus
        self.resolution = point.resolution
        self.rated_power = rated_power
        self.saturates_at = point.to_si(point.saturates_at) if point.saturates_at is not None else math.inf
        self.events: Counter[CounterEvent] = Counter()
        self.saturated = False
        self._last: float | None = None

    def step(self, value: float, dt: float) -> float | None:
        """Energy since the previous reading, or None when the counter cannot say."""
        last, self._last = self._last, value
        if not math.isfinite(value):
            self._last = None
            return None
        if value >= self.saturates_at - 0.5 * self.resolution:
            if not self.saturated:
                self.events[CounterEvent.SATURATED] += 1
            self.saturated = True
            return None
        self.saturated = False
        if last is None:
            return None
        limit = MAX_POWER_OVER_RATED * self.rated_power * dt + 2.0 * self.resolution
        delta = value - last
        if delta < 0.0:
            wrapped = delta + self.modulus
            if 0.0 <= wrapped <= limit:
                self.events[CounterEvent.WRAP] += 1
                return wrapped
            self.events[CounterEvent.RESET] += 1
            return None
        if delta > limit:
            self.events[CounterEvent.JUMP] += 1
            return None
        return delta

    def forget(self) -> None:
        """Drop the last reading (after a gap nothing can be said about the steps across it)."""
        self._last = None
