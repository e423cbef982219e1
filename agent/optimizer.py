"""The optimizer: each machine's real curves, savings-optimal setpoints, and (in control mode) the writes.

Every ``optimizer.interval`` seconds, per group (``agent.groups``):

1. refit each drive's pump or fan curves from its ring buffer (affinity-law fits of
   head and shaft power, ``kernels.fit_pump_curves``), where the data have enough
   excitation (samples, spread of collapsed flow Q/r); a fit that is poor (R², shape)
   leaves the latest fit that passed in use, or the datasheet curve (``agent.machine``),
   the prior, until one has. The efficiency of the curves in use against the
   datasheet's where the machine runs is the drift (wear);
2. refit the system curve from the operating points where the loads were starved (the
   delivered flow fell short of the demand: the valves were wide open, so the point
   lies on the system curve itself); without such points the configured curve (static
   head at no flow, design head at design flow) stands;
3. estimate the demand a little ahead (a line through the last samples, plus a margin)
   and recommend: a single machine's lowest speed meeting it against the system curve
   (``kernels.min_speed_for_flow``); a pressure loop's setpoint reset along the system
   curve, never below its minimum; parallel pumps' staging (``kernels.stage_pumps``),
   changed only after the minimum run time and the minimum time between changes;
4. in control mode, write the recommendation through ``agent.control`` (guard rails,
   read-back); if any drive of the group is stale, faulted or not in remote, stop
   writing and restore the operator's values.

After every poll cycle the optimizer also evaluates the counterfactual: what the
operator's strategy (the drives' own fixed pressure setpoint and threshold cascade,
``ConventionalConfig``) would draw now for the flow the group delivers, from the fitted
curves, scaled by measured over modelled power of the actual operating point so that a
common error of the model cancels. It sets ``DriveRuntime.counterfactual_power`` while
the agent's setpoints are in force; the energy account integrates it as the
``optimizer`` basis of the savings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from agent.config import AgentConfig, BusConfig, ControlMode, DriveConfig, LoadKind
from agent.control import Command, DriveWriter, Limits, WriteResult
from agent.drive import DriveRuntime
from agent.errors import DriveError
from agent.groups import (
    DemandSource,
    GroupConfig,
    GroupControl,
    OptimizerConfig,
)
from agent.history import Channel
from agent.ledger import HandbackStore, LedgerError
from agent.machine import datasheet_curves
from agent.modbus import BusClient
from agent.profile import Quantity
from agent.readplan import decode_blocks, plan_reads
from agent.units import Dimension
from kernels import (
    bep_flow,
    default_efficiency_tables,
    efficiency,
    electrical_power,
    estimate_flow,
    fan_efficiency,
    fit_fan_curves,
    fit_pump_curves,
    fit_system_curve,
    min_speed_for_flow,
    stage_pumps_tables,
)

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
Clock = Callable[[], float]
WATER_DENSITY = 998.0
RHO_G = WATER_DENSITY * 9.80665
MIN_FIT_SPEED = 0.2  # samples below this speed ratio say nothing about the curves
MIN_FIT_FLOW = 0.02  # nor samples below this share of the rated flow (a shut check valve)
SLEW_HEADROOM = 0.95  # plans use this share of the slew limit; the guard allows all of it
ARRIVED = 0.99  # a pump at this share of its planned speed has arrived (stage transitions)
MIN_BIAS_SAMPLES = 5  # running samples a bias correction needs ...
BIAS_SAMPLES = 20  # ... and the most it uses, the latest
BIAS_RANGE = (0.85, 1.15)  # the head-bias correction stays within this
BEP_SHIFT_RANGE = (0.6, 1.5)  # a fitted best-efficiency flow this far from the datasheet's is not believed
EXPLORE_TOLERANCE = 0.10  # a stage-up may start a never-observed pump that costs this much more
MAX_EFFICIENCY = 0.99
RUNNING_RATIO = 0.05  # a drive below this speed ratio counts as stopped for staging
SATURATION_SHORTFALL = 0.03  # delivered flow this far below the demand: the valves were wide open
BISECTIONS = 50
CALIBRATION_RANGE = (0.7, 1.4)  # measured / modelled power outside this: the model is not trusted


# --- machines -----------------------------------------------------------------------------------


class ElectricalModel:
    """Shaft power to electrical power and back, through part-load motor and drive efficiencies."""

    def __init__(self, rated_power: float, motor_efficiency: float = math.nan) -> None:
        self.rated_power = rated_power
        motor, drive = default_efficiency_tables()
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
        self.electric = ElectricalModel(config.rated_power, config.motor_efficiency)
        self.rho_g = 1.0 if self.fan else RHO_G
        point = config.profile.point(Quantity.PRESSURE)
        # Channel.PRESSURE holds the point's SI value: Pa, or m for a head point.
        self._head_factor = 1.0 if (point is not None and point.dimension is Dimension.HEAD) or self.fan \
            else 1.0 / RHO_G
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
        fit = fit_fan_curves if self.fan else fit_pump_curves
        hc, pc, r2h, r2p = fit(flow[ok], head[ok], shaft, r[ok], np.ones(count))
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
            modelled = curve[0] * r * r + curve[1] * r * q + curve[2] * q * q
            shaft = self.electric.shaft(history[recent, Channel.POWER])
            power = power_curve[0] * r**3 + power_curve[1] * r * r * q + power_curve[2] * r * q * q \
                + power_curve[3] * q**3
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
        shaft = pc[0] + (pc[1] + (pc[2] + pc[3] * grid) * grid) * grid
        if not np.all(shaft > 0.0):
            return False, "power curve not positive over the data"
        if not self._pair_plausible(hc, pc):
            return False, "no plausible best-efficiency point"
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

    def flow_at(self, head: float, ratio: float) -> float:
        """Flow [m³/s] at a header head and speed ratio on the curves in use; 0 below the shut-off head."""
        a0, a1, a2 = float(self.head[0]), float(self.head[1]), float(self.head[2])
        c = a0 * ratio * ratio - head
        if ratio <= 0.0 or c <= 0.0 or a2 >= 0.0:
            return 0.0
        b = a1 * ratio
        return (b + math.sqrt(b * b - 4.0 * a2 * c)) / (-2.0 * a2)

    def shaft(self, flow: float, ratio: float) -> float:
        """Shaft power [W] on the curves in use."""
        b = self.power
        return max(float(b[0] * ratio**3 + b[1] * ratio**2 * flow + b[2] * ratio * flow**2 + b[3] * flow**3),
                   0.0)

    def electrical(self, flow: float, ratio: float) -> float:
        """Electrical power [W] at an operating point, 0 when stopped."""
        if ratio < RUNNING_RATIO:
            return 0.0
        return self.electric.electrical(self.shaft(flow, ratio))

    def flow_estimate(self, power: float, ratio: float) -> float:
        """Sensorless flow [m³/s] from electrical power and speed; NaN where not identifiable."""
        if not (ratio >= MIN_FIT_SPEED and power > 0.0):
            return math.nan
        shaft = float(self.electric.shaft(np.array([power]))[0])
        return float(estimate_flow(self.power, shaft, ratio))


def common_ratio(machines: Sequence[MachineModel], head: float, flow: float, top: float) -> float:
    """Common speed at which ``machines`` deliver ``flow`` at ``head``; ``top`` if they cannot."""
    def total(ratio: float) -> float:
        return sum(m.flow_at(head, ratio) for m in machines)

    if not machines or total(top) <= flow:
        return top
    low, high = 0.0, top
    for _ in range(BISECTIONS):
        mid = 0.5 * (low + high)
        if total(mid) >= flow:
            high = mid
        else:
            low = mid
    return high


# --- the system curve -----------------------------------------------------------------------------


class SystemModel:
    """The group's system curve H = static + k·Q²: the configured prior, refined by starved points.

    An operating point says something about the system curve only when the loads were
    starved: their valves were then wide open, so the point lies on the curve. Noise alone
    can make a throttled point look starved, so a point counts only when the shortfall,
    averaged over a few polls, exceeds ``SATURATION_SHORTFALL``; and the curve moves only
    on many such points, by a robust fit or, with too few for a fit, by their median,
    never beyond ``MAX_LIFT`` times the configured friction.
    """

    SMOOTHING = 5  # polls averaged before a point is judged starved
    MAX_LIFT = 2.0

    def __init__(self, static: float, k: float, capacity: int = 3600) -> None:
        self.prior = (static, k)
        self.static, self.k = static, k
        self.r_squared = math.nan
        self.fitted = False
        self.samples: deque[tuple[float, float, float]] = deque(maxlen=capacity)  # delivered, head, demand
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=self.SMOOTHING)

    def head(self, flow: float) -> float:
        """Head the system needs to pass ``flow``."""
        return self.static + self.k * flow * flow

    def add(self, delivered: float, head: float, demand: float) -> None:
        """One operating point of the group (flows m³/s, head m or Pa), averaged over the last polls."""
        if not all(map(math.isfinite, (delivered, head, demand))):
            self._recent.clear()
            return
        self._recent.append((delivered, head, demand))
        if len(self._recent) == self.SMOOTHING:
            mean = np.mean(np.array(self._recent), axis=0)
            self.samples.append((float(mean[0]), float(mean[1]), float(mean[2])))

    def refit(self, min_samples: int, min_r_squared: float) -> None:
        """Fit the curve to starved points; too few for a fit only lift the prior to cover them."""
        static, k = self.prior
        self.static, self.k, self.fitted = static, k, False
        if not self.samples:
            return
        data = np.array(self.samples)
        starved = data[(data[:, 2] > 0.0) & (data[:, 0] < (1.0 - SATURATION_SHORTFALL) * data[:, 2])
                       & (data[:, 0] > 0.0)]
        if len(starved) < max(min_samples // 4, 8):
            return
        h_st, k_fit = fit_system_curve(starved[:, 0], starved[:, 1])
        if math.isfinite(h_st) and math.isfinite(k_fit):
            predicted = h_st + k_fit * starved[:, 0] ** 2
            total = float(np.sum((starved[:, 1] - starved[:, 1].mean()) ** 2))
            r2 = 1.0 - float(np.sum((starved[:, 1] - predicted) ** 2)) / total if total > 0 else math.nan
            self.r_squared = r2
            if len(starved) >= min_samples and r2 >= min_r_squared and k / self.MAX_LIFT <= k_fit \
                    <= k * self.MAX_LIFT:
                self.static, self.k, self.fitted = float(h_st), float(k_fit), True
                return
        # Starved points lie on the real curve: the curve in use must not pass below most of them.
        needed = float(np.median((starved[:, 1] - static) / np.maximum(starved[:, 0] ** 2, 1e-12)))
        self.k = min(max(k, needed), k * self.MAX_LIFT)


# --- demand ----------------------------------------------------------------------------------------


class DemandTracker:
    """Recent samples of a group's demand: its level now and its trend.

    The level is a least-squares line through the last ``window`` seconds, read at the
    newest sample (no lag on a ramp); the trend is the slope of a line through the last
    ``trend_window`` seconds, long enough that measurement noise does not swing it.
    """

    def __init__(self, window: float, trend_window: float | None = None) -> None:
        self.window = window
        self.trend_window = max(trend_window or window, window)
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, t: float, value: float) -> None:
        """One sample (NaN and negative values are ignored)."""
        if math.isfinite(value) and value >= 0.0:
            self.samples.append((t, value))
        while self.samples and t - self.samples[0][0] > self.trend_window:
            self.samples.popleft()

    @staticmethod
    def _line(samples: Sequence[tuple[float, float]], now: float) -> tuple[float, float]:
        t = np.array([s[0] for s in samples]) - now
        v = np.array([s[1] for s in samples])
        slope, intercept = np.polyfit(t, v, 1)
        return float(intercept), float(slope)

    def slope(self, now: float) -> float:
        """Trend [unit/s] over the trend window (0 with too few samples)."""
        recent = [s for s in self.samples if now - s[0] <= self.trend_window]
        return self._line(recent, now)[1] if len(recent) >= 8 else 0.0

    def estimate(self, now: float, lookahead: float) -> float:
        """The larger of the level now and where the trend takes it ``lookahead`` seconds on; NaN if none."""
        recent = [(t, v) for t, v in self.samples if now - t <= self.window]
        if not recent:
            return math.nan
        if len(recent) < 4:
            return max(v for _, v in recent)
        level, _ = self._line(recent, now)
        return float(max(level + max(self.slope(now), 0.0) * lookahead, 0.0))


# --- groups ----------------------------------------------------------------------------------------


@dataclass
class Recommendation:
    """What the optimizer recommends for one drive now (NaN: nothing)."""

    speed_ratio: float = math.nan
    running: float = math.nan
    setpoint_pa: float = math.nan
    expected_saving_w: float = math.nan


@dataclass
class Shadow:
    """The operator's strategy, run alongside on the fitted curves: the cascade's state."""

    staged: int = 0
    up_s: float = 0.0
    down_s: float = 0.0
    last_t: float = math.nan


@dataclass
class StageState:
    """Staging history of a parallel group under the agent's control."""

    last_change: float = -math.inf
    started: dict[str, float] = field(default_factory=dict)
    changes: int = 0
    pending_stop: set[str] = field(default_factory=set)


