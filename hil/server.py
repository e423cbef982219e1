"""A whole plant served as Modbus drives: over TCP like a gateway, or over an RTU serial line.

The Modbus server side is implemented here, on asyncio streams and a serial
port, rather than with pymodbus's server, because a fault-injecting drive has to
do what no library server does on purpose: stay silent for one unit, answer
late, cut a frame short, put garbage or a flipped bit on the wire, or drop the
connection (``hil.faults``). It serves function codes 3 and 4 (read holding and
input registers), 6 and 16 (write one or several holding registers); others get
exception 1.

- TCP: one unit id per drive; unit ids the plant does not have get exception
  0x0B (gateway target failed to respond), as from a real gateway.
- RTU: frames are delimited by silence, as the serial-line specification says: a
  frame ends after t3.5 without a character, and a frame with a silence longer
  than t1.5 inside it is discarded, as is one with a bad CRC or size (counted in
  ``ServeStats.discarded``); an absent unit stays silent, as on a real line. A broadcast (unit
  0) write is carried out by every drive and answered by none. With ``wire_time``
  the reply comes when it would end on a real line at the line's baud rate (request
  frame, t3.5, the drive's ``turnaround``, response frame), so a pseudo-terminal
  behaves like a real line.
- RTU over TCP: the same line behind a transparent serial server (Moxa NPort, USR,
  Lantronix): RTU frames with their CRC in a TCP stream, no MBAP header; the line
  answers one frame at a time whichever connection sent it, and a reply goes to the
  connection that asked (lost if that one has closed). The faults are the RTU ones: a
  ``drop`` is silence (a drive on a serial line cannot close a socket).

The physics runs on the event loop (a task stepping it every physics step, and
every request catching it up first), so no locks are needed; other threads,
such as a Prometheus scrape, read only immutable snapshots.

Long because it is a whole Modbus server with its fault injection, on three transports that
share the request handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.config.profile import Quantity, RegisterTable
from agent.modbus import finetimer
from agent.modbus.rtu import LineTiming, crc16, crc_ok
from hil.faults import ActiveFault, Fault, FaultSpec
from hil.model import DriveSnapshot, PlantModel
from hil.plantfile import DriveSpec, PlantSpec
from hil.registers import DriveAnswer, DriveRegisters

log = logging.getLogger(__name__)

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 0x01, 0x02, 0x03
GATEWAY_NO_RESPONSE = 0x0B
MAX_READ, MAX_WRITE = 125, 123
_RESULT_CODES = {DriveAnswer.ILLEGAL_ADDRESS: ILLEGAL_ADDRESS, DriveAnswer.ILLEGAL_VALUE: ILLEGAL_VALUE}
MAX_RTU_FRAME = 256  # bytes: unit id, PDU of at most 253, CRC
BROADCAST = 0
WRITE_FUNCTIONS = (6, 16)
FINE_WAIT_S = 1e-3  # the last stretch of an emulated wire time, slept blocking
SPIN_S = 2.5e-4  # and the last of that spun (a blocking sleep wakes ~0.1 ms late)


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """Unit id, PDU and CRC."""
    body = bytes([unit]) + pdu
    return body + crc16(body).to_bytes(2, "little")


def _exception(function: int, code: int) -> bytes:
    return bytes([(function | 0x80) & 0xFF, code])


@dataclass
class _Reply:
    """What to put on the wire for one request."""

    pdu: bytes | None  # None: stay silent
    delay: float = 0.0
    mangle: Fault | None = None  # garbage, truncated or noise
    drop: bool = False  # close the TCP connection instead


@dataclass
class ServeStats:
    """What the simulator saw, for tests and the soak bench."""

    requests: Counter[int]  # per unit id
    line_busy_s: float = 0.0  # RTU: emulated wire time
    connections: int = 0  # TCP connections accepted (Modbus TCP and the serial server)
    discarded: Counter[str] = field(default_factory=Counter)  # RTU frames: gap, crc, size


class _DriveEndpoint:
    """One drive's registers and faults."""

    def __init__(self, plant: SimulatedPlant, spec: DriveSpec) -> None:
        self.plant = plant
        self.spec = spec
        in_circuit = any(spec.name in c.drives for c in plant.spec.circuits)
        self.registers = DriveRegisters(spec, in_circuit)
        self.faults: dict[Fault, ActiveFault] = {}


