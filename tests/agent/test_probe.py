"""Commissioning judgements: a wrong scale or word order is named, not just flagged."""

from __future__ import annotations

import math

from agent.config.profile import BUILTIN_PROFILES, Point, Quantity, RegisterTable, load_profile
from agent.config.yamlsource import Issues
from agent.modbus.codec import DataType, Order, encode
from agent.modbus.probe import Rating, describe_bits, format_probe, judge
from agent.units import UNITS


def point(quantity, dtype, unit, scale=1.0, word_order=Order.BIG, saturates_at=None):
    dimension, factor = UNITS[unit]
    return Point(quantity, RegisterTable.HOLDING, 0, dtype, word_order, Order.BIG, scale, 0.0, unit,
                 dimension, factor, False, saturates_at)


def test_a_swapped_word_order_is_named():
    power = point(Quantity.POWER, DataType.FLOAT32, "kW")
    raw = encode(12.5, DataType.FLOAT32, Order.LITTLE)  # the drive sends CDAB, the profile says ABCD
    judged = judge(power, raw, Rating(power=15e3))
    assert judged.problems and "word_order: little would give 12.5 kW" in judged.problems[0]
    assert judge(power, encode(12.5, DataType.FLOAT32), Rating(power=15e3)).problems == ()


def test_a_wrong_scale_is_named():
    power = point(Quantity.POWER, DataType.UINT16, "kW", scale=1.0)  # the register is in 0.01 kW
    judged = judge(power, [1250], Rating(power=15e3))
    assert "implausible" in judged.problems[0] and "scale 0.01 would give 12.5 kW" in judged.problems[0]
    speed = point(Quantity.SPEED, DataType.INT16, "rpm", scale=10.0)
    rated = Rating(speed=1470 * 2 * math.pi / 60)
    assert "scale 1 would give 1470 rpm" in judge(speed, [1470], rated).problems[0]


def test_nan_and_a_stuck_counter_are_reported():
    power = point(Quantity.POWER, DataType.FLOAT32, "kW")
    assert "not a number" in judge(power, encode(math.nan, DataType.FLOAT32)).problems[0]
    energy = point(Quantity.ENERGY, DataType.INT16, "kWh", saturates_at=32767)
    assert "stuck at its maximum" in judge(energy, [32767]).problems[0]
    assert judge(energy, [1000]).problems == ()


def test_status_bits_are_named_from_the_profile():
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    assert describe_bits(g120, float((1 << 0) | (1 << 2) | (1 << 9))) == "ready running remote"
    assert describe_bits(g120, math.nan) == ""


def test_probe_prints_counters_and_limits_in_plain_notation():
    g120 = load_profile(BUILTIN_PROFILES / "generic.yaml", Issues())
    energy = g120.point(Quantity.ENERGY)
    assert energy is not None and energy.unit == "kWh" and energy.scale == 0.01
    judged = judge(energy, encode(123456789, energy.dtype, energy.word_order))
    text = format_probe([judged], g120, "127.0.0.1:502", 1)
    assert " 1234567.89 kWh" in text and "e+" not in text
    huge = judge(point(Quantity.POWER, DataType.FLOAT32, "kW"), encode(2.5e7, DataType.FLOAT32), Rating(15e3))
    assert "25000000 kW is outside -45..45 kW" in huge.problems[0]
    assert "e+" not in format_probe([huge], g120, "x", 1)
