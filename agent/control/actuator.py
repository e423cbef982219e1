"""Applies a group's plan to its drives in control mode: speeds, starts and stops, setpoints, hand-back.

Every write goes through ``agent.control.writer.DriveWriter`` (the guard rails, read-back and
counting); this module decides which writes a plan needs and in which order: a stage change
never lets the flow dip, a small decrease inside the deadband is not written, and a group
that is not healthy (a drive stale, faulted or not in remote) is handed back to the
operator's values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from agent.config.model import GroupConfig
from agent.config.profile import Quantity
from agent.control.writer import Command, DriveWriter, Limits
from agent.drive import DriveRuntime
from agent.optimizer.plans import Plan, SetpointPlan, SpeedPlan
from agent.optimizer.staging import StageState

log = logging.getLogger(__name__)

SLEW_HEADROOM = 0.95  # plans use this share of the slew limit; the guard allows all of it
ARRIVED = 0.99  # a pump at this share of its planned speed has arrived (stage transitions)


def worth_writing(value: float, last: float, deadband: float) -> bool:
    """A rise is always written (the demand needs it); a fall only beyond the deadband (a saving)."""
    return value > last + 1e-6 * max(abs(last), 1.0) or value < last - deadband


class GroupActuator:
    """The writes of one group in control mode, and whether the agent's values are in force."""

    def __init__(self, config: GroupConfig, drives: Sequence[DriveRuntime],
                 writers: Mapping[str, DriveWriter], stage: StageState) -> None:
        self.config = config
        self.drives = list(drives)
        self.writers = writers
        self.stage = stage
        self.parallel = len(self.drives) > 1
        self.holding = False  # the agent's values are in force

    def healthy(self, now: float) -> tuple[bool, str]:
        """True if every drive of the group may be written to now; else the reason."""
        for drive in self.drives:
            if drive.name not in self.writers:
                return False, f"drive {drive.name} is not in control mode"
            if not drive.is_fresh(now):
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
                "group %s: handing back to the operator's settings: %s", self.config.name, reason)
        for writer in self.writers.values():
            await writer.restore(reason)
        self.holding = False
        self.stage.pending_stop.clear()

    async def apply(self, now: float, plan: Plan) -> None:
        """Write the plan (control mode, healthy group): the one place that tells the plans apart."""
        if isinstance(plan, SetpointPlan):
            await self._apply_setpoint(plan)
        else:
            await self._apply_speeds(now, plan)

    async def _apply_setpoint(self, plan: SetpointPlan) -> None:
        writer = self.writers[plan.drive]
        config = self.config.setpoint
        limits = Limits(config.minimum, config.maximum, config.slew_per_min)
        value = writer.slew_bounded(Quantity.PRESSURE_SETPOINT, plan.head, limits, SLEW_HEADROOM)
        last = writer.last.get(Quantity.PRESSURE_SETPOINT)
        if last is not None and not worth_writing(value, last[0], config.deadband):
            self.holding = True
            return
        result = await writer.write(Quantity.PRESSURE_SETPOINT, value, limits, reason="setpoint reset")
        self.holding = self.holding or result.written

    def _arriving(self, plan: SpeedPlan) -> bool:
        """A planned pump is still below ``ARRIVED`` of its planned speed."""
        for drive in self.drives:
            speed = plan.of(drive.name)
            if speed.running and (drive.last is None or drive.last.speed_ratio < ARRIVED * speed.ratio):
                return True
        return False

    async def _apply_speeds(self, now: float, plan: SpeedPlan) -> None:
        """Write speeds, starts and stops; a stage change never lets the flow dip.

        Parallel pumps on the open system curve deliver at least what any subset of them
        delivers, so a transition is safe as long as pumps are added before others slow
        down, and removed only after the ones that stay run at their new speeds: while a
        planned pump is still below ``ARRIVED`` of its planned speed, no running pump's
        setpoint is lowered and no pump is stopped.
        """
        arriving = self._arriving(plan)

        # Idle pumps are taken first: a pump's own cascade would otherwise start one of them the
        # moment the agent takes the running ones.
        def order(drive: DriveRuntime) -> int:
            idle = not plan.of(drive.name).running and (drive.last is None or not drive.last.running)
            return 0 if idle else 1

        changed = False
        for drive in sorted(self.drives, key=order):
            changed = await self._apply_drive(now, drive, plan, arriving) or changed
        stage = self.stage
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

    async def _apply_drive(self, now: float, drive: DriveRuntime, plan: SpeedPlan, arriving: bool) -> bool:
        """One drive's part of a speed plan; True if it started (a stage change)."""
        writer = self.writers[drive.name]
        control = drive.config.control
        stage = self.stage
        speed = plan.of(drive.name)
        ratio = speed.ratio
        running = drive.last is not None and drive.last.running
        limits = Limits(control.min_speed_ratio, control.max_speed_ratio, control.slew_per_min)
        if speed.running and running and drive.name not in stage.pending_stop:
            if self.parallel and Quantity.CONTROL_WORD not in writer.last:
                await writer.command(Command.RUN, reason="take over")
            last = writer.last.get(Quantity.SPEED_SETPOINT)
            if arriving and last is not None:
                ratio = max(ratio, last[0])  # hold the flow until the others have arrived
            value = writer.slew_bounded(Quantity.SPEED_SETPOINT, ratio, limits, SLEW_HEADROOM)
            if last is None or worth_writing(value, last[0], control.deadband):
                result = await writer.write(Quantity.SPEED_SETPOINT, value, limits, reason="optimal speed")
                self.holding = self.holding or result.written
            else:
                self.holding = True
            stage.started.setdefault(drive.name, now)
        elif speed.running:  # start (or keep a leaving pump): the speed it runs to, then the run command
            start = Limits(control.min_speed_ratio, control.max_speed_ratio)
            value = min(max(ratio, control.min_speed_ratio), control.max_speed_ratio)
            result = await writer.write(Quantity.SPEED_SETPOINT, value, start, start=True, reason="start")
            if result.written:
                result = await writer.command(Command.RUN, reason="stage up")
            if result.written:
                stage.pending_stop.discard(drive.name)
                stage.started[drive.name] = now
                self.holding = True
                return True
        elif running:
            stage.pending_stop.add(drive.name)
        elif Quantity.CONTROL_WORD not in writer.last:  # hold a stopped pump off the local cascade
            result = await writer.command(Command.STOP, reason="take over, stopped")
            self.holding = self.holding or result.written
        return False
