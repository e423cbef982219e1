"""One poller per bus: owns the connection and the schedule, drives consume its results.

A failed read is a typed ``DriveError`` recorded on that drive (and shown as
``vfd_up 0`` and a labelled error count); it never escapes the loop. The
schedule is fixed-rate on the monotonic clock: a cycle that overruns skips the
missed ticks instead of bursting to catch up.

Every drive of the bus is polled in config order, one transaction at a time.
A drive that stops answering costs a whole timeout per read, which on an RTU
line is time the healthy drives need; so a drive that timed out is asked again
only after a backoff (one interval, doubling up to ``DOWN_RETRY_MAX_S``) and the
others keep their slots. A connection that drops mid-cycle is reopened at once,
so the drives after the one that dropped it are still polled in that cycle; on
TCP that includes the connection the client drops itself after a timeout.

Each drive's reads are planned per bus (``agent.modbus.readplan.plan_for``): on RTU,
gaps are bridged where the frame-time model says that is cheaper. A drive that
rejects a bridged read with exception 2 (illegal data address) is re-planned
without bridging, once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import BusConfig
from agent.drive import DriveRuntime, stale_after
from agent.errors import (
    DriveConnectionError,
    DriveError,
    DriveProtocolError,
    DriveReplyError,
    ImplausibleReadingError,
)
from agent.modbus.client import BusClient
from agent.modbus.readplan import bus_budget, bus_warnings, decode_blocks, plan_for, plan_reads
from agent.modbus.rtu import LineBudget
from agent.units import Clock

log = logging.getLogger(__name__)


DOWN_RETRY_MAX_S = 4.0  # a silent drive is asked again at least this often (recovery well within 10 s)
SLOW_KINDS = frozenset({"timeout", "crc", "connection"})  # failures that cost the line a whole timeout
UTILIZATION_WINDOW_S = 10.0


@dataclass
class BusStats:
    """What the metrics need to know about one bus."""

    cycles: int = 0
    missed_deadlines: int = 0
    connects: int = 0
    connect_failures: int = 0  # attempts to open the connection that failed (port refused, host down)


class BusPoller:
    """Polls every drive on one bus, one request at a time, every ``poll_interval``."""

    def __init__(
        self,
        bus: BusConfig,
        drives: list[DriveRuntime],
        client: BusClient,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        on_cycle: Callable[[BusPoller, float], None] | None = None,
    ) -> None:
        self.bus = bus
        self.drives = drives
        self.client = client
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_cycle = on_cycle
        self.stats = BusStats()
        self._backoff = 0.0
        self._next_connect = 0.0
        self._connect_failing = False
        self._retry_at: dict[str, float] = {}
        self._retry_delay: dict[str, float] = {}
        self._busy_samples: deque[tuple[float, float]] = deque()
        for drive in drives:
            drive.blocks = plan_for(bus, drive.config.profile)
            drive.stale_after = stale_after(bus.poll_interval)
        profiles = [d.config.profile for d in drives]
        self.budget: LineBudget | None = bus_budget(bus, profiles)
        for warning in bus_warnings(bus, profiles):
            log.warning("%s", warning)  # once, at start; check-config shows the same

    @property
    def name(self) -> str:
        """The bus's name."""
        return self.bus.name

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; then close the connection."""
        deadline = self.clock()
        try:
            while not stop.is_set():
                started = self.clock()
                await self.poll_once()
                duration = self.clock() - started
                self.stats.cycles += 1
                if self.on_cycle is not None:
                    self.on_cycle(self, duration)
                deadline += self.bus.poll_interval
                now = self.clock()
                if now > deadline:
                    missed = math.floor((now - deadline) / self.bus.poll_interval) + 1
                    self.stats.missed_deadlines += missed
                    deadline += missed * self.bus.poll_interval
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, deadline - self.clock()))
                except asyncio.TimeoutError:
                    pass
        finally:
            self.client.close()

    async def poll_once(self) -> None:
        """One cycle over every drive of the bus that is due."""
        if not self.client.connected:
            try:
                await self._connect()
            except DriveConnectionError as exc:
                for drive in self.drives:
                    drive.fail(exc)
                self._sample_busy()
                return
        now = self.clock()
        for drive in self.drives:
            if now < self._retry_at.get(drive.name, -math.inf):
                continue  # a silent drive waits for its retry; the others keep their slots
            if not self.client.connected and not await self._reconnect_in_cycle(drive):
                continue
            await self._poll_drive(drive)
        # A connection a drive dropped is reopened at the next cycle's start without waiting;
        # only a failed connect backs off (in _connect).
        self._sample_busy()

    async def _reconnect_in_cycle(self, drive: DriveRuntime) -> bool:
        """The connection dropped mid-cycle: reopen it at once (or fail this drive fast)."""
        try:
            await self._connect()
        except DriveConnectionError as exc:
            drive.fail(exc)
            return False
        return True

    async def _poll_drive(self, drive: DriveRuntime) -> None:
        try:
            registers = [await self.client.read(drive.config.unit, block) for block in drive.blocks]
            values = decode_blocks(drive.blocks, registers)
        except DriveReplyError as exc:
            if exc.exception_code == 2 and self._replan_without_gaps(drive):
                return
            self._failed(drive, exc)
            return
        except DriveError as exc:
            self._failed(drive, exc)
            return
        except ValueError as exc:
            self._failed(drive, DriveProtocolError(str(exc)))
            return
        self._retry_at.pop(drive.name, None)
        self._retry_delay.pop(drive.name, None)
        try:
            drive.accept(self.clock(), self.wall_clock(), values)
        except ImplausibleReadingError:
            pass  # recorded on the drive by accept()

    def _failed(self, drive: DriveRuntime, error: DriveError) -> None:
        drive.fail(error)
        if error.kind in SLOW_KINDS:
            delay = min(max(self.bus.poll_interval, 2.0 * self._retry_delay.get(drive.name, 0.0)),
                        max(DOWN_RETRY_MAX_S, self.bus.poll_interval))
            self._retry_delay[drive.name] = delay
            # Half an interval early, so the retry falls in the cycle that is due then.
            self._retry_at[drive.name] = self.clock() + delay - 0.5 * self.bus.poll_interval

    def _replan_without_gaps(self, drive: DriveRuntime) -> bool:
        """A drive refused a read that bridged unnamed registers: read only what the profile names."""
        plain = plan_reads(drive.config.profile.points.values(), max_gap=0)
        if plain == drive.blocks:
            return False
        log.warning("drive %s: refuses reads across unnamed registers (exception 2); reading %d blocks "
                    "instead of %d", drive.name, len(plain), len(drive.blocks))
        drive.blocks = plain
        return True

    def _sample_busy(self) -> None:
        now = self.clock()
        self._busy_samples.append((now, self.client.stats.busy_s))
        while len(self._busy_samples) > 2 and now - self._busy_samples[1][0] >= UTILIZATION_WINDOW_S:
            self._busy_samples.popleft()

    def utilization(self) -> float:
        """Share of the last ~10 s the line was busy (RTU: theoretical frame time), NaN before two cycles."""
        if len(self._busy_samples) < 2:
            return math.nan
        (t0, busy0), (t1, busy1) = self._busy_samples[0], self._busy_samples[-1]
        return (busy1 - busy0) / (t1 - t0) if t1 > t0 else math.nan

    async def _connect(self) -> None:
        now = self.clock()
        if now < self._next_connect:
            raise DriveConnectionError(
                f"bus {self.bus.name}: waiting {self._next_connect - now:.1f} s before reconnecting"
            )
        try:
            await self.client.connect()
        except DriveConnectionError as exc:
            self._schedule_reconnect()
            self.stats.connect_failures += 1
            if not self._connect_failing:  # ERROR once per outage, DEBUG for every further attempt
                log.error("bus %s: %s; retrying after %g s, backing off to %g s", self.bus.name, exc,
                          self._backoff, self.bus.reconnect_delay_max)
                self._connect_failing = True
            else:
                log.debug("bus %s: attempt %d failed: %s; next in %g s", self.bus.name,
                          self.stats.connect_failures, exc, self._backoff)
            raise
        self.stats.connects += 1
        # INFO at the first connect and when the bus comes back; a TCP connection dropped after a
        # timeout (agent.modbus.client) is reopened at once, at DEBUG, or a silent unit would log every retry.
        level = logging.INFO if self.stats.connects == 1 or self._backoff else logging.DEBUG
        self._backoff = 0.0
        self._connect_failing = False
        log.log(level, "bus %s: connected to %s", self.bus.name, self.bus.address)

    def _schedule_reconnect(self) -> None:
        """Exponential backoff from one poll interval up to the bus's maximum."""
        self._backoff = min(
            max(self.bus.poll_interval, 2.0 * self._backoff), self.bus.reconnect_delay_max
        )
        self._next_connect = self.clock() + self._backoff
