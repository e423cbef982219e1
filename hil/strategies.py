"""Reference strategies for the closed-loop scenarios: conventional, good practice and the oracle.

Both run on the plant's own physics, without Modbus and faster than real time, on the
same demand trace as the agent's run:

- the conventional strategy is what the drives do by themselves (``LocalControlSpec``:
  a fixed pressure setpoint held by the drive's PI, pumps staged by speed thresholds in
  a fixed lead-lag order); ``conventional_run`` steps a fresh ``PlantModel`` nobody
  writes to;
- good practice is a well-tuned plant without the agent: the header's pressure setpoint
  reset by trim-and-respond on the critical load's valve (ASHRAE Guideline 36, 5.1.14),
  pumps staged to keep each near its best-efficiency flow from its datasheet (good
  practice does not know the wear); ``good_practice_run`` steps it like the conventional;
- the oracle knows the true curves (worn pumps included), the true electrical losses
  and the demand at every instant, and runs the machines that deliver exactly the
  demand at the least electrical power, with the loads' valves wide open, within the
  same operating limits the agent is given (speed limits, and the window of flow around
  each pump's best-efficiency flow it may run in). It is a lower bound: no ramps, no
  minimum run times, no measurement noise, no margin. The search is a brute force over
  subsets and flow splits, independent of the agent's kernels.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from hil.model import DriveModel, HeaderCircuit, PlantModel
from hil.physics import (
    Curves,
    MachineCurves,
    electrical_power_array,
    flow_at_head,
    header_head_for_flow,
    system_from_rated,
    torque_limit,
)
from hil.plantfile import CircuitSpec, DriveSpec, PlantSpec

FloatArray = NDArray[np.float64]

_TABLE_POINTS = 301  # demand grid of the oracle's power table
_ZOOMS = 4  # refinements of each flow-split grid
_GRID = {1: 1, 2: 201, 3: 61}  # grid points per free flow, by subset size


def conventional_run(plant: PlantSpec, until: float) -> PlantModel:
    """The plant left to its own drives, stepped to ``until`` [s]."""
    model = PlantModel(plant)
    model.advance_to(until)
    return model


@dataclass
class GoodPractice:
    """Trim-and-respond pressure reset on the critical valve, and best-efficiency staging.

    Every ``interval`` the critical load's valve makes requests: one while it is more
    than 90 % open (until it falls below 80 %), three while the load is short of flow.
    With none (G36's ignored requests I = 0: one critical zone) the setpoint trims by
    ``trim`` of the span; with R requests it responds by R × ``respond``, at most
    ``respond_max``; always within [static head, the operator's fixed setpoint]. Staging:
    up when the running pumps pass more than ``up_share`` of their datasheet
    best-efficiency flows (or cannot hold the setpoint), down when one fewer would pass
    less than ``down_share`` of theirs; the cascade's delay and lead-lag order stay.
    """

    interval: float  # s, G36's T (2 min of a real day)
    trim: float = -0.005  # of the setpoint span, per interval without requests
    respond: float = 0.02  # per request
    respond_max: float = 0.05
    up_share: float = 1.15
    down_share: float = 0.9
    _elapsed: float = 0.0
    _requesting: bool = False

    def reset(self, circuit: HeaderCircuit, t: float, dt: float) -> None:
        """One trim-and-respond step when the interval has passed."""
        self._elapsed += dt
        if self._elapsed < self.interval:
            return
        self._elapsed = 0.0
        valve = circuit.critical_valve
        self._requesting = valve > 0.90 or (self._requesting and valve >= 0.80)
        demand = circuit.demand.flow(t)
        short = circuit.delivered < demand * (1.0 - circuit.spec.unmet_tolerance)
        requests = 3 if short else int(self._requesting)
        rho_g = circuit.spec.rho_g
        low = circuit.system.static * rho_g
        high = circuit.spec.control.pressure_setpoint * rho_g
        span = high - low
        step = min(requests * self.respond, self.respond_max) if requests else self.trim
        circuit.setpoint_pa = min(max(circuit.setpoint_pa + step * span, low), high)

    def stage(self, circuit: HeaderCircuit, local: Sequence[DriveModel], demand: float,
              ratio: float) -> tuple[bool, bool]:
        """Flow per pump against the datasheet best-efficiency flows of the pumps running and one fewer."""
        n = circuit.staged
        beps = [self._bep(d) for d in local]
        up = demand > self.up_share * sum(beps[:n]) or ratio >= circuit.spec.control.stage_up_ratio
        down = n > 1 and demand < self.down_share * sum(beps[: n - 1])
        return up, down

    _beps: dict[str, float] = field(default_factory=dict)

    def _bep(self, drive: DriveModel) -> float:
        if drive.spec.name not in self._beps:
            self._beps[drive.spec.name] = best_efficiency_flow(drive.spec.curves())
        return self._beps[drive.spec.name]


def good_practice_interval(day_length: float) -> float:
    """G36's 2-minute trim-and-respond interval, scaled like the day (600 s: 0.83 s)."""
    return 120.0 * day_length / 86_400.0


def good_practice_run(plant: PlantSpec, until: float, interval: float | None = None) -> PlantModel:
    """The plant under good practice (``GoodPractice`` on every header), stepped to ``until`` [s]."""
    model = PlantModel(plant)
    for header in model.headers.values():
        header.policy = GoodPractice(interval or good_practice_interval(plant.day_length))
    model.advance_to(until)
    return model


@dataclass(frozen=True)
class _Machine:
    curves: Curves
    rated_power: float
    motor_efficiency: float
    min_ratio: float
    max_ratio: float
    bep_flow: float  # m³/s at rated speed, of the true curves
    window: tuple[float, float]  # allowed Q/r as multiples of the best-efficiency flow
    torque_limit: float  # torque over rated at the drive's current limit


def _electrical(shaft: FloatArray, ratio: FloatArray, machine: _Machine) -> FloatArray:
    """``hil.physics.electrical_power`` on arrays: the machine at ``ratio`` through its drive."""
    return electrical_power_array(shaft, ratio, machine.rated_power, machine.motor_efficiency)


def _cost(machine: _Machine, head: float, flow: FloatArray) -> FloatArray:
    """Electrical power [W] of a machine delivering ``flow`` against ``head``; inf where it cannot."""
    c = machine.curves
    if isinstance(c, MachineCurves):
        b = c.a1 * flow
        disc = b * b - 4.0 * c.a0 * (c.a2 * flow * flow - head)
        ratio = (-b + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * c.a0)
        shaft = np.maximum(
            c.b0 * ratio**3 + c.b1 * ratio**2 * flow + c.b2 * ratio * flow**2 + c.b3 * flow**3, 0.0
        )
    else:  # catalogue curves: no closed form, one root search per flow
        ratio = np.array([c.ratio_at(head, float(q)) for q in np.ravel(flow)]).reshape(np.shape(flow))
        disc = np.ones_like(ratio)
        shaft = np.array([c.shaft_power(float(q), float(r)) for q, r in zip(np.ravel(flow), np.ravel(ratio),
                                                                           strict=True)]).reshape(np.shape(flow))
    power = _electrical(shaft, ratio, machine)
    feasible = (disc >= 0.0) & (ratio >= machine.min_ratio - 1e-12) & (ratio <= machine.max_ratio + 1e-12)
    # the drive's current limit: no more torque than the rated current gives
    feasible &= shaft <= machine.torque_limit * machine.rated_power * np.maximum(ratio, 1e-12) * (1.0 + 1e-9)
    low, high = machine.window
    collapsed = flow / np.maximum(ratio, 1e-12)
    bep = machine.bep_flow
    feasible &= (collapsed >= low * bep * (1.0 - 1e-9)) & (collapsed <= high * bep * (1.0 + 1e-9))
    result: FloatArray = np.where(feasible & (flow >= 0.0), power, np.inf)
    return result


def _throttled_cost(machine: _Machine, demand: float, need: float) -> float:
    """One machine at its minimum speed, the valves throttling its surplus over the head ``need``."""
    head = header_head_for_flow([(machine.curves, machine.min_ratio)], demand)
    if head < need or flow_at_head(machine.curves, head, machine.min_ratio) < demand * (1.0 - 1e-9):
        return math.inf  # the minimum speed does not over-deliver: no throttling needed
    return float(_cost(machine, head, np.array([demand]))[0])


def _best_split(machines: Sequence[_Machine], head: float, demand: float) -> float:
    """Least total power of all ``machines`` running and sharing ``demand`` at ``head``."""
    n = len(machines)
    if n == 1:
        return float(_cost(machines[0], head, np.array([demand]))[0])
    lows = np.zeros(n - 1)
    highs = np.full(n - 1, demand)
    best = math.inf
    points = _GRID[n]
    for _ in range(_ZOOMS):
        axes = [np.linspace(lo, hi, points) for lo, hi in zip(lows, highs, strict=True)]
        grids = np.meshgrid(*axes, indexing="ij")
        flows = [g.ravel() for g in grids]
        last = demand - np.sum(flows, axis=0)
        total = sum((_cost(m, head, q) for m, q in zip(machines, [*flows, last], strict=True)),
                    start=np.zeros_like(last))
        total = np.where(last >= 0.0, total, np.inf)
        index = int(np.argmin(total))
        if not math.isfinite(float(total[index])):
            return best
        best = min(best, float(total[index]))
        spans = (highs - lows) / (points - 1)
        centre = np.array([q[index] for q in flows])
        lows = np.maximum(centre - 2.0 * spans, 0.0)
        highs = np.minimum(centre + 2.0 * spans, demand)
    return best


def best_efficiency_flow(curves: Curves) -> float:
    """Flow [m³/s] at rated speed where Q·H/P peaks (dense search; independent of the kernels)."""
    if not isinstance(curves, MachineCurves):
        grid = np.linspace(1e-6, 1.0, 4001) * curves.flow_at_head(0.0, 1.0)
        return float(grid[int(np.argmax([curves.efficiency(float(q), 1.0) for q in grid]))])
    q = np.linspace(1e-6, 1.0, 20001) * (-curves.a1 + math.sqrt(curves.a1**2 - 4 * curves.a2 * curves.a0)) \
        / (-2.0 * curves.a2)
    head = curves.a0 + curves.a1 * q + curves.a2 * q * q
    power = curves.b0 + curves.b1 * q + curves.b2 * q * q + curves.b3 * q**3
    return float(q[int(np.argmax(q * head / power))])


class Oracle:
    """Least electrical power that delivers a demand with a circuit's machines, as the truth has them.

    ``window``: the flow window around each pump's best-efficiency flow (Q/r as multiples of
    it) the pumps may run in, the same limit the agent's staging respects; None: no limit.
    """

    def __init__(self, circuit: CircuitSpec, drives: Sequence[DriveSpec],
                 window: tuple[float, float] | None = None) -> None:
        if len(drives) > 3:
            raise ValueError("the oracle's brute force handles up to three machines")
        self.circuit = circuit
        self.system = system_from_rated(circuit.design_flow, circuit.design_head, circuit.static_ratio)
        self.machines = [
            _Machine(d.true_curves(), d.rated_power, d.motor_efficiency, d.min_speed_ratio, d.max_speed_ratio,
                     best_efficiency_flow(d.true_curves()), window or (0.0, math.inf),
                     torque_limit(d.rated_power))
            for d in drives
        ]
        self._table_flow: FloatArray = np.zeros(0)
        self._table_power: FloatArray = np.zeros(0)

    def power(self, demand: float) -> float:
        """Least total electrical power [W] for ``demand`` [m³/s]; inf if nothing can deliver it.

        Where no staging keeps every pump within the window (a low-static system at the
        minimum speed runs a pump out beyond it), the least power without the window.
        """
        if demand <= 0.0:
            return 0.0
        best = self._least(self.machines, demand)
        if math.isinf(best):
            unwindowed = [dataclasses.replace(m, window=(0.0, math.inf)) for m in self.machines]
            best = self._least(unwindowed, demand)
        return best

    def _least(self, machines: Sequence[_Machine], demand: float) -> float:
        head = self.system.head(demand)
        best = min((_throttled_cost(m, demand, head) for m in machines), default=math.inf)
        for size in range(1, len(machines) + 1):
            for subset in itertools.combinations(machines, size):
                best = min(best, _best_split(subset, head, demand))
        return best

    def tabulate(self, low: float, high: float) -> None:
        """Precompute ``power`` over [low, high] for ``interpolated``."""
        self._table_flow = np.linspace(low, high, _TABLE_POINTS)
        self._table_power = np.array([self.power(float(q)) for q in self._table_flow])

    def interpolated(self, demand: float) -> float:
        """``power`` from the table (exact at the table's points, linear between)."""
        if not self._table_flow.size:
            return self.power(demand)
        return float(np.interp(demand, self._table_flow, self._table_power))


def oracle_energy(plant: PlantSpec, circuit: CircuitSpec, until: float,
                  window: tuple[float, float] | None = None) -> float:
    """Energy [J] the oracle draws from 0 to ``until``, on the plant's own demand trace and time step."""
    model = PlantModel(plant)  # the same demand profile the plant runs
    demand = model.headers[circuit.name].demand
    oracle = Oracle(circuit, [plant.drive(name) for name in circuit.drives], window)
    oracle.tabulate(demand.minimum, demand.maximum)
    steps = math.floor(until / plant.step + 1e-9)
    times = np.arange(steps + 1) * plant.step
    powers = np.array([oracle.interpolated(demand.flow(float(t))) for t in times])
    return float(np.trapezoid(powers, times)) if steps else 0.0
