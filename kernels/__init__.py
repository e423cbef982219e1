"""Numeric kernels of vfd-agent, compiled with Numba.

Pump and fan curves, fits, operating points, staging, baselines and energy integration.

Pure functions on float64 scalars and arrays in SI units (m^3/s, m, Pa, W, J, s; speed
ratio r = n / n_rated). No I/O, no logging, no configuration objects. Every public kernel
is ``@njit(cache=True)`` (see ``kernels._numba``) and callable from Python and from other
Numba code. Kernels never raise on field data: where an answer does not exist they
return NaN.
"""

from kernels.baselines import (
    BASELINE_CHARACTERISTIC,
    BASELINE_CONSTANT,
    BASELINE_DAMPER,
    BASELINE_INLET_VANE,
    BASELINE_THROTTLE,
    CHARACTERISTIC_POWER_PCT,
    CHARACTERISTIC_SPEED_PCT,
    DAMPER_FLOW_PCT,
    DAMPER_POWER_PCT,
    INLET_VANE_FLOW_PCT,
    INLET_VANE_POWER_PCT,
    characteristic_baseline_power,
    constant_baseline_power,
    table_baseline_power,
)
from kernels.integration import integrate_energy

__all__ = [
    "BASELINE_CHARACTERISTIC",
    "BASELINE_CONSTANT",
    "BASELINE_DAMPER",
    "BASELINE_INLET_VANE",
    "BASELINE_THROTTLE",
    "CHARACTERISTIC_POWER_PCT",
    "CHARACTERISTIC_SPEED_PCT",
    "DAMPER_FLOW_PCT",
    "DAMPER_POWER_PCT",
    "INLET_VANE_FLOW_PCT",
    "INLET_VANE_POWER_PCT",
    "characteristic_baseline_power",
    "constant_baseline_power",
    "integrate_energy",
    "table_baseline_power",
]
