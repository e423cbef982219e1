"""Slow, obviously-correct NumPy references for the kernels.

Each function mirrors one kernel with the simplest code that could be right: dense loops,
``np.interp``, ``np.linalg.lstsq``, closed forms. Tests compare the compiled kernels with
these on ordinary, NaN and degenerate inputs.
"""

from __future__ import annotations

import math

import numpy as np


def _valid_table(xp, fp):
    xp = np.asarray(xp, dtype=float)
    fp = np.asarray(fp, dtype=float)
    return (
        xp.size > 0
        and xp.size == fp.size
        and bool(np.all(np.isfinite(xp)))
        and bool(np.all(np.isfinite(fp)))
        and bool(np.all(np.diff(xp) > 0))
    )


def interp_clamped(x, xp, fp):
    if not _valid_table(xp, fp) or math.isnan(x):
        return math.nan
    return float(np.interp(x, xp, fp))


def characteristic_baseline_power(speed_ratio, rated_power, speed_pct, power_pct):
    if not (math.isfinite(rated_power) and rated_power >= 0):
        return math.nan
    return rated_power * interp_clamped(100 * speed_ratio, speed_pct, power_pct) / 100


def table_baseline_power(flow_ratio, rated_power, flow_pct, power_pct):
    if not (math.isfinite(rated_power) and rated_power >= 0):
        return math.nan
    return rated_power * interp_clamped(100 * flow_ratio, flow_pct, power_pct) / 100


def integrate_energy(t, p, max_gap):
    t = np.asarray(t, dtype=float)
    p = np.asarray(p, dtype=float)
    if t.size != p.size:
        return math.nan, math.nan
    joules = 0.0
    covered = 0.0
    for i in range(t.size - 1):
        dt = t[i + 1] - t[i]
        ok = (
            math.isfinite(dt)
            and 0 < dt <= max_gap
            and math.isfinite(p[i])
            and math.isfinite(p[i + 1])
        )
        if ok:
            joules += (p[i] + p[i + 1]) / 2 * dt
            covered += dt
    return joules, covered
