"""The plant's dynamics: speed control, speed ramps, operating points and ground truth.

Time advances on a fixed grid (``PlantSpec.step``) counted from the start of the
simulation, so the same clock readings always give the same results, whoever
asks and however often. Each step runs in three phases that later work can
widen without touching the others:

0. every header circuit runs its drives' own local control (pressure PI and
   pump cascade) for the drives not under fieldbus control;
1. every drive's controller picks a speed setpoint and the speed ramps toward it;
2. every circuit solves its operating point: one machine alone on its own system
   curve (``OwnSystem``), or parallel machines on a common header feeding loads
   with control valves (``HeaderCircuit``);
3. every drive turns shaft power into electrical power, draws measurement noise
   and integrates its ground truth; every circuit integrates its own (unmet demand).

Fieldbus commands (``PlantModel.command``): a speed setpoint is in force while the
drive is in remote, as before; a control word equal to the profile's ``run`` or
``stop`` word puts the drive under fieldbus control (running at the fieldbus speed
setpoint, or stopped); any other control word hands it back to its local control.
A pressure setpoint goes to the drive's circuit, whose PI then holds it.

Ground truth (true electrical and baseline energy) is the trapezoid integral of
the noise-free powers at the physics step; measured values carry noise, and the
drive's own energy counter integrates its measured power, as a real drive's does.

Long because the step's phases share one state (drives, circuits, local control, truth)
and are read in order; the pure physics lives apart in ``hil.physics``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from agent.config import BaselineMethod
from agent.config.profile import Quantity
from agent.energy.baseline import baseline_table
from hil.demand import DemandProfile
from hil.physics import (
    Curves,
    SystemCurve,
    common_ratio_for,
    electrical_power,
    flow_at_head,
    frequency_for_speed,
    header_flows,
    header_operating_point,
    operating_flow,
    ramp,
    ratio_for_flow,
    slip_speed,
    system_from_rated,
    torque_limit,
)
from hil.plantfile import CircuitSpec, DriveSpec, PlantSpec

RUNNING_RATIO = 0.005  # below 0.5 % speed the drive counts as stopped
# Inlet vanes: the share of a damper's throttling loss (over speed control) they still burn.
# DOE-2's part-load curves put a fan on a system without static pressure at 48 % of rated
# power at half flow with vanes, 77 % with a damper and about 15 % with speed control:
# (48 - 15) / (77 - 15) ≈ 0.5.
VANE_LOSS_SHARE = 0.5
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
    process_flow: float = 0.0  # m³/s: the circuit's demanded flow, as a BMS reports it to the drive
    critical_pressure: float = 0.0  # Pa: the remote differential pressure transmitter at the critical load
    critical_valve: float = 0.0  # the critical load's valve position as its controller reports it, 0..1


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
    baseline_power: float  # W, what the machine without a VFD would draw (its physics)
    energy: float  # J, true electrical, since the start
    baseline_energy: float  # J, true baseline, since the start
    running: bool
    fault_code: int
    measured: Measured
    pressure_setpoint: float = 0.0  # Pa, the circuit's pressure setpoint (0 without a pressure loop)
    fieldbus: bool = False  # under fieldbus control by its control word
    shaft_speed_ratio: float = math.nan  # the shaft's speed / rated (below speed_ratio by the slip)
    current_limited: bool = False  # the drive's current limit held the frequency below the setpoint's
    current_limited_s: float = 0.0  # s, time spent at the current limit since the start
    critical_pressure: float = 0.0  # Pa, true differential pressure across the critical branch
    critical_valve: float = 0.0  # opening of the critical load's valve, 0..1 (1: wide open)
    formula_baseline_power: float = 0.0  # W, the baseline method's formula on the true state
    formula_baseline_energy: float = 0.0  # J, its integral since the start


class SpeedController(Protocol):
    """Decides a drive's speed setpoint (a ratio) at a time."""

    def setpoint(self, t: float) -> float:
        """Speed ratio the drive should run at."""
        ...  # pragma: no cover - protocol


