"""One poller per bus: owns the connection and the schedule, drives consume its results.

A failed read is a typed ``DriveError`` recorded on that drive (and shown as
``vfd_up 0`` and a labelled error count); it never escapes the loop.

The schedule is fixed-rate on the monotonic clock. A cycle reads every drive's fast
class (``PollRate``), then, in the time left before the next tick, the slow class of
the drives whose slow period is due, the most overdue first; a slow read that does
not fit waits for a later cycle (stretched), unless it is a whole slow period late,
when one such read per cycle goes ahead anyway so the slow class never starves. A
cycle that overruns its tick is followed at once by the next (the line is never idle
while the schedule is behind, and no tick is skipped for a small overrun); the
schedule then runs from that start, so it never bursts to catch up. How late the fast
class starts and how overdue the slow class is are ``lag(rate)``, logged once when the
bus falls behind and once when it is back on time.

Each drive's turnaround (the time it takes to answer beyond the frames' wire time) is
measured on every successful read and kept as the median of the recent ones
(``agent.modbus.turnaround``); before that, the value stored at the last run, else the
bus's configured ``turnaround``.
The slow pass charges it when it decides what fits.

Every drive of the bus is polled in config order, one transaction at a time.
A drive that stops answering costs a whole timeout per read, which on an RTU
line is time the healthy drives need; so a drive that timed out is asked again
only after a backoff (one interval, doubling up to ``DOWN_RETRY_MAX_S``), and
then after the drives that answer, in the time left before the next tick: the
most overdue retry of a cycle always goes, the others only where a whole timeout
still fits, so a few silent drives on a gateway never push a healthy drive's
samples later (before, five of them retried in one cycle stretched it to three
intervals and the healthy drives' data went stale). A connection that drops
mid-cycle is reopened at once, so the drives after the one that dropped it are
still polled in that cycle; on a
socket (Modbus TCP, RTU over TCP) that includes the connection the client drops
itself after a timeout.

Each drive's reads are planned per bus (``agent.modbus.readplan.plan_for``): on RTU,
gaps are bridged where the frame-time model says that is cheaper. A drive that
rejects a bridged read with exception 2 (illegal data address) is re-planned
without bridging, once.

Long because the schedule is one piece: the tick, the rate classes, the overload rule, the
turnaround learning and the reconnect backoff all decide when the next read goes on the line.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.config import BusConfig
from agent.config.profile import PollRate, Quantity
from agent.drive import DeviceRuntime, DriveRuntime, stale_after
from agent.errors import (
    DriveConnectionError,
    DriveError,
    DriveProtocolError,
    DriveReplyError,
    ImplausibleReadingError,
)
from agent.modbus.client import BusClient
from agent.modbus.readplan import (
    Block,
    PollBudget,
    ReadPlan,
    bus_budget,
    bus_warnings,
    decode_blocks,
    line_timing,
    plan_classes,
    read_cost,
)
from agent.modbus.turnaround import TurnaroundEstimate
from agent.units import Clock

log = logging.getLogger(__name__)


DOWN_RETRY_MAX_S = 4.0  # a silent drive is asked again at least this often (recovery well within 10 s)
SLOW_KINDS = frozenset({"timeout", "crc", "connection"})  # failures that cost the line a whole timeout
UTILIZATION_WINDOW_S = 10.0
BEHIND_CYCLES = 3  # consecutive late (or on-time) cycles before the bus is said to be behind (or back)
LATE_SHARE = 0.02  # of the interval: a start later than this is a late cycle


@dataclass
class _DriveSchedule:
    """What the poller keeps per drive: its plan per rate class, its turnaround, the slow class's due time."""

    plan: ReadPlan
    turnaround: TurnaroundEstimate
    slow_due: float = -math.inf
    complete: bool = False  # every class read since the drive last failed or the bus connected
    values: dict[Quantity, float] = field(default_factory=dict)  # the latest slow and connect values
    slow_reads: int = 0


