"""The optimizer: each machine's real curves, savings-optimal setpoints, and (in control mode) the writes.

Every ``optimizer.interval`` seconds, per group (``agent.groups``):

1. refit each drive's pump or fan curves from its ring buffer (affinity-law fits of
   head and shaft power, ``kernels.fit_pump_curves``), where the data have enough
   excitation (samples, spread of collapsed flow Q/r); a fit that is poor (R², shape)
   falls back to the datasheet curve (``agent.machine``), the prior. The efficiency of
   the fitted curve against the datasheet's at its best point is the drift (wear);
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
    """The latest fit of one drive's curves, and whether each curve passed."""

    head: FloatArray
    power: FloatArray
    r2_head: float
    r2_power: float
    samples: int
    head_used: bool
    power_used: bool
    reason: str = ""


class MachineModel:
    """One drive's pump or fan: the datasheet prior, the latest fit, and the curves in use."""

    def __init__(self, config: DriveConfig) -> None:
        self.config = config
        self.fan = config.load.kind is LoadKind.FAN
        prior = datasheet_curves(config.load, config.rated_power)
        self.prior_head: FloatArray = prior.head
        self.prior_power: FloatArray = prior.power
        self.head: FloatArray = prior.head
        self.power: FloatArray = prior.power
        self.fit: CurveFit | None = None
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
        ok = np.isfinite(r) & np.isfinite(flow) & np.isfinite(head) & np.isfinite(power) \
            & (r >= MIN_FIT_SPEED) & (flow >= 0.0) & (power > 0.0)
        count = int(ok.sum())
        if count < settings.min_samples:
            return self._keep(f"{count} samples, {settings.min_samples} needed")
        q = flow[ok] / r[ok]
        span = (q.max() - q.min()) / q.max() if q.max() > 0.0 else 0.0
        if span < settings.min_flow_span:
            return self._keep(f"collapsed flow spans {span:.0%}, {settings.min_flow_span:.0%} needed")
        shaft = self.electric.shaft(power[ok])
        fit = fit_fan_curves if self.fan else fit_pump_curves
        hc, pc, r2h, r2p = fit(flow[ok], head[ok], shaft, r[ok], np.ones(count))
        hc, pc = np.asarray(hc, dtype=np.float64), np.asarray(pc, dtype=np.float64)
        head_ok, why_head = self._head_plausible(hc, float(r2h), settings)
        power_ok, why_power = self._power_plausible(hc if head_ok else self.prior_head, pc, float(r2p), q,
                                                    settings)
        self.fit = CurveFit(hc, pc, float(r2h), float(r2p), count, head_ok, power_ok,
                            "; ".join(w for w in (why_head, why_power) if w))
        self.head = hc if head_ok else self.prior_head
        self.power = pc if power_ok else self.prior_power
        return self.fit

    def _keep(self, reason: str) -> CurveFit | None:
        if self.fit is not None:
            self.fit.reason = reason
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
        if not (np.all(shaft > 0.0) and math.isfinite(float(bep_flow(hc, pc, 1.0)))):
            return False, "power curve not positive over the data, or no best-efficiency point"
        return True, ""

    def best_efficiency(self, hc: FloatArray, pc: FloatArray) -> float:
        """Efficiency at the best-efficiency flow of a pair of curves (rated speed)."""
        q = float(bep_flow(hc, pc, 1.0))
        if not math.isfinite(q):
            return math.nan
        if self.fan:
            return float(fan_efficiency(hc, pc, q, 1.0))
        return float(efficiency(hc, pc, q, 1.0, WATER_DENSITY))

    def efficiency_drift(self) -> float:
        """Best efficiency of the fitted curves over the datasheet's, minus 1 (NaN without a fit in use)."""
        fit = self.fit
        if fit is None or not (fit.head_used and fit.power_used):
            return math.nan
        return self.best_efficiency(fit.head, fit.power) / self.best_efficiency(self.prior_head,
                                                                                 self.prior_power) - 1.0

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
    """The group's system curve H = static + k·Q²: the configured prior, refined by starved points."""

    def __init__(self, static: float, k: float, capacity: int = 3600) -> None:
        self.prior = (static, k)
        self.static, self.k = static, k
        self.r_squared = math.nan
        self.fitted = False
        self.samples: deque[tuple[float, float, float]] = deque(maxlen=capacity)  # delivered, head, demand

    def head(self, flow: float) -> float:
        """Head the system needs to pass ``flow``."""
        return self.static + self.k * flow * flow

    def add(self, delivered: float, head: float, demand: float) -> None:
        """One operating point of the group (flows m³/s, head m or Pa)."""
        if all(map(math.isfinite, (delivered, head, demand))):
            self.samples.append((delivered, head, demand))

    def refit(self, min_samples: int, min_r_squared: float) -> None:
        """Fit the curve to starved points; too few of them only lift the prior to cover them."""
        if not self.samples:
            return
        data = np.array(self.samples)
        starved = data[(data[:, 2] > 0.0) & (data[:, 0] < (1.0 - SATURATION_SHORTFALL) * data[:, 2])
                       & (data[:, 0] > 0.0)]
        if len(starved) == 0:
            return
        static, k = self.prior
        if len(starved) >= min(min_samples, 16):
            h_st, k_fit = fit_system_curve(starved[:, 0], starved[:, 1])
            if math.isfinite(h_st) and math.isfinite(k_fit):
                predicted = h_st + k_fit * starved[:, 0] ** 2
                total = float(np.sum((starved[:, 1] - starved[:, 1].mean()) ** 2))
                r2 = 1.0 - float(np.sum((starved[:, 1] - predicted) ** 2)) / total if total > 0 else math.nan
                self.r_squared = r2
                if r2 >= min_r_squared and 0.25 * k <= k_fit <= 4.0 * k:
                    self.static, self.k, self.fitted = float(h_st), float(k_fit), True
                    return
        # Starved points lie on the real curve: the curve in use must not pass below any of them.
        needed = float(np.max((starved[:, 1] - static) / np.maximum(starved[:, 0] ** 2, 1e-12)))
        self.static, self.k, self.fitted = static, max(k, needed), False


