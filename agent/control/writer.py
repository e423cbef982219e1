"""Writes to drives under guard rails: the only way the agent ever changes a drive.

A setpoint (or a control word) is written only if every guard passes, in this order;
the first that fails refuses the write, which is counted with that reason
(``vfd_setpoint_writes_total{drive, result}``) and logged:

==========================  ==============================================================
``refused_mode``            the drive is not in ``control`` mode
``refused_ledger``          the ledger is not open (or cannot be written), so the operator's value
                            cannot be kept on disk first; a dry run needs no ledger
``refused_not_writable``    the profile does not mark the point writable
``refused_stale``           ``DriveRuntime.is_fresh`` says no: the last accepted poll is older
                            than two poll intervals, the drive is down, or its data failed a
                            plausibility check
``refused_status``          the status word does not report ready, remote and running (a start
                            needs ready and remote), or reports a fault; no status word refuses
``refused_range``           the value is not finite, or outside [min, max] (or the register)
``refused_slew``            the change exceeds the slew limit per minute since our last write, or
                            (before one) since the drive's value was read
``refused_budget``          the drive's write budget per hour is spent
==========================  ==============================================================

A write that passes is sent, then read back: ``ok`` if the registers read back are the
ones written, ``verify_failed`` if not, ``failed`` if the drive did not take it (a Modbus
error). With ``dry_run`` nothing is sent: the write is logged and counted as ``dry_run``.

Before its first write to a point, the writer keeps the value the drive had (the
operator's) in the ledger's database (``agent.energy.ledger.HandbackStore``), committed and
synced before the write goes out, with every value it then sends and writes; ``restore``
writes the operator's values back (on shutdown, on stale data, on a fault) and deletes a
row only once the drive reads back the operator's value. A hand-back that did not verify
stays owed and is tried again. After a crash the drive shows the agent's value, not the
operator's: ``resume`` takes the owed hand-backs over from the ledger, so the operator's
value is the one kept, never the drive's current one. Only a setpoint that shows none of
the values the agent knows (the operator's, its last, the one it was sending) was set by
someone else while the agent was away: that is then the operator's value.
A restore skips the freshness, status and slew guards (it is the way back to the
operator's own settings) but not the profile's writable flag, the value check, the
read-back, or the counting.

Long because the guards, the write-and-verify and the hand-back share one writer's state
(its last values, the operator's values, its budget) and are reviewed together: this is
the only way the agent changes a drive.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from dataclasses import dataclass
from enum import Enum

from agent.config import BusConfig, ControlMode, LoadKind
from agent.config.profile import Point, Quantity
from agent.drive import DriveRuntime
from agent.energy.ledger import HandbackStore, PendingHandback
from agent.errors import DriveError, LedgerError
from agent.modbus.client import BusClient
from agent.modbus.codec import encode
from agent.modbus.readplan import Block
from agent.units import Clock, Dimension, head_from_pressure, pressure_from_head

log = logging.getLogger(__name__)

BUDGET_WINDOW_S = 3600.0
SLEW_WINDOW_S = 60.0  # the slew allowance grows with the time since the last write, up to a minute


class WriteResult(Enum):
    """Outcome of one attempted write; the ``result`` label of ``vfd_setpoint_writes_total``."""

    OK = "ok"
    DRY_RUN = "dry_run"
    REFUSED_MODE = "refused_mode"
    REFUSED_LEDGER = "refused_ledger"
    REFUSED_NOT_WRITABLE = "refused_not_writable"
    REFUSED_STALE = "refused_stale"
    REFUSED_STATUS = "refused_status"
    REFUSED_RANGE = "refused_range"
    REFUSED_SLEW = "refused_slew"
    REFUSED_BUDGET = "refused_budget"
    FAILED = "failed"
    VERIFY_FAILED = "verify_failed"

    @property
    def written(self) -> bool:
        """True if the drive now has the value (or would have, in a dry run)."""
        return self in (WriteResult.OK, WriteResult.DRY_RUN)


@dataclass(frozen=True)
class Limits:
    """What a value may be: [minimum, maximum] and a slew limit (change per minute; inf: none)."""

    minimum: float
    maximum: float
    slew_per_min: float = math.inf


class Command(Enum):
    """Named control words of a profile (``control_words``)."""

    RUN = "run"
    STOP = "stop"


class DriveWriter:
    """Guarded, verified, counted writes to one drive."""

    def __init__(self, drive: DriveRuntime, bus: BusConfig, client: BusClient, *,
                 clock: Clock = time.monotonic, dry_run: bool = False,
                 handbacks: HandbackStore | None = None, wall_clock: Clock = time.time) -> None:
        self.drive = drive
        self.bus = bus
        self.client = client
        self.clock = clock
        self.wall_clock = wall_clock
        self.dry_run = dry_run
        self.handbacks = handbacks  # None: the ledger is not open, and nothing is sent (but in a dry run)
        self.control = drive.config.control
        self.results: Counter[str] = Counter()
        # The drive's values before our first write (agent units); outside a dry run, each one is
        # in ``handbacks`` too, and stays until the drive has read it back after a hand-back.
        self.operator: dict[Quantity, float] = {}
        self.order: list[Quantity] = []  # points owed a hand-back, in the order they were first written
        self._resumed: dict[Quantity, PendingHandback] = {}  # taken over, not yet compared with the drive
        self._failed_restore: set[Quantity] = set()
        self.last: dict[Quantity, tuple[float, float]] = {}  # our last value and its time
        self.last_refusal: dict[Quantity, WriteResult] = {}
        self._writes: deque[float] = deque()

    @property
    def name(self) -> str:
        """The drive's name."""
        return self.drive.name

    @property
    def holds(self) -> bool:
        """True while the agent has written something it has not restored."""
        return bool(self.order)

    # --- units: the agent's (ratio; m for pumps, Pa for fans) against the point's SI ---------

    def _to_point(self, point: Point, value: float) -> float:
        if point.quantity is Quantity.SPEED_SETPOINT and point.dimension is Dimension.ANGULAR_SPEED:
            return value * self.drive.config.rated_speed
        if point.quantity is Quantity.PRESSURE_SETPOINT and point.dimension is Dimension.PRESSURE:
            return pressure_from_head(value, fan=self.drive.config.load.kind is LoadKind.FAN)
        return value

    def _from_point(self, point: Point, value: float) -> float:
        if point.quantity is Quantity.SPEED_SETPOINT and point.dimension is Dimension.ANGULAR_SPEED:
            return value / self.drive.config.rated_speed
        if point.quantity is Quantity.PRESSURE_SETPOINT and point.dimension is Dimension.PRESSURE:
            return head_from_pressure(value, fan=self.drive.config.load.kind is LoadKind.FAN)
        return value

    def current(self, quantity: Quantity) -> float:
        """The point's value in the last poll (agent units), NaN if unknown."""
        point = self.drive.config.profile.point(quantity)
        reading = self.drive.last
        if point is None or reading is None or quantity not in reading.values:
            return math.nan
        return self._from_point(point, reading.values[quantity])

    def _encode(self, point: Point, value: float) -> list[int]:
        """The registers for ``value`` (agent units); ValueError if it does not fit the register."""
        return encode(point.from_si(self._to_point(point, value)), point.dtype, point.word_order,
                      point.byte_order)

    # --- guards -------------------------------------------------------------------------------

    def status_ok(self, *, running: bool) -> bool:
        """Ready, remote, no fault, and (unless a start) running, by the profile's status bits."""
        states = {bit: self.drive.status(bit) for bit in ("ready", "remote", "running", "fault")}
        if states["ready"] is not True or states["remote"] is not True or states["fault"] is not False:
            return False
        return states["running"] is True or not running

    def _refuse(self, quantity: Quantity, result: WriteResult, why: str) -> WriteResult:
        self.results[result.value] += 1
        # Refusals repeat every cycle while a condition lasts: log a change of reason, not each one.
        level = logging.WARNING if self.last_refusal.get(quantity) is not result else logging.DEBUG
        if result is WriteResult.REFUSED_LEDGER and level == logging.WARNING:
            level = logging.ERROR  # the agent cannot control at all
        self.last_refusal[quantity] = result
        log.log(level, "drive %s: %s write refused (%s): %s", self.name, quantity.value, result.value, why)
        return result

    def _guard(self, point: Point | None, quantity: Quantity, value: float, limits: Limits | None,
               now: float, *, needs_running: bool) -> WriteResult | None:
        if self.control.mode is not ControlMode.CONTROL:
            return self._refuse(quantity, WriteResult.REFUSED_MODE, f"mode is {self.control.mode.value}")
        if self.handbacks is None and not self.dry_run:
            return self._refuse(quantity, WriteResult.REFUSED_LEDGER, "the ledger is not open, so the "
                                "operator's value cannot be kept on disk before a write")
        if point is None or not point.writable:
            profile = self.drive.config.profile.name
            return self._refuse(quantity, WriteResult.REFUSED_NOT_WRITABLE,
                                f"profile {profile!r} has no writable {quantity.value}")
        if not self.drive.is_fresh(now):
            age = now - self.drive.last.t if self.drive.last is not None else math.inf
            return self._refuse(quantity, WriteResult.REFUSED_STALE,
                                f"drive up={self.drive.up}, last data {age:.2f} s old")
        if not self.status_ok(running=needs_running):
            word = self.drive.last.values.get(Quantity.STATUS_WORD) if self.drive.last else None
            wanted = "ready, remote, running, no fault" if needs_running else "ready, remote, no fault"
            return self._refuse(quantity, WriteResult.REFUSED_STATUS, f"status word {word!r} is not {wanted}")
        if limits is not None:
            if not (math.isfinite(value) and limits.minimum <= value <= limits.maximum):
                return self._refuse(quantity, WriteResult.REFUSED_RANGE,
                                    f"{value:g} outside [{limits.minimum:g}, {limits.maximum:g}]")
            reference, since = self._slew_anchor(quantity)
            reference = self._within(reference, limits)
            elapsed = min(now - since, SLEW_WINDOW_S)
            allowed = limits.slew_per_min * max(elapsed, 0.0) / 60.0
            if math.isfinite(limits.slew_per_min) and math.isfinite(reference) \
                    and abs(value - reference) > allowed + 1e-12:
                return self._refuse(quantity, WriteResult.REFUSED_SLEW,
                                    f"{reference:g} -> {value:g} exceeds {limits.slew_per_min:g}/min "
                                    f"({allowed:g} in {elapsed:.1f} s)")
        while self._writes and now - self._writes[0] >= BUDGET_WINDOW_S:
            self._writes.popleft()
        if len(self._writes) >= self.control.writes_per_hour:
            return self._refuse(quantity, WriteResult.REFUSED_BUDGET, f"{len(self._writes)} writes in the "
                                f"last hour (budget {self.control.writes_per_hour})")
        return None

    def _slew_anchor(self, quantity: Quantity) -> tuple[float, float]:
        """What the slew limit counts from: our last write and its time, else the drive's value as read.

        After a start or a hand-back the first step is bounded by the time since the drive's
        value was read, never "no write yet, so any step".
        """
        if quantity in self.last:
            return self.last[quantity]
        reading = self.drive.last
        return self.current(quantity), (reading.t if reading is not None else -math.inf)

    @staticmethod
    def _within(reference: float, limits: Limits) -> float:
        """The slew reference moved into the limits.

        A reference outside them (0: a drive its own cascade is stopping) counts from the
        nearest limit: the drive gets there as from a start, by its own ramp.
        """
        return min(max(reference, limits.minimum), limits.maximum)

    def slew_bounded(self, quantity: Quantity, wanted: float, limits: Limits, headroom: float = 1.0) -> float:
        """``wanted`` clamped to the limits and moved no further than ``headroom`` × the slew limit allows."""
        value = min(max(wanted, limits.minimum), limits.maximum)
        reference, since = self._slew_anchor(quantity)
        if not (math.isfinite(reference) and math.isfinite(limits.slew_per_min)):
            return value
        reference = self._within(reference, limits)
        elapsed = max(min(self.clock() - since, SLEW_WINDOW_S), 0.0)
        allowed = headroom * limits.slew_per_min * elapsed / 60.0
        return min(max(value, reference - allowed), reference + allowed)

    # --- writes -------------------------------------------------------------------------------

    async def write(self, quantity: Quantity, value: float, limits: Limits, *, start: bool = False,
                    reason: str = "") -> WriteResult:
        """Write a setpoint (agent units) if every guard passes; ``start``: the drive may be stopped."""
        now = self.clock()
        point = self.drive.config.profile.point(quantity)
        refused = self._guard(point, quantity, value, limits, now, needs_running=not start)
        if refused is not None or point is None:
            return refused or WriteResult.REFUSED_NOT_WRITABLE
        return await self._send(point, value, now, reason)

    async def command(self, command: Command, *, reason: str = "") -> WriteResult:
        """Write one of the profile's named control words (ready and remote, no fault, needed)."""
        now = self.clock()
        point = self.drive.config.profile.point(Quantity.CONTROL_WORD)
        word = self.drive.config.profile.control_words.get(command.value)
        if word is None:
            profile = self.drive.config.profile.name
            return self._refuse(Quantity.CONTROL_WORD, WriteResult.REFUSED_NOT_WRITABLE,
                                f"profile {profile!r} names no {command.value} control word")
        # Neither a start nor a stop needs a running drive: stopping a stopped pump holds it off its
        # local control (a cascade would start it), which is what the agent means by it.
        refused = self._guard(point, Quantity.CONTROL_WORD, float(word), None, now, needs_running=False)
        if refused is not None or point is None:
            return refused or WriteResult.REFUSED_NOT_WRITABLE
        return await self._send(point, float(word), now, reason or command.value)

    async def _send(self, point: Point, value: float, now: float, reason: str) -> WriteResult:
        quantity = point.quantity
        try:
            words = self._encode(point, value)
        except ValueError as exc:
            return self._refuse(quantity, WriteResult.REFUSED_RANGE,
                                f"{value:g} does not fit the register: {exc}")
        await self._check_resumed(point)
        try:
            await self._keep(quantity, value)
        except LedgerError as exc:
            return self._refuse(quantity, WriteResult.REFUSED_LEDGER, f"{exc}; nothing sent")
        self._writes.append(now)
        self.last_refusal.pop(quantity, None)
        if self.dry_run:
            log.info("drive %s: dry run: would write %s = %g (%s)", self.name, quantity.value, value, reason)
            return self._count(quantity, value, now, WriteResult.DRY_RUN)
        result = await self._write_and_verify(point, words, value, reason)
        if result is WriteResult.OK and self.handbacks is not None:
            try:
                await asyncio.to_thread(self.handbacks.written, self.name, quantity.value, value)
            except LedgerError as exc:  # the operator's value is on disk; only our last value is not
                log.error("drive %s: %s", self.name, exc)
        return self._count(quantity, value, now, result)

    async def _keep(self, quantity: Quantity, sending: float) -> None:
        """Before a write goes out: the operator's value (the first time) and ``sending``, on disk.

        LedgerError if the ledger refuses; then nothing may be sent. A dry run keeps them in memory.
        """
        first = quantity not in self.operator
        operator = self.operator.get(quantity, math.nan)
        if first:
            operator = self.current(quantity)
            if math.isnan(operator) and quantity is Quantity.CONTROL_WORD:
                operator = 0.0  # a write-only control word: hand back with 0, "no command"
        if self.handbacks is not None and not self.dry_run:
            if first:
                await asyncio.to_thread(self.handbacks.keep, self.name, quantity.value, operator, sending,
                                        self.wall_clock())
            else:
                await asyncio.to_thread(self.handbacks.sending, self.name, quantity.value, sending)
        self.operator[quantity] = operator

    def _count(self, quantity: Quantity, value: float, now: float, result: WriteResult) -> WriteResult:
        self.results[result.value] += 1
        if quantity not in self.order:  # a failed write may have reached the drive all the same
            self.order.append(quantity)
        if result.written:
            self.last[quantity] = (value, now)
        return result

    async def _write_and_verify(
        self, point: Point, words: list[int], value: float, reason: str
    ) -> WriteResult:
        unit = self.drive.config.unit
        try:
            await self.client.write(unit, point.address, words)
            back = await self.client.read(unit, Block(point.table, point.address, point.registers, (point,)))
        except DriveError as exc:
            log.warning("drive %s: writing %s = %g failed (%s): %s", self.name, point.quantity.value, value,
                        exc.kind, exc)
            return WriteResult.FAILED
        if list(back) != list(words):
            log.warning("drive %s: %s = %g written as %s but read back as %s", self.name,
                        point.quantity.value, value, words, list(back))
            return WriteResult.VERIFY_FAILED
        log.info("drive %s: wrote %s = %g (%s)", self.name, point.quantity.value, value, reason)
        return WriteResult.OK

    async def restore(self, reason: str) -> list[WriteResult]:
        """Write back the operator's values (control word first), if configured.

        A point whose operator's value the drive reads back is forgotten, here and in the
        ledger; one that did not take it stays owed (``holds``), and is tried again at the next
        hand-back, at once if the drive is up, else once it is up again.
        """
        results: list[WriteResult] = []
        if not self.order:
            return results
        order = sorted(self.order, key=lambda q: q is not Quantity.CONTROL_WORD)
        if not self.control.restore:
            log.info("drive %s: stopping writes (%s); restore_on_stop is off", self.name, reason)
            for quantity in order:
                await self._handed_back(quantity)
            return results
        for quantity in order:
            if quantity in self._failed_restore and not self.drive.up:
                continue  # it failed on a drive that is still down: try when it answers again
            point = self.drive.config.profile.point(quantity)
            if point is not None:
                await self._check_resumed(point)
            value = self.operator.get(quantity, math.nan)
            if point is None or not point.writable or not math.isfinite(value):
                results.append(self._refuse(quantity, WriteResult.REFUSED_RANGE,
                                            f"no operator's value to restore ({value})"))
                await self._handed_back(quantity)  # nothing the agent could ever write back
                continue
            log.info("drive %s: restoring the operator's %s = %g (%s)", self.name, quantity.value, value,
                     reason)
            try:
                words = self._encode(point, value)
            except ValueError as exc:
                results.append(self._refuse(quantity, WriteResult.REFUSED_RANGE, str(exc)))
                await self._handed_back(quantity)
                continue
            self._writes.append(self.clock())
            if self.dry_run:
                log.info("drive %s: dry run: would write %s = %g (restore)", self.name, quantity.value, value)
                result = WriteResult.DRY_RUN
            else:
                result = await self._write_and_verify(point, words, value, f"restore: {reason}")
            self.results[result.value] += 1
            results.append(result)
            if result.written:
                await self._handed_back(quantity)
            else:
                self._failed_restore.add(quantity)
                self.last.pop(quantity, None)  # the next write counts its slew from the drive's value
        return results

    async def _handed_back(self, quantity: Quantity) -> None:
        """Forget a point's hand-back: the drive has the operator's value (or is not to get it)."""
        if self.handbacks is not None and not self.dry_run:
            try:
                await asyncio.to_thread(self.handbacks.handed_back, self.name, quantity.value)
            except LedgerError as exc:  # owed on disk still: the next start finds it done and clears it
                log.error("drive %s: %s", self.name, exc)
        self.operator.pop(quantity, None)
        self.last.pop(quantity, None)
        self._resumed.pop(quantity, None)
        self._failed_restore.discard(quantity)
        if quantity in self.order:
            self.order.remove(quantity)

    # --- after a crash ----------------------------------------------------------------------------

    def resume(self, pending: PendingHandback) -> None:
        """Take over a hand-back an earlier run of the agent owed: its operator's value is the one kept."""
        quantity = Quantity(pending.quantity)
        self.operator[quantity] = pending.operator
        if quantity not in self.order:
            self.order.append(quantity)
        self._resumed[quantity] = pending
        log.warning("drive %s: an earlier run did not hand %s back; the operator's value %g is kept from the "
                    "ledger (the drive may show the agent's %s)", self.name, quantity.value, pending.operator,
                    "unknown" if pending.agent is None else f"{pending.agent:g}")

    async def _check_resumed(self, point: Point) -> None:
        """Compare a resumed setpoint with the drive, once it is read.

        One showing none of the values the agent knows of (the operator's, its own last, the
        one it was sending) was set by someone while the agent was away, and is the operator's
        value now. A control word is always handed back.
        """
        quantity = point.quantity
        pending = self._resumed.get(quantity)
        current = self.current(quantity)
        if pending is None or math.isnan(current):
            return
        del self._resumed[quantity]
        if quantity is Quantity.CONTROL_WORD:
            return
        known = [v for v in (pending.operator, pending.agent, pending.sending) if v is not None]
        try:
            shown = self._encode(point, current)
            if any(self._encode(point, v) == shown for v in known):
                return
        except ValueError:
            return
        log.warning("drive %s: %s is %g, none of the values the agent knew (operator's %g); someone set it "
                    "while the agent was away: that is the operator's value now", self.name, quantity.value,
                    current, pending.operator)
        if self.handbacks is not None and not self.dry_run:
            try:
                await asyncio.to_thread(self.handbacks.operator_changed, self.name, quantity.value, current)
            except LedgerError as exc:
                log.error("drive %s: %s", self.name, exc)
                return
        self.operator[quantity] = current