@dataclass
class BusStats:
    """What the metrics need to know about one bus."""

    cycles: int = 0
    missed_deadlines: int = 0  # cycles that started late, right after an overrunning one
    connects: int = 0
    connect_failures: int = 0  # attempts to open the connection that failed (port refused, host down)


class BusPoller:
    """Polls every drive and sensor on one bus, one request at a time, every ``poll_interval``."""

    def __init__(
        self,
        bus: BusConfig,
        drives: list[DeviceRuntime],
        client: BusClient,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        on_cycle: Callable[[BusPoller, float], None] | None = None,
        learned: Mapping[str, float] | None = None,
    ) -> None:
        """``learned``: turnarounds measured before (``agent.modbus.turnaround``), until measured again."""
        self.bus = bus
        self.devices = drives  # the drives and sensors on the bus, polled alike in config order
        # The drives among them (a sensor has no energy, no group of its own, no M&V record).
        self.drives = [d for d in drives if isinstance(d, DriveRuntime)]
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
        self._timing = line_timing(bus)
        self._schedule: dict[str, _DriveSchedule] = {}
        for drive in drives:
            plan = plan_classes(bus, drive.config.profile)
            default = (learned or {}).get(drive.name, bus.turnaround)
            self._schedule[drive.name] = _DriveSchedule(plan, TurnaroundEstimate(default))
            drive.blocks = plan.fast + plan.slow + plan.connect
            drive.stale_after = stale_after(bus.poll_interval)
        self._fast_lag = 0.0
        self._late_cycles = self._on_time_cycles = 0
        self._behind = False
        profiles = [d.config.profile for d in drives]
        turnarounds = [self._schedule[d.name].turnaround.value for d in drives]
        stored = sum(d.name in (learned or {}) for d in drives)
        self.budget: PollBudget | None = bus_budget(bus, profiles, turnarounds, stored)
        for warning in bus_warnings(bus, profiles, turnarounds, stored):
            log.warning("%s", warning)  # once, at start; check-config shows the same

    @property
    def name(self) -> str:
        """The bus's name."""
        return self.bus.name

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; then close the connection."""
        tick = self.clock()
        try:
            while not stop.is_set():
                started = self.clock()
                next_tick = tick + self.bus.poll_interval
                await self.poll_once(until=next_tick)
                now = self.clock()
                self.stats.cycles += 1
                if self.on_cycle is not None:
                    self.on_cycle(self, now - started)
                # Overrun: the next cycle starts now, as soon as the line is free, and the
                # schedule runs on from there (no skipped tick, no burst to catch up).
                self._fast_lag = max(0.0, now - next_tick)
                if now > next_tick:
                    self.stats.missed_deadlines += 1
                tick = max(next_tick, now)
                self._note_lag(now - started)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, tick - self.clock()))
                except asyncio.TimeoutError:
                    pass
        finally:
            self.client.close()

    async def poll_once(self, until: float = math.inf) -> None:
        """One cycle: every due drive's fast class, then the slow class in the time left before ``until``."""
        if not self.client.connected:
            try:
                await self._connect()
            except DriveConnectionError as exc:
                for drive in self.devices:
                    drive.fail(exc)
                self._sample_busy()
                return
        started = self.clock()
        for drive in self.devices:
            if drive.name not in self._retry_at:
                await self._poll_in_cycle(drive)
        await self._poll_retries(started, until)
        await self._poll_slow(until)
        # A connection a drive dropped is reopened at the next cycle's start without waiting;
        # only a failed connect backs off (in _connect).
        self._sample_busy()

    async def _poll_in_cycle(self, drive: DeviceRuntime) -> None:
        """The drive's fast class, or every class if its last poll failed."""
        if not self.client.connected and not await self._reconnect_in_cycle(drive):
            return
        complete = self._schedule[drive.name].complete
        await self._poll_drive(drive, (PollRate.FAST,) if complete else tuple(PollRate))

    async def _poll_retries(self, started: float, until: float) -> None:
        """Silent drives whose retry was due at the cycle's start, most overdue first.

        One always goes; the others only if a whole timeout still ends before ``until``. One
        that does not fit stays due and, more overdue by then, goes first in a later cycle.
        """
        due = sorted((at, i) for i, d in enumerate(self.devices)
                     if (at := self._retry_at.get(d.name, math.inf)) <= started)
        silent_cost = self.bus.timeout * (self.bus.retries + 1)
        for count, (_, index) in enumerate(due):
            if count and self.clock() + silent_cost > until:
                continue
            await self._poll_in_cycle(self.devices[index])

    async def _poll_slow(self, until: float) -> None:
        """The slow class of the drives it is due for, most overdue first, as far as the time left allows."""
        half = 0.5 * self.bus.poll_interval  # due within half an interval: this cycle's
        due = sorted((s.slow_due, i) for i, s in enumerate(self._schedule.values())
                     if s.complete and s.plan.slow and s.slow_due <= self.clock() + half)
        forced = False
        for slow_due, index in due:
            drive = self.devices[index]
            schedule = self._schedule[drive.name]
            if not schedule.complete or not self.client.connected:
                continue
            now = self.clock()
            wait = schedule.turnaround.value
            cost = sum(read_cost(self._timing, b.count, wait) for b in schedule.plan.slow)
            starving = now - slow_due >= self._slow_period(schedule)
            if now + cost > until:
                if forced or not starving:
                    continue  # stretched: the fast class keeps its rate
                forced = True  # one read a whole period late per cycle, so the slow class never starves
            await self._poll_drive(drive, (PollRate.SLOW,))

    def _slow_period(self, schedule: _DriveSchedule) -> float:
        return schedule.plan.slow_every * self.bus.poll_interval

    def lag(self, rate: PollRate) -> float:
        """How far behind its schedule a class is [s]; 0 on time.

        Fast: how late the last cycle started after its tick. Slow: how overdue the most
        overdue drive's slow class is.
        """
        if rate is PollRate.FAST:
            return self._fast_lag
        now = self.clock()
        return max((now - s.slow_due for s in self._schedule.values() if s.complete and s.plan.slow
                    and math.isfinite(s.slow_due)), default=0.0) if rate is PollRate.SLOW else 0.0

    def turnarounds(self) -> dict[str, float]:
        """Each drive's measured turnaround [s] (drives not yet measured are left out)."""
        return {name: s.turnaround.value for name, s in self._schedule.items() if s.turnaround.measured}

    def slow_reads(self, drive: str) -> int:
        """Reads of a drive's slow class so far (tests and the bench count them)."""
        return self._schedule[drive].slow_reads

    def budget_now(self) -> PollBudget | None:
        """The line budget with each drive's turnaround as measured (the configured or stored one before)."""
        estimates = [self._schedule[d.name].turnaround for d in self.devices]
        return bus_budget(self.bus, [d.config.profile for d in self.devices], [e.value for e in estimates],
                          learned=sum(e.measured for e in estimates))

    def _note_lag(self, duration: float) -> None:
        """Log once when the bus falls behind its schedule, once when it is back on time."""
        slow_late = any(self.lag(PollRate.SLOW) >= self._slow_period(s) for s in self._schedule.values()
                        if s.plan.slow)
        late = self._fast_lag > LATE_SHARE * self.bus.poll_interval or slow_late
        self._late_cycles = self._late_cycles + 1 if late else 0
        self._on_time_cycles = 0 if late else self._on_time_cycles + 1
        if not self._behind and self._late_cycles >= BEHIND_CYCLES:
            self._behind = True
            log.warning("bus %s: behind schedule: a cycle takes %.3f s for an interval of %g s (fast class "
                        "%.3f s late, slow class %.1f s overdue); polling as often as the line allows, the "
                        "slow class stretched first (vfd_poll_lag_seconds)", self.bus.name, duration,
                        self.bus.poll_interval, self._fast_lag, self.lag(PollRate.SLOW))
        elif self._behind and self._on_time_cycles >= BEHIND_CYCLES:
            self._behind = False
            log.info("bus %s: back on schedule", self.bus.name)

    async def _reconnect_in_cycle(self, drive: DeviceRuntime) -> bool:
        """The connection dropped mid-cycle: reopen it at once (or fail this drive fast)."""
        try:
            await self._connect()
        except DriveConnectionError as exc:
            drive.fail(exc)
            return False
        return True

    async def _read(self, drive: DeviceRuntime, schedule: _DriveSchedule, block: Block) -> list[int]:
        """One block read; a successful one updates the drive's turnaround estimate."""
        registers = await self.client.read(drive.config.unit, block)
        wire = read_cost(self._timing, block.count, 0.0) - (self._timing.gap if self._timing else 0.0)
        schedule.turnaround.add(self.client.stats.last_exchange_s - wire)  # the last silence is the master's
        return registers

    async def _poll_drive(self, drive: DeviceRuntime, rates: tuple[PollRate, ...]) -> None:
        schedule = self._schedule[drive.name]
        blocks = tuple(b for rate in rates for b in schedule.plan.blocks(rate))
        try:
            registers = [await self._read(drive, schedule, block) for block in blocks]
            values = decode_blocks(blocks, registers)
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
        now = self.clock()
        if PollRate.SLOW in rates:
            schedule.slow_reads += 1
            period = self._slow_period(schedule)
            if not schedule.complete or not math.isfinite(schedule.slow_due):
                # Staggered, so the drives' slow reads spread over the period instead of one cycle.
                index = self.devices.index(drive)
                schedule.slow_due = now + period * (1.0 + index / len(self.devices))
            else:
                early = now + period - 0.5 * self.bus.poll_interval  # a stretched read restarts the period
                schedule.slow_due = max(schedule.slow_due + period, early)
        if PollRate.FAST not in rates:
            schedule.values.update(values)  # merged into the drive's next fast poll
            return
        fast = {p.quantity for b in schedule.plan.fast for p in b.points}
        schedule.values.update({q: v for q, v in values.items() if q not in fast})
        schedule.complete = True
        try:
            drive.accept(now, self.wall_clock(), {**schedule.values, **values})
        except ImplausibleReadingError:
            pass  # recorded on the drive by accept()

    def _failed(self, drive: DeviceRuntime, error: DriveError) -> None:
        drive.fail(error)
        self._schedule[drive.name].complete = False  # its next answer reads every class again
        if error.kind in SLOW_KINDS:
            delay = min(max(self.bus.poll_interval, 2.0 * self._retry_delay.get(drive.name, 0.0)),
                        max(DOWN_RETRY_MAX_S, self.bus.poll_interval))
            self._retry_delay[drive.name] = delay
            # Half an interval early, so the retry falls in the cycle that is due then.
            self._retry_at[drive.name] = self.clock() + delay - 0.5 * self.bus.poll_interval

    def _replan_without_gaps(self, drive: DeviceRuntime) -> bool:
        """A drive refused a read that bridged unnamed registers: read only what the profile names."""
        schedule = self._schedule[drive.name]
        plain = plan_classes(self.bus, drive.config.profile, max_gap=0)
        if plain == schedule.plan:
            return False
        before = len(drive.blocks)
        schedule.plan = plain
        drive.blocks = plain.fast + plain.slow + plain.connect
        log.warning("drive %s: refuses reads across unnamed registers (exception 2); reading %d blocks "
                    "instead of %d", drive.name, len(drive.blocks), before)
        return True

    def _sample_busy(self) -> None:
        now = self.clock()
        self._busy_samples.append((now, self.client.stats.busy_s))
        while len(self._busy_samples) > 2 and now - self._busy_samples[1][0] >= UTILIZATION_WINDOW_S:
            self._busy_samples.popleft()

    def counts(self) -> tuple[int, int, int, int]:
        """Cycles, cycles started late, connections opened, attempts to open one that failed."""
        stats = self.stats
        return stats.cycles, stats.missed_deadlines, stats.connects, stats.connect_failures

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
        if self.stats.connects == 1 or self._backoff:
            # Back after an outage (not a TCP connection reopened after one timeout): the
            # connect class again, and every class before the next fast-only poll.
            for schedule in self._schedule.values():
                schedule.complete = False
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
