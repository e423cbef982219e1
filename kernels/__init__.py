"""Numeric kernels of vfd-agent, compiled with Numba.

Pump and fan curves, fits, operating points, staging, baselines, energy integration, and
sensorless flow with its uncertainty and calibrations.

Pure functions on float64 scalars and arrays in SI units (m^3/s, m, Pa, W, J, s; speed
ratio r = n / n_rated). No I/O, no logging, no configuration objects. Every public kernel
is ``@njit(cache=True)`` (see ``kernels._numba``) and callable from Python and from other
Numba code. Kernels never raise on field data: where an answer does not exist they
return NaN.

Kernels with tolerances come in pairs: the plain name uses documented defaults, the
``*_tuned`` / ``*_bounded`` twin takes every tolerance as an argument. (Numba's
dispatch of omitted default arguments costs ~100 us per call from Python, more than
most kernels themselves, so there are no default arguments on compiled functions.)
"""

from kernels._numba import NUMBA_OPTIONS, jit
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
    DEFAULT_TABLES,
    INLET_VANE_FLOW_PCT,
    INLET_VANE_POWER_PCT,
    baseline_power,
    characteristic_baseline_power,
    constant_baseline_power,
    table_baseline_power,
    throttle_baseline_power,
)
from kernels.curves import (
    bep_flow,
    efficiency,
    fan_efficiency,
    fan_pressure,
    head,
    runout_flow,
    shaft_power,
)
from kernels.electrical import (
    DRIVE_EFFICIENCY_TABLE,
    MOTOR_EFFICIENCY_TABLE,
    default_efficiency_tables,
    electrical_power,
)
from kernels.fitting import (
    PUMP_FIT_DEFAULTS,
    SYSTEM_FIT_DEFAULTS,
    fit_fan_curves,
    fit_load_characteristic,
    fit_load_characteristic_tuned,
    fit_pump_curves,
    fit_pump_curves_tuned,
    fit_system_curve,
    fit_system_curve_tuned,
    load_power,
    static_head_share,
    system_curve_r_squared,
)
from kernels.integration import integrate_energy
from kernels.operating import (
    ESTIMATE_FLOW_DEFAULTS,
    common_speed,
    estimate_flow,
    estimate_flow_tuned,
    flow_at_head,
    min_speed_for_flow,
    operating_point,
)
from kernels.rls import rls_coeffs, rls_init, rls_update, rls_update_bounded
from kernels.sensorless import (
    band_uncertainty,
    calibrate_shutoff,
    combine_estimates,
    correct_flow_offset,
    curve_band,
    fit_catalogue_curve,
    flow_from_curve,
    flow_from_head,
    flow_from_power,
    flow_from_ratio,
    flow_offset,
    monotone_branch,
    shaft_power_uncertainty,
    shaft_speed_ratio,
    shift_curve,
)
from kernels.staging import stage_pumps, stage_pumps_tables
from kernels.warmup import kernel_names, warmup

__all__ = [
    "ESTIMATE_FLOW_DEFAULTS",
    "PUMP_FIT_DEFAULTS",
    "SYSTEM_FIT_DEFAULTS",
    "BASELINE_CHARACTERISTIC",
    "BASELINE_CONSTANT",
    "BASELINE_DAMPER",
    "BASELINE_INLET_VANE",
    "BASELINE_THROTTLE",
    "CHARACTERISTIC_POWER_PCT",
    "CHARACTERISTIC_SPEED_PCT",
    "DAMPER_FLOW_PCT",
    "DAMPER_POWER_PCT",
    "DEFAULT_TABLES",
    "DRIVE_EFFICIENCY_TABLE",
    "INLET_VANE_FLOW_PCT",
    "INLET_VANE_POWER_PCT",
    "MOTOR_EFFICIENCY_TABLE",
    "NUMBA_OPTIONS",
    "band_uncertainty",
    "baseline_power",
    "bep_flow",
    "calibrate_shutoff",
    "characteristic_baseline_power",
    "combine_estimates",
    "common_speed",
    "constant_baseline_power",
    "correct_flow_offset",
    "flow_offset",
    "curve_band",
    "default_efficiency_tables",
    "efficiency",
    "electrical_power",
    "estimate_flow",
    "estimate_flow_tuned",
    "fan_efficiency",
    "fan_pressure",
    "fit_catalogue_curve",
    "fit_fan_curves",
    "fit_load_characteristic",
    "fit_load_characteristic_tuned",
    "fit_pump_curves",
    "fit_pump_curves_tuned",
    "fit_system_curve",
    "fit_system_curve_tuned",
    "flow_at_head",
    "flow_from_curve",
    "flow_from_head",
    "flow_from_power",
    "flow_from_ratio",
    "head",
    "integrate_energy",
    "jit",
    "kernel_names",
    "load_power",
    "min_speed_for_flow",
    "monotone_branch",
    "operating_point",
    "rls_coeffs",
    "rls_init",
    "rls_update",
    "rls_update_bounded",
    "runout_flow",
    "shaft_power",
    "shaft_power_uncertainty",
    "shaft_speed_ratio",
    "shift_curve",
    "stage_pumps",
    "stage_pumps_tables",
    "static_head_share",
    "system_curve_r_squared",
    "table_baseline_power",
    "throttle_baseline_power",
    "warmup",
]