class FlowController:
    """The drive's own process loop: the speed at which its circuit passes the demanded flow."""

    def __init__(self, curves: Curves, system: SystemCurve, demand: DemandProfile,
                 rated_power: float = 1.0, rated_slip: float = 0.0) -> None:
        self.curves = curves
        self.system = system
        self.demand = demand
        self.rated_power = rated_power
        self.rated_slip = rated_slip

    def setpoint(self, t: float) -> float:
        """Frequency (speed) ratio that meets the demanded flow on the system curve (unclamped)."""
        flow = self.demand.flow(t)
        shaft = ratio_for_flow(self.curves, self.system, flow)
        power = self.curves.shaft_power(flow, shaft)
        return frequency_for_speed(shaft, power, self.rated_power, self.rated_slip)


class LocalSetpoint:
    """The speed a circuit's local control (PI and cascade) asks of one drive; 0 stops it."""

    def __init__(self) -> None:
        self.ratio = 0.0

    def setpoint(self, t: float) -> float:
        """The last speed the circuit chose."""
        return self.ratio


@dataclass(frozen=True)
class WriteRecord:
    """One fieldbus command a drive took, for the scenarios' checks of limits and rates."""

    t: float  # s since the start
    quantity: Quantity
    value: float  # SI: ratio, Pa or the control word
    running: bool  # the drive was running when the command came


