"""Uncertainty on every figure: the fit's statistics combined with the drive's power accuracy.

The drive's declared accuracy (a profile field, e.g. 0.02 for ±2 % of reading) is a bound,
not a standard deviation: per the GUM (JCGM 100, 4.3.7) a bound ±a with nothing else known is
a rectangular distribution with standard uncertainty a/√3 and infinitely many degrees of
freedom. It is combined with the statistical part root-sum-square, and the effective degrees
of freedom follow Welch–Satterthwaite (GUM G.4.1).

Which energy the accuracy multiplies matters. A gain error of the power reading scales every
reading by the same (1 + ε). When the baseline was measured with the same reading (a
regression baseline, an A/B comparison) both sides scale together and the saving becomes
(1 + ε)·S: the error is ε·|S|, it cannot create a saving. Against a stipulated baseline that
no reading measured, the error is ε·|actual energy|.

CO2 and money are exact multiples of the energy bounds (the emission factor and tariff are
stipulated and named with their source in the report; their own uncertainty is not claimed).
"""

from __future__ import annotations

import math

import numpy as np

from agent.mv.estimate import Estimate
from agent.mv.stats import FloatArray, MvError

RECTANGULAR = 1.0 / math.sqrt(3.0)
"""Standard uncertainty of a rectangular distribution per unit half-width."""


def _check_accuracy(relative_accuracy: float) -> None:
    if not 0.0 <= relative_accuracy < 1.0 or math.isnan(relative_accuracy):
        raise MvError(f"relative accuracy must lie in [0, 1), got {relative_accuracy}")


def combine(statistical: Estimate, systematic_bound: float) -> Estimate:
    """Add a ±bound (rectangular) to an estimate; Welch–Satterthwaite degrees of freedom."""
    u_sys = abs(systematic_bound) * RECTANGULAR
    u_c = math.hypot(statistical.std, u_sys)
    if statistical.std == 0.0 or math.isinf(statistical.dof):
        dof = math.inf
    else:
        dof = u_c**4 / (statistical.std**4 / statistical.dof)
    return Estimate(statistical.value, u_c, dof)


def measured_energy(energy_j: float, relative_accuracy: float) -> Estimate:
    """Energy read from the drive, with its declared accuracy as the only uncertainty."""
    _check_accuracy(relative_accuracy)
    return Estimate(energy_j, abs(energy_j) * relative_accuracy * RECTANGULAR)


def savings_with_meter(savings: Estimate, relative_accuracy: float, baseline_measured: bool,
                       actual_energy_j: float = 0.0) -> Estimate:
    """Savings with the power reading's accuracy added (see module: which energy it multiplies)."""
    _check_accuracy(relative_accuracy)
    if baseline_measured:
        bound = relative_accuracy * abs(savings.value)
    else:
        bound = relative_accuracy * abs(actual_energy_j)
    return combine(savings, bound)


def vfd_basis_saving(net_saved_j: float, baseline_j: float, baseline_accuracy: float, energy_j: float,
                     power_accuracy: float) -> Estimate:
    """The measured vfd basis's net saving (baseline − drawn) bounded by its two declared accuracies.

    The baseline energy was measured by another instrument (a comparison meter, or the flow
    meter a table is read at) than the drive's power reading, so the two bounds are independent
    rectangular distributions: ±a_b·B and ±a_p·E, combined root-sum-square. A flow meter's error
    carried one to one into the table's power is conservative: the tables' power rises slower
    than flow near the operating points they are read at.
    """
    _check_accuracy(baseline_accuracy)
    _check_accuracy(power_accuracy)
    u = math.hypot(baseline_accuracy * abs(baseline_j), power_accuracy * abs(energy_j)) * RECTANGULAR
    return Estimate(net_saved_j, u)


def weighted_factor(energy_j: FloatArray, factor: FloatArray) -> float:
    """One factor (kg/J or money/J) for a period whose factor changes: weighted by ``energy_j``.

    Weight by the adjusted baseline energy of each interval (always positive), so the factor
    is defined even when the net saving is near zero.
    """
    w = np.asarray(energy_j, dtype=np.float64)
    f = np.asarray(factor, dtype=np.float64)
    if w.shape != f.shape or w.size == 0:
        raise MvError("one factor per interval is needed")
    total = float(np.sum(w))
    if total <= 0:
        raise MvError("the weights of a factor must sum to a positive energy")
    return float(np.sum(w * f) / total)


def co2_kg(energy: Estimate, kg_per_j: float) -> Estimate:
    """CO2 [kg] and its bounds from an energy estimate [J] and an emission factor [kg/J]."""
    return energy.scaled(kg_per_j)


def money(energy: Estimate, price_per_j: float) -> Estimate:
    """Money and its bounds from an energy estimate [J] and a tariff [currency/J]."""
    return energy.scaled(price_per_j)
