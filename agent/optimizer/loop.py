"""The optimizer loop: every group of a site, the per-poll hook, and the snapshot its readers see.

Every ``optimizer.interval`` seconds, per group (``agent.optimizer.group``): refit the
machines (``machine``) and the system curve (``system``), estimate the demand a little ahead
(``demand``) and plan (``plans``, ``staging``); in control mode write the plan through the
group's actuator (``agent.control.actuator``, over the guard rails of ``agent.control.writer``),
or, if any drive of the group is stale, faulted or not in remote, stop writing and restore
the operator's values; a group with A/B blocks (``agent.control.abblocks``) is also handed
back for the operator's randomized blocks. After every poll cycle each group evaluates the
counterfactual (``counterfactual``) and hands it to its drives' energy accounts for that same poll.

Readers (the metrics, the scenario runner) see ``Optimizer.snapshot()``, never the internals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from agent.config import AgentConfig, ControlMode
from agent.config.model import DemandSource
from agent.config.profile import Quantity
from agent.control.abblocks import HAND_BACK_REASON, AbBlocks, AbSnapshot, group_short
from agent.control.writer import DriveWriter
from agent.drive import DeviceRuntime, DriveRuntime
from agent.energy.ledger import HandbackStore
from agent.errors import DriveError, LedgerError
from agent.modbus.client import BusClient
from agent.modbus.readplan import decode_blocks, plan_reads
from agent.optimizer.group import GroupRuntime
from agent.optimizer.plans import Recommendation
from agent.optimizer.system import Service
from agent.units import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriveSnapshot:
    """What the optimizer knows and did about one drive of a group."""

    name: str
    fitted: bool  # a fit has been attempted with enough data
    r2_head: float
    r2_power: float
    head_fit_in_use: bool
    power_fit_in_use: bool
    efficiency_drift: float
    fit_rejected_because: str
    recommendation: Recommendation
    controlled: bool  # the agent may write to it (control mode)
    holding: bool  # the agent's values are in force on it
    writes: Mapping[str, int]  # attempted writes by result


@dataclass(frozen=True)
class GroupSnapshot:
    """One group: its system curve, its staging, and its drives."""

    name: str
    stage_changes: int
    system_r_squared: float
    system_fitted: bool
    drives: tuple[DriveSnapshot, ...]
    mode: ControlMode = ControlMode.MONITOR  # the group's (monitor unless every drive is advise/control)
    # Measured flow [m³/s]: the demand point when it is a flow, else the drives' flow points summed;
    # NaN without a meter (a sensorless estimate derives from power: no regressor for power's M&V).
    measured_flow: float = math.nan
    critical_pressure: float = math.nan  # the demand point when it is a pressure (agent units); else NaN
    system_static: float = math.nan  # the learned curve in use (m or Pa)
    system_k: float = math.nan
    system_confidence: float = 0.0  # 0: the agent stays near what the loads were satisfied at
    service: str = "unknown"  # agent.optimizer.system.Service
    service_shortfall_seconds: float = 0.0  # the loads were short (no optimizer savings booked meanwhile)
    # The model's saving at flows where the operator's strategy was never seen: labelled, not booked.
    extrapolated_saving_joules: float = 0.0
    extrapolated_seconds: float = 0.0
    priced_seconds: float = 0.0  # a saving was booked (the operator's strategy seen at the flow)


@dataclass(frozen=True)
class OptimizerSnapshot:
    """Everything the optimizer shows, read at once."""

    cycles: int
    cycle_errors: int
    groups: tuple[GroupSnapshot, ...]
    ab_blocks: Mapping[str, AbSnapshot] = dataclasses.field(default_factory=dict)  # by group


def _group_snapshot(group: GroupRuntime) -> GroupSnapshot:
    drives = []
    for machine, drive in zip(group.machines, group.drives, strict=True):
        fit = machine.fit
        writer = group.writers.get(drive.name)
        drives.append(DriveSnapshot(
            name=drive.name, fitted=fit is not None,
            r2_head=fit.r2_head if fit else math.nan, r2_power=fit.r2_power if fit else math.nan,
            head_fit_in_use=machine.fitted_head is not None,
            power_fit_in_use=machine.fitted_power is not None,
            efficiency_drift=machine.efficiency_drift(),
            fit_rejected_because=fit.reason if fit else "no fit yet",
            recommendation=group.recommendations.get(drive.name, Recommendation()),
            # A dry run sends nothing: the drive's own values are in force.
            controlled=writer is not None,
            holding=group.holding and writer is not None and writer.holds and not writer.dry_run,
            writes=dict(writer.results) if writer is not None else {},
        ))
    pressure = group.demand_point() if group.config.demand.quantity is Quantity.PRESSURE else math.nan
    system = group.system
    return GroupSnapshot(group.name, group.stage.changes, system.r_squared, system.fitted, tuple(drives),
                         mode=group.mode, measured_flow=_measured_flow(group), critical_pressure=pressure,
                         system_static=system.static, system_k=system.k, system_confidence=system.confidence,
                         service=system.service.value, service_shortfall_seconds=group.shortfall_s,
                         extrapolated_saving_joules=group.extrapolated_j,
                         extrapolated_seconds=group.extrapolated_s, priced_seconds=group.priced_s)


def _measured_flow(group: GroupRuntime) -> float:
    """The group's flow as a meter shows it (see ``GroupSnapshot.measured_flow``)."""
    demand = group.config.demand
    if demand.source is DemandSource.POINT and demand.quantity in (Quantity.FLOW, Quantity.PROCESS_FLOW):
        return group.demand.samples[-1][1] if group.demand.samples else math.nan
    flows = [(d.last.values.get(Quantity.FLOW, math.nan) if d.last.running else 0.0)
             for d in group.drives if d.last is not None]
    complete = len(flows) == len(group.drives) and all(map(math.isfinite, flows))
    return math.fsum(flows) if complete else math.nan