class DriveModel:
    """One drive, its motor and its machine; stepped by ``PlantModel``."""

    def __init__(self, spec: DriveSpec, day_length: float, in_circuit: bool = False) -> None:
        self.spec = spec
        self.curves = spec.true_curves()
        self.system = system_from_rated(spec.load.rated_flow, spec.rated_head, spec.static_ratio)
        rated_flow = spec.load.rated_flow
        self.demand = DemandProfile(spec.min_demand_ratio * rated_flow, spec.max_demand_ratio * rated_flow,
                                    day_length=day_length, seed=spec.seed)
        self.local = LocalSetpoint()
        self.controller: SpeedController = (
            self.local if in_circuit
            else FlowController(self.curves, self.system, self.demand, spec.rated_power, spec.rated_slip)
        )
        self.circuit: HeaderCircuit | None = None
        self.current_limited = False
        self._torque_limit = torque_limit(spec.rated_power)
        self.remote_setpoint: float | None = None
        self.control_word: int | None = None  # None until a control word is written
        self.fault_code = 0  # a tripped drive stops, whatever it is told
        self.writes: list[WriteRecord] = []
        self._rng = np.random.default_rng(spec.seed)
        self._process_rng = np.random.default_rng(spec.seed + 7919)
        # Start in steady state at t = 0, so nothing ramps at start-up (circuits set theirs up).
        self.setpoint_ratio = self.choose_setpoint(0.0)
        self.speed_ratio = self.setpoint_ratio
        self.shaft_ratio = self.speed_ratio  # the shaft's speed: below the frequency's by the slip
        self.flow = 0.0
        self.solve_own()
        self.head = self._own_head()
        self.snapshot = self._settle(0.0, 0.0, None)

    def _clamp(self, ratio: float) -> float:
        return min(max(ratio, self.spec.min_speed_ratio), self.spec.max_speed_ratio)

    def _own_head(self) -> float:
        return self.system.head(self.flow) if self.flow > 0.0 else self.curves.head(0.0, self.shaft_ratio)

    _SLIP_ITERATIONS = 4  # the slip moves the speed by ~2 %; each pass shrinks the error ~50-fold

    def settle_slip(self, flow: float) -> None:
        """The shaft speed for the present frequency and a flow (no slip: the frequency's)."""
        slip = self.spec.rated_slip
        self.shaft_ratio = self.speed_ratio
        if slip > 0.0:
            for _ in range(self._SLIP_ITERATIONS):
                power = self.curves.shaft_power(flow, self.shaft_ratio)
                self.shaft_ratio = slip_speed(self.speed_ratio, power, self.spec.rated_power, slip)

    def solve_own(self) -> None:
        """Operating point alone on the own system curve, the slip settled with it."""
        passes = self._SLIP_ITERATIONS if self.spec.rated_slip > 0.0 else 1
        for _ in range(passes):
            self.settle_slip(self.flow)
            self.flow = operating_flow(self.curves, self.system, self.shaft_ratio)

    def frequency_for(self, shaft_ratio: float, flow: float) -> float:
        """Frequency ratio that turns the shaft at ``shaft_ratio`` delivering ``flow``."""
        power = self.curves.shaft_power(flow, shaft_ratio)
        return frequency_for_speed(shaft_ratio, power, self.spec.rated_power, self.spec.rated_slip)

    @property
    def fieldbus(self) -> bool:
        """True while the control word puts the drive under fieldbus control (run or stop)."""
        words = self.spec.profile.control_words
        return self.control_word is not None and self.control_word in (words.get("run"), words.get("stop"))

    @property
    def remote_active(self) -> bool:
        """True when the fieldbus is in charge: a written speed setpoint, or a run/stop control word.

        A drive not in remote ignores the fieldbus; before any control word is written, a
        written speed setpoint alone is in force, as on a drive whose reference is the fieldbus.
        """
        if not self.spec.remote:
            return False
        if self.control_word is None:
            return self.remote_setpoint is not None
        return self.fieldbus

    def choose_setpoint(self, t: float) -> float:
        """The speed setpoint: 0 when tripped or stopped, else the fieldbus's or the local loop's, clamped."""
        if self.fault_code:
            return 0.0
        if self.remote_active:
            stop = self.spec.profile.control_words.get("stop")
            if self.control_word is not None and self.control_word == stop:
                return 0.0
            wanted = self.remote_setpoint if self.remote_setpoint is not None else self.setpoint_ratio
            return self._clamp(wanted)
        local = self.controller.setpoint(t)
        if self.controller is self.local and local <= 0.0:
            return 0.0  # the cascade stopped this pump
        return self._clamp(local)

    def command(self, t: float, quantity: Quantity, value: float) -> None:
        """A fieldbus write the drive accepted (SI value; pressure in Pa)."""
        self.writes.append(WriteRecord(t, quantity, value, self.speed_ratio > RUNNING_RATIO))
        if quantity is Quantity.SPEED_SETPOINT:
            self.remote_setpoint = value
        elif quantity is Quantity.CONTROL_WORD:
            self.control_word = int(value)
        elif quantity is Quantity.PRESSURE_SETPOINT and self.circuit is not None:
            self.circuit.setpoint_pa = value

    def advance_speed(self, t: float, dt: float) -> None:
        """Phase 1: setpoint at the start of the step, held over it; exact first-order ramp."""
        self.setpoint_ratio = self.choose_setpoint(t)
        self.speed_ratio = ramp(self.speed_ratio, self.setpoint_ratio, dt, self.spec.ramp_time)

    def overload(self) -> float:
        """Torque over the torque at the drive's current limit (above 1: the limit acts)."""
        if self.speed_ratio <= RUNNING_RATIO:
            return 0.0
        shaft = self.curves.shaft_power(self.flow, self.shaft_ratio)
        return shaft / self.spec.rated_power / max(self.shaft_ratio, RUNNING_RATIO) / self._torque_limit

    def finish_step(self, t: float, dt: float) -> None:
        """Phase 3: powers, noise and ground truth at the end of the step."""
        self.snapshot = self._settle(t, dt, self.snapshot)

    def formula_baseline_power(self, running: bool) -> float:
        """The baseline method's own formula on the true state: what a correct agent books.

        This is the agent's bookkeeping checked against the truth it was fed (the table of
        the characteristic, damper and inlet-vane methods, the configured constant), not
        what the machine without a VFD would draw: that is ``baseline_power``.
        """
        if not running:
            return 0.0
        spec = self.spec
        baseline = spec.baseline
        if baseline.method is BaselineMethod.CONSTANT:
            return baseline.constant_power
        if baseline.method is BaselineMethod.THROTTLE:
            return self._direct_on_line(self.curves.shaft_power(self.flow, 1.0))
        xs, ys = baseline_table(baseline)
        if baseline.method is BaselineMethod.CHARACTERISTIC:
            x = 100.0 * self.speed_ratio
        else:  # damper, inlet vanes: the fan at rated speed delivering the same flow
            x = 100.0 * self.flow / spec.load.rated_flow
        return spec.rated_power * float(np.interp(x, xs, ys)) / 100.0

    def baseline_power(self, running: bool) -> float:
        """What the machine the baseline describes would draw, from its own physics (ground truth).

        The machine without a VFD, direct on line at rated speed, on the true curves:

        - ``constant``: the machine riding its curve against the system: alone, where its
          curve meets its system curve; on a header, with the other running machines also at
          rated speed and the loads' valves passing the demand;
        - ``throttle`` and ``characteristic`` (SINAMICS describes a throttled or bypassed
          plant): the same flow as now, the surplus head burnt in a valve;
        - ``damper``: the fan at rated speed passing the same flow, the damper taking the
          surplus pressure;
        - ``inlet_vane``: pre-swirl turns the fan's curve down like a lower speed, with a
          loss: the power at the speed that meets the system at this flow plus
          ``VANE_LOSS_SHARE`` of what a damper would burn on top of it.
        """
        if not running:
            return 0.0
        method = self.spec.baseline.method
        if method is BaselineMethod.CONSTANT:
            flow = (self.circuit.rated_speed_flow(self) if self.circuit is not None
                    else operating_flow(self.curves, self.system, 1.0))
            return self._direct_on_line(self.curves.shaft_power(flow, 1.0))
        throttled = self.curves.shaft_power(self.flow, 1.0)
        if method is not BaselineMethod.INLET_VANE:
            return self._direct_on_line(throttled)
        system = self.circuit.system if self.circuit is not None else self.system
        ratio = min(self.curves.ratio_at(system.head(self.flow), self.flow), 1.0)
        speed = self.curves.shaft_power(self.flow, ratio)
        return self._direct_on_line(speed + VANE_LOSS_SHARE * max(throttled - speed, 0.0))

    def _direct_on_line(self, shaft: float) -> float:
        """Electrical power of the motor on the mains: motor losses only, no inverter."""
        if shaft <= 0.0:
            return 0.0
        return electrical_power(shaft, self.spec.rated_power, self.spec.motor_efficiency, 1.0, inverter=False)

    def _settle(self, t: float, dt: float, before: DriveSnapshot | None) -> DriveSnapshot:
        spec = self.spec
        r = self.speed_ratio
        head = self.head
        pressure = head * self.curves.rho_g
        shaft = self.curves.shaft_power(self.flow, self.shaft_ratio)
        running = r > RUNNING_RATIO
        power = (electrical_power(shaft, spec.rated_power, spec.motor_efficiency, self.shaft_ratio)
                 if running else 0.0)
        baseline = self.baseline_power(running)
        formula = self.formula_baseline_power(running)
        limited_s = (before.current_limited_s if before else 0.0) + (dt if self.current_limited else 0.0)
        noise = self._rng.standard_normal(6)
        critical_pa = circuit_dp = 0.0
        valve = 0.0
        if self.circuit is not None:
            circuit_dp = self.circuit.critical_dp * self.curves.rho_g
            valve = self.circuit.critical_valve
            critical_pa = max(circuit_dp * (1.0 + self.spec.noise.pressure * noise[5]), 0.0)
        n = spec.noise
        # The register holds the mains input or the drive's output (the motor's input: the
        # inverter's losses not in it); the truth (``power``) is always the mains input.
        reported = power if spec.reports_input or not running else electrical_power(
            shaft, spec.rated_power, spec.motor_efficiency, self.shaft_ratio, inverter=False)
        measured_power = max(reported * (1.0 + n.power * noise[0]), 0.0)
        current = power / (math.sqrt(3.0) * spec.rated_voltage * POWER_FACTOR)
        load = shaft / spec.rated_power
        dc_voltage = math.sqrt(2.0) * spec.rated_voltage * (1.0 - 0.02 * load)
        if before is None:
            energy, baseline_energy, formula_energy, counter = 0.0, 0.0, 0.0, spec.energy_counter_start
        else:
            energy = before.energy + 0.5 * (before.power + power) * dt
            baseline_energy = before.baseline_energy + 0.5 * (before.baseline_power + baseline) * dt
            formula_energy = (before.formula_baseline_energy
                              + 0.5 * (before.formula_baseline_power + formula) * dt)
            counter = before.measured.energy_counter + 0.5 * (before.measured.power + measured_power) * dt
        measured = Measured(
            speed_ratio=max(r * (1.0 + n.speed * noise[1]), 0.0),
            power=measured_power,
            current=max(current * (1.0 + n.current * noise[2]), 0.0),
            dc_voltage=dc_voltage * (1.0 + n.voltage * noise[3]),
            flow=max(self.flow * (1.0 + n.flow * noise[4]), 0.0),
            pressure=max(pressure * (1.0 + n.pressure * noise[5]), 0.0),
            energy_counter=counter,
            process_flow=self._process_flow(t), critical_pressure=critical_pa, critical_valve=valve,
        )
        circuit = self.circuit
        return DriveSnapshot(
            t=t, demand_flow=circuit.demand.flow(t) if circuit else self.demand.flow(t),
            setpoint_ratio=self.setpoint_ratio,
            remote_active=self.remote_active, speed_ratio=r, flow=self.flow, head=head,
            pressure=pressure, shaft_power=shaft, power=power, baseline_power=baseline, energy=energy,
            baseline_energy=baseline_energy, running=running, fault_code=self.fault_code, measured=measured,
            pressure_setpoint=circuit.setpoint_pa if circuit else 0.0, fieldbus=self.fieldbus,
            shaft_speed_ratio=self.shaft_ratio, formula_baseline_power=formula,
            current_limited=self.current_limited,
            current_limited_s=limited_s,
            critical_pressure=circuit_dp,
            critical_valve=valve,
            formula_baseline_energy=formula_energy,
        )

    def _process_flow(self, t: float) -> float:
        """The demanded flow of the drive's circuit as a noisy process signal (own flow when alone)."""
        flow = self.circuit.demand.flow(t) if self.circuit is not None else self.flow
        return max(flow * (1.0 + self.spec.noise.flow * float(self._process_rng.standard_normal())), 0.0)


