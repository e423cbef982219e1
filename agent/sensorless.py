"""Sensorless flow of a pump drive: an estimate with its 90 % uncertainty, from the best calibration it has.

Without a flow meter the flow comes from the shaft power and speed on the pump's power
curve (``kernels.sensorless``), and with a differential-pressure point across the pump
also from its head on the head curve (the two combined). The curves are, best first:

- ``dp``: the pump's own DP is read every poll (``dp_across_pump``);
- ``clamp_on``: a portable meter's one-off reading: the power it shows beyond the curve split
  among a leak (the wear head and power cannot see), the power's scale and part-load loss;
- ``shutoff``: a closed-valve test (a known zero flow): the power it shows above the curve is
  wear, leakage and part-load loss, both fitted and the split between them stated;
- ``catalogue``: the published curve's points, fitted with cubics;
- ``datasheet``: the rated point alone (``agent.optimizer.datasheet``): uncalibrated.

The shaft power behind the drive's electrical power is read through the motor's and
drive's losses by speed and torque (``agent.motor_tables``: the nameplate efficiency, else
IEC 60034-30-1 by size, poles and class), and the shaft speed from a frequency-based speed
reading through the rated slip. Where the flow is not identifiable (a flat curve, off the
curve, an interval wider than ``MAX_REL_U``) the estimate is NaN: that drive has none.
The uncertainty constants (``Budget``) were set on bench/sensorless.py's seed 1.
Long because each calibration is a method of the one estimator whose curves and bands it
changes in turn (shut-off test, then clamp-on reading, then DP learning), kept together.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.polynomial.polynomial import polyval
from numpy.typing import NDArray

from agent.config import DriveConfig, LoadConfig, LoadKind
from agent.config.model import CurvePoints, SensorlessConfig, SpotReading
from agent.config.profile import PowerMeasuredAt, Quantity
from agent.motor_tables import (
    MAX_RATED_SLIP,
    motor_full_load,
    rated_frequency,
    rated_slip,
    shaft_from_electrical,
)
from agent.optimizer.datasheet import datasheet_curves
from agent.units import RPM_TO_RAD_S, Dimension, head_per_pressure
from kernels import (
    calibrate_shutoff,
    combine_estimates,
    curve_band,
    fit_catalogue_curve,
    flow_from_head,
    flow_from_power,
    flow_offset,
    shaft_power_uncertainty,
    shaft_speed_ratio,
    shift_curve,
)

FloatArray = NDArray[np.float64]
MIN_SPEED = 0.2  # below this speed ratio a reading says nothing about the flow
MIN_SENSITIVITY = 0.1  # |c'(x)| x_end / c(x) below which a curve says too little about flow
MAX_REL_U = 0.5  # no estimate where the stated 90 % interval is wider than half the estimate
Z90 = 1.645  # two-sided 90 % of a normal distribution
CATALOGUE_DEGREE = 3
DATASHEET_X_MAX = 1.5  # a datasheet curve is read up to this × the rated flow
HEAD_LOSS_POINTS = 200  # the latest points from which a DP drive's head loss is learned ...
MIN_HEAD_LOSS_POINTS = 20  # ... and how many it needs first
MAX_HEAD_LOSS = 0.15  # of the rated head at the rated flow: more is not wear but a wrong curve
CLAMP_ON_ACCURACY = 0.02  # relative standard uncertainty of a portable ultrasonic meter
LEAK_BOUND = 2.0  # a shut-off test bounds the leak at most at this × the prior shift (its 2 sigma)
SHUTOFF_GRID = 31  # points on which the curve after a shut-off test is refitted


class Calibration(Enum):
    """What a drive's flow estimate rests on, best first (``CALIBRATIONS``)."""

    DP = "dp"
    CLAMP_ON = "clamp_on"
    SHUTOFF = "shutoff"
    CATALOGUE = "catalogue"
    DATASHEET = "datasheet"


CALIBRATIONS = tuple(Calibration)