class Optimizer:
    """Every group of a site: the cycle task, the per-poll hook, and the snapshot."""

    def __init__(self, config: AgentConfig, drives: Sequence[DriveRuntime],
                 clients: Mapping[str, BusClient], *, clock: Clock = time.monotonic,
                 dry_run: bool = False, handbacks: Callable[[], HandbackStore | None] = lambda: None,
                 wall_clock: Clock = time.time, sensors: Sequence[DeviceRuntime] = ()) -> None:
        self.config = config
        self.settings = config.optimizer
        self.clock = clock
        self.wall_clock = wall_clock  # A/B blocks are scheduled on it (NaN while it is not trusted)
        self.dry_run = dry_run
        self.clients = clients
        self._handbacks = handbacks  # the ledger's hand-backs, once the ledger is open
        self.handbacks_attached = False
        self.all_drives = {d.name: d for d in drives}
        # Where a group's demand or critical point may be read: every drive and sensor.
        self.devices: dict[str, DeviceRuntime] = {**self.all_drives, **{s.name: s for s in sensors}}
        buses = {b.name: b for b in config.buses}
        self.writers: dict[str, DriveWriter] = {}  # hand-backs: attach_handbacks
        self.groups: list[GroupRuntime] = []
        for group in config.groups:
            members = [self.all_drives[n] for n in group.drives]
            writers = {d.name: DriveWriter(d, buses[d.config.bus], clients[d.config.bus], clock=clock,
                                           dry_run=dry_run)
                       for d in members
                       if d.config.control.mode is ControlMode.CONTROL and d.config.bus in clients}
            self.writers.update(writers)
            self.groups.append(GroupRuntime(group, members, writers, self.settings,
                                            {d.config.name: buses[d.config.bus] for d in members}))
        # Randomized hand-back blocks (agent.control.abblocks); only where the whole group is controlled.
        self.ab_blocks = {g.name: AbBlocks(g.name, g.config.ab_blocks) for g in self.groups
                          if g.config.ab_blocks is not None and g.mode is ControlMode.CONTROL}
        self.cycles = 0
        self.cycle_errors = 0
        self.wake = asyncio.Event()  # a load went short: cycle now, not at the next interval

    def on_poll_cycle(self, drives: Sequence[DriveRuntime]) -> None:
        """After a bus's poll cycle: every group with a drive among ``drives`` samples.

        The drives polled in this cycle then book their energy with the counterfactual of
        this same poll (before, it reached the energy account one poll late, through the drive).
        """
        names = {d.name for d in drives}
        now = self.clock()
        counterfactual: dict[str, tuple[float, float]] = {}
        for group in self.groups:
            if names.intersection(group.config.drives):
                counterfactual.update(group.observe(now, self.devices))
                if group.system.service is Service.SHORT and group.holding:
                    self.wake.set()
                blocks = self.ab_blocks.get(group.name)
                if blocks is not None:
                    blocks.sample(self.wall_clock(), holding=group.holding)
        for drive in drives:
            drive.book(*counterfactual.get(drive.name, (math.nan, math.nan)))

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
                group.actuator.holding = True  # the earlier run's values are in force until handed back

    async def cycle(self) -> None:
        """One optimizer cycle over every group."""
        self.cycles += 1
        self.attach_handbacks()
        for group in self.groups:
            now = self.clock()
            await self._read_external(group, now)
            group.refit()
            plan = group.recommend(now)
            group.publish(plan)
            if log.isEnabledFor(logging.DEBUG):
                delivered, head = group.operating_point()
                log.debug("group %s: demand %.5f target %.5f delivered %.5f head %.2f system (%.2f, %.1f): "
                          "%s",
                          group.name, group.demand.estimate(now, 0.0), group.target_flow, delivered, head,
                          group.system.static, group.system.k, plan)
            if group.mode is not ControlMode.CONTROL:
                continue
            healthy, why = group.actuator.healthy(now)
            if not healthy:
                log.debug("group %s: not writing: %s", group.name, why)
            if healthy and group.service_lost(now):
                healthy, why = False, f"the loads have been short for more than {group.restore_s:g} s"
            if healthy and not group.critical_fresh(now):  # no trim on a critical point no longer seen
                healthy, why = False, f"the critical point ({group.config.service.critical_drive}) is stale"
            if not healthy or plan is None:
                await group.actuator.release(why or "no usable demand")
                continue
            blocks = self.ab_blocks.get(group.name)
            if blocks is not None and blocks.operator_now(self.wall_clock(), group_short(group, now)):
                await group.actuator.release(HAND_BACK_REASON, logging.INFO)
                continue
            await group.actuator.apply(now, plan)

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle every ``interval`` until ``stop``; then hand every group back to the operator."""
        self.attach_handbacks()
        try:
            while not stop.is_set():
                waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
                await asyncio.wait(waits, timeout=self.settings.interval, return_when=asyncio.FIRST_COMPLETED)
                for waiting in waits:
                    waiting.cancel()
                self.wake.clear()
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
            await group.actuator.release(reason, level)

    def operator_records(self) -> dict[str, object]:
        """Each group's record of where the operator's strategy was seen, as JSON data (to keep)."""
        return {g.name: g.counterfactual.record.to_data([d.name for d in g.drives]) for g in self.groups}

    def restore_operator_records(self, stored: Mapping[str, object]) -> int:
        """Take the kept records of the groups that still have the same drives; the points taken.

        Without them a restart in control mode would book no optimizer saving until the operator's
        strategy is seen again (an A/B operator block): it would all be labelled extrapolated.
        """
        return sum(g.counterfactual.record.restore(stored[g.name], [d.name for d in g.drives])
                   for g in self.groups if g.name in stored)

    def snapshot(self, only: Collection[str] | None = None) -> OptimizerSnapshot:
        """What the metrics and the scenario runner read: fits, plans, writes, per group and drive.

        ``only``: just these groups (the M&V recorder asks after every bus cycle for the groups
        on that bus; every group after every cycle grew with buses × groups).
        """
        wanted = (lambda name: True) if only is None else only.__contains__
        groups = tuple(_group_snapshot(g) for g in self.groups if wanted(g.name))
        wall = self.wall_clock()
        ab = {name: blocks.snapshot(wall) for name, blocks in self.ab_blocks.items() if wanted(name)}
        return OptimizerSnapshot(self.cycles, self.cycle_errors, groups, ab)
