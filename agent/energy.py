"""Energy accounting per drive: actual energy, baseline energy, savings, CO2 and money.

Power samples are integrated by the trapezoid rule between consecutive
samples. An interval longer than ``max_gap`` is not integrated (nobody knows
what the drive drew then) and is counted, so coverage is always visible.

Savings per interval are baseline energy minus actual energy. Prometheus
counters may not go down, so an interval where the drive drew more than its
baseline adds to a separate penalty counter instead of subtracting: net
savings = saved − penalty, exactly, and CO2 and money follow the same split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from agent.config import BaselineConfig, BaselineMethod, DriveConfig, SiteConfig
from kernels import characteristic_baseline_power

GRAMS_PER_KG = 1000.0


class BaselineModel:
    """Baseline electrical power [W] of one drive as a function of its state."""

    def __init__(self, baseline: BaselineConfig, rated_power: float) -> None:
        self.method = baseline.method
        self.constant_power = baseline.constant_power
        self.rated_power = rated_power
        self._speed_pct = np.asarray(baseline.speed_pct, dtype=np.float64)
        self._power_pct = np.asarray(baseline.power_pct, dtype=np.float64)
        # Load (or compile) the kernel now, at start-up, rather than inside the first poll.
        self.power(1.0, running=True)

    def power(self, speed_ratio: float, running: bool) -> float:
        """Baseline power; zero while the drive is stopped, NaN if the input is unknown."""
        if not running:
            return 0.0
        if self.method is BaselineMethod.CONSTANT:
            return self.constant_power
        if self.method is BaselineMethod.CHARACTERISTIC:
            if not math.isfinite(speed_ratio):
                return math.nan
            return float(characteristic_baseline_power(
                speed_ratio, self.rated_power, self._speed_pct, self._power_pct
            ))
        raise NotImplementedError(f"baseline method {self.method.value}")  # rejected by config


@dataclass
class EnergyTotals:
    """Cumulative figures of one drive since the agent started counting (SI, grams, currency)."""

    energy_j: float = 0.0
    baseline_energy_j: float = 0.0
    saved_j: float = 0.0
    penalty_j: float = 0.0
    co2_avoided_g: float = 0.0
    co2_penalty_g: float = 0.0
    cost_saved: float = 0.0
    cost_penalty: float = 0.0
    covered_s: float = 0.0
    gaps: int = 0
    gap_s: float = 0.0


@dataclass(frozen=True)
class EnergyPoint:
    """What the account needs from one sample."""

    t: float  # monotonic s
    power: float  # W
    baseline_power: float  # W


@dataclass
class EnergyAccount:
    """Integrates one drive's samples into ``EnergyTotals``."""

    max_gap: float
    emission_factor_kg_per_j: float
    price_per_j: float
    totals: EnergyTotals = field(default_factory=EnergyTotals)
    _last: EnergyPoint | None = None

    @classmethod
    def for_drive(cls, drive: DriveConfig, site: SiteConfig, max_gap: float) -> EnergyAccount:
        """An account with the site's CO2 factor and tariff."""
        del drive  # per-drive schedules arrive with the ledger; kept for a stable signature
        return cls(max_gap, site.emission_factor_kg_per_joule, site.tariff.price_per_joule)

    def add(self, point: EnergyPoint) -> None:
        """Integrate from the previous sample to this one, or start again after a gap."""
        last, self._last = self._last, point
        if not (math.isfinite(point.power) and math.isfinite(point.baseline_power)):
            self._last = None  # an unusable sample breaks the chain like a gap
            return
        if last is None:
            return
        dt = point.t - last.t
        if dt <= 0.0:
            self._last = last
            return
        if dt > self.max_gap:
            self.totals.gaps += 1
            self.totals.gap_s += dt
            return
        energy = 0.5 * (last.power + point.power) * dt
        baseline = 0.5 * (last.baseline_power + point.baseline_power) * dt
        self._book(energy, baseline, dt)

    def break_chain(self) -> None:
        """Forget the last sample, e.g. when the drive stops answering."""
        self._last = None

    def _book(self, energy: float, baseline: float, dt: float) -> None:
        totals = self.totals
        totals.energy_j += energy
        totals.baseline_energy_j += baseline
        totals.covered_s += dt
        saved = baseline - energy
        co2_g = abs(saved) * self.emission_factor_kg_per_j * GRAMS_PER_KG
        money = abs(saved) * self.price_per_j
        if saved >= 0.0:
            totals.saved_j += saved
            totals.co2_avoided_g += co2_g
            totals.cost_saved += money
        else:
            totals.penalty_j -= saved
            totals.co2_penalty_g += co2_g
            totals.cost_penalty += money
