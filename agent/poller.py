"""One poller per bus: owns the connection and the schedule, drives consume its results.

A failed read is a typed ``DriveError`` recorded on that drive (and shown as
``vfd_up 0`` and a labelled error count); it never escapes the loop. The
schedule is fixed-rate on the monotonic clock: a cycle that overruns skips the
missed ticks instead of bursting to catch up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import BusConfig
from agent.drive import DriveRuntime, ImplausibleReadingError
from agent.errors import DriveConnectionError, DriveError, DriveProtocolError
from agent.modbus import BusClient
from agent.readplan import decode_blocks

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass
class BusStats:
    """What the metrics need to know about one bus."""

    cycles: int = 0
    missed_deadlines: int = 0
    connects: int = 0


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
        """One cycle over every drive of the bus."""
        if not self.client.connected:
            try:
                await self._connect()
            except DriveConnectionError as exc:
                for drive in self.drives:
                    drive.fail(exc)
                return
        for drive in self.drives:
            # If the connection drops mid-cycle, the rest of the drives fail fast this
            # cycle and a later cycle reconnects, rather than each one timing out.
            await self._poll_drive(drive)
        if not self.client.connected:
            self._schedule_reconnect()

    async def _poll_drive(self, drive: DriveRuntime) -> None:
        if not self.client.connected:
            drive.fail(DriveConnectionError("bus connection lost"))
            return
        try:
            registers = [await self.client.read(drive.config.unit, block) for block in drive.blocks]
            values = decode_blocks(drive.blocks, registers)
        except DriveError as exc:
            drive.fail(exc)
            return
        except ValueError as exc:
            drive.fail(DriveProtocolError(str(exc)))
            return
        try:
            drive.accept(self.clock(), self.wall_clock(), values)
        except ImplausibleReadingError:
            pass  # recorded on the drive by accept()

    async def _connect(self) -> None:
        now = self.clock()
        if now < self._next_connect:
            raise DriveConnectionError(
                f"bus {self.bus.name}: waiting {self._next_connect - now:.1f} s before reconnecting"
            )
        try:
            await self.client.connect()
        except DriveConnectionError:
            self._schedule_reconnect()
            raise
        self.stats.connects += 1
        self._backoff = 0.0
        log.info("bus %s: connected to %s:%d", self.bus.name, self.bus.host, self.bus.port)

    def _schedule_reconnect(self) -> None:
        """Exponential backoff from one poll interval up to the bus's maximum."""
        self._backoff = min(
            max(self.bus.poll_interval, 2.0 * self._backoff), self.bus.reconnect_delay_max
        )
        self._next_connect = self.clock() + self._backoff