# --- demand ----------------------------------------------------------------------------------------


class DemandTracker:
    """Recent samples of a group's demand; the estimate a little ahead is a line through them."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, t: float, value: float) -> None:
        """One sample (NaN and negative values are ignored)."""
        if math.isfinite(value) and value >= 0.0:
            self.samples.append((t, value))
        while self.samples and t - self.samples[0][0] > self.window:
            self.samples.popleft()

    def estimate(self, now: float, lookahead: float) -> float:
        """The larger of the demand now and ``lookahead`` seconds on (a least-squares line); NaN if none."""
        recent = [(t, v) for t, v in self.samples if now - t <= self.window]
        if not recent:
            return math.nan
        if len(recent) < 4:
            return max(v for _, v in recent)
        t = np.array([s[0] for s in recent]) - now
        v = np.array([s[1] for s in recent])
        slope, intercept = np.polyfit(t, v, 1)
        return float(max(intercept, intercept + slope * lookahead, 0.0))


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
        self.demand = DemandTracker(window=max(2.0 * settings.interval, 4.0 * max(
            (bus_of[d.config.bus].poll_interval for d in drives), default=1.0)))
        self.lookahead = 1.5 * settings.interval
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
        delivered, head = self.operating_point()
        if demand.quantity is not Quantity.PRESSURE:
            self.system.add(delivered, head, value)
        self._counterfactual(now, delivered, head)

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

    def _counterfactual(self, now: float, delivered: float, head: float) -> None:
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
        del head

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
            flow = estimate * margin
            static, k = self.system.static, self.system.k
            target_head = static + k * flow * flow
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
        """Staging of parallel pumps, within the minimum run time and the minimum time between changes."""
        names = [d.name for d in self.drives]
        running = {i for i, d in enumerate(self.drives)
                   if d.last is not None and d.last.speed_ratio >= RUNNING_RATIO and d.name not in
                   self.stage.pending_stop}
        options: list[tuple[float, set[int], FloatArray]] = []
        for extra in [None, *(j for j in range(len(names)) if j not in running)]:
            allowed = running | ({extra} if extra is not None else set())
            speeds, total = self._staging(allowed, static, k, flow)
            if math.isfinite(total):
                options.append((total, {i for i, s in enumerate(speeds) if s > 0.0}, speeds))
        if not options:  # nothing delivers the demand: everything at full speed
            return {n: (m.max_ratio, 1.0) for n, m in zip(names, self.machines, strict=True)}
        options.sort(key=lambda o: o[0])
        keep = next((o for o in options if o[1] == running), None)
        best = options[0]
        staging = self.config.staging
        if keep is not None and best[1] != running:
            stopped = running - best[1]
            ran_long_enough = all(now - self.stage.started.get(names[i], -math.inf) >= staging.min_run
                                  for i in stopped)
            waited = now - self.stage.last_change >= staging.min_interval
            worth = best[0] < keep[0] * (1.0 - staging.min_gain)
            if not (ran_long_enough and waited and worth):
                best = keep
        elif keep is None and best[1] != running:
            # The running set cannot deliver on its own: a change is needed now, but stop nothing early.
            stopped = running - best[1]
            if any(now - self.stage.started.get(names[i], -math.inf) < staging.min_run for i in stopped):
                best = next((o for o in options if running <= o[1]), best)
        speeds = best[2]
        result = {}
        for i, name in enumerate(names):
            if i in best[1]:
                result[name] = (float(speeds[i]), 1.0)
            elif i in running:  # leaving (or held by its minimum run time): at its lowest useful speed
                result[name] = (0.0, 0.0)
            else:
                result[name] = (0.0, 0.0)
        return result

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

    async def release(self, reason: str) -> None:
        """Stop writing; write the operator's values back where configured."""
        if not self.holding and not any(w.holds for w in self.writers.values()):
            return
        log.warning("group %s: handing back to the operator's settings: %s", self.name, reason)
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
        value = writer.slew_bounded(Quantity.PRESSURE_SETPOINT, head, limits)
        last = writer.last.get(Quantity.PRESSURE_SETPOINT)
        if last is not None and abs(value - last[0]) < config.deadband:
            self.holding = True
            return
        result = await writer.write(Quantity.PRESSURE_SETPOINT, value, limits, reason="setpoint reset")
        self.holding = self.holding or result.written

    async def _apply_speeds(self, now: float, plan: dict[str, tuple[float, float]]) -> None:
        stage = self.stage
        changed = False
        starting = []
        for drive in self.drives:
            writer = self.writers[drive.name]
            control = drive.config.control
            ratio, on = plan.get(drive.name, (0.0, 0.0))
            reading = drive.last
            running = reading is not None and reading.speed_ratio >= RUNNING_RATIO
            limits = Limits(control.min_speed_ratio, control.max_speed_ratio, control.slew_per_min)
            if on and running:
                if self.parallel and Quantity.CONTROL_WORD not in writer.last:
                    await writer.command(Command.RUN, reason="take over")
                value = writer.slew_bounded(Quantity.SPEED_SETPOINT, ratio, limits)
                last = writer.last.get(Quantity.SPEED_SETPOINT)
                if last is None or abs(value - last[0]) >= control.deadband:
                    result = await writer.write(Quantity.SPEED_SETPOINT, value, limits,
                                                reason="optimal speed")
                    self.holding = self.holding or result.written
                else:
                    self.holding = True
                if drive.name not in stage.started:
                    stage.started[drive.name] = now
            elif on:  # start: the speed it starts to, then the run command
                start = Limits(control.min_speed_ratio, control.max_speed_ratio)
                value = min(max(ratio, control.min_speed_ratio), control.max_speed_ratio)
                result = await writer.write(Quantity.SPEED_SETPOINT, value, start, start=True, reason="start")
                if result.written:
                    result = await writer.command(Command.RUN, reason="stage up")
                if result.written:
                    stage.started[drive.name] = now
                    starting.append(drive.name)
                    changed = True
                    self.holding = True
            elif running:
                stage.pending_stop.add(drive.name)
            elif Quantity.CONTROL_WORD not in writer.last:  # hold a stopped pump off the local cascade
                result = await writer.command(Command.STOP, reason="take over, stopped")
                self.holding = self.holding or result.written
        # Make before break: leaving pumps stop once no pump of the group is still starting.
        if stage.pending_stop and not starting:
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


