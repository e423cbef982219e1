"""The operator's strategy, run alongside on the fitted curves: what the plant would draw without the agent.

After every poll cycle the group evaluates the counterfactual: what the operator's strategy
(the drives' own fixed pressure setpoint and threshold cascade, ``ConventionalConfig``) would
draw now for the flow the group delivers, from the curves in use, scaled by measured over
modelled power of the actual operating point so that a common error of the model cancels.
While the agent's setpoints are in force it is the ``optimizer`` basis of the savings: the
group hands it to each drive's energy account for the poll it was computed from (no lag).

Beside it, the *staged* power: the operator's setpoint held by the pumps the agent actually
runs. Counterfactual minus staged is what the agent's staging saved, staged minus measured
what its pressure reset saved (``agent.energy.account.OptimizerPart``); NaN where the agent's
pumps cannot hold the operator's setpoint at the delivered flow (then the saving is unsplit).

Priced where it was seen (IPMVP: a baseline is not extrapolated beyond the conditions it was
measured in). The model's error is not the same everywhere: at low demand the operator's fixed
setpoint runs a pump near shut-off, where the agent, riding the system curve, never runs it, and
a fit of the agent's own points extrapolates there (generated-1000: 12-13 % low at a fifth of the
flow, a -22 % claim). So the model is calibrated on the points recorded while the operator's
strategy ran (before the agent's first write, the monitor period, the A/B operator blocks) at the
same delivered flow (``OperatorRecord``); at a flow where the operator's strategy was never seen,
the saving is the model's extrapolation: labelled (``extrapolated_w``), not booked.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.config.model import GroupConfig
from agent.config.profile import Quantity
from agent.control.writer import DriveWriter
from agent.drive import DriveRuntime
from agent.jsonfile import finite_number
from agent.optimizer.machine import MachineModel, common_ratio
from agent.optimizer.plans import Plan
from agent.units import Dimension, head_from_pressure

CALIBRATION_RANGE = (0.7, 1.4)  # measured / modelled power outside this: the model is not trusted
STAGED_FLOW_TOLERANCE = 0.02  # the running pumps at the operator's setpoint must deliver the flow to 2 %
OBSERVED_BIN = 0.05  # of the design flow: the operator's strategy seen within this flow prices it there
OBSERVED_MIN = 3  # polls of the operator's strategy in a flow bin before it prices the bin
OBSERVED_KEEP = 16  # points kept per bin, the latest (a pump wears)
OPERATOR_RECORD_FILE = "operator-record.json"  # in the storage directory: the records kept across starts

# One poll under the operator's strategy: per machine (flow m³/s, speed ratio, power W), None if stopped.
OperatorPoint = tuple[tuple[float, float, float] | None, ...]


class OperatorRecord:
    """Where the operator's strategy was seen, by delivered flow, and the points that price it there.

    The points are kept raw and priced with the curves in use when asked, so a refit after they
    were recorded is checked against them, not against its own past.
    """

    def __init__(self, design_flow: float) -> None:
        self.width = OBSERVED_BIN * design_flow if design_flow > 0.0 else math.inf
        self.bins: dict[int, deque[OperatorPoint]] = {}

    def _bin(self, flow: float) -> int | None:
        known = math.isfinite(flow) and flow >= 0.0 and math.isfinite(self.width)
        return int(flow // self.width) if known else None

    def add(self, delivered: float, point: OperatorPoint) -> None:
        """One poll of the operator's strategy at ``delivered`` [m³/s]."""
        index = self._bin(delivered)
        if index is not None:
            self.bins.setdefault(index, deque(maxlen=OBSERVED_KEEP)).append(point)

    def to_data(self, names: Sequence[str]) -> dict[str, object]:
        """The record as JSON data: its bin width and each bin's points, for the drives ``names``."""
        return {"drives": list(names), "bin_m3_per_s": self.width,
                "bins": {str(index): [[None if seen is None else list(seen) for seen in point]
                                      for point in points] for index, points in sorted(self.bins.items())}}

    def restore(self, data: object, names: Sequence[str]) -> int:
        """Take the points a ``to_data`` kept; the number taken.

        Only a record of the same drives in the same order and the same bins is taken (another
        group's points would price this one wrong), and of it only well-formed points: the file
        is a cache of observations, so whatever is dropped is only priced as not seen.
        """
        if not isinstance(data, dict) or data.get("drives") != list(names):
            return 0
        width, bins = data.get("bin_m3_per_s"), data.get("bins")
        if not isinstance(width, float) or not math.isclose(width, self.width) or not isinstance(bins, dict):
            return 0
        taken = 0
        for key, points in bins.items():
            if not (isinstance(key, str) and key.isdigit() and isinstance(points, list)):
                continue
            for raw in points[-OBSERVED_KEEP:]:
                point = _operator_point(raw, len(names))
                if point is not None:
                    self.bins.setdefault(int(key), deque(maxlen=OBSERVED_KEEP)).append(point)
                    taken += 1
        return taken

    def calibration(self, delivered: float, machines: Sequence[MachineModel]) -> float:
        """Measured over modelled power of the operator's points at this flow; NaN where never seen."""
        index = self._bin(delivered)
        points = self.bins.get(index) if index is not None else None
        if points is None or len(points) < OBSERVED_MIN:
            return math.nan
        measured = modelled = 0.0
        for point in points:
            for machine, seen in zip(machines, point, strict=True):
                if seen is not None:
                    flow, ratio, power = seen
                    measured += power
                    modelled += machine.electrical(flow, ratio)
        if not (modelled > 0.0 and math.isfinite(modelled)):
            return math.nan
        low, high = CALIBRATION_RANGE
        return measured / modelled if low <= measured / modelled <= high else math.nan