class GroupRuntime:
    """One group: its drives, models, demand, recommendation and (in control mode) its writers."""

    def __init__(self, config: GroupConfig, drives: Sequence[DriveRuntime], writers: dict[str, DriveWriter],
                 settings: OptimizerConfig, bus_of: dict[str, BusConfig]) -> None:
        self.config = config
        self.drives = list(drives)
        self.machines = [MachineModel(d.config) for d in drives]
        self.writers = writers
        self.settings = settings
        self.system = SystemModel(config.system.static, config.system.k)
        poll = max((bus_of[d.name].poll_interval for d in drives), default=1.0)
        window = max(2.0 * settings.interval, 20.0 * poll)
        self.demand = DemandTracker(window, trend_window=4.0 * window)
        # The demand until the next cycle's setpoints are in force: one interval and the data's age.
        lookahead = config.demand.lookahead
        self.lookahead = lookahead if math.isfinite(lookahead) else settings.interval + 2.0 * poll
        self.trend = DemandTracker(window, trend_window=max(config.staging.min_interval, 4.0 * window))
        self.recommendations = {d.name: Recommendation() for d in drives}
        self.shadow = Shadow()
        self.stage = StageState()
        self.holding = False  # the agent's values are in force
        self.operator_setpoint = config.conventional.pressure_setpoint  # m or Pa
        self.target_flow = math.nan
        self.calibration = math.nan
        modes = {d.config.control.mode for d in drives}
        self.mode = ControlMode.CONTROL if modes == {ControlMode.CONTROL} else (
            ControlMode.MONITOR if ControlMode.MONITOR in modes else ControlMode.ADVISE)
        self.cycles = 0

    @property
    def name(self) -> str:
        """The group's name."""
        return self.config.name

    @property
    def parallel(self) -> bool:
        """More than one machine: staging."""
        return len(self.machines) > 1

    # --- per poll ----------------------------------------------------------------------------

    def demand_point(self) -> float:
        """The demand as the latest poll shows it (NaN if it does not)."""
        demand = self.config.demand
        if demand.source is DemandSource.SENSORLESS:
            flows = [m.flow_estimate(d.last.power, d.last.speed_ratio) if d.last is not None else math.nan
                     for m, d in zip(self.machines, self.drives, strict=True)]
            running = [f for f, d in zip(flows, self.drives, strict=True)
                       if d.last is not None and d.last.speed_ratio >= RUNNING_RATIO]
            return sum(running) if running and all(map(math.isfinite, running)) else math.nan
        if not demand.drive:
            return math.nan  # another device: read in the cycle
        drive = next((d for d in self.drives if d.name == demand.drive), None)
        source = drive.last if drive is not None else None
        return source.values.get(demand.quantity, math.nan) if source is not None else math.nan

    def observe(self, now: float, external: dict[str, DriveRuntime]) -> None:
        """After a poll cycle: sample the demand and the operating point, update the counterfactual."""
        demand = self.config.demand
        value = self.demand_point()
        if demand.source is DemandSource.POINT and demand.drive and math.isnan(value):
            carrier = external.get(demand.drive)
            if carrier is not None and carrier.last is not None:
                value = carrier.last.values.get(demand.quantity, math.nan)
        if demand.quantity is Quantity.PRESSURE and math.isfinite(value):
            value = self.machines[0].head_of(value)
        if math.isfinite(value):
            self.demand.add(now, value)
            self.trend.add(now, value)
        delivered, head = self.operating_point()
        if demand.quantity is not Quantity.PRESSURE:
            self.system.add(delivered, head, value)
        self._counterfactual(now, delivered)

    def operating_point(self) -> tuple[float, float]:
        """(delivered flow, header head) from the latest polls; NaN where unknown."""
        flows, heads = [], []
        for machine, drive in zip(self.machines, self.drives, strict=True):
            reading = drive.last
            if reading is None or not drive.up:
                return math.nan, math.nan
            flow = reading.values.get(Quantity.FLOW, math.nan)
            if math.isnan(flow):
                flow = machine.flow_estimate(reading.power, reading.speed_ratio) \
                    if reading.speed_ratio >= RUNNING_RATIO else 0.0
            flows.append(flow)
            if reading.speed_ratio >= RUNNING_RATIO:
                heads.append(machine.head_of(reading.values.get(Quantity.PRESSURE, math.nan)))
        head = float(np.mean(heads)) if heads else math.nan
        return float(sum(flows)), head

    # --- the operator's strategy ----------------------------------------------------------------

    def _conventional(self, flow: float, dt: float) -> list[tuple[float, float]] | None:
        """(flow, speed) per machine under the operator's setpoint and cascade; None if unknown."""
        setpoint = self.operator_setpoint
        if not (math.isfinite(setpoint) and math.isfinite(flow)):
            return None
        conventional = self.config.conventional
        shadow = self.shadow
        shadow.staged = min(max(shadow.staged, 1), len(self.machines))
        top = max(m.max_ratio for m in self.machines)

        def ratio_for(count: int) -> float:
            running = self.machines[:count]
            return max(common_ratio(running, setpoint, flow, top), max(m.min_ratio for m in running))

        ratio = ratio_for(shadow.staged)
        if self.parallel:
            can_up = shadow.staged < len(self.machines)
            shadow.up_s = shadow.up_s + dt if ratio >= conventional.stage_up_ratio and can_up else 0.0
            can_down = shadow.staged > 1
            shadow.down_s = shadow.down_s + dt if ratio <= conventional.stage_down_ratio and can_down else 0.0
            if shadow.up_s > conventional.stage_delay or shadow.down_s > conventional.stage_delay:
                shadow.staged += 1 if shadow.up_s > conventional.stage_delay else -1
                shadow.up_s = shadow.down_s = 0.0
                ratio = ratio_for(shadow.staged)
        return [(m.flow_at(setpoint, ratio), ratio) if i < shadow.staged else (0.0, 0.0)
                for i, m in enumerate(self.machines)]

    def _counterfactual(self, now: float, delivered: float) -> None:
        """Set each drive's counterfactual power while the agent's values are in force."""
        dt = now - self.shadow.last_t if math.isfinite(self.shadow.last_t) else 0.0
        self.shadow.last_t = now
        if not self.holding:
            # The operator's strategy is what runs: the shadow cascade follows the plant.
            self.shadow.staged = max(1, sum(1 for d in self.drives
                                            if d.last is not None and d.last.speed_ratio >= RUNNING_RATIO))
            self.shadow.up_s = self.shadow.down_s = 0.0
            self._capture_operator_setpoint()
            for drive in self.drives:
                drive.counterfactual_power = math.nan
            return
        points = self._conventional(delivered, dt)
        calibration = self._calibration()
        self.calibration = calibration
        for index, drive in enumerate(self.drives):
            if points is None or not math.isfinite(calibration):
                drive.counterfactual_power = math.nan
                continue
            flow, ratio = points[index]
            drive.counterfactual_power = self.machines[index].electrical(flow, ratio) * calibration

    def _calibration(self) -> float:
        """Measured over modelled electrical power of the actual operating point (NaN if not trusted)."""
        measured = modelled = 0.0
        for machine, drive in zip(self.machines, self.drives, strict=True):
            reading = drive.last
            if reading is None or not drive.up:
                return math.nan
            if reading.speed_ratio < RUNNING_RATIO:
                continue
            flow = reading.values.get(Quantity.FLOW, math.nan)
            if math.isnan(flow):
                flow = machine.flow_estimate(reading.power, reading.speed_ratio)
            measured += reading.power
            modelled += machine.electrical(flow, reading.speed_ratio)
        if not (modelled > 0.0 and math.isfinite(modelled)):
            return math.nan
        ratio = measured / modelled
        low, high = CALIBRATION_RANGE
        return ratio if low <= ratio <= high else math.nan

    def _capture_operator_setpoint(self) -> None:
        """Before the agent writes, the setpoint drive's pressure setpoint is the operator's."""
        if math.isfinite(self.config.conventional.pressure_setpoint):
            return
        drive = next(d for d in self.drives if d.name == self.config.setpoint_drive)
        writer = self.writers.get(drive.name)
        if writer is not None and Quantity.PRESSURE_SETPOINT in writer.operator:
            # Once the agent has written, the register shows its value: the writer kept the operator's.
            self.operator_setpoint = writer.operator[Quantity.PRESSURE_SETPOINT]
            return
        reading = drive.last
        value = reading.values.get(Quantity.PRESSURE_SETPOINT, math.nan) if reading is not None else math.nan
        point = drive.config.profile.point(Quantity.PRESSURE_SETPOINT)
        if point is not None and math.isfinite(value) and value > 0.0:
            machine = self.machines[self.drives.index(drive)]
            self.operator_setpoint = value if point.dimension is Dimension.HEAD or machine.fan \
                else value / RHO_G

    # --- per cycle -----------------------------------------------------------------------------

    def refit(self) -> None:
        """Refit every machine and the system curve."""
        for machine, drive in zip(self.machines, self.drives, strict=True):
            machine.refit(drive.history.snapshot(), self.settings)
        self.system.refit(self.settings.min_samples, self.settings.min_r_squared)

    def recommend(self, now: float) -> dict[str, tuple[float, float]] | float | None:
        """The recommendation: per drive (speed, running) for speed control, a head for a pressure loop."""
        if self.mode is ControlMode.MONITOR:
            return None
        estimate = self.demand.estimate(now, self.lookahead)
        design = self.config.system
        limit = 3.0 * (design.design_head if self.config.demand.quantity is Quantity.PRESSURE
                       else design.design_flow)
        if not (math.isfinite(estimate) and 0.0 <= estimate <= limit):
            self.target_flow = math.nan
            return None
        margin = 1.0 + self.config.demand.margin
        pressure_demand = self.config.demand.quantity is Quantity.PRESSURE
        if pressure_demand:
            delivered, _ = self.operating_point()
            target_head = estimate * margin
            flow = delivered * margin if math.isfinite(delivered) else math.nan
            static, k = target_head, 0.0
        else:
            # Margins on both: the flow, and the head the system needs for the demand (where the
            # operating point is flat, near a high static head, a head error is a large flow error).
            flow = estimate * margin
            static, k = self.system.static, self.system.k
            target_head = max(static + k * flow * flow, (static + k * estimate * estimate) * margin)
            static = target_head - k * flow * flow  # the curve through (flow, target head) for the kernels
        self.target_flow = flow
        if self.config.control is GroupControl.PRESSURE_SETPOINT:
            setpoint = self.config.setpoint
            return min(max(target_head, setpoint.minimum), setpoint.maximum)
        if not math.isfinite(flow):
            return None
        if not self.parallel:
            machine = self.machines[0]
            ratio = float(min_speed_for_flow(machine.head, static, k, flow, machine.min_ratio,
                                             machine.max_ratio))
            return {self.drives[0].name: (ratio if math.isfinite(ratio) else machine.max_ratio, 1.0)}
        return self._stage(now, static, k, flow)

    def _staging(self, allowed: set[int], static: float, k: float, flow: float) -> tuple[FloatArray, float]:
        machines = self.machines
        staging = self.config.staging
        low, high = staging.bep_window
        electric = machines[0].electric
        speeds, total = stage_pumps_tables(
            np.array([m.head for m in machines]), np.array([m.power for m in machines]),
            np.array([m.config.rated_power for m in machines]), static, k, flow,
            np.array([m.min_ratio for m in machines]),
            np.array([m.max_ratio if i in allowed else 0.0 for i, m in enumerate(machines)]),
            np.full(len(machines), low), np.full(len(machines), high), electric.motor, electric.drive,
        )
        return np.asarray(speeds, dtype=np.float64), float(total)

    def _stage(self, now: float, static: float, k: float, flow: float) -> dict[str, tuple[float, float]]:
        """Staging of parallel pumps, within the minimum run time and the minimum time between changes.

        Candidates are the running set and the running set plus any one stopped pump, each
        staged optimally within itself (so a candidate may also leave pumps out). A change
        needs the minimum interval since the last one, a gain of ``min_gain``, and a set that
        can still deliver the demand the trend foresees one minimum interval ahead (so that
        a stage-down is not undone by the next rise); it never stops a pump before its
        minimum run time. A running set that will not deliver that foreseen demand is
        staged up once the interval allows; one that cannot deliver the demand now, at once.
        Until a change is allowed, exactly the running pumps run.

        At a stage-up, a pump never observed running is preferred to the best one if its
        (datasheet) price is within ``EXPLORE_TOLERANCE``: the agent learns its real curves
        (a worn pump is then priced, staged and counted as worn) at the cost of a little power.
        No new decision is taken while a leaving pump still waits for its stop.
        """
        names = [d.name for d in self.drives]
        staging = self.config.staging
        running = {i for i, d in enumerate(self.drives) if self._on(d)}
        ahead = self.trend.estimate(now, staging.min_interval) * (1.0 + self.config.demand.margin)
        future = min(max(flow, ahead if math.isfinite(ahead) else flow), 1.3 * flow)

        def may_stop(i: int) -> bool:
            return now - self.stage.started.get(names[i], -math.inf) >= staging.min_run

        def capable(members: set[int], demand: float) -> bool:
            head = static + k * demand * demand
            return sum(self.machines[i].flow_at(head, self.machines[i].max_ratio) for i in members) >= demand

        waited = now - self.stage.last_change >= staging.min_interval
        if self.stage.pending_stop and running:
            hold = self._common_speeds(running, static + k * flow * flow, flow)
            if hold is not None:
                return hold

        options: list[tuple[float, set[int], FloatArray]] = []
        for extra in [None, *(j for j in range(len(names)) if j not in running)]:
            allowed = running | ({extra} if extra is not None else set())
            speeds, total = self._staging(allowed, static, k, flow)
            if math.isfinite(total):
                options.append((total, {i for i, s in enumerate(speeds) if s > 0.0}, speeds))
        if not options:  # nothing delivers the demand: everything at full speed
            return {n: (m.max_ratio, 1.0) for n, m in zip(names, self.machines, strict=True)}
        # One stop per decision, and none before the minimum run time.
        permitted = [o for o in options
                     if len(running - o[1]) <= 1 and all(may_stop(i) for i in running - o[1])]
        if not permitted:
            hold = self._common_speeds(running, static + k * flow * flow, flow) if running else None
            if hold is not None:
                return hold
        options = permitted or options
        options.sort(key=lambda o: o[0])
        lasting = [o for o in options if capable(o[1], future)] or options
        lasting = self._explore(lasting, running, names)
        if not running or not capable(running, flow):
            best = lasting[0]  # must change now
        elif waited and not capable(running, future):
            best = lasting[0]  # stage up ahead of the rise
        else:
            current = next((o for o in options if o[1] == running), None)
            if current is None:  # the kernel would leave a running pump out: price exactly the running set
                hold = self._common_speeds(running, static + k * flow * flow, flow)
                if hold is None:
                    best = lasting[0]
                else:
                    speeds = np.array([hold[n][0] if hold[n][1] else 0.0 for n in names])
                    current = (self._plan_power(speeds, static + k * flow * flow), running, speeds)
            if current is not None:
                cheaper = lasting[0][0] < current[0] * (1.0 - staging.min_gain)
                change = waited and lasting[0][1] != running and cheaper
                best = lasting[0] if change else current
        speeds = best[2]
        return {name: ((float(speeds[i]), 1.0) if i in best[1] else (0.0, 0.0))
                for i, name in enumerate(names)}

    def _on(self, drive: DriveRuntime) -> bool:
        """Running, or started by the agent and on its way up; not waiting for its stop."""
        if drive.name in self.stage.pending_stop:
            return False
        if drive.last is not None and drive.last.speed_ratio >= RUNNING_RATIO:
            return True
        writer = self.writers.get(drive.name)
        run = drive.config.profile.control_words.get("run")
        word = writer.last.get(Quantity.CONTROL_WORD) if writer is not None else None
        return word is not None and run is not None and word[0] == run and drive.name in self.stage.started

    def _explore(self, options: list[tuple[float, set[int], FloatArray]], running: set[int],
                 names: list[str]) -> list[tuple[float, set[int], FloatArray]]:
        """Put first a stage-up that starts a never-observed pump, if it costs little more than the best."""
        if not options or not options[0][1] - running:
            return options
        for option in options:
            added = option[1] - running
            if added and all(not self.machines[i].observed for i in added) \
                    and option[0] <= options[0][0] * (1.0 + EXPLORE_TOLERANCE):
                if option is not options[0]:
                    log.info("group %s: starting %s to learn its curves (never observed running)", self.name,
                             ", ".join(names[i] for i in sorted(added)))
                return [option, *(o for o in options if o is not option)]
        return options

    def _plan_power(self, speeds: FloatArray, head: float) -> float:
        """Modelled electrical power [W] of the machines at ``speeds`` on a header at ``head``."""
        return sum(m.electrical(m.flow_at(head, float(r)), float(r))
                   for m, r in zip(self.machines, speeds, strict=True) if r > 0.0)

    def _common_speeds(
        self, members: set[int], head: float, flow: float
    ) -> dict[str, tuple[float, float]] | None:
        """Exactly ``members`` at one common speed delivering ``flow`` at ``head``; None if they cannot."""
        machines = [self.machines[i] for i in sorted(members)]
        top = min(m.max_ratio for m in machines)
        if sum(m.flow_at(head, top) for m in machines) < flow:
            return None
        ratio = common_ratio(machines, head, flow, top)
        return {d.name: ((max(ratio, m.min_ratio), 1.0) if i in members else (0.0, 0.0))
                for i, (d, m) in enumerate(zip(self.drives, self.machines, strict=True))}

    def expected_saving(self, recommendation: dict[str, tuple[float, float]] | float) -> dict[str, float]:
        """Counterfactual minus recommended power per drive [W], at the present flow (calibrated)."""
        delivered, _ = self.operating_point()
        calibration = self._calibration()
        if not (math.isfinite(delivered) and math.isfinite(calibration)):
            return {}
        saved_shadow = (self.shadow.staged, self.shadow.up_s, self.shadow.down_s)
        points = self._conventional(delivered, 0.0)
        self.shadow.staged, self.shadow.up_s, self.shadow.down_s = saved_shadow
        if points is None:
            return {}
        if isinstance(recommendation, float):
            running = [m for m, d in zip(self.machines, self.drives, strict=True)
                       if d.last is not None and d.last.speed_ratio >= RUNNING_RATIO] or self.machines[:1]
            top = max(m.max_ratio for m in running)
            ratio = max(common_ratio(running, recommendation, delivered, top),
                        max(m.min_ratio for m in running))
            planned = [(m.flow_at(recommendation, ratio), ratio) if m in running else (0.0, 0.0)
                       for m in self.machines]
        else:
            head = self.system.head(delivered)
            planned = []
            for machine, drive in zip(self.machines, self.drives, strict=True):
                ratio, on = recommendation.get(drive.name, (0.0, 0.0))
                planned.append((machine.flow_at(head, ratio), ratio) if on else (0.0, 0.0))
        return {
            d.name: calibration * (m.electrical(*cf) - m.electrical(*plan))
            for m, d, cf, plan in zip(self.machines, self.drives, points, planned, strict=True)
        }

    def publish(self, recommendation: dict[str, tuple[float, float]] | float | None) -> None:
        """Keep the recommendation for the metrics (nothing in monitor mode)."""
        fresh = {d.name: Recommendation() for d in self.drives}
        if recommendation is not None:
            savings = self.expected_saving(recommendation)
            for drive, machine in zip(self.drives, self.machines, strict=True):
                rec = fresh[drive.name]
                rec.expected_saving_w = savings.get(drive.name, math.nan)
                if isinstance(recommendation, float):
                    if drive.name == self.config.setpoint_drive:
                        rec.setpoint_pa = recommendation * machine.rho_g
                else:
                    ratio, on = recommendation.get(drive.name, (math.nan, math.nan))
                    rec.speed_ratio, rec.running = ratio, on
        self.recommendations = fresh

    # --- control --------------------------------------------------------------------------------

    def healthy(self, now: float) -> tuple[bool, str]:
        """True if every drive of the group may be written to now; else the reason."""
        for drive in self.drives:
            writer = self.writers.get(drive.name)
            if writer is None:
                return False, f"drive {drive.name} is not in control mode"
            if not writer.fresh(now):
                return False, f"drive {drive.name}: stale data"
            if drive.status("fault") is not False:
                return False, f"drive {drive.name}: fault"
            if drive.status("ready") is not True or drive.status("remote") is not True:
                return False, f"drive {drive.name}: not ready or not in remote"
        return True, ""

    async def release(self, reason: str, level: int = logging.WARNING) -> None:
        """Stop writing; write the operator's values back where configured."""
        if not self.holding and not any(w.holds for w in self.writers.values()):
            return
        # A hand-back that did not verify is tried again every cycle: say so once.
        log.log(level if self.holding else logging.DEBUG,
                "group %s: handing back to the operator's settings: %s", self.name, reason)
        for writer in self.writers.values():
            await writer.restore(reason)
        self.holding = False
        self.stage.pending_stop.clear()
        for drive in self.drives:
            drive.counterfactual_power = math.nan

    async def apply(self, now: float, recommendation: dict[str, tuple[float, float]] | float) -> None:
        """Write the recommendation (control mode, healthy group)."""
        if isinstance(recommendation, float):
            await self._apply_setpoint(recommendation)
        else:
            await self._apply_speeds(now, recommendation)

    async def _apply_setpoint(self, head: float) -> None:
        writer = self.writers[self.config.setpoint_drive]
        config = self.config.setpoint
        limits = Limits(config.minimum, config.maximum, config.slew_per_min)
        value = writer.slew_bounded(Quantity.PRESSURE_SETPOINT, head, limits, SLEW_HEADROOM)
        last = writer.last.get(Quantity.PRESSURE_SETPOINT)
        if last is not None and not _worth_writing(value, last[0], config.deadband):
            self.holding = True
            return
        result = await writer.write(Quantity.PRESSURE_SETPOINT, value, limits, reason="setpoint reset")
        self.holding = self.holding or result.written

    async def _apply_speeds(self, now: float, plan: dict[str, tuple[float, float]]) -> None:
        """Write speeds, starts and stops; a stage change never lets the flow dip.

        Parallel pumps on the open system curve deliver at least what any subset of them
        delivers, so a transition is safe as long as pumps are added before others slow
        down, and removed only after the ones that stay run at their new speeds: while a
        planned pump is still below ``ARRIVED`` of its planned speed, no running pump's
        setpoint is lowered and no pump is stopped.
        """
        stage = self.stage
        changed = False
        arriving = False
        for drive in self.drives:
            ratio, on = plan.get(drive.name, (0.0, 0.0))
            reading = drive.last
            if on and (reading is None or reading.speed_ratio < ARRIVED * ratio):
                arriving = True
        # Idle pumps are taken first: a pump's own cascade would otherwise start one of them the
        # moment the agent takes the running ones.
        def order(drive: DriveRuntime) -> int:
            reading = drive.last
            idle = not plan.get(drive.name, (0.0, 0.0))[1] and (reading is None or
                                                               reading.speed_ratio < RUNNING_RATIO)
            return 0 if idle else 1

        for drive in sorted(self.drives, key=order):
            writer = self.writers[drive.name]
            control = drive.config.control
            ratio, on = plan.get(drive.name, (0.0, 0.0))
            reading = drive.last
            running = reading is not None and reading.speed_ratio >= RUNNING_RATIO
            limits = Limits(control.min_speed_ratio, control.max_speed_ratio, control.slew_per_min)
            if on and running and drive.name not in stage.pending_stop:
                if self.parallel and Quantity.CONTROL_WORD not in writer.last:
                    await writer.command(Command.RUN, reason="take over")
                last = writer.last.get(Quantity.SPEED_SETPOINT)
                if arriving and last is not None:
                    ratio = max(ratio, last[0])  # hold the flow until the others have arrived
                value = writer.slew_bounded(Quantity.SPEED_SETPOINT, ratio, limits, SLEW_HEADROOM)
                if last is None or _worth_writing(value, last[0], control.deadband):
                    result = await writer.write(Quantity.SPEED_SETPOINT, value, limits,
                                                reason="optimal speed")
                    self.holding = self.holding or result.written
                else:
                    self.holding = True
                stage.started.setdefault(drive.name, now)
            elif on:  # start (or keep a leaving pump): the speed it runs to, then the run command
                start = Limits(control.min_speed_ratio, control.max_speed_ratio)
                value = min(max(ratio, control.min_speed_ratio), control.max_speed_ratio)
                result = await writer.write(Quantity.SPEED_SETPOINT, value, start, start=True, reason="start")
                if result.written:
                    result = await writer.command(Command.RUN, reason="stage up")
                if result.written:
                    stage.pending_stop.discard(drive.name)
                    stage.started[drive.name] = now
                    changed = True
                    self.holding = True
            elif running:
                stage.pending_stop.add(drive.name)
            elif Quantity.CONTROL_WORD not in writer.last:  # hold a stopped pump off the local cascade
                result = await writer.command(Command.STOP, reason="take over, stopped")
                self.holding = self.holding or result.written
        if stage.pending_stop and not arriving:
            for name in sorted(stage.pending_stop):
                result = await self.writers[name].command(Command.STOP, reason="stage down")
                if result.written:
                    stage.pending_stop.discard(name)
                    stage.started.pop(name, None)
                    changed = True
                    self.holding = True
        if changed:
            stage.changes += 1
            stage.last_change = now


