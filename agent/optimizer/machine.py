"""One machine of a group: its pump or fan curves, and its motor and drive losses.

The curves are the datasheet prior, the latest fit that passed, and the curves in use.

Each drive's curves are refitted from its ring buffer (affinity-law fits of head and shaft
power, ``kernels.fit_pump_curves``) where the data have enough excitation (samples, spread
of collapsed flow Q/r); a fit that is poor (R², shape) leaves the latest fit that passed in
use, or the datasheet curve (``agent.optimizer.datasheet``), the prior, until one has. The
efficiency of the curves in use against the datasheet's where the machine runs is the drift
(wear). Every curve is evaluated by the kernels (``kernels.head``, ``kernels.shaft_power``,
``kernels.flow_at_head``, ``kernels.common_speed``), never by a second copy of the polynomial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from agent.config import DriveConfig, LoadKind
from agent.config.model import OptimizerConfig
from agent.config.profile import PowerMeasuredAt, Quantity
from agent.history import Channel
from agent.optimizer.datasheet import datasheet_curves
from agent.units import RUNNING_SPEED_RATIO, WATER_DENSITY, Dimension, head_per_pressure
from kernels import (
    PUMP_FIT_DEFAULTS,
    bep_flow,
    common_speed,
    default_efficiency_tables,
    efficiency,
    electrical_power,
    fan_efficiency,
    fit_pump_curves_tuned,
    flow_at_head,
    shaft_power,
)
from kernels import (
    head as curve_head,
)

FloatArray = NDArray[np.float64]
MIN_FIT_SPEED = 0.2  # samples below this speed ratio say nothing about the curves
MIN_FIT_FLOW = 0.02  # nor samples below this share of the rated flow (a shut check valve)
MIN_BIAS_SAMPLES = 5  # running samples a bias correction needs ...
BIAS_SAMPLES = 20  # ... and the most it uses, the latest
BIAS_RANGE = (0.85, 1.15)  # the head-bias correction stays within this
BEP_SHIFT_RANGE = (0.6, 1.5)  # a fitted best-efficiency flow this far from the datasheet's is not believed
# A fit that makes the machine this much more efficient than its datasheet where it ran is not
# believed: pumps and fans are sold at their best (ISO 9906 and ISO 5801 tolerate a shortfall,
# not a surplus), and a power curve fitted over a narrow window extrapolates freely. Not tighter:
# the datasheet here is a construction from rated data seen through a generic motor table, and
# healthy pumps at part load read up to ~18 % above it (generated-2 and -3 in hil.scenario).
MAX_EFFICIENCY_GAIN = 0.20
MAX_EFFICIENCY = 0.99
# The motor's rated torque: beyond it the drive's current limit takes speed off (continuous duty,
# IEC service factor 1.0), so a plan that needs more delivers less than it planned.
RATED_TORQUE = 1.0
_TOP_BISECTIONS = 30


class ElectricalModel:
    """Shaft power to the power the drive reports and back, through part-load motor and drive efficiencies.

    The drive's own losses are in the reading only where the profile reads the mains side
    (``PowerMeasuredAt.DRIVE_INPUT``); an output reading is the motor's input.
    """

    def __init__(self, rated_power: float, motor_efficiency: float = math.nan, *,
                 power_at: PowerMeasuredAt) -> None:
        self.rated_power = rated_power
        motor, drive = default_efficiency_tables()
        if power_at is PowerMeasuredAt.DRIVE_OUTPUT:
            drive[1] = 1.0
        if math.isfinite(motor_efficiency):  # scale the table to the nameplate's full-load efficiency
            motor[1] = np.minimum(motor[1] * motor_efficiency / float(np.interp(1.0, motor[0], motor[1])),
                                  MAX_EFFICIENCY)
        self.motor: FloatArray = motor
        self.drive: FloatArray = drive

    def electrical(self, shaft: float) -> float:
        """Electrical input [W] for a shaft power [W]."""
        if not shaft > 0.0:
            return 0.0
        return float(electrical_power(shaft, self.rated_power, self.motor, self.drive))

    def shaft(self, electrical: FloatArray) -> FloatArray:
        """Shaft power [W] for measured electrical power [W] (a fixed point on the load fraction)."""
        shaft = 0.9 * electrical
        for _ in range(6):
            load = shaft / self.rated_power
            motor = np.interp(load, self.motor[0], self.motor[1])
            eta = motor * np.interp(load, self.drive[0], self.drive[1])
            shaft = electrical * eta
        result: FloatArray = np.where(electrical > 0.0, shaft, np.nan)
        return result


@dataclass
class CurveFit:
    """The latest fit of one drive's curves, and whether each curve passed (and replaced the one in use)."""

    head: FloatArray
    power: FloatArray
    r2_head: float
    r2_power: float
    samples: int
    head_passed: bool
    power_passed: bool
    reason: str = ""


