"""Motor efficiency by size and class (IEC 60034-30-1), and its part-load shape.

Without a nameplate efficiency the agent needs the motor's full-load efficiency from
what a site always knows: the rated power, the poles (from the rated speed) and the
efficiency class. IEC 60034-30-1:2014 tabulates the nominal efficiency limits of
50 Hz motors per class (IE1..IE4), poles (2, 4, 6, 8) and rated power (0.12..1000 kW;
one value from 200 kW up). The rows below are the standard's 50 Hz tables for 2, 4 and
6 poles; the IE2..IE4 rows are the ones EU Regulation 2019/1781 Annex I (and UK SI
2021/745 Schedule 16) repeat, and tests/agent/test_motor_tables.py checks every row
against the standard's own interpolation formula
η = A·x³ + B·x² + C·x + D, x = log10(P / 1 kW), whose coefficients those texts give.

Between rows the efficiency is interpolated linearly in log10(P): the standard's
formula is a smooth curve in log10(P), and a line between two neighbouring rows
stays within 0.1 point of it (tested). A rating below 0.12 kW takes the 0.12 kW value;
above 200 kW the standard's single value applies up to 1000 kW.

Pure data and arithmetic: no configuration objects; the optimizer turns the result
into the 2 × N efficiency table the kernels take (``part_load_table``).
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np
from numpy.typing import NDArray


class EfficiencyClass(str, Enum):
    """IEC 60034-30-1 efficiency classes of line-fed induction motors."""

    IE1 = "IE1"
    IE2 = "IE2"
    IE3 = "IE3"
    IE4 = "IE4"


DEFAULT_CLASS = EfficiencyClass.IE3  # the EU minimum for 0.75..1000 kW since July 2021
POLES = (2, 4, 6)

# Rated power [kW] of the table rows; the last row holds from 200 kW up to 1000 kW.
RATED_POWER_KW = (
    0.12, 0.18, 0.20, 0.25, 0.37, 0.40, 0.55, 0.75, 1.1, 1.5, 2.2, 3.0, 4.0, 5.5, 7.5, 11.0,
    15.0, 18.5, 22.0, 30.0, 37.0, 45.0, 55.0, 75.0, 90.0, 110.0, 132.0, 160.0, 200.0,
)
MAX_RATED_POWER_KW = 1000.0

# Nominal efficiency [%] at 50 Hz, one tuple per pole count (2, 4, 6), rows as above.
_TABLES: dict[EfficiencyClass, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]] = {
    EfficiencyClass.IE1: (
        (45.0, 52.8, 54.6, 58.2, 63.9, 64.9, 69.0, 72.1, 75.0, 77.2, 79.7, 81.5, 83.1, 84.7, 86.0, 87.6,
         88.7, 89.3, 89.9, 90.7, 91.2, 91.7, 92.1, 92.7, 93.0, 93.3, 93.5, 93.8, 94.0),
        (50.0, 57.0, 58.5, 61.5, 66.0, 66.8, 70.0, 72.1, 75.0, 77.2, 79.7, 81.5, 83.1, 84.7, 86.0, 87.6,
         88.7, 89.3, 89.9, 90.7, 91.2, 91.7, 92.1, 92.7, 93.0, 93.3, 93.5, 93.8, 94.0),
        (38.3, 45.5, 47.6, 52.1, 59.7, 61.1, 65.8, 70.0, 72.9, 75.2, 77.7, 79.7, 81.4, 83.1, 84.7, 86.4,
         87.7, 88.6, 89.2, 90.2, 90.8, 91.4, 91.9, 92.6, 92.9, 93.3, 93.5, 93.8, 94.0),
    ),
    EfficiencyClass.IE2: (
        (53.6, 60.4, 61.9, 64.8, 69.5, 70.4, 74.1, 77.4, 79.6, 81.3, 83.2, 84.6, 85.8, 87.0, 88.1, 89.4,
         90.3, 90.9, 91.3, 92.0, 92.5, 92.9, 93.2, 93.8, 94.1, 94.3, 94.6, 94.8, 95.0),
        (59.1, 64.7, 65.9, 68.5, 72.7, 73.5, 77.1, 79.6, 81.4, 82.8, 84.3, 85.5, 86.6, 87.7, 88.7, 89.8,
         90.6, 91.2, 91.6, 92.3, 92.7, 93.1, 93.5, 94.0, 94.2, 94.5, 94.7, 94.9, 95.1),
        (50.6, 56.6, 58.2, 61.6, 67.6, 68.8, 73.1, 75.9, 78.1, 79.8, 81.8, 83.3, 84.6, 86.0, 87.2, 88.7,
         89.7, 90.4, 90.9, 91.7, 92.2, 92.7, 93.1, 93.7, 94.0, 94.3, 94.6, 94.8, 95.0),
    ),
    EfficiencyClass.IE3: (
        (60.8, 65.9, 67.2, 69.7, 73.8, 74.6, 77.8, 80.7, 82.7, 84.2, 85.9, 87.1, 88.1, 89.2, 90.1, 91.2,
         91.9, 92.4, 92.7, 93.3, 93.7, 94.0, 94.3, 94.7, 95.0, 95.2, 95.4, 95.6, 95.8),
        (64.8, 69.9, 71.1, 73.5, 77.3, 78.0, 80.8, 82.5, 84.1, 85.3, 86.7, 87.7, 88.6, 89.6, 90.4, 91.4,
         92.1, 92.6, 93.0, 93.6, 93.9, 94.2, 94.6, 95.0, 95.2, 95.4, 95.6, 95.8, 96.0),
        (57.7, 63.9, 65.4, 68.6, 73.5, 74.4, 77.2, 78.9, 81.0, 82.5, 84.3, 85.6, 86.8, 88.0, 89.1, 90.3,
         91.2, 91.7, 92.2, 92.9, 93.3, 93.7, 94.1, 94.6, 94.9, 95.1, 95.4, 95.6, 95.8),
    ),
    EfficiencyClass.IE4: (
        (66.5, 70.8, 71.9, 74.3, 78.1, 78.9, 81.5, 83.5, 85.2, 86.5, 88.0, 89.1, 90.0, 90.9, 91.7, 92.6,
         93.3, 93.7, 94.0, 94.5, 94.8, 95.0, 95.3, 95.6, 95.8, 96.0, 96.2, 96.3, 96.5),
        (69.8, 74.7, 75.8, 77.9, 81.1, 81.7, 83.9, 85.7, 87.2, 88.2, 89.5, 90.4, 91.1, 91.9, 92.6, 93.3,
         93.9, 94.2, 94.5, 94.9, 95.2, 95.4, 95.7, 96.0, 96.1, 96.3, 96.4, 96.6, 96.7),
        (64.9, 70.1, 71.4, 74.1, 78.0, 78.7, 80.9, 82.7, 84.5, 85.9, 87.4, 88.6, 89.5, 90.5, 91.3, 92.3,
         92.9, 93.4, 93.7, 94.2, 94.5, 94.8, 95.1, 95.4, 95.6, 95.8, 96.0, 96.2, 96.3),
    ),
}

# Share of the full-load losses that do not depend on load (iron, friction, windage).
# A standard cage motor has 25-40 %; 0.3 reproduces the DOE MEASUR premium 200 hp motor
# of kernels.electrical within 1.3 points from 25 % to 125 % load (closest at 50-100 %).
CONSTANT_LOSS_SHARE = 0.3
PART_LOAD_POINTS = (0.05, 0.10, 0.25, 0.50, 0.75, 1.00, 1.25)


def poles_from_speed(rated_speed_rpm: float, frequency_hz: float = 50.0) -> int:
    """Pole count of an induction motor from its rated speed: the synchronous speed just above it."""
    if not (rated_speed_rpm > 0.0 and frequency_hz > 0.0):
        raise ValueError(f"rated speed {rated_speed_rpm} rpm and frequency {frequency_hz} Hz must be "
                         "positive")
    pairs = max(1, math.floor(60.0 * frequency_hz / rated_speed_rpm))
    return 2 * pairs


def rated_slip(rated_speed_rpm: float, frequency_hz: float = 50.0) -> float:
    """Rated slip (n_sync − n_rated) / n_sync of an induction motor."""
    sync = 120.0 * frequency_hz / poles_from_speed(rated_speed_rpm, frequency_hz)
    return (sync - rated_speed_rpm) / sync


MAINS_FREQUENCIES_HZ = (50.0, 60.0)
MAX_RATED_SLIP = 0.1  # a cage motor's rated slip is 0.5-8 %: more means the wrong mains frequency


def rated_frequency(rated_speed_rpm: float) -> float:
    """The mains frequency [Hz] a motor's rated speed belongs to: the one giving a plausible slip.

    1470 rpm is a 4-pole 50 Hz motor (slip 2 %), 1780 rpm a 4-pole 60 Hz one (read at 50 Hz
    it would be a 2-pole motor slipping 41 %); 50 Hz where neither is plausible.
    """
    for frequency in MAINS_FREQUENCIES_HZ:
        if 0.0 < rated_slip(rated_speed_rpm, frequency) <= MAX_RATED_SLIP:
            return frequency
    return MAINS_FREQUENCIES_HZ[0]


def table_efficiency(rated_power_kw: float, poles: int,
                     efficiency_class: EfficiencyClass = DEFAULT_CLASS) -> float:
    """``full_load_efficiency`` for any motor: poles and power brought inside the tables.

    An 8-pole motor takes the 6-pole row (about a point optimistic), a rating beyond
    1000 kW the last value: a default the sensorless interval's loss allowance covers,
    where refusing would leave the pump without an estimate.
    """
    nearest = min(POLES, key=lambda p: abs(p - poles))
    return full_load_efficiency(min(max(rated_power_kw, 1e-3), MAX_RATED_POWER_KW), nearest, efficiency_class)


def full_load_efficiency(rated_power_kw: float, poles: int,
                         efficiency_class: EfficiencyClass = DEFAULT_CLASS) -> float:
    """Nominal full-load efficiency (ratio) of a 50 Hz motor of this power, poles and class.

    ValueError for poles other than 2, 4, 6 or a power outside (0, 1000] kW.
    """
    if poles not in POLES:
        raise ValueError(f"IEC 60034-30-1 tables here cover 2, 4 and 6 poles, not {poles}")
    if not 0.0 < rated_power_kw <= MAX_RATED_POWER_KW:
        raise ValueError(f"rated power {rated_power_kw} kW is outside 0..{MAX_RATED_POWER_KW:g} kW")
    row = _TABLES[efficiency_class][POLES.index(poles)]
    x = math.log10(min(max(rated_power_kw, RATED_POWER_KW[0]), RATED_POWER_KW[-1]))
    return float(np.interp(x, np.log10(RATED_POWER_KW), row)) / 100.0


def part_load_efficiency(load: float, full_load: float,
                         constant_loss_share: float = CONSTANT_LOSS_SHARE) -> float:
    """Efficiency at a load fraction (shaft / rated power) from a two-term loss model.

    Losses = L_r·(k0 + (1 − k0)·load²), L_r = 1/η_r − 1 the full-load losses per unit
    rated power: constant (iron, friction) plus load-dependent (copper) losses. So the
    efficiency peaks near 75 % load and collapses at light load, as real motors do.
    """
    if not (0.0 < full_load < 1.0 and load >= 0.0):
        return math.nan
    if load == 0.0:
        return 0.0
    losses = (1.0 / full_load - 1.0) * (constant_loss_share + (1.0 - constant_loss_share) * load * load)
    return load / (load + losses)


def part_load_table(full_load: float,
                    constant_loss_share: float = CONSTANT_LOSS_SHARE) -> NDArray[np.float64]:
    """The 2 × N motor efficiency table (load fraction, efficiency) the kernels take."""
    loads = np.array(PART_LOAD_POINTS)
    effs = np.array([part_load_efficiency(float(x), full_load, constant_loss_share) for x in loads])
    return np.vstack([loads, effs])


# Losses by speed and torque, for the shaft power behind a measured electrical power (sensorless
# flow). The load-only table above prices a motor at rated speed; on a drive at 40 % speed the
# iron and magnetizing losses do not shrink with the load, and a load-only model reads the
# shaft power 20 % low there. Structure of a cage motor on a drive (textbook, e.g. IEC TS
# 60034-2-3's loss segregation): the rated losses L_r split into iron losses (∝ speed^1.5 at
# constant flux), friction and windage (the shaft fan: ∝ speed³, the Modelica Standard
# Library's default friction law) and current losses ∝ I², I/I_r = √(m² + (1 − m²) τ²) with τ the
# torque over rated torque and m the no-load current share, read off typical 4-pole catalogue
# no-load currents (about 45 % at 1 kW, 35 % at 10 kW, 25 % at 100 kW, interpolated in log10 P).
# Iron and friction keep CONSTANT_LOSS_SHARE between them, split as the Modelica library's
# measured 18.5 kW 4-pole motor (core 410 W, friction 180 W of 1944 W: 21 % and 9 %); lumped
# at speed^1.5 the friction read a pump's shaft power 1.3-3 % low at 40-55 % speed.
# The drive: 2.5 % of its rated input at rated current (IEC 61800-9-2 reference losses of an
# IE2 drive, 10-100 kW), a third fixed, a third ∝ I, a third ∝ I². ABB's ACS350 (4-5.5 kW) lists
# 12-33 W of control-circuit heat beside 94-130 W of main circuit at rated current (8-26 %
# fixed): a third is at its high end, kept: one small series is weak evidence, and the level at
# rated current is as uncertain (2-3 % among IE1-IE2 drives); the losses' 15 % budget holds both.
FRICTION_LOSS_SHARE = 0.09  # of the full-load losses; the iron takes the rest of CONSTANT_LOSS_SHARE
NO_LOAD_CURRENT_KW = (1.0, 10.0, 100.0)
NO_LOAD_CURRENT_SHARE = (0.45, 0.35, 0.25)
DRIVE_RATED_LOSS = 0.025
DRIVE_LOSS_SHARES = (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0)  # fixed, ∝ I, ∝ I² at rated current
MIN_LOSS_SPEED = 0.05  # torque of a running motor below this speed is taken at this speed


def no_load_current_share(rated_power_kw: float) -> float:
    """No-load current over rated current of a cage motor (typical 4-pole catalogue values)."""
    x = math.log10(min(max(rated_power_kw, NO_LOAD_CURRENT_KW[0]), NO_LOAD_CURRENT_KW[-1]))
    return float(np.interp(x, np.log10(NO_LOAD_CURRENT_KW), NO_LOAD_CURRENT_SHARE))


def losses(shaft: NDArray[np.float64], speed_ratio: NDArray[np.float64], rated_power: float,
           full_load: float, no_load_share: float | None = None, drive: bool = True) -> NDArray[np.float64]:
    """Motor and drive losses [W] at a shaft power [W] and speed ratio (see the comment above).

    ``no_load_share``: the motor's no-load current share if already known (a caller's loop);
    ``drive``: with the drive's own losses (a power read on the mains side), else the motor's alone.
    """
    m = no_load_current_share(rated_power / 1e3) if no_load_share is None else no_load_share
    no_load, per_shaft2 = _motor_terms(speed_ratio, rated_power, full_load, m)
    motor: NDArray[np.float64] = no_load + per_shaft2 * np.maximum(shaft, 0.0) ** 2
    if not drive:
        return motor
    current2 = _current2(shaft, speed_ratio, rated_power, m)
    result: NDArray[np.float64] = motor + _inverter(current2, rated_power, full_load)
    return result


def _motor_terms(speed_ratio: NDArray[np.float64], rated_power: float, full_load: float,
                 no_load_share: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The motor's losses [W] at a speed ratio as a + b · shaft²: (a, b).

    Iron ∝ speed^1.5, friction ∝ speed³, current losses ∝ I² = m² + (1 − m²) τ², τ = P / (P_r · speed).
    """
    m = no_load_share
    speed = np.maximum(speed_ratio, MIN_LOSS_SPEED)
    rated_loss = rated_power * (1.0 / full_load - 1.0)
    iron = CONSTANT_LOSS_SHARE - FRICTION_LOSS_SHARE
    copper = 1.0 - CONSTANT_LOSS_SHARE
    no_load = rated_loss * (iron * speed**1.5 + FRICTION_LOSS_SHARE * speed**3 + copper * m * m)
    per_shaft2 = rated_loss * copper * (1.0 - m * m) / (rated_power * speed) ** 2
    return no_load, per_shaft2