class Circuit(Protocol):
    """A hydraulic (or air) network: sets the flow of each drive it holds."""

    def control(self, t: float, dt: float) -> None:
        """Phase 0: local control of the drives the circuit holds."""
        ...  # pragma: no cover - protocol

    def solve(self) -> None:
        """Phase 2: operating point of every drive in the circuit at its current speed."""
        ...  # pragma: no cover - protocol

    def finish_step(self, t: float, dt: float) -> None:
        """Phase 3: the circuit's own ground truth."""
        ...  # pragma: no cover - protocol


class OwnSystem:
    """One machine alone on its own system curve."""

    def __init__(self, drive: DriveModel) -> None:
        self.drive = drive

    def control(self, t: float, dt: float) -> None:
        """The drive's own flow loop lives in the drive (``FlowController``)."""

    def solve(self) -> None:
        """Operating point of the single machine."""
        d = self.drive
        d.solve_own()
        d.head = d._own_head()

    def finish_step(self, t: float, dt: float) -> None:
        """Nothing to account beyond the drive's own truth."""


@dataclass
class CircuitTruth:
    """What a header circuit really did, integrated at the physics step."""

    unmet_s: float = 0.0  # time the delivered flow fell short of the demand beyond the tolerance
    unmet_volume: float = 0.0  # m³ not delivered
    stage_changes: int = 0  # times the set of running machines changed
    local_stage_changes: int = 0  # of them, made by the local cascade
    transitions: list[tuple[float, str, bool]] = field(default_factory=list)  # (t, drive, now running)