# --- the optimizer -------------------------------------------------------------------------------


class Optimizer:
    """Every group of a site: the cycle task, the per-poll hook, and what the metrics read."""

    def __init__(self, config: AgentConfig, drives: Sequence[DriveRuntime], clients: dict[str, BusClient], *,
                 clock: Clock = time.monotonic, dry_run: bool = False) -> None:
        self.config = config
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
                                         clock=clock, dry_run=dry_run)
                    writers[drive.name] = self.writers[drive.name] = writer
            self.groups.append(GroupRuntime(group, members, writers, self.settings,
                                            {d.config.name: buses[d.config.bus] for d in members}))
        self.cycles = 0
        self.cycle_errors = 0

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

    async def cycle(self) -> None:
        """One optimizer cycle over every group."""
        self.cycles += 1
        for group in self.groups:
            now = self.clock()
            await self._read_external(group, now)
            group.refit()
            recommendation = group.recommend(now)
            group.publish(recommendation)
            group.cycles += 1
            if group.mode is not ControlMode.CONTROL:
                continue
            healthy, why = group.healthy(now)
            if not healthy or recommendation is None:
                await group.release(why or "no usable demand")
                continue
            await group.apply(now, recommendation)

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle every ``interval`` until ``stop``; then hand every group back to the operator."""
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
                    await self.shutdown("optimizer error")
        finally:
            await self.shutdown("agent stopping")

    async def shutdown(self, reason: str) -> None:
        """Restore every group the agent holds."""
        for group in self.groups:
            await group.release(reason)

    def results(self) -> dict[str, dict[str, float]]:
        """Write results per drive, for the metrics."""
        return {name: {k: float(v) for k, v in dict(w.results).items()} for name, w in self.writers.items()}

    def writes_ok(self) -> int:
        """Writes that succeeded, over every drive."""
        return sum(w.results.get(WriteResult.OK.value, 0) for w in self.writers.values())