class SimulatedPlant:
    """A plant's physics plus its drives served over Modbus TCP and/or RTU.

    The physics clock starts when the plant is created; ``update()`` catches the
    physics up to the clock, which the server also does on every request and a
    background task does every physics step while serving.
    """

    def __init__(
        self, spec: PlantSpec, *, clock: Callable[[], float] = time.monotonic, seed: int = 0
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.model = PlantModel(spec)
        self._t0 = clock()
        self._endpoints = {d.name: _DriveEndpoint(self, d) for d in spec.drives}
        self._by_unit = {d.unit: self._endpoints[d.name] for d in spec.drives}
        self._rng = random.Random(seed)
        self._tcp: asyncio.Server | None = None
        self._rtu: _RtuPort | None = None
        self._serial_server: asyncio.Server | None = None
        self._serial_server_line: _RtuLine | None = None
        self.serial_server_address = ("", 0)  # HOST, PORT of the RTU over TCP server
        self._physics: asyncio.Task[None] | None = None
        self._asked_at = -math.inf  # monotonic time of the last request, which stepped the physics
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.stats = ServeStats(Counter())
        self.host = ""
        self.port = 0
        self.device = ""
        for drive in spec.drives:
            for fault in getattr(drive, "faults", ()):
                self._start_fault(self._endpoints[drive.name], fault)

    @property
    def drive_names(self) -> tuple[str, ...]:
        """Names of the drives, in plant-file order."""
        return tuple(d.name for d in self.spec.drives)

    @property
    def units(self) -> dict[str, int]:
        """Unit id of each drive."""
        return {d.name: d.unit for d in self.spec.drives}

    @property
    def profile_names(self) -> dict[str, str]:
        """Name of the register-map profile each drive is served through."""
        return {d.name: d.profile.name for d in self.spec.drives}

    @property
    def serving(self) -> bool:
        """True between start() (or start_rtu(), start_rtu_over_tcp()) and stop()."""
        return self._tcp is not None or self._rtu is not None or self._serial_server is not None

    def update(self) -> None:
        """Advance the physics to the clock."""
        self.model.advance_to(self.now())

    def now(self) -> float:
        """Seconds since the simulation started."""
        return self.clock() - self._t0

    def snapshot(self, name: str) -> DriveSnapshot:
        """Latest physics state of a drive (as of the last step; see update())."""
        return self.model.snapshot(name)

    def true_energy_j(self, name: str) -> float:
        """True electrical energy the drive has drawn since the start [J]."""
        return self.model.snapshot(name).energy

    def true_baseline_energy_j(self, name: str) -> float:
        """What the machine without a VFD would have drawn since the start [J]: its physics."""
        return self.model.snapshot(name).baseline_energy

    def formula_baseline_energy_j(self, name: str) -> float:
        """The baseline method's formula integrated on the true state since the start [J]: what to book."""
        return self.model.snapshot(name).formula_baseline_energy

    def set_remote_setpoint(self, name: str, ratio: float | None) -> None:
        """Set (or with None, release) a drive's fieldbus speed setpoint, as a Modbus write would."""
        self.model.drives[name].remote_setpoint = ratio
        registers = self._endpoints[name].registers
        if ratio is None:
            registers.held.pop(Quantity.SPEED_SETPOINT, None)

    # --- faults -------------------------------------------------------------------------------

    def inject(self, name: str, fault: Fault | str, **params: float) -> FaultSpec:
        """Give a drive a fault (see ``hil.faults``) from now on; replaces one of the same kind."""
        endpoint = self._endpoint(name)
        spec = FaultSpec.make(Fault(fault), **params)
        self._start_fault(endpoint, spec)
        log.info("drive %s: fault %s injected %s", name, spec.kind.value, params or "")
        return spec

    def clear(self, name: str, fault: Fault | str | None = None) -> None:
        """End one fault of a drive, or all of them."""
        endpoint = self._endpoint(name)
        kinds = list(endpoint.faults) if fault is None else [Fault(fault)]
        for kind in kinds:
            if endpoint.faults.pop(kind, None) is not None:
                self._undo_fault(endpoint, kind)
        log.info("drive %s: faults cleared (%s)", name, ", ".join(k.value for k in kinds) or "none")

    def faults(self, name: str) -> tuple[Fault, ...]:
        """Faults in force on a drive."""
        endpoint = self._endpoint(name)
        self._expire(endpoint)
        return tuple(endpoint.faults)

    def _endpoint(self, name: str) -> _DriveEndpoint:
        try:
            return self._endpoints[name]
        except KeyError:
            raise KeyError(f"no drive {name!r}; drives: {', '.join(self._endpoints)}") from None

    def _start_fault(self, endpoint: _DriveEndpoint, spec: FaultSpec) -> None:
        self.update()
        regs = endpoint.registers
        endpoint.faults[spec.kind] = ActiveFault(spec, self.now())
        if spec.kind is Fault.STUCK:
            regs.stuck_at = self.snapshot(endpoint.spec.name)
        elif spec.kind is Fault.NAN:
            regs.power_unavailable = True
        elif spec.kind is Fault.IMPLAUSIBLE:
            regs.power_factor = spec.factor
        elif spec.kind is Fault.RESTART:
            # Counters start again from zero when the drive comes back.
            regs.counter_offset = self.snapshot(endpoint.spec.name).measured.energy_counter
            regs.held.clear()

    @staticmethod
    def _undo_fault(endpoint: _DriveEndpoint, kind: Fault) -> None:
        regs = endpoint.registers
        if kind is Fault.STUCK:
            regs.stuck_at = None
        elif kind is Fault.NAN:
            regs.power_unavailable = False
        elif kind is Fault.IMPLAUSIBLE:
            regs.power_factor = 1.0

    def _expire(self, endpoint: _DriveEndpoint) -> None:
        restart = endpoint.faults.get(Fault.RESTART)
        if restart is not None and self.now() >= restart.since + restart.spec.duration_s:
            del endpoint.faults[Fault.RESTART]

    # --- requests -----------------------------------------------------------------------------

    def answer(self, unit: int, pdu: bytes, rtu: bool) -> _Reply:
        """The reply to one request PDU for a unit, faults applied."""
        self.stats.requests[unit] += 1
        endpoint = self._by_unit.get(unit)
        if endpoint is None:
            return _Reply(None if rtu else _exception(pdu[0] if pdu else 0, GATEWAY_NO_RESPONSE))
        self._expire(endpoint)
        faults = endpoint.faults
        if Fault.RESTART in faults:
            return _Reply(None)
        hit = {kind: f.spec for kind, f in faults.items() if kind.on_wire and f.spec.hits(self._rng)}
        if Fault.TIMEOUT in hit:
            return _Reply(None)
        if Fault.DROP in hit:
            return _Reply(None, drop=not rtu)
        function = pdu[0] if pdu else 0
        if Fault.EXCEPTION in hit:
            reply = _Reply(_exception(function, hit[Fault.EXCEPTION].code))
        else:
            reply = _Reply(self._execute(endpoint, pdu))
        if rtu:
            reply.delay = endpoint.spec.turnaround  # the drive's own time to answer (turnaround_ms)
        if Fault.SLOW in hit:
            reply.delay += hit[Fault.SLOW].delay_s
        for kind in (Fault.GARBAGE, Fault.TRUNCATED, Fault.NOISE):
            if kind in hit:
                reply.mangle = kind
        return reply

    def broadcast(self, pdu: bytes) -> None:
        """A request to unit 0: every drive carries out a write; nothing is answered, reads are ignored."""
        self.stats.requests[BROADCAST] += 1
        if pdu and pdu[0] in WRITE_FUNCTIONS:
            for endpoint in self._endpoints.values():
                self._execute(endpoint, pdu)

    def _execute(self, endpoint: _DriveEndpoint, pdu: bytes) -> bytes:
        """Carry out a request on a drive's registers; the response PDU."""
        self.update()
        self._asked_at = time.monotonic()
        snapshot = self.snapshot(endpoint.spec.name)
        regs = endpoint.registers
        function = pdu[0]
        if function in (3, 4) and len(pdu) == 5:
            address, count = struct.unpack(">HH", pdu[1:5])
            if not 1 <= count <= MAX_READ:
                return _exception(function, ILLEGAL_VALUE)
            table = RegisterTable.HOLDING if function == 3 else RegisterTable.INPUT
            values = regs.read(table, address, count, snapshot)
            if values is None:
                return _exception(function, ILLEGAL_ADDRESS)
            return bytes([function, 2 * count]) + struct.pack(f">{count}H", *values)
        if function == 6 and len(pdu) == 5:
            address, value = struct.unpack(">HH", pdu[1:5])
            return self._write(endpoint, function, address, [value], snapshot) or pdu
        if function == 16 and len(pdu) >= 6:
            address, count, size = struct.unpack(">HHB", pdu[1:6])
            if not 1 <= count <= MAX_WRITE or size != 2 * count or len(pdu) != 6 + size:
                return _exception(function, ILLEGAL_VALUE)
            values = list(struct.unpack(f">{count}H", pdu[6:]))
            return self._write(endpoint, function, address, values, snapshot) or pdu[:5]
        if function in (3, 4, 6, 16):
            return _exception(function, ILLEGAL_VALUE)
        return _exception(function, ILLEGAL_FUNCTION)

    def _write(
        self, endpoint: _DriveEndpoint, function: int, address: int, values: list[int],
        snapshot: DriveSnapshot,
    ) -> bytes | None:
        result, ratio = endpoint.registers.write(address, values, snapshot)
        if result is not DriveAnswer.OK:
            return _exception(function, _RESULT_CODES[result])
        if ratio is not None:
            self.model.drives[endpoint.spec.name].remote_setpoint = ratio
        for quantity, value in endpoint.registers.last_write.items():  # control word, pressure setpoint
            self.model.command(endpoint.spec.name, quantity, value)
        return None

    def mangle(self, frame: bytes, kind: Fault | None) -> bytes:
        if kind is Fault.GARBAGE:
            return bytes(self._rng.randrange(256) for _ in range(max(len(frame), 4)))
        if kind is Fault.TRUNCATED:
            return frame[: max(1, len(frame) // 2)]
        if kind is Fault.NOISE:
            position = self._rng.randrange(len(frame))
            flipped = frame[position] ^ (1 << self._rng.randrange(8))
            return frame[:position] + bytes([flipped]) + frame[position + 1 :]
        return frame

    # --- Modbus TCP ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve over Modbus TCP (port 0: any free port, see ``self.port``) and start the physics."""
        if self._tcp is not None:
            raise RuntimeError("the simulated plant is already serving TCP")
        try:
            server = await asyncio.start_server(self._serve_tcp, host, port)
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound = server.sockets[0].getsockname()
        self.host, self.port = str(bound[0]), int(bound[1])
        self._tcp = server
        self._start_physics()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._connection(writer):
            await self._serve_mbap(reader, writer)

    @contextlib.contextmanager
    def _connection(self, writer: asyncio.StreamWriter) -> Iterator[None]:
        """Track an accepted connection (``drop_connections``, ``stop``) and close it at the end."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._writers.add(writer)
        self.stats.connections += 1
        try:
            yield
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            self._connections.discard(task)
            writer.close()

    async def _serve_mbap(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            header = await reader.readexactly(7)
            tid, protocol, length, unit = struct.unpack(">HHHB", header)
            if protocol != 0 or not 2 <= length <= 254:
                break  # not Modbus: hang up, as a gateway does
            pdu = await reader.readexactly(length - 1)
            reply = self.answer(unit, pdu, rtu=False)
            if reply.drop:
                break
            if reply.pdu is None:
                continue
            frame = self.mangle(struct.pack(">HHHB", tid, 0, len(reply.pdu) + 1, unit) + reply.pdu,
                                reply.mangle)
            if reply.delay:
                # Late, but without holding up the other units' replies on this connection.
                self.loop_later(reply.delay, writer, frame)
                continue
            writer.write(frame)
            await writer.drain()

    def loop_later(self, delay: float, writer: asyncio.StreamWriter, frame: bytes) -> None:
        """Write a frame after ``delay`` s, if the connection is still open then."""

        def late() -> None:
            if not writer.is_closing():
                writer.write(frame)

        asyncio.get_running_loop().call_later(delay, late)

    def drop_connections(self) -> int:
        """Close every open TCP connection now (a gateway or serial server that reboots); returns how many."""
        writers = list(self._writers)
        for writer in writers:
            writer.close()
        return len(writers)

    # --- Modbus RTU and RTU over TCP ------------------------------------------------------------

    async def start_rtu(
        self, device: str | int, *, baudrate: int = 19200, parity: str = "E", stopbits: int = 1,
        wire_time: bool = True,
    ) -> None:
        """Serve every drive as a unit on an RTU line at ``device`` (a serial port or a pty).

        ``device`` may also be the descriptor of an open terminal, which the simulator then owns:
        the master side of ``os.openpty()``, whose other side the agent opens by its path, joins
        the two with no relay process (socat) adding its wake-ups to every frame.
        """
        if self._rtu is not None:
            raise RuntimeError("the simulated plant is already serving RTU")
        self._rtu = _RtuPort(self, device, baudrate, parity, stopbits, wire_time)
        try:
            self._rtu.open()
        except OSError:
            self._rtu = None
            raise
        self.device = str(device)
        self._start_physics()

    async def start_rtu_over_tcp(
        self, host: str = "127.0.0.1", port: int = 0, *, baudrate: int = 19200, parity: str = "E",
        stopbits: int = 1, wire_time: bool = True,
    ) -> None:
        """Serve every drive on one RTU line behind a transparent serial server at HOST:PORT.

        The line's settings are its serial side's: they set the frame times (``wire_time``) and
        the silence that ends a frame. Port 0 picks a free port (see ``serial_server_address``).
        """
        if self._serial_server is not None:
            raise RuntimeError("the simulated plant is already serving RTU over TCP")
        line = _line(self, baudrate, parity, stopbits, wire_time, f"{host}:{port}")
        try:
            server = await asyncio.start_server(
                lambda r, w: self._serve_serial_server(line, r, w), host, port)
        except OSError as exc:
            await line.close()
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound = server.sockets[0].getsockname()
        self.serial_server_address = (str(bound[0]), int(bound[1]))
        self._serial_server, self._serial_server_line = server, line
        self._start_physics()

    async def _serve_serial_server(
        self, line: _RtuLine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One connection to the serial server: its bytes go onto the line, the replies come back."""

        def reply(frame: bytes) -> None:
            if not writer.is_closing():
                writer.write(frame)

        receiver = line.receiver(reply)
        try:
            with self._connection(writer):
                while data := await reader.read(4096):
                    receiver.feed(data)
        finally:
            receiver.close()

    def _start_physics(self) -> None:
        if self._physics is None:
            self._physics = asyncio.create_task(self._run_physics(), name="hil physics")

    async def _run_physics(self) -> None:
        """Step the physics while no request does (each request steps it to its own moment).

        A step of the task advances a whole step's physics, ~1 ms of the simulator's one thread:
        it once fell, now and then, on the moment an RTU reply was due and made it late (12 % of
        replies at 115200 baud, by 0.5..4 ms), which the agent waited for as if it were line time;
        a drive's reply does not wait for the plant's physics.
        """
        while True:
            if time.monotonic() - self._asked_at >= 2 * self.spec.step:
                self.update()
            await asyncio.sleep(self.spec.step)

    async def stop(self) -> None:
        """Stop serving and the physics task; a restart resumes the kept state, caught up to the clock."""
        server, rtu, task = self._tcp, self._rtu, self._physics
        serial_server, line = self._serial_server, self._serial_server_line
        self._tcp = self._rtu = self._physics = self._serial_server = self._serial_server_line = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if rtu is not None:
            await rtu.close()
        servers = [srv for srv in (server, serial_server) if srv is not None]
        for srv in servers:
            srv.close()
        if servers:
            # Connections accepted just before the close have a task that has not run yet: let it
            # register (``_connection``), or it would be cancelled unstarted with its socket open.
            for _ in range(3):
                await asyncio.sleep(0)
            writers = list(self._writers)
            self.drop_connections()
            connections = list(self._connections)
            for connection in connections:
                connection.cancel()
            await asyncio.gather(*connections, return_exceptions=True)
            for writer in writers:  # the sockets really closed before stop() returns (a loop may end next)
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            for srv in servers:
                await srv.wait_closed()
        if line is not None:
            await line.close()


class _RtuLine:
    """One RS-485 line carrying RTU frames for every drive of a plant, one transaction at a time.

    Bytes come from one or more sources (the serial port, or the connections of a serial
    server), each framed by silence on its own (``_FrameReceiver``); the replies go back to
    the source that asked, so a late reply to a connection that was closed is lost, as in a
    serial server that dropped that connection.
    """

    def __init__(self, plant: SimulatedPlant, line: LineTiming, wire: LineTiming | None, name: str) -> None:
        self.plant = plant
        self.line = line  # frames end at its t3.5
        self.timing = wire  # None: replies without emulated wire time
        # A frame, where its reply goes, and when its last byte came in (loop time).
        self.frames: asyncio.Queue[tuple[bytes, Callable[[bytes], None], float]] = asyncio.Queue()
        self.worker = asyncio.create_task(self._work(), name=f"hil rtu {name}")

    def receiver(self, reply: Callable[[bytes], None]) -> _FrameReceiver:
        """A framer for one source of bytes whose replies go to ``reply``."""
        return _FrameReceiver(self, reply)

    async def _work(self) -> None:
        """Answer frames one at a time, as one line carries one transaction at a time.

        With wire time, a reply is handed over when its last character would arrive on a real
        line: the request frame, its t3.5, the drive's turnaround, the response frame; the
        master keeps its own t3.5 before the next request. The moment is reckoned from when the
        request's bytes came in (a pty or a socket delivers them at once), so the end-of-frame
        timer's own lateness is not charged a second time.
        """
        loop = asyncio.get_running_loop()
        free_at = 0.0  # when the emulated line is silent again after the last transaction
        while True:
            frame, reply_to, arrived = await self.frames.get()
            start = max(arrived, free_at)  # the request went onto the line (after the last reply)
            unit, pdu = frame[0], frame[1:-2]
            if unit == BROADCAST:
                self.plant.broadcast(pdu)
                if self.timing is not None:
                    self.plant.stats.line_busy_s += self.timing.frame_time(len(frame)) + self.timing.gap
                    free_at = start + self.timing.frame_time(len(frame)) + self.timing.gap
                continue
            reply = self.plant.answer(unit, pdu, rtu=True)
            response = rtu_frame(unit, reply.pdu) if reply.pdu is not None else b""
            if self.timing is None:
                due = loop.time() + reply.delay
            else:
                request_end = start + self.timing.frame_time(len(frame)) + self.timing.gap
                due = request_end + reply.delay + self.timing.frame_time(len(response))
                self.plant.stats.line_busy_s += (self.timing.frame_time(len(frame) + len(response))
                                                 + 2 * self.timing.gap)
                free_at = due + self.timing.gap if response else request_end
            await _sleep_until(loop, due)
            if response:
                reply_to(self.plant.mangle(response, reply.mangle))

    async def close(self) -> None:
        self.worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.worker


async def _sleep_until(loop: asyncio.AbstractEventLoop, due: float) -> None:
    """Wait until loop time ``due``, to within a few microseconds, as a UART's last character ends on time.

    Up to its last millisecond on a timerfd (``finetimer``; asyncio's timers round up to whole
    milliseconds, a third of a frame at 115200 baud), that millisecond blocking, so nothing else
    on the loop can start in it (the line carries one transaction at a time anyway), and the last
    ``SPIN_S`` of it spun: a blocking sleep wakes 0.05..0.1 ms late (median: its timer slack and
    the wake-up), which the agent waited for on every read as if it were line time.
    """
    await finetimer.sleep(due - loop.time() - FINE_WAIT_S)
    remaining = due - loop.time() - SPIN_S
    if remaining > 0:
        time.sleep(min(remaining, FINE_WAIT_S))
    while loop.time() < due:
        pass


class _FrameReceiver:
    """Bytes from one source cut into RTU frames by silence, as the serial-line specification says."""

    def __init__(self, line: _RtuLine, reply: Callable[[bytes], None]) -> None:
        self.line = line
        self.reply = reply
        self.buffer = bytearray()
        self.last_char_at = 0.0
        self.broken = False
        self.end_timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    def feed(self, data: bytes) -> None:
        """Characters arrived now."""
        now = self.loop.time()
        timing = self.line.line
        if self.buffer:
            silence = now - self.last_char_at
            if silence >= timing.t35:
                self._end_frame()  # the end-of-frame timer was late: what came before is a frame
            elif silence > timing.t15:
                self.broken = True  # a gap inside a frame: it is discarded when it ends
        self.buffer += data
        self.last_char_at = now
        if self.end_timer is not None:
            self.end_timer.cancel()
        self.end_timer = self.loop.call_later(timing.t35, self._end_frame)

    def _end_frame(self) -> None:
        """t3.5 of silence: the frame is complete; queue it if it is whole and its CRC checks out."""
        self.close()
        frame, broken = bytes(self.buffer), self.broken
        self.buffer.clear()
        self.broken = False
        discarded = self.line.plant.stats.discarded
        if broken:
            discarded["gap"] += 1
        elif not 4 <= len(frame) <= MAX_RTU_FRAME:
            discarded["size"] += 1
        elif not crc_ok(frame):
            discarded["crc"] += 1  # the master will time out and ask again
        else:
            self.line.frames.put_nowait((frame, self.reply, self.last_char_at))

    def close(self) -> None:
        """Stop waiting for the end of a frame."""
        if self.end_timer is not None:
            self.end_timer.cancel()
            self.end_timer = None


class _RtuPort:
    """One serial port (or pseudo-terminal) carrying an RTU line."""

    def __init__(self, plant: SimulatedPlant, device: str | int, baudrate: int, parity: str, stopbits: int,
                 wire_time: bool) -> None:
        self.plant = plant
        self.device = device
        self.settings = (baudrate, parity, stopbits)
        self.wire_time = wire_time
        self.serial: Any = None
        self.fd = -1
        self.line: _RtuLine | None = None
        self.receiver: _FrameReceiver | None = None
        self.loop = asyncio.get_running_loop()

    def open(self) -> None:
        import serial  # type: ignore[import-untyped]  # pyserial; only needed for RTU

        baudrate, parity, stopbits = self.settings
        if isinstance(self.device, int):
            self.fd = self.device  # an open terminal (a pty's master side), ours from now on
            os.set_blocking(self.fd, False)
        else:
            try:
                self.serial = serial.Serial(self.device, baudrate=baudrate, parity=parity, stopbits=stopbits,
                                            bytesize=8, timeout=0, write_timeout=0, exclusive=True)
            except (serial.SerialException, ValueError) as exc:
                raise OSError(f"cannot open {self.device}: {exc}") from exc
            self.fd = self.serial.fileno()
        self.line = _line(self.plant, baudrate, parity, stopbits, self.wire_time, str(self.device))
        self.receiver = self.line.receiver(self._write)
        self.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data and self.receiver is not None:
            self.receiver.feed(data)  # nothing: the other end of a pty is not open (yet)

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.fd, data)

    async def close(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            if self.serial is not None:
                self.serial.close()
            else:
                os.close(self.fd)
            self.serial, self.fd = None, -1
        if self.line is not None:
            await self.line.close()


def _line(plant: SimulatedPlant, baudrate: int, parity: str, stopbits: int, wire_time: bool, name: str
          ) -> _RtuLine:
    timing = LineTiming.for_settings(baudrate, parity, stopbits)
    return _RtuLine(plant, timing, timing if wire_time else None, name)