def _motor_shaft(electrical: NDArray[np.float64], speed_ratio: NDArray[np.float64], rated_power: float,
                 full_load: float, no_load_share: float) -> NDArray[np.float64]:
    """Shaft power [W] behind the motor's input [W]: P_el = P + a + b P² solved exactly; 0 below a."""
    no_load, per_shaft2 = _motor_terms(speed_ratio, rated_power, full_load, no_load_share)
    excess = np.maximum(electrical - no_load, 0.0)
    result: NDArray[np.float64] = 2.0 * excess / (1.0 + np.sqrt(1.0 + 4.0 * per_shaft2 * excess))
    return result


def _current2(shaft: NDArray[np.float64], speed_ratio: NDArray[np.float64], rated_power: float,
              no_load_share: float) -> NDArray[np.float64]:
    """(I / I_rated)² of the motor at a shaft power [W] and speed ratio."""
    m = no_load_share
    torque = np.maximum(shaft, 0.0) / rated_power / np.maximum(speed_ratio, MIN_LOSS_SPEED)
    result: NDArray[np.float64] = m * m + (1.0 - m * m) * torque * torque
    return result


def _inverter(current2: NDArray[np.float64], rated_power: float, full_load: float) -> NDArray[np.float64]:
    """The drive's own losses [W] at a motor current (I / I_rated)²."""
    fixed, linear, square = DRIVE_LOSS_SHARES
    result: NDArray[np.float64] = DRIVE_RATED_LOSS * rated_power / full_load * (
        fixed + linear * np.sqrt(current2) + square * current2)
    return result


