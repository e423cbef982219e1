"""Electrical input power from shaft power through part-load motor and drive efficiency.

Efficiency tables are 2 x N float64 arrays: row 0 the load fraction (shaft power / rated
power, strictly increasing), row 1 the efficiency (0, 1]. Linear interpolation, held
constant beyond the ends (so below the first point the first efficiency applies).
"""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._tables import interp_valid, table_is_valid
from kernels._typing import FloatArray

# Premium-efficiency (IE3/NEMA Premium) 200 hp, 1780 rpm motor from the US DOE MEASUR
# test suite: 0.935, 0.964, 0.965, 0.961, 0.952 at 25/50/75/100/125 % load. The points
# at 5 % and 10 % load come from a loss model fitted to those figures (constant no-load
# loss 1.6 % of rated plus copper loss 2.5 % x load^2): efficiency collapses at light
# load instead of being held at its 25 % value.
MOTOR_EFFICIENCY_TABLE: tuple[tuple[float, ...], tuple[float, ...]] = (
    (0.05, 0.10, 0.25, 0.50, 0.75, 1.00, 1.25),
    (0.759, 0.861, 0.935, 0.964, 0.965, 0.961, 0.952),
)

# A typical low-voltage PWM drive (IEC 61800-9-2 IE2 class): about 97-98 % near rated
# load, falling at light load where switching and control losses dominate. Illustrative
# defaults; use the drive maker's figures where known.
DRIVE_EFFICIENCY_TABLE: tuple[tuple[float, ...], tuple[float, ...]] = (
    (0.05, 0.125, 0.25, 0.50, 0.75, 1.00),
    (0.80, 0.90, 0.94, 0.965, 0.975, 0.98),
)


@jit
def electrical_power(
    shaft_power: float,
    rated_power: float,
    motor_eff_table: FloatArray,
    drive_eff_table: FloatArray,
) -> float:
    """Electrical input power [W] = P_shaft / (eta_motor(L) eta_drive(L)), L = P / P_rated.

    ``rated_power`` is the motor's rated shaft power [W]; both efficiencies are read at
    the same load fraction. Zero shaft power gives 0 (the tables cannot represent no-load
    losses); negative or NaN shaft power, a non-positive rated power, or an invalid table
    (see ``efficiency_tables_valid``) give NaN.
    """
    if not (shaft_power >= 0.0 and rated_power > 0.0 and np.isfinite(rated_power)):
        return np.nan
    if not np.isfinite(shaft_power):
        return np.nan
    if not (efficiency_tables_valid(motor_eff_table, drive_eff_table)):
        return np.nan
    return electrical_power_unchecked(shaft_power, rated_power, motor_eff_table, drive_eff_table)


@jit
def efficiency_tables_valid(motor_eff_table: FloatArray, drive_eff_table: FloatArray) -> bool:
    """True if both are 2 x N tables, load fractions increasing, efficiencies in (0, 1].

    A zero efficiency (often written at 0 % load) is rejected: interpolating towards it
    turns a few watts of shaft power into kilowatts of "input power".
    """
    if motor_eff_table.shape[0] != 2 or drive_eff_table.shape[0] != 2:
        return False
    for table in (motor_eff_table, drive_eff_table):
        if not table_is_valid(table[0], table[1]):
            return False
        for j in range(table.shape[1]):
            if not (0.0 < table[1, j] <= 1.0):
                return False
    return True


@jit
def electrical_power_unchecked(
    shaft_power: float,
    rated_power: float,
    motor_eff_table: FloatArray,
    drive_eff_table: FloatArray,
) -> float:
    """``electrical_power`` for tables already checked by ``efficiency_tables_valid``."""
    if not (shaft_power >= 0.0 and rated_power > 0.0 and np.isfinite(shaft_power)):
        return np.nan
    load = shaft_power / rated_power
    eta_m = interp_valid(load, motor_eff_table[0], motor_eff_table[1])
    eta_d = interp_valid(load, drive_eff_table[0], drive_eff_table[1])
    if not (0.0 < eta_m <= 1.0 and 0.0 < eta_d <= 1.0):
        return np.nan
    if shaft_power == 0.0:
        return 0.0
    return shaft_power / (eta_m * eta_d)


def default_efficiency_tables() -> tuple[FloatArray, FloatArray]:
    """Fresh (motor, drive) 2 x N arrays of the module's default efficiency tables."""
    return (
        np.array(MOTOR_EFFICIENCY_TABLE, dtype=np.float64),
        np.array(DRIVE_EFFICIENCY_TABLE, dtype=np.float64),
    )
