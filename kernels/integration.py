"""Energy from sampled power: trapezoid rule that refuses to bridge gaps."""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._typing import FloatArray


@jit
def integrate_energy(t: FloatArray, p: FloatArray, max_gap: float) -> tuple[float, float]:
    """Integrate power ``p`` [W] over time ``t`` [s] -> ``(joules, covered_seconds)``.

    An interval [t[i], t[i+1]] is integrated (trapezoid) and counted as covered only if
    0 < dt <= ``max_gap`` [s] and both endpoints have finite t and p. Everything else -- a
    polling outage, a clock step backwards, a NaN or inf sample -- contributes neither
    energy nor covered time, so the caller can report coverage honestly instead of
    interpolating across a gap. Negative power (regeneration) is integrated as is.
    Sums are Neumaier-compensated so a long day of small increments does not lose joules.
    Arrays of unequal length give ``(nan, nan)``; fewer than two samples give ``(0, 0)``.
    """
    n = t.shape[0]
    if p.shape[0] != n:
        return np.nan, np.nan
    energy = 0.0
    energy_c = 0.0
    covered = 0.0
    covered_c = 0.0
    for i in range(n - 1):
        dt = t[i + 1] - t[i]
        # Written so that any NaN makes the condition false.
        if not (dt > 0.0 and dt <= max_gap):
            continue
        if not (np.isfinite(dt) and np.isfinite(p[i]) and np.isfinite(p[i + 1])):
            continue
        e = 0.5 * (p[i] + p[i + 1]) * dt
        s = energy + e
        if abs(energy) >= abs(e):
            energy_c += (energy - s) + e
        else:
            energy_c += (e - s) + energy
        energy = s
        s = covered + dt
        if covered >= dt:
            covered_c += (covered - s) + dt
        else:
            covered_c += (dt - s) + covered
        covered = s
    return energy + energy_c, covered + covered_c
