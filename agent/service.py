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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from agent.bookkeeping import Bookkeeper
from agent.config import AgentConfig
from agent.drive import DriveRuntime
from agent.ledger import LEDGER_FILE, HandbackStore, LedgerError
from agent.metrics import (
    AgentCollector,
    BuildInfoCollector,
    BusCollector,
    LedgerCollector,
    OptimizerCollector,
    poll_duration_histogram,
    serve,
)
from agent.modbus import BusClient
from agent.optimizer import Optimizer
from agent.poller import BusPoller, Clock
from agent.sdnotify import Notifier

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
        dry_run: bool = False,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.notifier = notifier if notifier is not None else Notifier()
        self.drives = [DriveRuntime(d, config.site, config.max_gap) for d in config.drives]
        self._poll_duration = poll_duration_histogram(self.registry)
        self.pollers: list[BusPoller] = []
        for bus in config.buses:
            on_bus = [d for d in self.drives if d.config.bus == bus.name]
            if on_bus:
                self.pollers.append(
                    BusPoller(bus, on_bus, BusClient(bus), clock=clock, on_cycle=self._observe_cycle)
                )
        self.bookkeeper = Bookkeeper(self.drives, config.storage_path / LEDGER_FILE, config.flush_interval,
                                     config.site.tariff.currency)
        self.handbacks: HandbackStore | None = None
        self.optimizer: Optimizer | None = None
        if config.groups:
            self.optimizer = Optimizer(config, self.drives, {p.bus.name: p.client for p in self.pollers},
                                       clock=clock, dry_run=dry_run, handbacks=self._handback_store)
        self.registry.register(AgentCollector(self.drives, config.site.tariff.currency))
        self.registry.register(BusCollector(self.pollers))
        self.registry.register(LedgerCollector(self.bookkeeper))
        self.registry.register(BuildInfoCollector())
        if self.optimizer is not None:
            self.registry.register(OptimizerCollector(self.optimizer))
        for collector in extra_collectors:
            self.registry.register(collector)
        self.metrics_port: int | None = None
        self._server: object | None = None

    def drive(self, name: str) -> DriveRuntime:
        """A drive's runtime by name."""
        return next(d for d in self.drives if d.name == name)

    def _observe_cycle(self, poller: BusPoller, duration: float) -> None:
        self._poll_duration.labels(poller.bus.name).observe(duration)
        if self.optimizer is not None:
            self.optimizer.on_poll_cycle(poller.drives)

    def start_metrics(self) -> int:
        """Bind the metrics endpoint; OSError if the address cannot be used."""
        server, _thread, port = serve(self.registry, self.config.metrics_host, self.config.metrics_port)
        self._server, self.metrics_port = server, port
        log.info("metrics on http://%s:%d/metrics", self.config.metrics_host, port)
        return port

    def stop_metrics(self) -> None:
        """Stop the HTTP server, if it runs."""
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server.server_close()  # type: ignore[attr-defined]
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
            if self.handbacks is not None:  # before the ledger's lock goes with the bookkeeper
                self.handbacks.close()
                self.handbacks = None
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
