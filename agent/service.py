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
are bound at start: a change to them is logged and takes effect at the next restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from agent.config import AgentConfig, DriveConfig, load_config
from agent.drive import DriveRuntime
from agent.energy.bookkeeping import Bookkeeper
from agent.energy.ledger import LEDGER_FILE, HandbackStore
from agent.errors import ConfigError, LedgerError
from agent.logs import quiet_libraries
from agent.metrics import (
    AgentCollector,
    BuildInfoCollector,
    BusCollector,
    ClockCollector,
    DriveHealthCollector,
    DriveInfoCollector,
    GroupSavingsCollector,
    LedgerCollector,
    OptimizerCollector,
    agent_version,
    poll_duration_histogram,
    register_process_collectors,
)
from agent.modbus.client import BusClient
from agent.optimizer.loop import Optimizer
from agent.poller import BusPoller
from agent.sdnotify import Notifier
from agent.units import Clock
from agent.wallclock import SyncState, WallClock, timesyncd_synchronized
from agent.web import AgentStatus, WebConfigSource, WebServer

log = logging.getLogger(__name__)

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
        self._poll_duration = poll_duration_histogram(self.registry)
        # Energy is filed into hours by this clock only while it is trusted (agent.wallclock).
        self.wall = WallClock(wall=wall_clock, monotonic=clock, synchronized=time_synchronized)
        self.optimizer: Optimizer | None = None
        self._optimizer_collector: OptimizerCollector | None = None
        self.handbacks: HandbackStore | None = None  # opened with the ledger (_handback_store)
        self._build(config, {})
        self.bookkeeper = Bookkeeper(self.drives, config.storage_path / LEDGER_FILE, config.flush_interval,
                                     config.site.tariff.currency, wall_clock=self.wall.raw,
                                     clock_floor=self.wall.raise_floor)
        self.bookkeeper.groups = {g.name: tuple(g.drives) for g in config.groups}
        self.registry.register(AgentCollector(self.drives, config.site.tariff.currency, clock=clock,
                                              totals_restored=lambda: self.bookkeeper.restored))
        self.registry.register(ClockCollector(self.wall))
        self.registry.register(BusCollector(self.pollers))
        self.registry.register(LedgerCollector(self.bookkeeper))
        self.registry.register(GroupSavingsCollector(self.bookkeeper))
        self.registry.register(BuildInfoCollector())
        self.registry.register(DriveHealthCollector(self.drives))
        self.registry.register(DriveInfoCollector(self.drives))
        register_process_collectors(self.registry)
        for collector in extra_collectors:
            self.registry.register(collector)
        self.metrics_port: int | None = None
        self._server: WebServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _build(self, config: AgentConfig, previous: dict[str, DriveRuntime]) -> None:
        """Drives, pollers and optimizer of ``config``, reusing or carrying over ``previous`` drives."""
        same_site = (self.config.site, self.config.max_gap) == (config.site, config.max_gap)
        drives = [_keep_or_carry(previous.get(d.name), d, config, same_site) for d in config.drives]
        self.drives[:] = drives
        grouped = {name for group in config.groups for name in group.drives}
        for drive in drives:  # booked by the optimizer's per-poll hook, with that poll's counterfactual
            drive.awaits_counterfactual = drive.name in grouped
        pollers = []
        for bus in config.buses:
            on_bus = [d for d in self.drives if d.config.bus == bus.name]
            if on_bus:
                pollers.append(BusPoller(bus, on_bus, BusClient(bus), clock=self.clock,
                                         wall_clock=self.wall.read, on_cycle=self._observe_cycle))
        self.pollers[:] = pollers
        if self._optimizer_collector is not None:
            self.registry.unregister(self._optimizer_collector)
            self._optimizer_collector = None
        self.optimizer = None
        if config.groups:
            self.optimizer = Optimizer(config, self.drives, {p.bus.name: p.client for p in self.pollers},
                                       clock=self.clock, dry_run=self.dry_run, handbacks=self._handback_store)
            self._optimizer_collector = OptimizerCollector(self.optimizer)
            self.registry.register(self._optimizer_collector)
        self.config = config

    def drive(self, name: str) -> DriveRuntime:
        """A drive's runtime by name."""
        return next(d for d in self.drives if d.name == name)

    def _observe_cycle(self, poller: BusPoller, duration: float) -> None:
        self._poll_duration.labels(poller.bus.name).observe(duration)
        if self.optimizer is not None:
            self.optimizer.on_poll_cycle(poller.drives)

    def ledger_restored(self) -> bool:
        """Readiness hook: the ledger is open and its totals are added to the drives' counters."""
        return self.bookkeeper.restored

    def status(self) -> AgentStatus:
        """Ready once the ledger is restored and every bus has completed one poll cycle."""
        waiting = [p.bus.name for p in self.pollers if p.stats.cycles < 1]
        reason = ("ledger not restored" if not self.ledger_restored()
                  else f"bus {', '.join(waiting)} has not completed a poll cycle" if waiting else "")
        return AgentStatus(ready=not reason, reason=reason, drives_up=sum(1 for d in self.drives if d.up),
                           drives_total=len(self.drives), version=agent_version())

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
            if self.handbacks is not None:  # before the ledger's lock goes with the bookkeeper
                self.handbacks.close()
                self.handbacks = None
            for helper in (watchdog, bookkeeping):
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
        config = dataclasses.replace(config, metrics_host=old.metrics_host, metrics_port=old.metrics_port,
                                     storage_path=old.storage_path)
        await self._stop_polling(generation)
        await self.bookkeeper.flush()  # the hours booked so far, under the drives' current runtime objects
        before = {d.name for d in self.drives}
        self._build(config, {d.name: d for d in self.drives})
        after = {d.name for d in self.drives}
        self.bookkeeper.currency = config.site.tariff.currency
        self.bookkeeper.groups = {g.name: tuple(g.drives) for g in config.groups}
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