def drive_losses_behind_output(output: float, speed_ratio: float, rated_power: float,
                               full_load: float) -> float:
    """The drive's own losses [W] behind its output power [W] (the motor's input) at a speed ratio.

    What a drive reading its output leaves out of the mains power: the motor's shaft power
    behind the reading (the motor's losses alone, as ``shaft_from_electrical``), then the drive's
    losses at that current, the same law ``losses`` adds for a mains reading. An output that
    does not cover the motor's no-load losses is taken at no load. Without a speed reading
    (NaN) the speed is the affinity law's for the output, (P / P_rated)^(1/3): pumps and fans.
    """
    output = max(output, 0.0)
    speed = speed_ratio if math.isfinite(speed_ratio) else min((output / rated_power) ** (1.0 / 3.0), 1.0)
    ratio = np.float64(speed)
    m = no_load_current_share(rated_power / 1e3)
    shaft = _motor_shaft(np.float64(output), ratio, rated_power, full_load, m)
    current2 = _current2(shaft, ratio, rated_power, m)
    return float(_inverter(current2, rated_power, full_load))


def motor_full_load(motor_efficiency: float, rated_power: float, rated_speed_rpm: float, poles: int,
                    efficiency_class: EfficiencyClass) -> float:
    """A motor's full-load efficiency: the nameplate's if given (finite), else the tables' for its size.

    ``poles`` 0: from the rated speed at the mains frequency it belongs to.
    """
    if math.isfinite(motor_efficiency):
        return motor_efficiency
    poles = poles or poles_from_speed(rated_speed_rpm, rated_frequency(rated_speed_rpm))
    return table_efficiency(rated_power / 1e3, poles, efficiency_class)