@dataclass(frozen=True)
class Budget:
    """Relative standard uncertainties by source and calibration state (set on the bench's seed 1)."""

    losses: float = 0.15  # the motor's and drive's losses from tables (IEC 60034-1: 15 % for a motor)
    head: float = 0.006  # DP transmitter, 0.5 % noise plus calibration
    speed: float = 0.002  # after the slip correction: rated speed ±20 % of its slip
    curve: float = 0.015  # the catalogue power curve as read and fitted (value, relative)
    head_curve: float = 0.015  # the catalogue head curve as read and fitted
    curve_out: float = 0.04  # per best-efficiency flow away from a calibrated point (part-load wear)
    shift: float = 0.05  # flow-axis shift a new or worn pump may have unseen (leakage), x rated flow
    wear_power: float = 0.06  # power a worn pump adds at shut-off, falling to 0 at the rated flow
    wear_head: float = 0.03  # head a worn impeller loses at the rated flow, from 0 at shut-off
    datasheet: float = 0.15  # a curve assumed from the rated point alone (value, relative)
    datasheet_shift: float = 0.10  # ... and its flow axis, x rated flow
    # A catalogue cubic extrapolated below its first printed point: × (distance / rated flow)²
    # (the constructed families read from 25 % and 50 % only: power 2.7 % and 11 % rms at shut-off).
    printed_out: float = 0.44


BUDGET = Budget()


@dataclass(frozen=True)
class FlowEstimate:
    """A drive's flow [m³/s] and the relative half-width of its 90 % interval; NaN where none."""

    flow: float
    rel_u90: float
    calibration: Calibration

    @property
    def available(self) -> bool:
        """The flow is identifiable here."""
        return math.isfinite(self.flow)


def _fit(points: CurvePoints) -> FloatArray:
    flow, value = np.array(points.flow), np.array(points.value)
    coeffs: FloatArray = fit_catalogue_curve(flow, value, CATALOGUE_DEGREE)
    return coeffs


def _with_part_load(power: FloatArray, extra: float, x_ref: float, x_max: float) -> FloatArray:
    """A power curve plus part-load loss: ``extra`` [W] at shut-off, ∝ (1 − x / x_ref)², 0 from x_ref."""
    if extra == 0.0:
        return power
    grid = np.linspace(0.0, x_max, SHUTOFF_GRID)
    rest = np.clip(1.0 - grid / x_ref, 0.0, None)
    return _fit(CurvePoints(tuple(grid), tuple(polyval(grid, power) + extra * rest**2)))


