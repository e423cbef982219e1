"""What a group's optimizer cycle decides: a small typed plan, and what the metrics show of it.

A single machine gets a ``SpeedPlan`` (its lowest speed that meets the demand), parallel
pumps a ``StagingPlan`` (which run, and how fast: starts and stops allowed), a pressure loop
a ``SetpointPlan`` (the head its PI should hold). Each plan says what it means for one drive
(``recommendation``) and where it puts every machine at the present flow (``points``), so the
publishing and the expected saving need no case analysis; only the actuator, which writes
different registers for each, tells them apart, in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.optimizer.machine import MachineModel, common_ratio
from agent.units import pressure_from_head


@dataclass(frozen=True)
class DriveSpeed:
    """One drive's planned speed ratio, and whether it runs."""

    ratio: float
    running: bool


STOPPED = DriveSpeed(0.0, False)


@dataclass(frozen=True)
class Recommendation:
    """What the optimizer recommends for one drive now (NaN: nothing)."""

    speed_ratio: float = math.nan
    running: float = math.nan
    setpoint_pa: float = math.nan
    expected_saving_w: float = math.nan


@dataclass(frozen=True)
class SpeedPlan:
    """Speed per drive of the group (a single machine: its lowest speed meeting the demand)."""

    speeds: Mapping[str, DriveSpeed]

    def of(self, name: str) -> DriveSpeed:
        """The drive's planned speed; a drive the plan does not name is stopped."""
        return self.speeds.get(name, STOPPED)

    def recommendation(self, name: str, machine: MachineModel, saving: float) -> Recommendation:
        """What the metrics show for one drive."""
        speed = self.speeds.get(name)
        if speed is None:
            return Recommendation(expected_saving_w=saving)
        return Recommendation(speed.ratio, float(speed.running), expected_saving_w=saving)

    def points(self, machines: Sequence[MachineModel], names: Sequence[str], running: Sequence[bool],
               delivered: float, system_head: float) -> list[tuple[float, float]]:
        """(flow, speed ratio) per machine if the plan were in force at the present flow."""
        del running, delivered  # the plan fixes the speeds; the system curve fixes the head
        points = []
        for machine, name in zip(machines, names, strict=True):
            speed = self.of(name)
            points.append((machine.flow_at(system_head, speed.ratio), speed.ratio) if speed.running
                          else (0.0, 0.0))
        return points


@dataclass(frozen=True)
class StagingPlan(SpeedPlan):
    """Parallel pumps: which run and how fast; pumps may start and stop."""


@dataclass(frozen=True)
class SetpointPlan:
    """A pressure loop: the head [m, or Pa for fans] the setpoint drive's PI should hold."""

    head: float
    drive: str

    def recommendation(self, name: str, machine: MachineModel, saving: float) -> Recommendation:
        """What the metrics show for one drive: the setpoint on the setpoint drive only."""
        if name != self.drive:
            return Recommendation(expected_saving_w=saving)
        return Recommendation(setpoint_pa=pressure_from_head(self.head, fan=machine.fan),
                              expected_saving_w=saving)

    def points(self, machines: Sequence[MachineModel], names: Sequence[str], running: Sequence[bool],
               delivered: float, system_head: float) -> list[tuple[float, float]]:
        """(flow, speed ratio) per machine: the running ones at the common speed holding the head."""
        del names, system_head  # the loop holds its own head, whatever the system curve says
        on = [m for m, r in zip(machines, running, strict=True) if r] or list(machines[:1])
        top = max(m.max_ratio for m in on)
        ratio = max(common_ratio(on, self.head, delivered, top), max(m.min_ratio for m in on))
        return [(m.flow_at(self.head, ratio), ratio) if m in on else (0.0, 0.0) for m in machines]


Plan = SpeedPlan | SetpointPlan