def shaft_from_electrical(electrical: NDArray[np.float64], speed_ratio: NDArray[np.float64],
                          rated_power: float, full_load: float, drive: bool = True) -> NDArray[np.float64]:
    """Shaft power [W] behind a measured electrical power [W] at a speed ratio; NaN where none is.

    Solves P_el = P + losses(P, r): the motor's alone exactly (a quadratic in P), with the
    drive's by fixed point (the losses grow slower than the power, so it contracts, to a
    milliwatt in a few steps); NaN where the electrical power does not cover the no-load
    losses. ``drive``: the power is the drive's input (its losses in it); False for its
    output, the motor's input.
    """
    electrical = np.asarray(electrical, dtype=np.float64)
    speed_ratio = np.asarray(speed_ratio, dtype=np.float64)
    m = no_load_current_share(rated_power / 1e3)
    shaft = _motor_shaft(electrical, speed_ratio, rated_power, full_load, m)
    for _ in range(30 if drive else 0):
        new = np.maximum(electrical - losses(shaft, speed_ratio, rated_power, full_load, m, drive), 0.0)
        done = bool(np.all(np.abs(new - shaft) <= 1e-3))
        shaft = new
        if done:
            break
    result: NDArray[np.float64] = np.where((electrical > 0.0) & (shaft > 0.0), shaft, np.nan)
    return result