class MachineModel:
    """One drive's pump or fan: the datasheet prior, the latest fit, and the curves in use."""

    def __init__(self, config: DriveConfig) -> None:
        self.config = config
        self.fan = config.load.kind is LoadKind.FAN
        prior = datasheet_curves(config.load, config.rated_power)
        self.prior_head: FloatArray = prior.head
        self.prior_power: FloatArray = prior.power
        self.prior_bep = float(bep_flow(prior.head, prior.power, 1.0))
        self.head: FloatArray = prior.head  # in use: the fitted (or datasheet) curve times the bias
        self.power: FloatArray = prior.power
        self.fit: CurveFit | None = None
        # The latest fitted curves that passed; a later fit that fails (a narrow window of
        # data, noise) does not discard them. None: the datasheet curve is in use.
        self.fitted_head: FloatArray | None = None
        self.fitted_power: FloatArray | None = None
        self.bias = 1.0  # measured over modelled head at the recent operating points
        self.power_bias = 1.0  # measured over modelled shaft power there
        self.observed = False  # a bias has been measured: the machine has run under observation
        self.operating_flow = math.nan  # collapsed flow Q/r [m³/s] of the latest operating points
        self.electric = ElectricalModel(config.rated_power, config.motor_efficiency,
                                        power_at=config.profile.power_measured_at)
        point = config.profile.point(Quantity.PRESSURE)
        # Channel.PRESSURE holds the point's SI value: Pa, or m for a head point.
        self._head_factor = head_per_pressure(
            fan=self.fan, head_point=point is not None and point.dimension is Dimension.HEAD)
        self.min_ratio = config.control.min_speed_ratio
        self.max_ratio = config.control.max_speed_ratio

    @property
    def name(self) -> str:
        """The drive's name."""
        return self.config.name

    def head_of(self, pressure_si: float) -> float:
        """A pressure reading (the point's SI value) in machine units (m or Pa)."""
        return pressure_si * self._head_factor

    def refit(self, history: FloatArray, settings: OptimizerConfig) -> CurveFit | None:
        """Fit the curves to the drive's history; the ones that pass replace the prior."""
        r = history[:, Channel.SPEED_RATIO]
        flow = history[:, Channel.FLOW]
        head = history[:, Channel.PRESSURE] * self._head_factor
        power = history[:, Channel.POWER]
        # A pump whose check valve is shut (no flow against the header) is off its curve.
        ok = np.isfinite(r) & np.isfinite(flow) & np.isfinite(head) & np.isfinite(power) \
            & (r >= MIN_FIT_SPEED) & (flow > MIN_FIT_FLOW * self.config.load.rated_flow) & (power > 0.0)
        count = int(ok.sum())
        if count < settings.min_samples:
            return self._keep(f"{count} samples, {settings.min_samples} needed", history, ok)
        q = flow[ok] / r[ok]
        span = (q.max() - q.min()) / q.max() if q.max() > 0.0 else 0.0
        if span < settings.min_flow_span:
            why = f"collapsed flow spans {span:.0%}, {settings.min_flow_span:.0%} needed"
            return self._keep(why, history, ok)
        shaft = self.electric.shaft(power[ok])
        # One fit for pumps and fans (the fan laws are the affinity laws: ``fit_fan_curves``
        # is this same fit), called tuned: one kernel less to compile, the same settings.
        hc, pc, r2h, r2p = fit_pump_curves_tuned(flow[ok], head[ok], shaft, r[ok], np.ones(count),
                                                 *PUMP_FIT_DEFAULTS)
        hc, pc = np.asarray(hc, dtype=np.float64), np.asarray(pc, dtype=np.float64)
        head_ok, why_head = self._head_plausible(hc, float(r2h), settings)
        power_ok, why_power = self._power_plausible(hc if head_ok else self.base_head, pc, float(r2p), q,
                                                    settings)
        if head_ok and not power_ok and not self._pair_plausible(hc, self.base_power):
            # Staging needs a sound best-efficiency point of the pair in use: a new head curve
            # must not be paired with an older power curve it has none with.
            head_ok, why_head = False, "no plausible best-efficiency point with the power curve in use"
        if head_ok:
            self.fitted_head = hc
        if power_ok:
            self.fitted_power = pc
        self.fit = CurveFit(hc, pc, float(r2h), float(r2p), count, head_ok, power_ok,
                            "; ".join(w for w in (why_head, why_power) if w))
        self._rebias(history, ok)
        return self.fit

    @property
    def base_head(self) -> FloatArray:
        """The head curve before the bias: the latest fit that passed, else the datasheet's."""
        return self.fitted_head if self.fitted_head is not None else self.prior_head

    @property
    def base_power(self) -> FloatArray:
        """The shaft-power curve before the bias: the latest fit that passed, else the datasheet's."""
        return self.fitted_power if self.fitted_power is not None else self.prior_power

    def _rebias(self, history: FloatArray, ok: NDArray[np.bool_]) -> None:
        """Scale the base curves by measured over modelled head and power at the latest operating points.

        A fit over the whole history can be off by a percent or two where the machine runs
        now, and a machine that has run too little for a fit is still on its datasheet
        curves; this local, bounded correction keeps the speeds the optimizer computes from
        falling short of the head the system needs, and prices a worn pump as worn. The
        latest running samples are used however old: a stopped pump's last operating points
        are still the best evidence of its state, and the bias must be measured against the
        base curves in use now, not against the ones it was measured for.
        """
        curve, power_curve = self.base_head, self.base_power
        indices = np.flatnonzero(ok)[-BIAS_SAMPLES:]  # the latest running samples
        recent = np.zeros_like(ok)
        recent[indices] = True
        if int(recent.sum()) >= MIN_BIAS_SAMPLES:
            r = history[recent, Channel.SPEED_RATIO]
            q = history[recent, Channel.FLOW]
            measured = history[recent, Channel.PRESSURE] * self._head_factor
            points = list(zip(q.tolist(), r.tolist(), strict=True))
            modelled = np.array([curve_head(curve, qi, ri) for qi, ri in points])
            shaft = self.electric.shaft(history[recent, Channel.POWER])
            power = np.array([shaft_power(power_curve, qi, ri) for qi, ri in points])
            valid = (modelled > 0.0) & (power > 0.0) & np.isfinite(shaft)
            if int(valid.sum()) >= MIN_BIAS_SAMPLES:
                low, high = BIAS_RANGE
                self.bias = float(np.clip(np.median(measured[valid] / modelled[valid]), low, high))
                self.power_bias = float(np.clip(np.median(shaft[valid] / power[valid]), low, high))
                self.operating_flow = float(np.median(q[valid] / r[valid]))
                self.observed = True
        self.head = curve * self.bias
        self.power = power_curve * self.power_bias

    def _keep(self, reason: str, history: FloatArray, ok: NDArray[np.bool_]) -> CurveFit | None:
        """No new fit: keep the curves in use, corrected by the latest operating points."""
        if self.fit is not None:
            self.fit.reason = reason
        self._rebias(history, ok)
        return self.fit

    def _head_plausible(self, hc: FloatArray, r2: float, settings: OptimizerConfig) -> tuple[bool, str]:
        if not (np.all(np.isfinite(hc)) and r2 >= settings.min_r_squared):
            return False, f"head fit R² {r2:.3f}"
        if not (hc[0] > 0.0 and hc[2] < 0.0 and 0.5 <= hc[0] / self.prior_head[0] <= 2.0):
            return False, "head curve not the shape of a pump or fan"
        return True, ""

    def _power_plausible(self, hc: FloatArray, pc: FloatArray, r2: float, q: FloatArray,
                         settings: OptimizerConfig) -> tuple[bool, str]:
        if not (np.all(np.isfinite(pc)) and r2 >= settings.min_r_squared):
            return False, f"power fit R² {r2:.3f}"
        grid = np.linspace(float(q.min()), float(q.max()), 16)
        if not all(shaft_power(pc, float(x), 1.0) > 0.0 for x in grid):
            return False, "power curve not positive over the data"
        if not self._pair_plausible(hc, pc):
            return False, "no plausible best-efficiency point"
        where = float(np.median(q))
        datasheet = self.efficiency_at(self.prior_head, self.prior_power, where)
        gain = self.efficiency_at(hc, pc, where) / datasheet - 1.0
        if not gain <= MAX_EFFICIENCY_GAIN:  # NaN too: no efficiency where the machine ran
            return False, f"efficiency {gain:+.0%} against the datasheet's where the machine ran"
        return True, ""

    def _pair_plausible(self, hc: FloatArray, pc: FloatArray) -> bool:
        """The curves have a best-efficiency flow near the datasheet's (wear moves it a little, not 2×).

        A power curve fitted over a narrow window of flows extrapolates freely; its
        best-efficiency point may land anywhere, and staging keeps each pump in a window
        around it.
        """
        q = float(bep_flow(hc, pc, 1.0))
        low, high = BEP_SHIFT_RANGE
        return math.isfinite(q) and low * self.prior_bep <= q <= high * self.prior_bep

    def efficiency_at(self, hc: FloatArray, pc: FloatArray, flow: float) -> float:
        """Efficiency of a pair of curves at a flow [m³/s], rated speed (NaN off the physical region)."""
        if self.fan:
            return float(fan_efficiency(hc, pc, flow, 1.0))
        return float(efficiency(hc, pc, flow, 1.0, WATER_DENSITY))

    def efficiency_drift(self) -> float:
        """Efficiency of the curves in use over the datasheet's where the machine runs, minus 1.

        Compared at the collapsed flow Q/r of the latest operating points: there the fitted
        curves rest on data, where a best-efficiency point may lie outside what the machine
        has run and rest on extrapolation. The curves in use are the latest fits that passed,
        else the datasheet's, in both cases scaled by the measured head and power biases: a
        worn pump shows its lost efficiency even before it has run enough for a fit of its
        own. NaN before any observation.
        """
        if not self.observed:
            return math.nan
        q = self.operating_flow
        return self.efficiency_at(self.head, self.power, q) / self.efficiency_at(self.prior_head,
                                                                                 self.prior_power, q) - 1.0

    def assume_efficiency_gain(self, gain: float) -> None:
        """Price a machine never seen running as its siblings run against their datasheets, never dearer.

        Its power is otherwise the datasheet's, and the operator's cascade (the counterfactual)
        may run it where the agent has not: a pump family more efficient than its datasheet
        (generated-2's observed pumps: +8 % and +18 %) then inflates the claimed saving by
        the unobserved pump's whole error (+44 %). Its siblings' median gain is the evidence
        there is, taken up to ``MAX_EFFICIENCY_GAIN``; a loss (wear) is theirs alone and is not
        lent, since pricing the pump dearer would inflate the claim.
        """
        if self.observed:
            return
        self.power = self.base_power * self.power_bias / (1.0 + min(max(gain, 0.0), MAX_EFFICIENCY_GAIN))

    def flow_at(self, header: float, ratio: float) -> float:
        """Flow [m³/s] at a header head and speed ratio on the curves in use; 0 below the shut-off head."""
        return float(flow_at_head(self.head, header, ratio))

    def top_ratio(self, header: float) -> float:
        """The highest speed ratio (up to ``max_ratio``) holding ``header`` within the motor's rated torque.

        At a fixed head both the flow and the torque rise with the speed, so the limit is a
        speed: a run-out pump loads its motor past rated, and the drive's current limit would
        hold it below what it was planned to deliver (generated-1004: one small pump planned
        for 140 % of its flow, 3 % short for 0.4 s until a second one started).
        """
        def within(ratio: float) -> bool:
            flow = self.flow_at(header, ratio)
            return self.shaft(flow, ratio) <= RATED_TORQUE * self.config.rated_power * ratio

        if within(self.max_ratio):
            return self.max_ratio
        low, high = self.min_ratio, self.max_ratio
        if not within(low):
            return low
        for _ in range(_TOP_BISECTIONS):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if within(middle) else (low, middle)
        return low

    def top_flow(self, header: float) -> float:
        """The most the machine delivers at ``header`` within its speed limit and rated torque [m³/s]."""
        return self.flow_at(header, self.top_ratio(header))

    def shaft(self, flow: float, ratio: float) -> float:
        """Shaft power [W] on the curves in use."""
        return max(float(shaft_power(self.power, flow, ratio)), 0.0)

    def electrical(self, flow: float, ratio: float) -> float:
        """Electrical power [W] at an operating point, 0 when stopped."""
        if ratio < RUNNING_SPEED_RATIO:
            return 0.0
        return self.electric.electrical(self.shaft(flow, ratio))

def common_ratio(machines: Sequence[MachineModel], header: float, flow: float, top: float) -> float:
    """Common speed at which ``machines`` deliver ``flow`` at ``header`` head; ``top`` if they cannot."""
    if not machines:
        return top
    return float(common_speed(np.array([m.head for m in machines]), header, flow, top))

