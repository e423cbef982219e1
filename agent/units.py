"""Friendly units at the config and profile edge, converted once to SI.

Inside the agent everything is SI: W, J, m³/s, m, Pa, Hz, A, V, rad/s, and
dimensionless ratios (temperature in °C, Prometheus's base unit). A unit name
maps to its dimension and the factor that turns a value in that unit into SI.
"""

from __future__ import annotations

import math
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