class LocalPolicy(Protocol):
    """A header's own control beyond the fixed setpoint and speed thresholds (hil.strategies.GoodPractice)."""

    def reset(self, circuit: HeaderCircuit, t: float, dt: float) -> None:
        """Move the circuit's pressure setpoint (``setpoint_pa``) for this step."""
        ...  # pragma: no cover - protocol

    def stage(self, circuit: HeaderCircuit, local: Sequence[DriveModel], demand: float,
              ratio: float) -> tuple[bool, bool]:
        """(stage up, stage down) wanted with the first ``circuit.staged`` of ``local`` at ``ratio``."""
        ...  # pragma: no cover - protocol


class HeaderCircuit:
    """Parallel machines on one header feeding loads with control valves, and their local control.

    The loads demand a flow; their valves pass it if the header head is at least what
    the system curve needs at that flow, and throttle any surplus away. The drives not
    under fieldbus control run the conventional strategy of ``LocalControlSpec``: a
    pressure PI (modelled as the speed it converges to: the one holding the setpoint at
    the present demand) and a threshold cascade in the circuit's lead-lag order.
    """

    def __init__(self, spec: CircuitSpec, drives: list[DriveModel], day_length: float) -> None:
        self.spec = spec
        self.drives = drives
        self.system = system_from_rated(spec.design_flow, spec.design_head, spec.static_ratio)
        self.demand = DemandProfile(spec.min_demand_ratio * spec.design_flow,
                                    spec.max_demand_ratio * spec.design_flow, day_length=day_length,
                                    seed=spec.seed)
        self.setpoint_pa = spec.control.pressure_setpoint * spec.rho_g
        self.head = 0.0
        self.delivered = 0.0
        self.critical_dp = 0.0  # machine units, across the critical branch
        self.critical_valve = 0.0
        self.policy: LocalPolicy | None = None  # None: the conventional thresholds of LocalControlSpec
        self.truth = CircuitTruth()
        self.staged = 1  # local drives the cascade runs, in order
        self._up_s = self._down_s = 0.0
        self._local: tuple[str, ...] = ()
        self._running: tuple[bool, ...] = ()
        for drive in drives:
            drive.circuit = self
        self._start_steady()

    @property
    def setpoint(self) -> float:
        """The pressure setpoint in machine units (m for pumps, Pa for fans)."""
        return self.setpoint_pa / self.spec.rho_g

    def _start_steady(self) -> None:
        """At t = 0: as few pumps as hold the setpoint below the stage-up speed, already at speed."""
        demand = self.demand.flow(0.0)
        local = [d for d in self.drives if not d.remote_active]
        self._local = tuple(d.spec.name for d in local)
        for n in range(1, len(local) + 1):
            self.staged = n
            if self._common_ratio(local[:n], [], demand) < self.spec.control.stage_up_ratio:
                break
        self.control(0.0, 0.0)
        for drive in self.drives:
            drive.setpoint_ratio = drive.choose_setpoint(0.0)
            drive.speed_ratio = drive.setpoint_ratio
            drive.shaft_ratio = drive.speed_ratio
        self.solve()
        self._running = tuple(d.speed_ratio > RUNNING_RATIO for d in self.drives)
        for drive in self.drives:
            drive.snapshot = drive._settle(0.0, 0.0, None)

    def _common_ratio(self, machines: list[DriveModel], others: list[DriveModel], demand: float) -> float:
        top = max((d.spec.max_speed_ratio for d in machines), default=1.0)
        ratio = common_ratio_for([d.curves for d in machines], [(d.curves, d.shaft_ratio) for d in others],
                                 self.setpoint, demand, top)
        return max(ratio, max((d.spec.min_speed_ratio for d in machines), default=0.0))

    def control(self, t: float, dt: float) -> None:
        """Phase 0: the local PI and cascade set the speed of every drive not under fieldbus control."""
        local = [d for d in self.drives if not d.remote_active and not d.fault_code]
        names = tuple(d.spec.name for d in local)
        if names != self._local:  # drives handed back (or taken): start from what runs now
            self.staged = max(1, sum(1 for d in local if d.speed_ratio > RUNNING_RATIO))
            self._local, self._up_s, self._down_s = names, 0.0, 0.0
        if not local:
            return
        self.staged = min(max(self.staged, 1), len(local))
        others = [d for d in self.drives if d.remote_active]
        demand = self.demand.flow(t)
        if self.policy is not None:
            self.policy.reset(self, t, dt)
        ratio = self._common_ratio(local[: self.staged], others, demand)
        control = self.spec.control
        if self.policy is not None:
            up, down = self.policy.stage(self, local, demand, ratio)
        else:
            up, down = ratio >= control.stage_up_ratio, ratio <= control.stage_down_ratio
        self._up_s = self._up_s + dt if up and self.staged < len(local) else 0.0
        self._down_s = self._down_s + dt if down and self.staged > 1 else 0.0
        if self._up_s > control.stage_delay or self._down_s > control.stage_delay:
            self.staged += 1 if self._up_s > control.stage_delay else -1
            self._up_s = self._down_s = 0.0
            ratio = self._common_ratio(local[: self.staged], others, demand)
        for index, drive in enumerate(local):
            running = index < self.staged
            if running and drive.spec.rated_slip > 0.0:  # the PI settles the frequency giving that speed
                flow = flow_at_head(drive.curves, self.setpoint, ratio)
                drive.local.ratio = drive.frequency_for(ratio, flow)
            else:
                drive.local.ratio = ratio if running else 0.0

    def solve(self) -> None:
        """Phase 2: the header head, the delivered flow and every machine's flow."""
        demand = self.demand.flow(self._t)
        slipping = any(d.spec.rated_slip > 0.0 for d in self.drives)
        for _ in range(DriveModel._SLIP_ITERATIONS if slipping else 1):
            for drive in self.drives:
                drive.settle_slip(drive.flow)
            machines = [(d.curves, d.shaft_ratio) for d in self.drives]
            self.head, self.delivered = header_operating_point(machines, self.system, demand)
            for drive, flow in zip(self.drives, header_flows(machines, self.head), strict=True):
                drive.flow = flow
                drive.head = self.head
        self._critical_point()

    def _critical_point(self) -> None:
        """Differential pressure across the critical branch and its valve's opening.

        The lumped curve splits in two: the mains up to the critical branch take
        ``critical_path_share`` of the dynamic head k·Q², the branch (coil and valve wide
        open) the rest. The valve throttles whatever the header gives beyond that need; its
        opening is the flow coefficient it uses over its full one, √(need / available).
        Wide open (1) exactly when the header gives no more than the system curve needs.
        """
        k, share = self.system.k, self.spec.critical_path_share
        flow = self.delivered
        self.critical_dp = max(self.head - self.system.static - share * k * flow * flow, 0.0)
        need = (1.0 - share) * k * flow * flow
        if flow <= 0.0:
            self.critical_valve = 0.0
        elif self.critical_dp <= need * (1.0 + 1e-9):
            self.critical_valve = 1.0
        else:
            self.critical_valve = math.sqrt(need / self.critical_dp)

    _t = 0.0  # time of the step being solved, set by PlantModel

    def rated_speed_flow(self, drive: DriveModel) -> float:
        """Flow of ``drive`` if every running machine ran at rated speed, the valves passing the demand."""
        if self._rated_at != self._t:
            running = [d for d in self.drives if d.speed_ratio > RUNNING_RATIO]
            machines = [(d.curves, 1.0) for d in running]
            self._rated_head = header_operating_point(machines, self.system, self.demand.flow(self._t))[0]
            self._rated_at = self._t
        return flow_at_head(drive.curves, self._rated_head, 1.0)

    _rated_at = math.nan
    _rated_head = 0.0

    def finish_step(self, t: float, dt: float) -> None:
        """Phase 3: unmet demand and stage changes."""
        demand = self.demand.flow(t)
        shortfall = demand - self.delivered
        if shortfall > self.spec.unmet_tolerance * demand:
            self.truth.unmet_s += dt
        self.truth.unmet_volume += max(shortfall, 0.0) * dt
        running = tuple(d.speed_ratio > RUNNING_RATIO for d in self.drives)
        if running != self._running:
            self.truth.stage_changes += 1
            changed = [d for d, a, b in zip(self.drives, running, self._running, strict=True) if a != b]
            if all(not d.remote_active for d in changed):
                self.truth.local_stage_changes += 1
            self.truth.transitions.extend((t, d.spec.name, d.speed_ratio > RUNNING_RATIO) for d in changed)
            self._running = running


