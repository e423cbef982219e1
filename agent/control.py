"""Writes to drives under guard rails: the only way the agent ever changes a drive.

A setpoint (or a control word) is written only if every guard passes, in this order;
the first that fails refuses the write, which is counted with that reason
(``vfd_setpoint_writes_total{drive, result}``) and logged:

==========================  ==============================================================
``refused_mode``            the drive is not in ``control`` mode
``refused_not_writable``    the profile does not mark the point writable
``refused_stale``           ``DriveRuntime.is_fresh`` says no: the last accepted poll is older
                            than two poll intervals, the drive is down, or its data failed a
                            plausibility check
``refused_status``          the status word does not report ready, remote and running (a start
                            needs ready and remote), or reports a fault; no status word refuses
``refused_range``           the value is not finite, or outside [min, max] (or the register)
``refused_slew``            the change since the last value exceeds the slew limit per minute
``refused_budget``          the drive's write budget per hour is spent
==========================  ==============================================================

A write that passes is sent, then read back: ``ok`` if the registers read back are the
ones written, ``verify_failed`` if not, ``failed`` if the drive did not take it (a Modbus
error). With ``dry_run`` nothing is sent: the write is logged and counted as ``dry_run``.

Before its first write to a point, the writer keeps the value the drive had (the
operator's), and ``restore`` writes those back: on shutdown, on stale data, on a fault.
A restore skips the freshness, status and slew guards (it is the way back to the
operator's own settings) but not the profile's writable flag, the value check, the
read-back, or the counting.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from dataclasses import dataclass
from enum import Enum

from agent.config import BusConfig, ControlMode, LoadKind
from agent.config.profile import Point, Quantity
from agent.drive import DriveRuntime
from agent.errors import DriveError
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
                 clock: Clock = time.monotonic, dry_run: bool = False) -> None:
        self.drive = drive
        self.bus = bus
        self.client = client
        self.clock = clock
        self.dry_run = dry_run
        self.control = drive.config.control
        self.results: Counter[str] = Counter()
        self.operator: dict[Quantity, float] = {}  # the drive's values before our first write (agent units)
        self.order: list[Quantity] = []  # points in the order they were first written
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
        self.last_refusal[quantity] = result
        log.log(level, "drive %s: %s write refused (%s): %s", self.name, quantity.value, result.value, why)
        return result

    def _guard(self, point: Point | None, quantity: Quantity, value: float, limits: Limits | None,
               now: float, *, needs_running: bool) -> WriteResult | None:
        if self.control.mode is not ControlMode.CONTROL:
            return self._refuse(quantity, WriteResult.REFUSED_MODE, f"mode is {self.control.mode.value}")
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
            reference, since = self.last.get(quantity, (self.current(quantity), -math.inf))
            elapsed = min(now - since, SLEW_WINDOW_S)
            allowed = limits.slew_per_min * elapsed / 60.0
            if math.isfinite(reference) and abs(value - reference) > allowed + 1e-12:
                return self._refuse(quantity, WriteResult.REFUSED_SLEW,
                                    f"{reference:g} -> {value:g} exceeds {limits.slew_per_min:g}/min "
                                    f"({allowed:g} in {elapsed:.1f} s)")
        while self._writes and now - self._writes[0] >= BUDGET_WINDOW_S:
            self._writes.popleft()
        if len(self._writes) >= self.control.writes_per_hour:
            return self._refuse(quantity, WriteResult.REFUSED_BUDGET, f"{len(self._writes)} writes in the "
                                f"last hour (budget {self.control.writes_per_hour})")
        return None

    def slew_bounded(self, quantity: Quantity, wanted: float, limits: Limits, headroom: float = 1.0) -> float:
        """``wanted`` clamped to the limits and moved no further than ``headroom`` × the slew limit allows."""
        value = min(max(wanted, limits.minimum), limits.maximum)
        reference, since = self.last.get(quantity, (self.current(quantity), -math.inf))
        if not math.isfinite(reference):
            return value
        allowed = headroom * limits.slew_per_min * min(self.clock() - since, SLEW_WINDOW_S) / 60.0
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
            words = encode(point.from_si(self._to_point(point, value)), point.dtype, point.word_order,
                           point.byte_order)
        except ValueError as exc:
            return self._refuse(quantity, WriteResult.REFUSED_RANGE,
                                f"{value:g} does not fit the register: {exc}")
        if quantity not in self.operator:
            operator = self.current(quantity)
            if math.isnan(operator) and quantity is Quantity.CONTROL_WORD:
                operator = 0.0  # a write-only control word: hand back with 0, "no command"
            self.operator[quantity] = operator
        self._writes.append(now)
        self.last_refusal.pop(quantity, None)
        if self.dry_run:
            log.info("drive %s: dry run: would write %s = %g (%s)", self.name, quantity.value, value, reason)
            return self._count(quantity, value, now, WriteResult.DRY_RUN)
        result = await self._write_and_verify(point, words, value, reason)
        return self._count(quantity, value, now, result)

    def _count(self, quantity: Quantity, value: float, now: float, result: WriteResult) -> WriteResult:
        self.results[result.value] += 1
        if result.written:
            self.last[quantity] = (value, now)
            if quantity not in self.order:
                self.order.append(quantity)
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
        """Write back the operator's values (control word first), if configured; forget ours."""
        results: list[WriteResult] = []
        if not self.order:
            return results
        order = sorted(self.order, key=lambda q: q is not Quantity.CONTROL_WORD)
        if self.control.restore:
            for quantity in order:
                value = self.operator.get(quantity, math.nan)
                point = self.drive.config.profile.point(quantity)
                if point is None or not point.writable or not math.isfinite(value):
                    results.append(self._refuse(quantity, WriteResult.REFUSED_RANGE,
                                                f"no operator's value to restore ({value})"))
                    continue
                log.info("drive %s: restoring the operator's %s = %g (%s)", self.name, quantity.value, value,
                         reason)
                now = self.clock()
                try:
                    words = encode(point.from_si(self._to_point(point, value)), point.dtype, point.word_order,
                                   point.byte_order)
                except ValueError as exc:
                    results.append(self._refuse(quantity, WriteResult.REFUSED_RANGE, str(exc)))
                    continue
                self._writes.append(now)
                if self.dry_run:
                    log.info("drive %s: dry run: would write %s = %g (restore)", self.name, quantity.value,
                             value)
                    result = WriteResult.DRY_RUN
                else:
                    result = await self._write_and_verify(point, words, value, f"restore: {reason}")
                self.results[result.value] += 1
                results.append(result)
        else:
            log.info("drive %s: stopping writes (%s); restore_on_stop is off", self.name, reason)
        self.order.clear()
        self.last.clear()
        return results
