"""The plant's dynamics: speed control, speed ramps, operating points and ground truth.

Time advances on a fixed grid (``PlantSpec.step``) counted from the start of the
simulation, so the same clock readings always give the same results, whoever
asks and however often. Each step runs in three phases that later work can
widen without touching the others:

1. every drive's controller picks a speed setpoint and the speed ramps toward it;
2. every circuit solves its operating point (today one machine on its own system
   curve; a common header with parallel pumps is a circuit with several drives);
3. every drive turns shaft power into electrical power, draws measurement noise
   and integrates its ground truth.

Ground truth (true electrical and baseline energy) is the trapezoid integral of
the noise-free powers at the physics step; measured values carry noise, and the
drive's own energy counter integrates its measured power, as a real drive's does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agent.config import BaselineMethod
from hil.demand import DemandProfile
from hil.physics import (
    MachineCurves,
    SystemCurve,
    electrical_power,
    motor_efficiency,
    operating_flow,
    ramp,
    ratio_for_flow,
    system_from_rated,
)
from hil.plantfile import DriveSpec, PlantSpec
from kernels.baselines import (
    CHARACTERISTIC_POWER_PCT,
    CHARACTERISTIC_SPEED_PCT,
    DAMPER_FLOW_PCT,
    DAMPER_POWER_PCT,
    INLET_VANE_FLOW_PCT,
    INLET_VANE_POWER_PCT,
)

_DEFAULT_BASELINE_TABLES = {
    BaselineMethod.CHARACTERISTIC: (CHARACTERISTIC_SPEED_PCT, CHARACTERISTIC_POWER_PCT),
    BaselineMethod.DAMPER: (DAMPER_FLOW_PCT, DAMPER_POWER_PCT),
    BaselineMethod.INLET_VANE: (INLET_VANE_FLOW_PCT, INLET_VANE_POWER_PCT),
}

RUNNING_RATIO = 0.005  # below 0.5 % speed the drive counts as stopped
POWER_FACTOR = 0.85  # motor cos φ, for a plausible output current


@dataclass(frozen=True)
class Measured:
    """What the drive itself measures and reports (noisy)."""

    speed_ratio: float
    power: float  # W
    current: float  # A
    dc_voltage: float  # V
    flow: float  # m³/s
    pressure: float  # Pa
    energy_counter: float  # J, including the counter's start value


@dataclass(frozen=True)
class DriveSnapshot:
    """One drive at one physics step; immutable, so any thread may read it."""

    t: float  # s since the simulation started
    demand_flow: float  # m³/s
    setpoint_ratio: float
    remote_active: bool  # the setpoint came from the fieldbus
    speed_ratio: float
    flow: float  # m³/s
    head: float  # pump: m; fan: Pa
    pressure: float  # Pa
    shaft_power: float  # W
    power: float  # W, true electrical
    baseline_power: float  # W
    energy: float  # J, true electrical, since the start
    baseline_energy: float  # J, true baseline, since the start
    running: bool
    fault_code: int
    measured: Measured


class SpeedController(Protocol):
    """Decides a drive's speed setpoint (a ratio) at a time."""

    def setpoint(self, t: float) -> float:
        """Speed ratio the drive should run at."""
        ...  # pragma: no cover - protocol


class FlowController:
    """The drive's own process loop: the speed at which its circuit passes the demanded flow."""

    def __init__(self, curves: MachineCurves, system: SystemCurve, demand: DemandProfile) -> None:
        self.curves = curves
        self.system = system
        self.demand = demand

    def setpoint(self, t: float) -> float:
        """Speed ratio that meets the demanded flow on the system curve (unclamped)."""
        return ratio_for_flow(self.curves, self.system, self.demand.flow(t))


