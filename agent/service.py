"""The running agent: drives, one poller per bus, metrics endpoint, systemd notifications.

Start-up order: build state from the validated config, open the ledger and
restore the totals (another agent on the same ledger fails the start), take over
the hand-backs an earlier run still owed (they are in the ledger: the operator's
values, kept before the first write), bind the metrics port (a port in use fails
at start, loudly and once), start the pollers, then tell systemd READY. In control
mode no write goes out while the ledger is not open. Shutdown: the optimizer (if
the config has groups) hands every drive it controls back to the operator's
settings while the buses are still connected, and clears each verified hand-back
from the ledger; then every poller loop ends and closes its connection; the last
energy is flushed to the ledger; then the HTTP server stops.

Reload (SIGHUP, ``systemctl reload``): the config file is read and validated
first; a bad one is logged, located, and the agent goes on with the config it
has. A good one is applied like a short stop and start of the polling: the
optimizer hands its drives back, the pollers close, the energy booked so far is
flushed, then pollers (and an optimizer) are built from the new config. A drive
whose config did not change keeps its runtime object as it is; a changed one gets
a new object that carries its energy totals, error counts and history over, so no
counter resets or jumps; a drive no longer in the config disappears from the
metrics (its totals stay in the ledger). The metrics address and the storage path
(and the mv section) are bound at start: a change to them is logged and takes effect at the next
restart.

M&V (``agent.energy.verification``): after each poll cycle every group polled gives the
interval recorder a sample, and the cycle's non-routine events (a drive's fault, a clock
step, a group handed back; the config's hash at start and reload, mode changes) are queued
for the next flush. Long because start-up, reload, shutdown and these per-cycle hooks all
act on the same runtime objects, in an order that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from agent.config import AgentConfig, DriveConfig, load_config
from agent.config.profile import Quantity
from agent.control.abblocks import AbSnapshot
from agent.control.baseline_test import backed_by_baseline_tests
from agent.drive import DeviceRuntime, DriveRuntime
from agent.energy.bookkeeping import Bookkeeper
from agent.energy.ledger import LEDGER_FILE, EventKind, HandbackStore
from agent.energy.verification import GroupSample, Verifier, group_accuracy, mv_groups
from agent.errors import ConfigError, LedgerError
from agent.jsonfile import read_json, write_json
from agent.logs import quiet_libraries
from agent.metrics import (
    AgentCollector,
    BuildInfoCollector,
    BusCollector,
    ClockCollector,
    DriveHealthCollector,
    DriveInfoCollector,
    FlowEstimateCollector,
    GroupSavingsCollector,
    LedgerCollector,
    MvCollector,
    OptimizerCollector,
    SensorCollector,
    agent_version,
    poll_duration_histogram,
    register_process_collectors,
)
from agent.modbus.client import BusClient
from agent.modbus.turnaround import TURNAROUND_FILE, load_turnarounds, save_turnarounds
from agent.numba_cache import load_kernels
from agent.optimizer.counterfactual import OPERATOR_RECORD_FILE
from agent.optimizer.loop import GroupSnapshot, Optimizer
from agent.poller import BusPoller
from agent.sdnotify import Notifier
from agent.units import Clock
from agent.wallclock import SyncState, WallClock, timesyncd_synchronized
from agent.web import AgentStatus, WebConfigSource, WebServer

log = logging.getLogger(__name__)

LEARNED_SAVE_S = 600.0  # turnarounds and operator records are stored this often, and at every stop and reload
RESTORE_TIMEOUT_S = 30.0  # the optimizer's hand-back at shutdown may take this long at most


class Agent:
    """Owns the runtime objects of one site config."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        registry: CollectorRegistry | None = None,
        extra_collectors: Iterable[Collector] = (),
        notifier: Notifier | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        time_synchronized: SyncState = timesyncd_synchronized,
        dry_run: bool = False,
        web_config: WebConfigSource | None = None,
    ) -> None:
        """Long because it wires one site's runtime objects (drives, pollers, ledger, metrics) together."""
        quiet_libraries()
        self.config = config
        self.web_config = web_config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.notifier = notifier if notifier is not None else Notifier()
        self.clock = clock
        self.dry_run = dry_run
        self.reloads = 0  # configs applied by reload
        self.reloads_refused = 0  # reloads whose config was bad: the old one stayed in effect
        # The collectors and the bookkeeper read these lists: a reload changes them in place.
        self.drives: list[DriveRuntime] = []
        self.pollers: list[BusPoller] = []
        self.sensors: list[DeviceRuntime] = []  # devices read for a group's critical point (config.sensors)
        self._poll_duration = poll_duration_histogram(self.registry)
        # Energy is filed into hours by this clock only while it is trusted (agent.wallclock).
        self.wall = WallClock(wall=wall_clock, monotonic=clock, synchronized=time_synchronized)
        self.optimizer: Optimizer | None = None
        self._optimizer_collector: OptimizerCollector | None = None
        self.handbacks: HandbackStore | None = None  # opened with the ledger (_handback_store)
        # Each drive's turnaround as last measured (agent.modbus.turnaround), until measured again.
        self._learned = load_turnarounds(config.storage_path / TURNAROUND_FILE)
        self._build(config, {})
        self.bookkeeper = Bookkeeper(self.drives, config.storage_path / LEDGER_FILE, config.flush_interval,
                                     config.site.tariff.currency, wall_clock=self.wall.raw,
                                     clock_floor=self.wall.raise_floor)
        self.bookkeeper.groups = {g.name: tuple(g.drives) for g in config.groups}
        # M&V: intervals per group (a drive outside every group is a group of one), events, savings.
        self.verifier = Verifier(config.mv, config.site.timezone, config.max_gap)
        self.bookkeeper.verifier = self.verifier
        self._down: set[str] = set()  # drives whose fault is already an event
        self._clock_steps = 0
        self._holding: set[str] = set()  # groups whose agent values were in force at the last sample
        self._mv_setup(config, None)
        self.registry.register(AgentCollector(self.drives, config.site.tariff.currency, clock=clock,
                                              totals_restored=lambda: self.bookkeeper.restored))
        self.registry.register(ClockCollector(self.wall))
        self.registry.register(BusCollector(self.pollers))
        self.registry.register(LedgerCollector(self.bookkeeper))
        self.registry.register(GroupSavingsCollector(self.bookkeeper))
        self.registry.register(MvCollector(self.verifier))
        self.registry.register(BuildInfoCollector())
        self.registry.register(DriveHealthCollector(self.drives))
        self.registry.register(DriveInfoCollector(self.drives))
        self.registry.register(FlowEstimateCollector(self.drives))
        self.registry.register(SensorCollector(self.sensors, clock=clock))
        register_process_collectors(self.registry)
        for collector in extra_collectors:
            self.registry.register(collector)
        self.metrics_port: int | None = None
        self._server: WebServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _build(self, config: AgentConfig, previous: dict[str, DriveRuntime]) -> None:
        """Drives, pollers and optimizer of ``config``, reusing or carrying over ``previous`` drives."""
        config = backed_by_baseline_tests(config)  # measured_by: baseline_test -> the ledger's newest test
        same_site = (self.config.site, self.config.max_gap) == (config.site, config.max_gap)
        drives = [_keep_or_carry(previous.get(d.name), d, config, same_site) for d in config.drives]
        self.drives[:] = drives
        self._by_name: dict[str, DriveRuntime] = {d.name: d for d in drives}  # for ``drive``
        grouped = {name for group in config.groups for name in group.drives}
        for drive in drives:  # a member is booked by the optimizer's per-poll hook and records for its fits
            drive.in_group = drive.name in grouped
        old_sensors = {s.name: s for s in self.sensors}
        # A sensor is read for a group's critical point; kept across a reload while its config is unchanged.
        self.sensors[:] = [old_sensors[c.name] if c.name in old_sensors and old_sensors[c.name].config == c
                           else DeviceRuntime(c) for c in config.sensors]
        pollers = []
        runtimes: dict[str, DeviceRuntime] = {d.name: d for d in (*self.drives, *self.sensors)}
        for bus in config.buses:
            on_bus = [runtimes[c.name] for c in config.devices_on(bus.name)]
            if on_bus:
                pollers.append(BusPoller(bus, on_bus, BusClient(bus), clock=self.clock,
                                         wall_clock=self.wall.read, on_cycle=self._observe_cycle,
                                         learned=self._learned))
        self.pollers[:] = pollers
        if self._optimizer_collector is not None:
            self.registry.unregister(self._optimizer_collector)
            self._optimizer_collector = None
        # Where the operator's strategy was seen: the running optimizer's (a reload), else the kept file.
        records = (self.optimizer.operator_records() if self.optimizer is not None
                   else read_json(config.storage_path / OPERATOR_RECORD_FILE))
        self.optimizer = None
        if config.groups:
            self.optimizer = Optimizer(config, self.drives, {p.bus.name: p.client for p in self.pollers},
                                       clock=self.clock, dry_run=self.dry_run, handbacks=self._handback_store,
                                       wall_clock=self.wall.read, sensors=self.sensors)
            if isinstance(records, dict):
                self.optimizer.restore_operator_records(records)
            self._optimizer_collector = OptimizerCollector(self.optimizer)
            self.registry.register(self._optimizer_collector)
        load_kernels(config)  # the config's kernels, before the first poll; then LLVM's code unmapped
        self.config = config

    async def save_turnarounds(self) -> None:
        """Store each drive's turnaround as measured (this run's over the stored) for check-config."""
        learned = {**self._learned, **{n: v for p in self.pollers for n, v in p.turnarounds().items()}}
        self._learned = {d.name: learned[d.name] for d in self.drives if d.name in learned}
        path = self.config.storage_path / TURNAROUND_FILE
        try:
            await asyncio.to_thread(save_turnarounds, path, self._learned)
        except OSError as exc:
            log.warning("cannot store the drives' turnarounds in %s: %s", path, exc)

    async def save_operator_records(self) -> None:
        """Keep where each group saw the operator's strategy, for the next start's optimizer savings."""
        if self.optimizer is None:
            return
        path = self.config.storage_path / OPERATOR_RECORD_FILE
        try:
            await asyncio.to_thread(write_json, path, self.optimizer.operator_records())
        except OSError as exc:
            log.warning("cannot store where the operator's strategy was seen in %s: %s", path, exc)

    async def save_learned(self) -> None:
        """Store what the agent learned and keeps beside the ledger (lost: only learned again)."""
        await self.save_turnarounds()
        await self.save_operator_records()

    async def _keep_learned(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), LEARNED_SAVE_S)
            if not stop.is_set():
                await self.save_learned()

    def drive(self, name: str) -> DriveRuntime:
        """A drive's runtime by name."""
        return self._by_name[name]

    def _observe_cycle(self, poller: BusPoller, duration: float) -> None:
        self._poll_duration.labels(poller.bus.name).observe(duration)
        if self.optimizer is not None:
            self.optimizer.on_poll_cycle(poller.drives)
        self._record(poller.drives)

    def _mv_setup(self, config: AgentConfig, old: AgentConfig | None) -> None:
        """The M&V groups of ``config``, the config's hash and any mode changes as events."""
        self.mv_groups = mv_groups(config)
        accuracy = {d.name: d.profile.power_accuracy for d in config.drives}
        self.verifier.accuracy = {g: group_accuracy(accuracy, m) for g, m in self.mv_groups.items()}
        wall = self.wall.raw()
        when = "reload" if old else "start"
        self.verifier.event(wall, EventKind.CONFIG, "", f"{when}: {config_digest(config)}")
        before = {d.name: d.control.mode for d in old.drives} if old is not None else {}
        for drive in config.drives:
            if drive.name in before and before[drive.name] is not drive.control.mode:
                self.verifier.event(wall, EventKind.MODE_CHANGE, drive.name,
                                    f"{before[drive.name].value} -> {drive.control.mode.value}")

    def _record(self, polled: Sequence[DriveRuntime]) -> None:
        """After a poll cycle: the M&V sample of each group polled, and the events the cycle shows."""
        now, wall = self.clock(), self.wall.read()
        if self.wall.steps > self._clock_steps:
            self._clock_steps = self.wall.steps
            self.verifier.event(self.wall.raw(), EventKind.CLOCK_STEP, "", f"step {self.wall.steps}")
        for drive in polled:
            if drive.up is False and drive.name not in self._down:
                self._down.add(drive.name)
                self.verifier.event(self.wall.raw(), EventKind.FAULT, drive.name, drive.fault)
            elif drive.up:
                self._down.discard(drive.name)
        names = {d.name for d in polled}
        sampled = {grp: members for grp, members in self.mv_groups.items() if not names.isdisjoint(members)}
        optimized = self.optimizer.snapshot(only=sampled) if self.optimizer is not None else None
        snapshots = {g.name: g for g in optimized.groups} if optimized is not None else {}
        blocks = optimized.ab_blocks if optimized is not None else {}
        for grp, members in sampled.items():
            drives = [self.drive(m) for m in members]
            snap = snapshots.get(grp)
            ab = blocks.get(grp)
            if snap is not None:
                self._note_handback(snap, ab)
            sample = group_sample(drives, snap, now)
            if sample is not None and ab is not None:
                sample = dataclasses.replace(sample, ab=ab.label)
            self.verifier.recorder.sample(grp, now, wall, sample)

    def _note_handback(self, snap: GroupSnapshot, ab: AbSnapshot | None) -> None:
        """An event when a group the agent held is back on the operator's values.

        A planned A/B block's hand-back is part of the measurement (a routine event of its own
        kind); any other hand-back (a fault, stale data, a stop) is non-routine.
        """
        holding = any(d.holding for d in snap.drives)
        if snap.name in self._holding and not holding:
            if ab is not None and ab.operator_block:
                self.verifier.event(self.wall.raw(), EventKind.AB_BLOCK, snap.name,
                                    "planned A/B block: the operator's strategy runs")
            else:
                self.verifier.event(self.wall.raw(), EventKind.HAND_BACK, snap.name,
                                    "the operator's values in force again")
        if holding:
            self._holding.add(snap.name)
        else:
            self._holding.discard(snap.name)

    def ledger_restored(self) -> bool:
        """Readiness hook: the ledger is open and its totals are added to the drives' counters."""
        return self.bookkeeper.restored

    def status(self) -> AgentStatus:
        """Ready once the ledger is restored and every bus has completed one poll cycle."""
        waiting = [p.bus.name for p in self.pollers if p.stats.cycles < 1]
        reason = ("ledger not restored" if not self.ledger_restored()
                  else f"bus {', '.join(waiting)} has not completed a poll cycle" if waiting else "")
        return AgentStatus(ready=not reason, reason=reason, drives_up=sum(1 for d in self.drives if d.up),
                           drives_total=len(self.drives), version=agent_version(),
                           sensors_up=sum(1 for s in self.sensors if s.up), sensors_total=len(self.sensors))

    def start_metrics(self) -> int:
        """Bind the metrics endpoint; OSError if the address cannot be used."""
        server = WebServer(self.registry, self.config.metrics_host, self.config.metrics_port, self.status,
                           self.web_config)
        self._server, self.metrics_port = server, server.port
        log.info("metrics on %s://%s:%d/metrics", "https" if server.tls else "http",
                 self.config.metrics_host, server.port)
        return server.port

    def stop_metrics(self) -> None:
        """Stop the HTTP server, if it runs."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def open_ledger(self) -> None:
        """Open the ledger and restore the totals; LedgerLockedError if another agent keeps it."""
        if self.bookkeeper.ledger is None:
            self.bookkeeper.open()
        if self.optimizer is not None and self.optimizer.writers:
            self.optimizer.attach_handbacks()
            if not self.optimizer.handbacks_attached and not self.optimizer.dry_run:
                log.error("control mode: the ledger %s is not open, so no write goes to any drive until "
                          "it is (counted as refused_ledger)", self.bookkeeper.path)

    def _handback_store(self) -> HandbackStore | None:
        """The hand-backs in the ledger, once the bookkeeper has it open (it retries every flush)."""
        ledger = self.bookkeeper.ledger
        if self.handbacks is None and ledger is not None:
            try:
                self.handbacks = HandbackStore.open(ledger)
            except LedgerError as exc:
                log.error("%s", exc)
        return self.handbacks

    async def run(self, stop: asyncio.Event, *, serve_metrics: bool = True,
                  reload: asyncio.Event | None = None) -> None:
        """Poll until ``stop`` is set; apply the config file again whenever ``reload`` is set."""
        self.open_ledger()
        if serve_metrics and self._server is None:
            self.start_metrics()
        reload = reload if reload is not None else asyncio.Event()
        watchdog = asyncio.create_task(self._watchdog(stop), name="watchdog")
        bookkeeping = asyncio.create_task(self.bookkeeper.run(stop), name="ledger")
        learned = asyncio.create_task(self._keep_learned(stop), name="learned")
        generation = self._start_polling()
        self.notifier.notify("READY=1\nSTATUS=polling " + ", ".join(p.bus.name for p in self.pollers))
        try:
            while True:
                stopped = asyncio.ensure_future(stop.wait())
                reloading = asyncio.ensure_future(reload.wait())
                waits = [stopped, reloading, *(t for t in generation.pollers if not t.done())]
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                reloading.cancel()
                for task in done:
                    if task in generation.pollers:
                        task.result()  # a poller that ended by itself: raise what ended it
                if stop.is_set():
                    break
                if reload.is_set():
                    reload.clear()
                    generation = await self._reload(generation)
        finally:
            stop.set()
            await self._stop_polling(generation)
            await self.save_learned()
            if self.handbacks is not None:  # before the ledger's lock goes with the bookkeeper
                self.handbacks.close()
                self.handbacks = None
            for helper in (watchdog, bookkeeping, learned):
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            self.notifier.notify("STOPPING=1")
            await self.bookkeeper.close()
            if serve_metrics:
                self.stop_metrics()

    def _start_polling(self) -> _Generation:
        """Start the pollers (and optimizer) of the current config."""
        generation = _Generation(asyncio.Event(), asyncio.Event(), [], None)
        generation.pollers = [asyncio.create_task(p.run(generation.stop_pollers), name=f"poll {p.bus.name}")
                              for p in self.pollers]
        if self.optimizer is not None:
            generation.optimizer = asyncio.create_task(self.optimizer.run(generation.stop_optimizer),
                                                       name="optimizer")
        self._tasks = generation.pollers
        return generation

    async def _stop_polling(self, generation: _Generation) -> None:
        """Hand the drives back while the pollers are still connected, then end every poller."""
        generation.stop_optimizer.set()
        if generation.optimizer is not None:
            await self._finish_optimizer(generation.optimizer)
        if self.optimizer is not None:  # the hand-back of a stop or a reload is an event too (non-routine)
            for snap in self.optimizer.snapshot().groups:
                self._note_handback(snap, None)
        generation.stop_pollers.set()
        for task in generation.pollers:
            task.cancel()
        await asyncio.gather(*generation.pollers, return_exceptions=True)

    async def _reload(self, generation: _Generation) -> _Generation:
        """Validate the config file again and apply it; a bad file leaves everything as it is."""
        now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000  # systemd >= 253 asks for it
        self.notifier.notify(f"RELOADING=1\nMONOTONIC_USEC={now_us}")
        path = Path(self.config.source)
        try:
            config = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            self.reloads_refused += 1
            for issue in exc.issues:
                log.error("reload refused: %s", issue)
            log.error("reload refused: %d problem(s) in %s; still running on the config loaded before",
                      len(exc.issues), path)
            self.notifier.notify("READY=1\nSTATUS=reload refused: bad config; polling on the previous one")
            return generation
        old = self.config
        if (config.metrics_host, config.metrics_port) != (old.metrics_host, old.metrics_port):
            log.warning("reload: the metrics listen address changed; it takes effect at the next restart")
        if config.storage_path != old.storage_path:
            log.warning("reload: the storage path changed; it takes effect at the next restart")
        if config.mv != old.mv:  # an interval changed half-way would mix two records in one baseline
            log.warning("reload: the mv section changed; it takes effect at the next restart")
        config = dataclasses.replace(config, metrics_host=old.metrics_host, metrics_port=old.metrics_port,
                                     storage_path=old.storage_path, mv=old.mv)
        await self._stop_polling(generation)
        await self.save_turnarounds()  # the new pollers start from what the old ones measured
        await self.bookkeeper.flush()  # the hours booked so far, under the drives' current runtime objects
        before = {d.name for d in self.drives}
        self._build(config, {d.name: d for d in self.drives})
        after = {d.name for d in self.drives}
        self.bookkeeper.currency = config.site.tariff.currency
        self.bookkeeper.groups = {g.name: tuple(g.drives) for g in config.groups}
        self._mv_setup(config, old)
        self.reloads += 1
        log.info("reloaded %s: %d drive(s) on %d bus(es); added: %s; removed: %s", path, len(self.drives),
                 len(self.pollers), ", ".join(sorted(after - before)) or "none",
                 ", ".join(sorted(before - after)) or "none")
        generation = self._start_polling()
        self.notifier.notify("READY=1\nSTATUS=polling " + ", ".join(p.bus.name for p in self.pollers))
        return generation

    @staticmethod
    async def _finish_optimizer(task: asyncio.Task[None]) -> None:
        """Let the optimizer hand the drives back (bounded in time), whatever ended the run."""
        try:
            await asyncio.wait_for(task, timeout=RESTORE_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.error("optimizer: handing the drives back took over %g s; stopped waiting", RESTORE_TIMEOUT_S)
        except Exception:
            log.exception("optimizer: failed while handing the drives back")

    async def _watchdog(self, stop: asyncio.Event) -> None:
        """Pet the systemd watchdog only while every poller is alive and cycling."""
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return
        seen = [p.stats.cycles for p in self.pollers]
        pollers = list(self.pollers)
        while not stop.is_set():
            await asyncio.sleep(interval)
            if pollers != self.pollers:  # reloaded: compare the new pollers from now on
                pollers, seen = list(self.pollers), [p.stats.cycles for p in self.pollers]
            cycles = [p.stats.cycles for p in self.pollers]
            alive = all(not t.done() for t in self._tasks)
            # A poller on a long interval may legitimately not cycle within one watchdog period.
            progressing = all(
                now > before or poller.bus.poll_interval > interval
                for now, before, poller in zip(cycles, seen, self.pollers, strict=True)
            )
            if alive and progressing:
                self.notifier.notify("WATCHDOG=1")
            seen = cycles


@dataclasses.dataclass
class _Generation:
    """The tasks polling one config: they end together, at a stop or a reload."""

    stop_optimizer: asyncio.Event
    stop_pollers: asyncio.Event
    pollers: list[asyncio.Task[None]]
    optimizer: asyncio.Task[None] | None


def group_sample(drives: Sequence[DriveRuntime], snap: GroupSnapshot | None,
                 now: float) -> GroupSample | None:
    """A group's M&V sample, or None unless every drive's data is fresh (the one freshness rule)."""
    if not all(d.is_fresh(now) for d in drives):
        return None
    readings = [d.last for d in drives if d.last is not None]
    running = [r for r in readings if r.running]
    speeds = [r.speed_ratio for r in running if math.isfinite(r.speed_ratio)]
    if snap is not None:
        flow, pressure, mode = snap.measured_flow, snap.critical_pressure, snap.mode.value
    else:  # a drive of its own: its flow point, else the process flow it is brought
        values = readings[0].values
        flow = values.get(Quantity.FLOW, values.get(Quantity.PROCESS_FLOW, math.nan))
        pressure, mode = math.nan, drives[0].config.control.mode.value
    speed = sum(speeds) / len(speeds) if speeds else math.nan
    return GroupSample(sum(r.power for r in readings), flow, speed, float(len(running)), pressure, mode)


def config_digest(config: AgentConfig) -> str:
    """SHA-256 of the config file's bytes (what was applied), or of the config itself if not from a file."""
    try:
        data = Path(config.source).read_bytes()
    except OSError:
        data = repr(config).encode()
    return "sha256 " + hashlib.sha256(data).hexdigest()


def _keep_or_carry(old: DriveRuntime | None, config: DriveConfig, agent: AgentConfig,
                   same_site: bool) -> DriveRuntime:
    """The runtime of a drive after a reload: the same object if nothing it depends on changed.

    A changed drive (or site tariff, or max gap) gets a new object that carries over what
    must never reset: its energy totals, error counts and history.
    """
    if old is not None and same_site and old.config == config:
        return old
    new = DriveRuntime(config, agent.site, agent.max_gap)
    if old is not None:
        new.account.carry_over(old.account)
        new.errors = old.errors
        new.polls = old.polls
        new.counter_resets = old.counter_resets
        new.history = old.history
    return new
