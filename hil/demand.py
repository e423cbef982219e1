"""Demanded flow over a simulated day, compressed into a few minutes.

A smooth, periodic profile: one slow "day" wave (low at night, high in the
afternoon) plus two seeded harmonics so that drives with different seeds do not
move in lockstep. It is deterministic from the seed and rescaled so that it
spans exactly [minimum, maximum] over one day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

_SAMPLES = 4096  # per day, to find the extremes of the raw wave


@dataclass(frozen=True)
class DemandProfile:
    """Demanded flow [m³/s] as a function of time since the simulation started [s]."""

    minimum: float
    maximum: float
    day_length: float
    seed: int
    _amplitudes: tuple[float, ...] = field(init=False, repr=False)
    _phases: tuple[float, ...] = field(init=False, repr=False)
    _low: float = field(init=False, repr=False)
    _span: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.day_length <= 0.0 or self.maximum < self.minimum:
            raise ValueError("day_length must be positive and maximum >= minimum")
        rng = np.random.default_rng(self.seed)
        # Harmonic 1 is the day itself; its phase puts the minimum at t = 0 ("midnight").
        amplitudes = (1.0, 0.3 * float(rng.uniform(0.5, 1.0)), 0.15 * float(rng.uniform(0.5, 1.0)))
        phases = (-math.pi / 2.0, float(rng.uniform(0.0, 2 * math.pi)), float(rng.uniform(0.0, 2 * math.pi)))
        object.__setattr__(self, "_amplitudes", amplitudes)
        object.__setattr__(self, "_phases", phases)
        wave = self._wave(np.linspace(0.0, 1.0, _SAMPLES, endpoint=False))
        object.__setattr__(self, "_low", float(wave.min()))
        object.__setattr__(self, "_span", float(wave.max() - wave.min()))

    def _wave(self, day_fraction: np.ndarray) -> np.ndarray:
        total = np.zeros_like(day_fraction)
        for k, (amplitude, phase) in enumerate(zip(self._amplitudes, self._phases, strict=True), start=1):
            total += amplitude * np.sin(2.0 * math.pi * k * day_fraction + phase)
        return total

    def fraction(self, t: float) -> float:
        """Where the demand lies between minimum (0) and maximum (1) at time t."""
        x = t / self.day_length
        raw = sum(
            a * math.sin(2.0 * math.pi * k * x + ph)
            for k, (a, ph) in enumerate(zip(self._amplitudes, self._phases, strict=True), start=1)
        )
        return min(max((raw - self._low) / self._span, 0.0), 1.0)

    def flow(self, t: float) -> float:
        """Demanded flow at time t."""
        return self.minimum + (self.maximum - self.minimum) * self.fraction(t)
