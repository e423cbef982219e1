"""Friendly units at the config and profile edge, converted once to SI.

Inside the agent everything is SI: W, J, m³/s, m, Pa, Hz, A, V, rad/s, and
dimensionless ratios (temperature in °C, Prometheus's base unit). A unit name
maps to its dimension and the factor that turns a value in that unit into SI.

It is also the one place for the physical facts every module shares: ρg and the
head↔pressure conversion, the plausibility limit on power, the "running" rule, and
the ``Clock`` type of every injected clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum


class Dimension(Enum):
    """What a quantity measures; decides which units are acceptable."""

    RATIO = "ratio"
    ANGULAR_SPEED = "angular speed"
    FREQUENCY = "frequency"
    POWER = "power"
    ENERGY = "energy"
    CURRENT = "current"
    VOLTAGE = "voltage"
    FLOW = "volume flow"
    PRESSURE = "pressure"
    HEAD = "head"
    TORQUE = "torque"
    TEMPERATURE = "temperature"
    BITS = "bit field"


RPM_TO_RAD_S = 2.0 * math.pi / 60.0
KWH_TO_J = 3.6e6

UNITS: dict[str, tuple[Dimension, float]] = {
    "1": (Dimension.RATIO, 1.0),
    "%": (Dimension.RATIO, 0.01),
    "rpm": (Dimension.ANGULAR_SPEED, RPM_TO_RAD_S),
    "rad/s": (Dimension.ANGULAR_SPEED, 1.0),
    "Hz": (Dimension.FREQUENCY, 1.0),
    "W": (Dimension.POWER, 1.0),
    "kW": (Dimension.POWER, 1e3),
    "MW": (Dimension.POWER, 1e6),
    "J": (Dimension.ENERGY, 1.0),
    "kJ": (Dimension.ENERGY, 1e3),
    "MJ": (Dimension.ENERGY, 1e6),
    "Wh": (Dimension.ENERGY, 3.6e3),
    "kWh": (Dimension.ENERGY, KWH_TO_J),
    "MWh": (Dimension.ENERGY, 1e3 * KWH_TO_J),
    "A": (Dimension.CURRENT, 1.0),
    "V": (Dimension.VOLTAGE, 1.0),
    "m3/s": (Dimension.FLOW, 1.0),
    "m3/h": (Dimension.FLOW, 1.0 / 3600.0),
    "l/s": (Dimension.FLOW, 1e-3),
    "l/min": (Dimension.FLOW, 1e-3 / 60.0),
    "Pa": (Dimension.PRESSURE, 1.0),
    "kPa": (Dimension.PRESSURE, 1e3),
    "bar": (Dimension.PRESSURE, 1e5),
    "m": (Dimension.HEAD, 1.0),
    "Nm": (Dimension.TORQUE, 1.0),
    # Prometheus's base unit for temperature is the degree Celsius, so the agent keeps it inside too.
    "degC": (Dimension.TEMPERATURE, 1.0),
    "bits": (Dimension.BITS, 1.0),
}


def si_factor(unit: str) -> tuple[Dimension, float]:
    """Dimension and SI factor of a unit name; KeyError names the valid ones."""
    try:
        return UNITS[unit]
    except KeyError:
        raise KeyError(f"unknown unit {unit!r}; known: {', '.join(UNITS)}") from None


# --- one place for each physical fact the agent uses -------------------------------------------

GRAVITY = 9.80665  # standard gravity [m/s²]
WATER_DENSITY = 998.0  # kg/m³, water at about 20 °C (the simulator assumes the same)
RHO_G = WATER_DENSITY * GRAVITY  # Pa per metre of water column


def head_per_pressure(*, fan: bool, head_point: bool = False) -> float:
    """Factor from a pressure point's SI value to a machine's own unit (m of water for pumps, Pa for fans).

    A pump's head is in metres; a fan's "head" is its pressure rise in Pa. A point whose
    dimension is already a head (metres) needs no conversion.
    """
    return 1.0 if fan or head_point else 1.0 / RHO_G


def pressure_from_head(value: float, *, fan: bool) -> float:
    """A machine-unit head (m for pumps, Pa for fans) as a pressure [Pa]."""
    return value if fan else value * RHO_G


def head_from_pressure(pressure: float, *, fan: bool) -> float:
    """A pressure [Pa] in machine units (m of water for pumps, Pa for fans)."""
    return pressure if fan else pressure / RHO_G


# A reading beyond this is almost always a wrong scale or word order, not physics; an energy
# counter step above it (× rated power × interval) is not a drive's draw either.
MAX_POWER_OVER_RATED = 3.0

# The one "running" rule: above this speed ratio a drive runs; without a speed point, above
# this share of its rated power. Below 5 % speed a pump or fan moves nothing worth counting
# (every configured minimum speed is far above it), and a stopping drive's ramp crosses it
# within a poll or two.
RUNNING_SPEED_RATIO = 0.05
RUNNING_POWER_RATIO = 0.005


def is_running(speed_ratio: float, power: float, rated_power: float) -> bool:
    """True if a drive at ``speed_ratio`` (NaN: unknown) drawing ``power`` [W] runs."""
    if math.isfinite(speed_ratio):
        return speed_ratio >= RUNNING_SPEED_RATIO
    return math.isnan(speed_ratio) and power > RUNNING_POWER_RATIO * rated_power


Clock = Callable[[], float]  # a monotonic clock [s]; injected so tests control time