def _worth_writing(value: float, last: float, deadband: float) -> bool:
    """A rise is always written (the demand needs it); a fall only beyond the deadband (a saving)."""
    return value > last + 1e-6 * max(abs(last), 1.0) or value < last - deadband


# --- the optimizer -------------------------------------------------------------------------------


def _warm_kernels() -> None:
    """Call every kernel the optimizer uses once, so the first cycle does not stall the event loop."""
    hc = np.array([40.0, -40.0, -4000.0])
    pc = np.array([5000.0, 2.0e5, -1.0e6, 0.0])
    n = 32
    r = np.linspace(0.6, 1.0, n)
    q = np.tile(np.linspace(0.01, 0.05, 8), n // 8) * r
    h = hc[0] * r * r + hc[1] * r * q + hc[2] * q * q
    p = pc[0] * r**3 + pc[1] * r * r * q + pc[2] * r * q * q
    fit_pump_curves(q, h, p, r, np.ones(n))
    fit_fan_curves(q, h, p, r, np.ones(n))
    fit_system_curve(q, h)
    bep_flow(hc, pc, 1.0)
    efficiency(hc, pc, 0.03, 1.0, WATER_DENSITY)
    fan_efficiency(hc, pc, 0.03, 1.0)
    estimate_flow(pc, 1.0e4, 0.9)
    min_speed_for_flow(hc, 10.0, 4000.0, 0.03, 0.3, 1.0)
    motor, drive = default_efficiency_tables()
    electrical_power(1.0e4, 2.0e4, motor, drive)
    two = np.ones(2)
    stage_pumps_tables(np.stack([hc, hc]), np.stack([pc, pc]), 2.0e4 * two, 10.0, 4000.0, 0.05, 0.3 * two,
                       two, 0.3 * two, 1.4 * two, motor, drive)



class Optimizer:
    """Every group of a site: the cycle task, the per-poll hook, and what the metrics read."""

    def __init__(self, config: AgentConfig, drives: Sequence[DriveRuntime], clients: dict[str, BusClient], *,
                 clock: Clock = time.monotonic, dry_run: bool = False,
                 handbacks: Callable[[], HandbackStore | None] = lambda: None) -> None:
        self.config = config
        self._handbacks = handbacks  # the ledger's hand-backs, once the ledger is open
        self.handbacks_attached = False
        self.settings = config.optimizer
        self.clock = clock
        self.dry_run = dry_run
        self.clients = clients
        by_name = {d.name: d for d in drives}
        self.all_drives = by_name
        buses = {b.name: b for b in config.buses}
        self.writers: dict[str, DriveWriter] = {}
        self.groups: list[GroupRuntime] = []
        for group in config.groups:
            members = [by_name[n] for n in group.drives]
            writers = {}
            for drive in members:
                if drive.config.control.mode is ControlMode.CONTROL and drive.config.bus in clients:
                    writer = DriveWriter(drive, buses[drive.config.bus], clients[drive.config.bus],
                                         clock=clock, dry_run=dry_run)  # hand-backs: attach_handbacks
                    writers[drive.name] = self.writers[drive.name] = writer
            self.groups.append(GroupRuntime(group, members, writers, self.settings,
                                            {d.config.name: buses[d.config.bus] for d in members}))
        self.cycles = 0
        self.cycle_errors = 0
        if self.groups:
            _warm_kernels()  # load (or compile) them now, not inside the first cycle

    def on_poll_cycle(self, drives: Sequence[DriveRuntime]) -> None:
        """After a bus's poll cycle: every group with a drive among ``drives`` samples and accounts."""
        names = {d.name for d in drives}
        now = self.clock()
        for group in self.groups:
            if names.intersection(group.config.drives):
                group.observe(now, self.all_drives)

    async def _read_external(self, group: GroupRuntime, now: float) -> None:
        """Read a demand point of a device that is not a drive of the config."""
        demand = group.config.demand
        if demand.source is not DemandSource.POINT or demand.drive or demand.profile is None:
            return
        point = demand.profile.point(demand.quantity)
        client = self.clients.get(demand.bus)
        if point is None or client is None:
            return
        blocks = plan_reads([point])
        try:
            registers = [await client.read(demand.unit, block) for block in blocks]
            value = decode_blocks(blocks, registers)[demand.quantity]
        except (DriveError, ValueError) as exc:
            log.debug("group %s: demand from unit %d on bus %s: %s", group.name, demand.unit, demand.bus, exc)
            return
        if demand.quantity is Quantity.PRESSURE:
            value = group.machines[0].head_of(value)
        group.demand.add(now, value)

    def attach_handbacks(self) -> None:
        """Give the writers the ledger's hand-backs once it is open, and take over what an earlier run owed.

        Until then no writer sends anything (``refused_ledger``): what the agent must hand back
        has to be on disk before its first write. A dry run sends nothing, so it needs no ledger;
        nor does it write an earlier run's hand-backs back.
        """
        if self.handbacks_attached or not self.writers:
            return
        store = self._handbacks()
        if store is None:
            return
        try:
            pending = store.pending()
        except LedgerError as exc:
            log.error("%s; no write goes out until it can be read", exc)
            return
        self.handbacks_attached = True
        for row in pending:
            writer = self.writers.get(row.drive)
            if writer is None or self.dry_run:
                why = "a dry run writes nothing" if self.dry_run else "not under control in this config"
                log.warning("drive %s: the hand-back of %s to %g is owed from an earlier run; %s", row.drive,
                            row.quantity, row.operator, why)
                continue
            writer.resume(row)
        for writer in self.writers.values():
            writer.handbacks = store
        for group in self.groups:
            if any(w.holds for w in group.writers.values()):
                group.holding = True  # the earlier run's values are in force until handed back

    async def cycle(self) -> None:
        """One optimizer cycle over every group."""
        self.cycles += 1
        self.attach_handbacks()
        for group in self.groups:
            now = self.clock()
            await self._read_external(group, now)
            group.refit()
            recommendation = group.recommend(now)
            group.publish(recommendation)
            if log.isEnabledFor(logging.DEBUG):
                delivered, head = group.operating_point()
                log.debug("group %s: demand %.5f target %.5f delivered %.5f head %.2f system (%.2f, %.1f): "
                          "%s",
                          group.name, group.demand.estimate(now, 0.0), group.target_flow, delivered, head,
                          group.system.static, group.system.k, recommendation)
            group.cycles += 1
            if group.mode is not ControlMode.CONTROL:
                continue
            healthy, why = group.healthy(now)
            if not healthy:
                log.debug("group %s: not writing: %s", group.name, why)
            if not healthy or recommendation is None:
                await group.release(why or "no usable demand")
                continue
            await group.apply(now, recommendation)

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle every ``interval`` until ``stop``; then hand every group back to the operator."""
        self.attach_handbacks()
        try:
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.interval)
                if stop.is_set():
                    break
                try:
                    await self.cycle()
                except Exception:  # a bug in one cycle must not end control without a restore
                    self.cycle_errors += 1
                    log.exception("optimizer cycle failed; handing every group back")
                    await self.shutdown("optimizer error", logging.ERROR)
        finally:
            await self.shutdown("agent stopping")

    async def shutdown(self, reason: str, level: int = logging.INFO) -> None:
        """Restore every group the agent holds."""
        for group in self.groups:
            await group.release(reason, level)

    def results(self) -> dict[str, dict[str, float]]:
        """Write results per drive, for the metrics."""
        return {name: {k: float(v) for k, v in dict(w.results).items()} for name, w in self.writers.items()}

    def writes_ok(self) -> int:
        """Writes that succeeded, over every drive."""
        return sum(w.results.get(WriteResult.OK.value, 0) for w in self.writers.values())
