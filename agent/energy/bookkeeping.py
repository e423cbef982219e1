"""Moves each drive's booked energy into the ledger, every flush interval and at shutdown.

A flush closes every drive's savings window, then writes the hour deltas and the
totals in one transaction on a worker thread (an fsync on an SD card can take
tens of milliseconds; the poll loop must not wait for it). When the disk is full
or read-only the deltas are kept and merged into the next attempt, the error is
logged loudly once and counted, and polling and metrics go on.

A ledger that cannot be opened at start (read-only, locked, full) is retried at
every flush; until it opens, ``restored`` is False and the cumulative series are
not exported (``agent.metrics``), so they appear once, with the stored history
in them, instead of starting at zero and jumping.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

from agent.drive import DriveRuntime
from agent.energy.account import EnergyTotals, HourDelta, OptimizerPart, SavedPenalty, optimizer_parts
from agent.energy.ledger import HourRow, Ledger
from agent.errors import LedgerError, LedgerLockedError

log = logging.getLogger(__name__)

# What opening the ledger reads: the ledger, the drives' totals, the newest hour, the groups' totals.
_Loaded = tuple[Ledger, dict[str, EnergyTotals], float | None, dict[tuple[str, OptimizerPart], SavedPenalty]]


def add_totals(stored: EnergyTotals, current: EnergyTotals) -> EnergyTotals:
    """Totals from earlier runs plus what this run has booked so far."""
    return EnergyTotals(**{
        f.name: getattr(stored, f.name) + getattr(current, f.name) for f in fields(stored)
    })


class Bookkeeper:
    """Owns the ledger for the agent's drives."""

    def __init__(
        self,
        drives: Sequence[DriveRuntime],
        path: Path,
        interval: float,
        currency: str,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock_floor: Callable[[float], None] | None = None,
    ) -> None:
        self.drives = drives
        self.path = path
        self.interval = interval
        self.currency = currency
        self.wall_clock = wall_clock
        self.clock_floor = clock_floor  # told the ledger's newest hour: no real time is earlier
        self.groups: dict[str, tuple[str, ...]] = {}  # optimizer group -> its drives (set by the service)
        # The optimizer's savings belong to a group, not to its drives (one pump's share may be negative
        # while the group saves): each window's net per group and part goes to saved or penalty by sign.
        self.group_totals: dict[tuple[str, OptimizerPart], SavedPenalty] = {}
        self.ledger: Ledger | None = None
        self.restored = False  # the drives' totals include the ledger's
        self.flushes_ok = 0
        self.flushes_failed = 0
        self.last_flush_wall = 0.0
        self._unwritten: dict[tuple[str, int], HourDelta] = {}
        self._failing = False
        self._flushing = asyncio.Lock()  # one flush at a time: the periodic one, a reload's, the last

    @property
    def unwritten_hours(self) -> int:
        """Hour rows waiting for the ledger to accept them again."""
        return len(self._unwritten)

    @property
    def unwritten_seconds(self) -> float:
        """Running time whose energy waits in memory for the ledger: what a crash would lose now."""
        return sum(delta.covered_s for delta in self._unwritten.values())

    def open(self) -> None:
        """Open the ledger and add its totals to the drives'; LedgerLockedError is fatal."""
        self._restore(self._load())

    def _load(self) -> _Loaded | None:
        """Open the ledger and read its totals and newest hour; None (reported) if it cannot be.

        Touches no drive, so it may run on a worker thread while the poll loop books energy.
        """
        try:
            ledger = Ledger.open(self.path)
        except LedgerLockedError:
            raise
        except LedgerError as exc:
            self._report_failure(exc)
            return None
        try:
            return ledger, ledger.load_totals(), ledger.newest_hour(), ledger.load_group_totals()
        except LedgerError as exc:  # pragma: no cover - a readable, migrated file has totals
            ledger.close()
            self._report_failure(exc)
            return None

    def _restore(self, loaded: _Loaded | None) -> None:
        """Add the stored totals to what this run has booked so far (on the poll loop's thread)."""
        if loaded is None:
            return
        ledger, stored, newest_hour, groups = loaded
        for key, stored_part in groups.items():
            part = self.group_totals.setdefault(key, SavedPenalty())
            part.saved_j += stored_part.saved_j
            part.penalty_j += stored_part.penalty_j
        for drive in self.drives:
            if drive.name in stored:
                drive.account.totals = add_totals(stored[drive.name], drive.account.totals)
        self.ledger = ledger
        self.restored = True
        if newest_hour is not None and self.clock_floor is not None:
            self.clock_floor(newest_hour)
        log.info("ledger %s: %d drive(s) restored", self.path, sum(d.name in stored for d in self.drives))

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every interval until ``stop``; the final flush is the caller's (see ``close``)."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            if not stop.is_set():
                await self.flush()

    async def flush(self) -> bool:
        """Close every window and write it; False (and the deltas kept) if the ledger refused."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        if self.ledger is None:
            # Opened before the totals are taken, or this flush would store them without the history.
            self._restore(await asyncio.to_thread(self._load))
        for drive in self.drives:
            for hour, delta in drive.account.close_window().items():
                key = (drive.name, hour)
                if key in self._unwritten:
                    self._unwritten[key].merge(delta)
                else:
                    self._unwritten[key] = delta
        self._attribute_to_groups()
        totals = {d.name: copy.copy(d.account.totals) for d in self.drives}
        groups = {key: copy.copy(part) for key, part in self.group_totals.items()}
        rows = [
            HourRow(drive, hour, self.currency, delta) for (drive, hour), delta in self._unwritten.items()
        ]
        if self.ledger is None:
            self.flushes_failed += 1
            return False
        now = self.wall_clock()
        try:
            await asyncio.to_thread(self.ledger.flush, rows, totals, now, groups)
        except LedgerError as exc:
            self.flushes_failed += 1
            self._report_failure(exc)
            return False
        self._unwritten.clear()
        self.flushes_ok += 1
        self.last_flush_wall = now
        if self._failing:
            log.info("ledger %s: writing again", self.path)
            self._failing = False
        return True

    def _attribute_to_groups(self) -> None:
        """Each group's net optimizer saving of the windows just closed, by part, into its totals."""
        grouped = {name for members in self.groups.values() for name in members}
        closed = {d.name: d.account.closed for d in self.drives if d.name in grouped}
        for group, members in self.groups.items():
            for part in OptimizerPart:
                self.group_totals.setdefault((group, part), SavedPenalty())
            net = {part: 0.0 for part in OptimizerPart}
            for name in members:
                if name in closed:
                    for part, value in optimizer_parts(closed[name]).items():
                        net[part] += value
            for part, value in net.items():
                self.group_totals[(group, part)].add(value)

    async def close(self) -> None:
        """Final flush, then release the ledger."""
        await self.flush()
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None

    def _report_failure(self, exc: Exception) -> None:
        if not self._failing:
            log.error("%s; energy is kept in memory and written when the ledger works again", exc)
            self._failing = True
        else:
            log.debug("ledger still failing: %s", exc)