class DriveModel:
    """One drive, its motor and its machine; stepped by ``PlantModel``."""

    def __init__(self, spec: DriveSpec, day_length: float) -> None:
        self.spec = spec
        self.curves = spec.curves()
        self.system = system_from_rated(spec.load.rated_flow, spec.rated_head, spec.static_ratio)
        rated_flow = spec.load.rated_flow
        self.demand = DemandProfile(spec.min_demand_ratio * rated_flow, spec.max_demand_ratio * rated_flow,
                                    day_length=day_length, seed=spec.seed)
        self.controller: SpeedController = FlowController(self.curves, self.system, self.demand)
        self.remote_setpoint: float | None = None
        self._rng = np.random.default_rng(spec.seed)
        # Start in steady state at t = 0, so nothing ramps at start-up.
        self.setpoint_ratio = self.choose_setpoint(0.0)
        self.speed_ratio = self.setpoint_ratio
        self.flow = operating_flow(self.curves, self.system, self.speed_ratio)
        self.snapshot = self._settle(0.0, 0.0, None)

    def _clamp(self, ratio: float) -> float:
        return min(max(ratio, self.spec.min_speed_ratio), self.spec.max_speed_ratio)

    @property
    def remote_active(self) -> bool:
        """True when a fieldbus setpoint is in force (written, and the drive is in remote)."""
        return self.spec.remote and self.remote_setpoint is not None

    def choose_setpoint(self, t: float) -> float:
        """The clamped speed setpoint: the fieldbus one when in force, else the process loop's."""
        wanted = self.remote_setpoint if self.remote_active else None
        return self._clamp(wanted if wanted is not None else self.controller.setpoint(t))

    def advance_speed(self, t: float, dt: float) -> None:
        """Phase 1: setpoint at the start of the step, held over it; exact first-order ramp."""
        self.setpoint_ratio = self.choose_setpoint(t)
        self.speed_ratio = ramp(self.speed_ratio, self.setpoint_ratio, dt, self.spec.ramp_time)

    def finish_step(self, t: float, dt: float) -> None:
        """Phase 3: powers, noise and ground truth at the end of the step."""
        self.snapshot = self._settle(t, dt, self.snapshot)

    def baseline_power(self, running: bool) -> float:
        """What the load would draw without the VFD, from the true state (ground truth)."""
        if not running:
            return 0.0
        spec = self.spec
        baseline = spec.baseline
        if baseline.method is BaselineMethod.CONSTANT:
            return baseline.constant_power
        if baseline.method is BaselineMethod.THROTTLE:
            # The pump at rated speed, throttled to the same flow: no inverter, motor losses only.
            shaft = self.curves.shaft_power(self.flow, 1.0)
            load = shaft / spec.rated_power
            return shaft / motor_efficiency(load, spec.motor_efficiency) if shaft > 0.0 else 0.0
        xs, ys = (baseline.table_x_pct, baseline.table_y_pct) if baseline.table_x_pct else (
            _DEFAULT_BASELINE_TABLES[baseline.method])
        if baseline.method is BaselineMethod.CHARACTERISTIC:
            x = 100.0 * self.speed_ratio
        else:  # damper, inlet vanes: the fan at rated speed delivering the same flow
            x = 100.0 * self.flow / spec.load.rated_flow
        return spec.rated_power * float(np.interp(x, xs, ys)) / 100.0

    def _settle(self, t: float, dt: float, before: DriveSnapshot | None) -> DriveSnapshot:
        spec = self.spec
        r = self.speed_ratio
        head = self.system.head(self.flow) if self.flow > 0.0 else self.curves.head(0.0, r)
        pressure = head * self.curves.rho_g
        shaft = self.curves.shaft_power(self.flow, r)
        running = r > RUNNING_RATIO
        power = electrical_power(shaft, spec.rated_power, spec.motor_efficiency) if running else 0.0
        baseline = self.baseline_power(running)
        noise = self._rng.standard_normal(6)
        n = spec.noise
        measured_power = max(power * (1.0 + n.power * noise[0]), 0.0)
        current = power / (math.sqrt(3.0) * spec.rated_voltage * POWER_FACTOR)
        load = shaft / spec.rated_power
        dc_voltage = math.sqrt(2.0) * spec.rated_voltage * (1.0 - 0.02 * load)
        if before is None:
            energy, baseline_energy, counter = 0.0, 0.0, spec.energy_counter_start
        else:
            energy = before.energy + 0.5 * (before.power + power) * dt
            baseline_energy = before.baseline_energy + 0.5 * (before.baseline_power + baseline) * dt
            counter = before.measured.energy_counter + 0.5 * (before.measured.power + measured_power) * dt
        measured = Measured(
            speed_ratio=max(r * (1.0 + n.speed * noise[1]), 0.0),
            power=measured_power,
            current=max(current * (1.0 + n.current * noise[2]), 0.0),
            dc_voltage=dc_voltage * (1.0 + n.voltage * noise[3]),
            flow=max(self.flow * (1.0 + n.flow * noise[4]), 0.0),
            pressure=max(pressure * (1.0 + n.pressure * noise[5]), 0.0),
            energy_counter=counter,
        )
        return DriveSnapshot(
            t=t, demand_flow=self.demand.flow(t), setpoint_ratio=self.setpoint_ratio,
            remote_active=self.remote_active, speed_ratio=r, flow=self.flow, head=head,
            pressure=pressure, shaft_power=shaft, power=power, baseline_power=baseline, energy=energy,
            baseline_energy=baseline_energy, running=running, fault_code=0, measured=measured,
        )


class Circuit(Protocol):
    """A hydraulic (or air) network: sets the flow of each drive it holds."""

    def solve(self) -> None:
        """Phase 2: operating point of every drive in the circuit at its current speed."""
        ...  # pragma: no cover - protocol


class OwnSystem:
    """One machine alone on its own system curve."""

    def __init__(self, drive: DriveModel) -> None:
        self.drive = drive

    def solve(self) -> None:
        """Operating point of the single machine."""
        d = self.drive
        d.flow = operating_flow(d.curves, d.system, d.speed_ratio)


class PlantModel:
    """Every drive of a plant, stepped together on one time grid."""

    def __init__(self, spec: PlantSpec) -> None:
        self.spec = spec
        self.step = spec.step
        self.drives: dict[str, DriveModel] = {d.name: DriveModel(d, spec.day_length) for d in spec.drives}
        self.circuits: Sequence[Circuit] = [OwnSystem(d) for d in self.drives.values()]
        self.steps = 0

    @property
    def t(self) -> float:
        """Time of the latest step, since the start [s]."""
        return self.steps * self.step

    def advance_to(self, t: float) -> int:
        """Run every whole step up to time t (since the start); returns how many ran."""
        target = math.floor(t / self.step + 1e-9)
        ran = 0
        while self.steps < target:
            t0 = self.steps * self.step
            for drive in self.drives.values():
                drive.advance_speed(t0, self.step)
            for circuit in self.circuits:
                circuit.solve()
            self.steps += 1
            for drive in self.drives.values():
                drive.finish_step(self.t, self.step)
            ran += 1
        return ran

    def snapshot(self, name: str) -> DriveSnapshot:
        """Latest state of one drive."""
        return self.drives[name].snapshot
