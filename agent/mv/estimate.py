"""A figure with its uncertainty: value, standard uncertainty and degrees of freedom.

One representation for every claimed quantity (energy, savings, CO2, money), so a 68 % or
90 % interval is always computed the same way: value ± t(1 − α/2, ν) · u, with ν = ∞ for
a normal (or rectangular, GUM-style) component. Guideline 14's savings interval is of this
form with u = 1.26 · sqrt(MSE' (1 + 2/n') m) · (scale) and ν = n' − p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from agent.mv.stats import CONFIDENCE_LEVELS, two_sided_t


@dataclass(frozen=True)
class Estimate:
    """A value with its combined standard uncertainty and effective degrees of freedom."""

    value: float
    std: float
    dof: float = math.inf

    def half_width(self, confidence: float) -> float:
        """Half-width of the two-sided interval at ``confidence``."""
        if self.std == 0.0:
            return 0.0
        if math.isinf(self.dof):
            return NormalDist().inv_cdf(0.5 + confidence / 2.0) * self.std
        return two_sided_t(confidence, self.dof) * self.std

    def lower(self, confidence: float) -> float:
        """Lower end of the interval (not clipped at zero: a saving can be negative)."""
        return self.value - self.half_width(confidence)

    def upper(self, confidence: float) -> float:
        """Upper end of the interval."""
        return self.value + self.half_width(confidence)

    def scaled(self, factor: float) -> Estimate:
        """The same figure in other units or per other quantity (kg CO2, money): an exact factor."""
        return Estimate(self.value * factor, self.std * abs(factor), self.dof)

    def intervals(self, levels: tuple[float, ...] = CONFIDENCE_LEVELS) -> dict[float, tuple[float, float]]:
        """{confidence: (lower, upper)} at each level."""
        return {c: (self.lower(c), self.upper(c)) for c in levels}