def _operator_point(raw: object, machines: int) -> OperatorPoint | None:
    """A stored point as recorded: per machine None (stopped) or three finite numbers; None if not."""
    if not isinstance(raw, list) or len(raw) != machines:
        return None
    point: list[tuple[float, float, float] | None] = []
    for seen in raw:
        if seen is None:
            point.append(None)
        elif isinstance(seen, list) and len(seen) == 3 and all(finite_number(x) for x in seen):
            flow, ratio, power = (float(x) for x in seen)
            point.append((flow, ratio, power))
        else:
            return None
    return tuple(point) if any(p is not None for p in point) else None


@dataclass
class Shadow:
    """The operator's cascade, run on the curves: its stage count and its timers."""

    staged: int = 0
    up_s: float = 0.0
    down_s: float = 0.0
    last_t: float = math.nan


def flow_of(machine: MachineModel, drive: DriveRuntime) -> float:
    """A running drive's flow [m³/s]: its flow point, else the sensorless estimate (NaN if neither)."""
    assert drive.last is not None
    flow = drive.last.values.get(Quantity.FLOW, math.nan)
    if math.isnan(flow):
        flow = drive.flow_estimate.flow if drive.flow_estimate is not None else math.nan
    return flow


class Counterfactual:
    """One group's counterfactual: the operator's setpoint and cascade, and the calibration."""

    def __init__(self, config: GroupConfig, drives: Sequence[DriveRuntime], machines: Sequence[MachineModel],
                 writers: Mapping[str, DriveWriter]) -> None:
        self.config = config
        self.drives = list(drives)
        self.machines = list(machines)
        self.writers = writers
        self.shadow = Shadow()
        self.operator_setpoint = config.conventional.pressure_setpoint  # m or Pa
        self.calibration = math.nan
        self.record = OperatorRecord(config.system.design_flow)
        # The model's saving [W] where the operator's strategy was never seen at this flow (labelled,
        # not booked); NaN otherwise.
        self.extrapolated_w = math.nan

    def conventional(self, flow: float, dt: float) -> list[tuple[float, float]] | None:
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
        if len(self.machines) > 1:
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

    def power(self, now: float, delivered: float, *, holding: bool) -> dict[str, tuple[float, float]]:
        """Each drive's (counterfactual, staged) power [W] now; NaN while the operator's values rule."""
        dt = now - self.shadow.last_t if math.isfinite(self.shadow.last_t) else 0.0
        self.shadow.last_t = now
        unknown = {d.name: (math.nan, math.nan) for d in self.drives}
        self.extrapolated_w = math.nan
        if not holding:
            # The operator's strategy is what runs: the shadow cascade follows the plant, and it is seen.
            self.shadow.staged = max(1, sum(1 for d in self.drives if d.last is not None and d.last.running))
            self.shadow.up_s = self.shadow.down_s = 0.0
            self._capture_operator_setpoint()
            self._record_operator(delivered)
            return unknown
        points = self.conventional(delivered, dt)
        calibration = self.record.calibration(delivered, self.machines)
        self.calibration = calibration
        if points is None:
            return unknown
        if not math.isfinite(calibration):
            here = self.calibrate()  # the agent's own point: all there is to price the model's guess with
            modelled = math.fsum(m.electrical(*p) for m, p in zip(self.machines, points, strict=True))
            measured = math.fsum(d.last.power for d in self.drives if d.last is not None and d.last.running)
            self.extrapolated_w = modelled * here - measured if math.isfinite(here) else math.nan
            return unknown
        staged = self.staged(delivered)
        return {d.name: (m.electrical(*point) * calibration, staged[i] * calibration)
                for i, (d, m, point) in enumerate(zip(self.drives, self.machines, points, strict=True))}

    def _record_operator(self, delivered: float) -> None:
        """Record the poll of the operator's strategy in force (only if every drive is seen)."""
        point: list[tuple[float, float, float] | None] = []
        for machine, drive in zip(self.machines, self.drives, strict=True):
            reading = drive.last
            if reading is None or not drive.up:
                return
            if not reading.running:
                point.append(None)
                continue
            flow = flow_of(machine, drive)
            if not all(map(math.isfinite, (flow, reading.power, reading.speed_ratio))):
                return
            point.append((flow, reading.speed_ratio, reading.power))
        if any(p is not None for p in point):
            self.record.add(delivered, tuple(point))

    def staged(self, flow: float) -> list[float]:
        """Each machine's modelled power [W] at the operator's setpoint with the machines running now.

        All NaN if the running machines cannot hold that setpoint at ``flow`` (then staging and
        pressure reset cannot be told apart).
        """
        setpoint = self.operator_setpoint
        running = [i for i, d in enumerate(self.drives) if d.last is not None and d.last.running]
        unknown = [math.nan] * len(self.machines)
        if not (running and math.isfinite(setpoint) and math.isfinite(flow)):
            return unknown
        machines = [self.machines[i] for i in running]
        top = max(m.max_ratio for m in machines)
        ratio = max(common_ratio(machines, setpoint, flow, top), max(m.min_ratio for m in machines))
        flows = {i: self.machines[i].flow_at(setpoint, ratio) for i in running}
        if not (math.isfinite(ratio) and abs(sum(flows.values()) - flow) <= STAGED_FLOW_TOLERANCE * flow):
            return unknown  # at full speed they cannot deliver the flow at that setpoint
        power = [0.0] * len(self.machines)
        for i, machine_flow in flows.items():
            power[i] = self.machines[i].electrical(machine_flow, ratio)
        return power if all(math.isfinite(p) for p in power) else unknown

    def calibrate(self) -> float:
        """Measured over modelled electrical power of the actual operating point (NaN if not trusted)."""
        measured = modelled = 0.0
        for machine, drive in zip(self.machines, self.drives, strict=True):
            reading = drive.last
            if reading is None or not drive.up:
                return math.nan
            if not reading.running:
                continue
            measured += reading.power
            modelled += machine.electrical(flow_of(machine, drive), reading.speed_ratio)
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
            self.operator_setpoint = value if point.dimension is Dimension.HEAD \
                else head_from_pressure(value, fan=machine.fan)

    def expected_saving(self, plan: Plan, delivered: float, system_head: float) -> dict[str, float]:
        """Counterfactual minus planned power per drive [W], at the present flow (calibrated)."""
        calibration = self.calibrate()
        if not (math.isfinite(delivered) and math.isfinite(calibration)):
            return {}
        saved_shadow = (self.shadow.staged, self.shadow.up_s, self.shadow.down_s)
        points = self.conventional(delivered, 0.0)  # a look, not a step: the cascade's state is kept
        self.shadow.staged, self.shadow.up_s, self.shadow.down_s = saved_shadow
        if points is None:
            return {}
        running = [d.last is not None and d.last.running for d in self.drives]
        planned = plan.points(self.machines, [d.name for d in self.drives], running, delivered, system_head)
        return {
            d.name: calibration * (m.electrical(*cf) - m.electrical(*p))
            for m, d, cf, p in zip(self.machines, self.drives, points, planned, strict=True)
        }