class PlantModel:
    """Every drive of a plant, stepped together on one time grid."""

    def __init__(self, spec: PlantSpec) -> None:
        self.spec = spec
        self.step = spec.step
        members = {name for c in spec.circuits for name in c.drives}
        self.drives: dict[str, DriveModel] = {
            d.name: DriveModel(d, spec.day_length, in_circuit=d.name in members) for d in spec.drives
        }
        self.headers: dict[str, HeaderCircuit] = {
            c.name: HeaderCircuit(c, [self.drives[n] for n in c.drives], spec.day_length)
            for c in spec.circuits
        }
        self.circuits: Sequence[Circuit] = [
            *(OwnSystem(d) for d in self.drives.values() if d.spec.name not in members),
            *self.headers.values(),
        ]
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
            for circuit in self.circuits:
                circuit.control(t0, self.step)
            for drive in self.drives.values():
                drive.advance_speed(t0, self.step)
            for header in self.headers.values():
                header._t = t0 + self.step
            for circuit in self.circuits:
                circuit.solve()
            self._limit_current()
            self.steps += 1
            for drive in self.drives.values():
                drive.finish_step(self.t, self.step)
            for circuit in self.circuits:
                circuit.finish_step(self.t, self.step)
            ran += 1
        return ran

    _LIMIT_PASSES = 8

    def _limit_current(self) -> None:
        """Drives whose motor would draw more than the current limit lower their frequency until it does not.

        A pump run out beyond its best-efficiency flow, or pushed against a low head, loads
        its motor past rated: the drive's current limit takes speed off (torque of a pump
        ∝ speed², so the speed falls by the square root of the overload), and the
        circuit's operating point is solved again. The lowered speed is where the next
        step's ramp starts, as with a real drive.
        """
        for drive in self.drives.values():
            drive.current_limited = False
        for _ in range(self._LIMIT_PASSES):
            over = [d for d in self.drives.values() if d.overload() > 1.0 + 1e-6]
            if not over:
                return
            for drive in over:
                drive.speed_ratio *= 0.999 * drive.overload() ** -0.5
                drive.current_limited = True
            for circuit in self.circuits:
                circuit.solve()

    def command(self, name: str, quantity: Quantity, value: float) -> None:
        """A fieldbus write to a drive (SI value, pressure in Pa), taken at the current time."""
        self.drives[name].command(self.t, quantity, value)

    def snapshot(self, name: str) -> DriveSnapshot:
        """Latest state of one drive."""
        return self.drives[name].snapshot
