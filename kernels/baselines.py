"""Baselines: the power the load would draw without the VFD, in watts.

Every baseline answers "what would this drive draw *if it were running* in this state
without speed control"; whether the drive runs at all is the caller's business (multiply
by a running flag). All return NaN, never raise, when an input is NaN or a table is
invalid, so a bad sample can never be booked as savings.

Percent tables are plain float64 arrays, strictly increasing in their first argument,
interpolated linearly and held constant beyond their ends.
"""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._tables import interp_clamped
from kernels._typing import FloatArray
from kernels.curves import head, shaft_power

# Siemens SINAMICS p3320..p3329 "flow characteristic" defaults: five (speed %, power %)
# points describing a conventionally controlled (throttled / bypassed) plant. Used by the
# drive's own energy-saving display, so the agent's figure can be checked against it.
CHARACTERISTIC_SPEED_PCT: tuple[float, ...] = (0.0, 25.0, 50.0, 75.0, 100.0)
CHARACTERISTIC_POWER_PCT: tuple[float, ...] = (25.0, 50.0, 77.0, 92.0, 100.0)

# Fan at rated speed with flow reduced by an outlet (discharge) damper, % of rated power
# against % of rated flow. Tabulated at 10 % steps from the DOE-2 / EnergyPlus
# Fan:VariableVolume "discharge dampers" part-load curve
#   P/P_rated = 0.37073425 + 0.97250253 x - 0.34240761 x^2   (x = flow ratio),
# normalised to exactly 100 % at full flow. A damper saves little: at half flow the fan
# still draws about 77 % of rated power.
DAMPER_FLOW_PCT: tuple[float, ...] = (
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0,
)
DAMPER_POWER_PCT: tuple[float, ...] = (
    37.0, 46.4, 55.1, 63.1, 70.4, 77.1, 83.0, 88.3, 92.9, 96.8, 100.0,
)

# Fan at rated speed with variable inlet vanes, from the DOE-2 / EnergyPlus "inlet vane
# dampers" curve
#   P/P_rated = 0.35071223 + 0.30850535 x - 0.54137364 x^2 + 0.87198823 x^3,
# normalised to 100 % at full flow. Pre-swirl makes vanes much better than a damper at
# part load (about 48 % at half flow) but still far from the cube law of speed control.
INLET_VANE_FLOW_PCT: tuple[float, ...] = DAMPER_FLOW_PCT
INLET_VANE_POWER_PCT: tuple[float, ...] = (
    35.4, 38.1, 40.2, 42.2, 44.8, 48.4, 53.5, 60.7, 70.5, 83.4, 100.0,
)

BASELINE_CONSTANT = 0
BASELINE_CHARACTERISTIC = 1
BASELINE_THROTTLE = 2
BASELINE_DAMPER = 3
BASELINE_INLET_VANE = 4

# The default (x %, power %) table of each table method, for callers that configure none.
DEFAULT_TABLES: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {
    BASELINE_CHARACTERISTIC: (CHARACTERISTIC_SPEED_PCT, CHARACTERISTIC_POWER_PCT),
    BASELINE_DAMPER: (DAMPER_FLOW_PCT, DAMPER_POWER_PCT),
    BASELINE_INLET_VANE: (INLET_VANE_FLOW_PCT, INLET_VANE_POWER_PCT),
}


@jit
def constant_baseline_power(constant_power: float) -> float:
    """Fixed baseline [W] while running (ABB 45.19 comparison power, Danfoss 23-80).

    NaN for a negative or non-finite power, so a misconfigured value is visible.
    """
    if not (np.isfinite(constant_power) and constant_power >= 0.0):
        return np.nan
    return constant_power


@jit
def characteristic_baseline_power(
    speed_ratio: float,
    rated_power: float,
    speed_pct_table: FloatArray,
    power_pct_table: FloatArray,
) -> float:
    """Baseline [W] from a Siemens p3320-style table of % speed -> % rated power.

    ``speed_ratio`` is n / n_rated (1.0 = 100 %); ``rated_power`` in W. Linear
    interpolation, clamped at the table's ends (so a stopped drive reads the 0 % row).
    """
    if not (np.isfinite(rated_power) and rated_power >= 0.0):
        return np.nan
    pct = interp_clamped(100.0 * speed_ratio, speed_pct_table, power_pct_table)
    return rated_power * pct / 100.0


@jit
def table_baseline_power(
    flow_ratio: float,
    rated_power: float,
    flow_pct_table: FloatArray,
    power_pct_table: FloatArray,
) -> float:
    """Baseline [W] of a fan throttled by damper or inlet vanes to the same flow.

    ``flow_ratio`` is Q / Q_rated (1.0 = 100 %), ``rated_power`` in W; the tables map
    % flow -> % rated power (see ``DAMPER_*`` and ``INLET_VANE_*``), clamped at the ends.
    """
    if not (np.isfinite(rated_power) and rated_power >= 0.0):
        return np.nan
    pct = interp_clamped(100.0 * flow_ratio, flow_pct_table, power_pct_table)
    return rated_power * pct / 100.0


@jit
def throttle_baseline_power(
    head_coeffs: FloatArray, power_coeffs: FloatArray, flow: float
) -> float:
    """Baseline [W]: the pump at rated speed (r = 1), throttled by a valve to ``flow``.

    A valve only adds resistance, so the pump stays on its rated-speed curve and draws
    P(Q, 1). NaN for negative or NaN flow and for flows beyond the rated-speed run-out
    (H(Q, 1) < 0), which a throttled pump could not deliver.
    """
    if not (flow >= 0.0 and np.isfinite(flow)):
        return np.nan
    if not head(head_coeffs, flow, 1.0) >= 0.0:
        return np.nan
    p = shaft_power(power_coeffs, flow, 1.0)
    return p if p >= 0.0 else np.nan


@jit
def baseline_power(
    method: int,
    speed_ratio: float,
    flow: float,
    rated_power: float,
    rated_flow: float,
    constant_power: float,
    table_x_pct: FloatArray,
    table_y_pct: FloatArray,
    head_coeffs: FloatArray,
    power_coeffs: FloatArray,
) -> float:
    """Baseline power [W] by method code, for callers that hold one config per drive.

    ``method`` is one of BASELINE_CONSTANT (uses ``constant_power``),
    BASELINE_CHARACTERISTIC (``speed_ratio``, ``rated_power`` and the % speed -> % power
    table in ``table_x_pct``/``table_y_pct``), BASELINE_THROTTLE (``flow`` [m^3/s],
    ``head_coeffs``, ``power_coeffs``), BASELINE_DAMPER and BASELINE_INLET_VANE
    (``flow / rated_flow``, ``rated_power`` and the % flow -> % power table). Arguments a
    method does not use are ignored (pass NaN or empty arrays). Unknown codes give NaN.
    """
    if method == BASELINE_CONSTANT:
        return constant_baseline_power(constant_power)
    if method == BASELINE_CHARACTERISTIC:
        return characteristic_baseline_power(speed_ratio, rated_power, table_x_pct, table_y_pct)
    if method == BASELINE_THROTTLE:
        return throttle_baseline_power(head_coeffs, power_coeffs, flow)
    if method == BASELINE_DAMPER or method == BASELINE_INLET_VANE:
        if not (rated_flow > 0.0):
            return np.nan
        return table_baseline_power(flow / rated_flow, rated_power, table_x_pct, table_y_pct)
    return np.nan