def _split(prior: FloatArray, rows: FloatArray, residual: FloatArray,
           noise: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Posterior mean and covariance of independent zero-mean causes after linear readings of them.

    ``prior``: the causes' standard deviations; ``rows``: each reading's sensitivity to them;
    ``residual``: what each reading shows beyond the curve; ``noise``: each reading's own variance.
    """
    sigma = np.diag(prior**2)
    gain = sigma @ rows.T @ np.linalg.inv(rows @ sigma @ rows.T + np.diag(noise))
    mean: FloatArray = gain @ residual
    cov: FloatArray = sigma - gain @ rows @ sigma
    return mean, cov


class FlowEstimator:
    """One pump drive's sensorless flow: its curves after every calibration it has had."""

    def __init__(self, sensorless: SensorlessConfig, load: LoadConfig, rated_power: float,
                 rated_speed_rpm: float, motor_efficiency: float = math.nan, budget: Budget = BUDGET, *,
                 power_at: PowerMeasuredAt) -> None:
        self.settings = sensorless
        self.budget = b = budget
        self.rated_power = rated_power
        # The drive's own losses are in its power reading only where that is read on the mains side.
        self.drive_losses = power_at is PowerMeasuredAt.DRIVE_INPUT
        frequency = rated_frequency(rated_speed_rpm)
        self.full_load = motor_full_load(motor_efficiency, rated_power, rated_speed_rpm, sensorless.poles,
                                         sensorless.motor_class)
        self.head_factor = math.nan  # the pressure reading's SI value to the pump's head [m]; NaN: none
        slip = rated_slip(rated_speed_rpm, frequency)
        self.slip = 0.0 if sensorless.speed_is_shaft or not 0.0 < slip <= MAX_RATED_SLIP else slip
        q_ref = load.rated_flow
        self.q_ref = q_ref
        prior = datasheet_curves(load, rated_power)
        self.head: FloatArray = np.asarray(prior.head, dtype=np.float64)
        self.power: FloatArray = np.asarray(prior.power, dtype=np.float64)
        self.x_max = DATASHEET_X_MAX * q_ref
        had = [Calibration.DATASHEET]
        # The first flow each catalogue curve shows: below it the cubic is extrapolated.
        self.printed_from, self.head_printed_from = 0.0, 0.0
        self.u_head, self.u_power, self.shift = b.datasheet, b.datasheet, b.datasheet_shift
        if sensorless.catalogue_power is not None:
            self.power = _fit(sensorless.catalogue_power)
            self.x_max = sensorless.catalogue_power.flow[-1]
            self.printed_from = sensorless.catalogue_power.flow[0]
            self.u_power, self.shift = b.curve, b.shift
            had.append(Calibration.CATALOGUE)
        if sensorless.catalogue_head is not None:
            self.head = _fit(sensorless.catalogue_head)
            self.u_head = b.head_curve
            self.head_printed_from = sensorless.catalogue_head.flow[0]
        # Wear the published curve cannot show: the power curve is sure from the rated flow
        # up and less so toward shut-off (part-load recirculation adds power), the head curve
        # sure at shut-off and less so toward run-out (a worn impeller loses head ∝ flow²).
        self.power_band = self._band(self.u_power, b.wear_power, q_ref, self.x_max, self.shift)
        self.head_band = self._band(self.u_head, b.wear_head, 0.0, 0.0, self.shift, head=True)
        # What a shut-off test left of the leak (standard deviation [m³/s]), and the test's point, for
        # a clamp-on reading to weigh its own evidence against (``_clamp_on``).
        self.leak_u = self.shift * q_ref
        self._tested_head = math.nan  # the test's measured shut-off head, collapsed [m]
        tested = sensorless.shutoff is not None and self._shutoff(sensorless.shutoff)
        if tested:
            had.append(Calibration.SHUTOFF)
        if sensorless.clamp_on is not None and self._clamp_on(sensorless.clamp_on, tested):
            had.append(Calibration.CLAMP_ON)
        if sensorless.dp_across_pump:
            had.append(Calibration.DP)
        self.calibrations = tuple(c for c in CALIBRATIONS if c in had)  # best first
        self.calibration = self.calibrations[0]
        # With DP, the head lost to wear, learned from the polls (``_learn_head_loss``).
        self._head_loss: deque[float] = deque(maxlen=HEAD_LOSS_POINTS)
        self.head_in_use: FloatArray = self.head
        self.head_band_in_use: FloatArray = self.head_band

    def _shutoff(self, spot: SpotReading) -> bool:
        """A closed-valve test: the wear held in the power it shows above the curve at a known zero flow.

        Two kinds of wear add power at shut-off: internal leakage (the impeller moves the
        delivered flow plus the leak: both curves shift along the flow axis, ``shift_curve``)
        and part-load loss (recirculation and opened clearances: power that falls to nothing
        at the best-efficiency flow, taken ∝ (1 − x / x_ref)²). One reading cannot split its
        excess E between them: the leak lies anywhere from 0 (all part-load loss) to E / p'(0)
        (all leakage), at most ``LEAK_BOUND`` × the prior shift. The curves in use take the
        middle of that range (the least worst error at either end) and the power band its
        half-width as a rectangular uncertainty, growing from the test's point (where the
        curve is now measured) to the rated flow (where the two ends differ by the leak
        alone). Where the power curve is too flat at shut-off for the reading to resolve a
        leak (``_resolves_leak``) its power says nothing of it, the excess taken as part-load
        loss; its head may (``_leak_from_head``: on a head curve falling from shut-off, as a
        mixed-flow pump's, whose power is the flat one), and the curves take that leak and the
        bands what it leaves of the prior's; else no shift, the prior kept. What is left of the
        leak (``leak_u``: the range's rectangular deviation, else the prior's) is what a
        clamp-on reading weighs its own evidence against (``_clamp_on``).
        """
        shaft, r = self.shaft_and_speed(spot.power, spot.speed_ratio)
        if not (math.isfinite(shaft) and math.isfinite(r) and r > 0.0):
            return False
        b, q = self.budget, self.q_ref
        p0 = float(self.power[0])
        slope = float(self.power[1]) if self.power.shape[0] > 1 else 0.0
        excess, curve = self._shutoff_split(shaft / r**3 - p0, slope)
        bound = LEAK_BOUND * b.shift * q
        resolves = self._resolves_leak(shaft, spot.power, r, slope, bound)
        leak_max = min(max(excess, 0.0) / slope, bound) if resolves else 0.0
        leak = 0.5 * leak_max
        # Where the power cannot show a leak, the test's head may (a curve falling from shut-off).
        by_head, by_head_u = (math.nan, math.nan) if resolves else self._leak_from_head(spot.head / (r * r))
        if math.isfinite(by_head):
            leak = min(max(by_head, 0.0), bound)
        shifted = shift_curve(self.power, leak)
        part_load = excess - (float(shifted[0]) - p0)
        power = _with_part_load(shifted, part_load, q, self.x_max)
        if self.printed_from > 0.0:  # the extrapolated curve's share, below its first printed point
            power = _with_part_load(power, curve, self.printed_from, self.x_max)
        if not bool(np.all(np.isfinite(power))):
            return False
        self.power, self.head = power, shift_curve(self.head, leak)
        if math.isfinite(spot.head) and spot.head > 0.0:  # the measured shut-off head, the rated point kept
            self.head, _ = calibrate_shutoff(self.head, self.power, spot.head, math.nan, r, q)
        self._tested_head = spot.head / (r * r)
        if resolves:
            self.leak_u = 0.5 * leak_max / math.sqrt(3.0)
        elif math.isfinite(by_head):
            self.leak_u = by_head_u
        # The two ends of the split differ at the rated flow by the whole leak range's power.
        spread = 0.5 * float(polyval(q + leak_max, self.power) - polyval(q, self.power)) / math.sqrt(3.0)
        u_split = spread / float(polyval(q, self.power))
        # A bounded leak leaves only the rest of the prior's flow-axis uncertainty (a datasheet's shape).
        unseen = math.sqrt(max(self.shift**2 - b.shift**2, 0.0)) if resolves else self.shift
        if math.isfinite(by_head):
            unseen = math.hypot(math.sqrt(max(self.shift**2 - b.shift**2, 0.0)), self.leak_u / q)
        self.power_band = self._band(self.u_power, u_split, 0.0, 0.0, unseen)
        self.head_band = self._band(self.u_head, b.wear_head, 0.0, 0.0, unseen, head=True)
        return True

    def _leak_from_head(self, collapsed_head: float) -> tuple[float, float]:
        """The leak a shut-off test's head shows, weighed against the prior, and its standard deviation.

        A leak moves the shut-off point along the head curve: the test reads h(L), below the
        catalogue's h(0) by |h'(0)| L where the curve falls from shut-off (a mixed-flow pump, whose
        power is flat there and cannot show the leak). The head's deficit over the slope is one
        reading of the leak, its error the curve's own value at shut-off and the transmitter's over
        the slope; it is weighed against the prior shift (a linear-Gaussian update, ``_split``).
        Both in m³/s; NaN where the head shows none.
        """
        slope = float(self.head[1]) if self.head.shape[0] > 1 else 0.0
        if not (math.isfinite(collapsed_head) and collapsed_head > 0.0 and slope < 0.0):
            return math.nan, math.nan
        h0 = float(self.head[0])
        # A datasheet's shut-off head is assumed from the rated point: its whole value uncertain.
        value = self._curve_error(0.0, head=True) if self.settings.catalogue_head is not None else self.u_head
        noise = math.hypot(value * h0, self.budget.head * collapsed_head)
        prior = np.array([self.shift * self.q_ref])
        mean, cov = _split(prior, np.array([[-slope]]), np.array([h0 - collapsed_head]), np.array([noise**2]))
        return float(mean[0]), math.sqrt(float(cov[0, 0]))

    def _band(self, u_in: float, u_out: float, x_lo: float, x_hi: float, shift: float,
              head: bool = False) -> FloatArray:
        """A curve's band (``kernels.curve_band``) growing below the catalogue's first printed point."""
        printed_from = self.head_printed_from if head else self.printed_from
        return curve_band(u_in, u_out, x_lo, x_hi, self.q_ref, shift, printed_from, self.budget.printed_out)

    def _curve_error(self, x: float, head: bool = False) -> float:
        """Relative standard uncertainty of a catalogue curve's own value at x, local to x.

        As read and fitted, and growing below the curve's first printed point (extrapolated,
        as its band). 0 for a datasheet curve, whose error is its shape's: a scale and a shift,
        each a cause of its own.
        """
        if (self.settings.catalogue_head if head else self.settings.catalogue_power) is None:
            return 0.0
        below = max((self.head_printed_from if head else self.printed_from) - x, 0.0) / self.q_ref
        return math.hypot(self.u_head if head else self.u_power, self.budget.printed_out * below * below)

    def _shutoff_split(self, excess: float, slope: float) -> tuple[float, float]:
        """A shut-off test's excess power [W] split into wear and the curve's own error, by their variances.

        Wear at shut-off: a leak (the prior shift on the curve's slope) and part-load loss (its
        prior); the curve's error there: its value's, growing below the printed range
        (``_curve_error``). One reading, so the split follows the priors (``_split``).
        """
        b, q = self.budget, self.q_ref
        prior = np.array([slope * b.shift * q, b.wear_power * float(polyval(q, self.power)),
                          self._curve_error(0.0) * float(self.power[0])])
        mean, _ = _split(prior, np.ones((1, 3)), np.array([excess]), np.zeros(1))
        curve = float(mean[2])
        return excess - curve, curve

    def _resolves_leak(self, shaft: float, electrical: float, r: float, slope: float, bound: float) -> bool:
        """Whether a shut-off reading resolves a leak: its power's uncertainty under half the bound's.

        On a curve flat at shut-off (mixed flow) a leak adds too little power for the
        reading's uncertainty (meter and losses) to tell it from nothing.
        """
        meter = self.settings.power_accuracy / math.sqrt(3.0)
        rel = float(shaft_power_uncertainty(shaft / electrical, meter, self.budget.losses))
        return slope > 0.0 and math.isfinite(rel) and rel * shaft / r**3 <= 0.5 * slope * bound

    def _offset(self, spot: SpotReading) -> float:
        """The shift on the collapsed flow axis that takes the power curve through a clamp-on reading."""
        shaft, r = self.shaft_and_speed(spot.power, spot.speed_ratio)
        return float(flow_offset(self.power, 3, True, spot.flow, shaft, r, self.x_max))

    def _clamp_on(self, spot: SpotReading, tested: bool) -> bool:
        """A clamp-on reading: one point of known flow, its discrepancy split among what can cause it.

        At the reading's collapsed flow x_c the measured power differs from the curve's by d.
        Three things the agent must expect move the power there, each differently elsewhere:
        internal leakage (both curves shifted along the flow axis), the power curve's value
        (the catalogue's, the drive's meter gain and the motor's losses: a scale), and part-load
        loss (∝ (1 − x / x_ref)², unless a shut-off test measured it); the meter's own flow
        error moves the point. One reading cannot tell them apart, so d is split by their prior
        uncertainties (``Budget``), a linear-Gaussian update (``_split``): none is assumed
        away, and none is tuned to a pump. A head read with it (``head_m``, the pump's DP)
        adds a second equation that sees the leak and the impeller's lost head but not the
        power's scale or part-load loss. The posterior's shift uncertainty is the bands'.
        """
        if not math.isfinite(self._offset(spot)):
            return False  # off the curve
        shaft, r = self.shaft_and_speed(spot.power, spot.speed_ratio)
        b, q = self.budget, self.q_ref
        x_c = spot.flow / r
        p_c, h_c = float(polyval(x_c, self.power)), float(polyval(x_c, self.head))
        meter = self.settings.power_accuracy / math.sqrt(3.0)
        rel_p = float(shaft_power_uncertainty(shaft / spot.power, meter, b.losses))
        rest = max(1.0 - x_c / q, 0.0) ** 2
        # After a shut-off test the curve keeps the test's point: a leak or a scale moves the power at
        # shut-off, and the part-load loss takes that back (∝ rest), so each is seen at the reading
        # net of it; the leak is weighed against what the test left of it (``leak_u``).
        p0, dp0 = float(self.power[0]), float(self.power[1]) if self.power.shape[0] > 1 else 0.0
        kept = rest if tested else 0.0
        # Priors (standard deviations): leak [m³/s], power scale (meter, losses), part-load power [W], the
        # impeller's head-loss coefficient [m s²/m⁶], the meter's relative flow error, and each
        # curve's own error at the reading (relative; local: it moves nothing elsewhere).
        scale = rel_p if self.settings.catalogue_power is not None else math.hypot(self.u_power, rel_p)
        prior = np.array([self.leak_u, scale,
                          0.0 if tested else b.wear_power * float(polyval(q, self.power)),
                          b.wear_head * float(polyval(q, self.head)) / (q * q), CLAMP_ON_ACCURACY,
                          self._curve_error(x_c), self._curve_error(x_c, head=True)])
        dp = float(polyval(x_c, np.polynomial.polynomial.polyder(self.power)))
        rows = [[dp - kept * dp0, p_c - kept * p0, rest, 0.0, dp * x_c, p_c, 0.0]]
        residual, noise = [shaft / r**3 - p_c], [0.0]
        if math.isfinite(spot.head) and spot.head > 0.0:
            dh = float(polyval(x_c, np.polynomial.polynomial.polyder(self.head)))
            rows.append([dh, 0.0, 0.0, -x_c * x_c, dh * x_c, 0.0, h_c])
            residual.append(spot.head / (r * r) - h_c)
            noise.append((b.head * spot.head / (r * r)) ** 2)
        mean, cov = _split(prior, np.array(rows), np.array(residual), np.array(noise))
        leak, scale, part_load, head_loss = (float(v) for v in mean[:4])
        power = shift_curve(self.power, leak) * (1.0 + scale)
        if tested:  # the test's shut-off power kept
            part_load = p0 - float(power[0])
        self.power = _with_part_load(power, part_load, q, self.x_max)
        self.head = shift_curve(self.head, leak)
        self.head[2] -= head_loss
        if tested and self._tested_head > 0.0:  # and its measured head
            self.head, _ = calibrate_shutoff(self.head, self.power, self._tested_head, math.nan, 1.0, q)
        unseen = math.sqrt(float(cov[0, 0])) / q
        self.power_band = self._band(self.u_power, b.curve_out, 0.0 if tested else x_c, x_c, unseen)
        self.head_band = self._band(self.u_head, b.wear_head, 0.0, 0.0, unseen, head=True)
        return bool(np.all(np.isfinite(self.power)))

    @classmethod
    def for_drive(cls, config: DriveConfig) -> FlowEstimator | None:
        """The estimator of a pump drive; None for a fan."""
        if config.load.kind is not LoadKind.PUMP:
            return None
        estimator = cls(config.sensorless, config.load, config.rated_power,
                        config.rated_speed / RPM_TO_RAD_S, config.motor_efficiency,
                        power_at=config.profile.power_measured_at)
        point = config.profile.point(Quantity.PRESSURE)
        if point is not None:  # Channel.PRESSURE's SI value: Pa, or m for a head point
            estimator.head_factor = head_per_pressure(fan=False, head_point=point.dimension is Dimension.HEAD)
        return estimator

    def shaft_and_speed(self, electrical: float, speed_reading: float) -> tuple[float, float]:
        """Shaft power [W] and shaft speed ratio behind an electrical power and a speed reading.

        The power as the drive reports it (its profile's ``power_measured_at``): less the
        motor's losses, and the drive's own only where it is read on the mains side. The slip
        needs the shaft power and the losses the speed: two passes settle both.
        """
        r = speed_reading
        shaft = math.nan
        for _ in range(2):
            shaft = float(shaft_from_electrical(np.array([electrical]), np.array([r]), self.rated_power,
                                                self.full_load, self.drive_losses)[0])
            if not math.isfinite(shaft):
                return math.nan, math.nan
            r = float(shaft_speed_ratio(speed_reading, shaft, self.rated_power, self.slip))
        return shaft, r

    @property
    def learns(self) -> bool:
        """Whether each estimate also learns (the head loss, with DP): then every poll must be estimated."""
        return self.calibration is Calibration.DP

    def estimate(self, electrical: float, speed_reading: float, head: float = math.nan) -> FlowEstimate:
        """Flow from an electrical power [W], a speed reading (ratio) and, with ``dp``, the pump head [m]."""
        b = self.budget
        none = FlowEstimate(math.nan, math.nan, self.calibration)
        if not (speed_reading >= MIN_SPEED and electrical > 0.0):
            return none
        shaft, r = self.shaft_and_speed(electrical, speed_reading)
        if not (math.isfinite(shaft) and math.isfinite(r)):
            return none
        meter = self.settings.power_accuracy / math.sqrt(3.0)  # a declared ± limit: rectangular
        rel_p = float(shaft_power_uncertainty(shaft / electrical, meter, b.losses))
        q, u = flow_from_power(self.power, shaft, r, rel_p, b.speed, self.power_band, self.x_max,
                                 MIN_SENSITIVITY, MAX_REL_U)
        if self.calibration is Calibration.DP and math.isfinite(head) and head > 0.0:
            self._learn_head_loss(q / r, head / (r * r))
            qh, uh = flow_from_head(self.head_in_use, head, r, b.head, b.speed, self.head_band_in_use,
                                      self.x_max, MIN_SENSITIVITY, MAX_REL_U)
            q, u = combine_estimates(q, u, qh, uh)
        if not math.isfinite(q):
            return none
        return FlowEstimate(float(q), Z90 * float(u) / float(q), self.calibration)

    def _learn_head_loss(self, x_power: float, collapsed_head: float) -> None:
        """With DP: the head a worn impeller has lost, learned where the power curve is sure.

        From the rated flow up part-load wear adds no power, so the power curve places the
        operating point, and the head read there against the curve's is the loss. Hydraulic
        losses in worn passages grow with the square of the flow: the loss coefficient w
        (head = h(x) − w x²) is the median of the latest points, and once
        ``MIN_HEAD_LOSS_POINTS`` agree the head curve in use carries it and its band keeps
        only the points' scatter in place of the prior wear allowance.
        """
        if not (math.isfinite(x_power) and self.q_ref <= x_power <= self.x_max):
            return
        curve = float(np.polynomial.polynomial.polyval(x_power, self.head))
        self._head_loss.append((curve - collapsed_head) / (x_power * x_power))
        if len(self._head_loss) < MIN_HEAD_LOSS_POINTS:
            return
        w = float(np.median(self._head_loss))
        rated_head = float(np.polynomial.polynomial.polyval(self.q_ref, self.head))
        limit = MAX_HEAD_LOSS * rated_head / self.q_ref**2
        w = min(max(w, -limit), limit)
        self.head_in_use = self.head.copy()
        if self.head_in_use.shape[0] < 3:
            self.head_in_use = np.concatenate([self.head_in_use, np.zeros(3 - self.head_in_use.shape[0])])
        self.head_in_use[2] -= w
        scatter = float(np.std(self._head_loss)) * self.q_ref**2 / rated_head
        band = self.head_band
        self.head_band_in_use = curve_band(band[0] + scatter, scatter, 0.0, 0.0, band[4], band[5], band[6],
                                           band[7])

    def estimate_values(self, values: Mapping[Quantity, float], power: float,
                        speed_ratio: float) -> FlowEstimate:
        """The estimate of a drive's poll (the pressure point read as the pump's head with ``dp``)."""
        head = values.get(Quantity.PRESSURE, math.nan) * self.head_factor
        return self.estimate(power, speed_ratio, head)


def group_demand(estimates: Sequence[FlowEstimate], shares: Sequence[float]) -> FlowEstimate:
    """A group's flow from its running drives' estimates; the drives without one carry their share.

    ``shares`` are the drives' rated flows: a running drive whose flow is not identifiable
    is taken to deliver in proportion to its rated flow what those with an estimate deliver
    (parallel pumps on one header run at one speed); the relative uncertainty stays that of
    the drives with an estimate (the share is assumed, not measured: a known limit). NaN only
    when no running drive has an estimate.
    """
    have = [(e, s) for e, s in zip(estimates, shares, strict=True) if e.available]
    if not have:
        calibration = estimates[0].calibration if estimates else Calibration.DATASHEET
        return FlowEstimate(math.nan, math.nan, calibration)
    flow = sum(e.flow for e, _ in have)
    u90 = math.sqrt(sum((e.flow * e.rel_u90) ** 2 for e, _ in have))
    scale = sum(shares) / sum(s for _, s in have)
    worst = max((e.calibration for e in estimates), key=CALIBRATIONS.index)
    return FlowEstimate(flow * scale, u90 / flow if flow > 0.0 else math.nan, worst)
