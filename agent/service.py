"""The running agent: drives, one poller per bus, metrics endpoint, systemd notifications.

Start-up order: build state from the validated config, open the ledger and
restore the totals (another agent on the same ledger fails the start), bind the
metrics port (a port in use fails at start, loudly and once), start the pollers,
then tell systemd READY. Shutdown: the optimizer (if the config has groups) hands
every drive it controls back to the operator's settings while the buses are still
connected; then every poller loop ends and closes its connection; the last energy
is flushed to the ledger; then the HTTP server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from agent.config import AgentConfig
from agent.drive import DriveRuntime
from agent.energy.bookkeeping import Bookkeeper
from agent.energy.ledger import LEDGER_FILE
from agent.logs import quiet_libraries
from agent.metrics import (
    AgentCollector,
    BuildInfoCollector,
    BusCollector,
    ClockCollector,
    DriveHealthCollector,
    DriveInfoCollector,
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
        grouped = {name for group in config.groups for name in group.drives}
        self.drives = [DriveRuntime(d, config.site, config.max_gap, awaits_counterfactual=d.name in grouped)
                       for d in config.drives]
        # Energy is filed into hours by this clock only while it is trusted (agent.wallclock).
        self.wall = WallClock(wall=wall_clock, monotonic=clock, synchronized=time_synchronized)
        self._poll_duration = poll_duration_histogram(self.registry)
        self.pollers: list[BusPoller] = []
        for bus in config.buses:
            on_bus = [d for d in self.drives if d.config.bus == bus.name]
            if on_bus:
                self.pollers.append(
                    BusPoller(bus, on_bus, BusClient(bus), clock=clock, wall_clock=self.wall.read,
                              on_cycle=self._observe_cycle)
                )
        self.optimizer: Optimizer | None = None
        if config.groups:
            self.optimizer = Optimizer(config, self.drives, {p.bus.name: p.client for p in self.pollers},
                                       clock=clock, dry_run=dry_run)
        self.bookkeeper = Bookkeeper(self.drives, config.storage_path / LEDGER_FILE, config.flush_interval,
                                     config.site.tariff.currency, wall_clock=self.wall.raw,
                                     clock_floor=self.wall.raise_floor)
        self.registry.register(AgentCollector(self.drives, config.site.tariff.currency,
                                              totals_restored=lambda: self.bookkeeper.restored))
        self.registry.register(ClockCollector(self.wall))
        self.registry.register(BusCollector(self.pollers))
        self.registry.register(LedgerCollector(self.bookkeeper))
        self.registry.register(BuildInfoCollector())
        self.registry.register(DriveHealthCollector(self.drives))
        self.registry.register(DriveInfoCollector(self.drives))
        register_process_collectors(self.registry)
        if self.optimizer is not None:
            self.registry.register(OptimizerCollector(self.optimizer))
        for collector in extra_collectors:
            self.registry.register(collector)
        self.metrics_port: int | None = None
        self._server: WebServer | None = None

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

    async def run(self, stop: asyncio.Event, *, serve_metrics: bool = True) -> None:
        """Poll until ``stop`` is set."""
        self.open_ledger()
        if serve_metrics and self._server is None:
            self.start_metrics()
        # With an optimizer the pollers outlive ``stop``: the hand-back writes need their connections.
        poll_stop = asyncio.Event() if self.optimizer is not None else stop
        tasks = [asyncio.create_task(p.run(poll_stop), name=f"poll {p.bus.name}") for p in self.pollers]
        watchdog = asyncio.create_task(self._watchdog(stop, tasks), name="watchdog")
        bookkeeping = asyncio.create_task(self.bookkeeper.run(stop), name="ledger")
        optimizing = (asyncio.create_task(self.optimizer.run(stop), name="optimizer")
                      if self.optimizer is not None else None)
        self.notifier.notify("READY=1\nSTATUS=polling " + ", ".join(p.bus.name for p in self.pollers))
        try:
            if optimizing is None:
                await asyncio.gather(*tasks)
            else:
                stopped = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                for task in done:
                    if task is not stopped:
                        task.result()  # a poller that ended by itself: raise what ended it
        finally:
            stop.set()
            if optimizing is not None:
                await self._finish_optimizer(optimizing)
            poll_stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for helper in (watchdog, bookkeeping):
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            self.notifier.notify("STOPPING=1")
            await self.bookkeeper.close()
            if serve_metrics:
                self.stop_metrics()

    @staticmethod
    async def _finish_optimizer(task: asyncio.Task[None]) -> None:
        """Let the optimizer hand the drives back (bounded in time), whatever ended the run."""
        try:
            await asyncio.wait_for(task, timeout=RESTORE_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.error("optimizer: handing the drives back took over %g s; stopped waiting", RESTORE_TIMEOUT_S)
        except Exception:
            log.exception("optimizer: failed while handing the drives back")

    async def _watchdog(self, stop: asyncio.Event, tasks: Sequence[asyncio.Task[None]]) -> None:
        """Pet the systemd watchdog only while every poller is alive and cycling."""
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return
        seen = [p.stats.cycles for p in self.pollers]
        while not stop.is_set():
            await asyncio.sleep(interval)
            cycles = [p.stats.cycles for p in self.pollers]
            alive = all(not t.done() for t in tasks)
            # A poller on a long interval may legitimately not cycle within one watchdog period.
            progressing = all(
                now > before or poller.bus.poll_interval > interval
                for now, before, poller in zip(cycles, seen, self.pollers, strict=True)
            )
            if alive and progressing:
                self.notifier.notify("WATCHDOG=1")
            seen = cycles
