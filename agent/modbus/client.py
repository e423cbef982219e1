"""Modbus I/O over TCP and RTU: the only agent module that imports pymodbus.

It maps pymodbus's failures, including exception replies (which pymodbus
returns rather than raises), to the agent's own ``DriveError`` tree, and owns
reconnection so that pymodbus never reconnects behind the poller's back.

One ``BusClient`` is one connection (a TCP socket or a serial port) shared by
every unit id on it, one transaction at a time. RTU frames go over a serial port
or, through a transparent Ethernet↔RS-485 serial server, over a TCP socket
(``rtu_over_tcp``); on either it keeps the silent interval between frames (t3.5
at the serial side's speed, or the bus's longer ``inter_frame_delay``), books the
line time of the frame-time model, and tells a CRC error (line noise) from a
drive that did not answer.

pymodbus closes a connection after ``retries + 3`` consecutive failed requests;
on a multi-drop line or a gateway those failures may all be one absent drive, so
the client re-arms that count after every failure and leaves the decision to
reconnect to the poller, which sees every drive of the bus.

Hostile replies are checked here, before anything is decoded: a reply whose
function code is not the request's is a protocol error (pymodbus would hand it
over as data), and a Modbus TCP reply whose MBAP length disagrees with its PDU
is refused before pymodbus parses it (which would raise inside asyncio's
protocol callback and log a traceback on every reply); the stream has lost its
framing then, so the connection is dropped. After a timeout on TCP the
connection is dropped too: many gateways serve one request at a time, and one
still busy with a late or trickling reply would hold every other unit's request
behind it; only a fresh connection clears that backlog.
"""

from __future__ import annotations

import asyncio
import os
import struct
import termios
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from agent.config import BusConfig, Transport
from agent.config.profile import RegisterTable
from agent.errors import (
    DriveConnectionError,
    DriveError,
    DriveProtocolError,
    DriveReplyError,
    DriveTimeoutError,
    LineNoiseError,
    UnknownReplyError,
)
from agent.modbus import finetimer
from agent.modbus.readplan import Block, line_timing
from agent.modbus.rtu import READ_REQUEST_BYTES, WRITE_SINGLE_BYTES, LineTiming, crc_ok, response_size

# Exception codes of the Modbus application protocol (1..4, 5, 6, 8, 10, 11); anything else is
# counted under one label, so a drive sending junk cannot grow the label set.
KNOWN_EXCEPTION_CODES = frozenset({1, 2, 3, 4, 5, 6, 8, 10, 11})


def reply_error(function: int, code: int) -> DriveReplyError:
    """The error for an exception reply, with a bounded ``kind``."""
    if code in KNOWN_EXCEPTION_CODES:
        return DriveReplyError(function, code)
    return UnknownReplyError(function, code)


@dataclass
class LineStats:
    """What one bus connection has carried: for ``vfd_bus_utilization_ratio``."""

    transactions: int = 0
    failures: int = 0
    crc_errors: int = 0
    busy_s: float = 0.0  # RTU (also over TCP): theoretical line time; TCP: measured time in flight
    last_exchange_s: float = 0.0  # the last transaction's request sent to reply parsed (for turnaround)


def mbap_mismatch(data: bytes) -> str | None:
    """Why a Modbus TCP reply's MBAP length disagrees with the PDU it carries; None if it agrees.

    Bytes 6.. of a TCP reply (unit id, PDU) are laid out as an RTU frame without its
    CRC, so the RTU rule for a response's size gives the length the MBAP header must say.
    None too while too few bytes are in to tell, or for a function the rule does not know.
    """
    if len(data) < 9:
        return None
    size = response_size(data[6:])
    if size is None:
        return None
    said, needed = int.from_bytes(data[4:6], "big"), size - 2
    if said == needed or (data[7] & 0x80 and said == 2 and len(data) == 9):
        return None  # (devices that say 2 for an exception reply: pymodbus accepts those too)
    return f"MBAP length {said} for a function {data[7] & 0x7F} reply that needs {needed}"


# Where pymodbus 3.x's SerialTransport keeps its pyserial port (``direct_writer``).
SERIAL_PORT_ATTRIBUTE = "sync_serial"


def direct_writer(transport: Any) -> Callable[[bytes], None] | None:
    """A write that puts a frame on a serial port in the caller's loop iteration; None if it cannot.

    pymodbus's serial ``write`` only queues the frame for a writer callback, one event-loop
    iteration (an epoll round trip) later. This writes to the port's non-blocking descriptor at
    once; what the kernel did not take (EAGAIN, a partial write, an error pymodbus then reports),
    and a frame behind one still queued, go to the transport's own ``write``. None for a transport
    without such a port (a socket, which writes at once; another pymodbus) or with a blocking one.
    """
    port = getattr(transport, SERIAL_PORT_ATTRIBUTE, None)
    fileno = getattr(port, "fileno", None)
    buffered = getattr(transport, "get_write_buffer_size", None)
    if fileno is None or buffered is None:
        return None
    try:
        fd = int(fileno())
        if os.get_blocking(fd):
            return None
    except (OSError, ValueError, TypeError):
        return None
    queue: Callable[[bytes], None] = transport.write

    def write(data: bytes) -> None:
        if getattr(transport, SERIAL_PORT_ATTRIBUTE, None) is not port:
            return  # the transport closed its port (and the descriptor with it): nothing to write to
        if not buffered():
            try:
                data = data[os.write(fd, data):]
            except OSError:  # EAGAIN, EINTR, or the port failed: pymodbus's own write tells
                pass
            if not data:
                return
        queue(data)

    return write


class BusClient:
    """One connection to a bus, shared by every drive on it, one request at a time."""

    def __init__(self, bus: BusConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        self.clock = clock
        self.stats = LineStats()
        self.timing: LineTiming | None = line_timing(bus)
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if bus.transport is Transport.RTU:
            self._client = AsyncModbusSerialClient(
                bus.device,
                framer=FramerType.RTU,
                baudrate=bus.baudrate,
                bytesize=8,
                parity=bus.parity,
                stopbits=bus.stopbits,
                timeout=bus.timeout,
                retries=bus.retries,
                reconnect_delay=0,  # the poller reconnects with its own backoff
                name=f"bus {bus.name}",
                trace_packet=self._trace_packet,
            )
        else:
            self._client = AsyncModbusTcpClient(
                bus.host,
                framer=FramerType.RTU if bus.transport.serial_line else FramerType.SOCKET,
                port=bus.port,
                timeout=bus.timeout,
                retries=bus.retries,
                reconnect_delay=0,
                name=f"bus {bus.name}",
                trace_packet=self._trace_packet,
            )
        self._lock = asyncio.Lock()
        self._line_free_at = 0.0
        self._received_at = 0.0
        self._sent_at = 0.0  # the last request's frame went to the transport
        self._held: finetimer.Timer | asyncio.TimerHandle | None = None  # a request waiting out t3.5
        self._bad_crc = False
        self._malformed: str | None = None  # why the last TCP reply was refused unparsed

    @property
    def connected(self) -> bool:
        """True while the transport is up."""
        return bool(self._client.connected)

    async def connect(self) -> None:
        """Open the connection; DriveConnectionError if it cannot be opened in time."""
        try:
            ok = await asyncio.wait_for(self._client.connect(), timeout=self.bus.timeout * 2 + 1.0)
        except (OSError, asyncio.TimeoutError, ModbusException) as exc:
            raise DriveConnectionError(f"cannot connect to {self.bus.address}: {exc}") from exc
        except (termios.error, ValueError) as exc:
            # The OS refused the port's settings (a parity a pty or USB adapter does not support):
            # pyserial raises termios.error, which is no OSError. The port it opened is still held by
            # the failed constructor's frame: drop the traceback, so that it is closed now and the
            # next attempt can lock it.
            raise DriveConnectionError(self._refused(exc)) from exc.with_traceback(None)
        if not ok:
            raise DriveConnectionError(f"cannot connect to {self.bus.address}")

    def _refused(self, exc: Exception) -> str:
        bus = self.bus
        detail = exc.args[-1] if exc.args else exc
        return (f"{bus.device} refuses the line settings {bus.baudrate} baud, 8 data bits, "
                f"parity {bus.parity}, {bus.stopbits} stop bit(s): {detail}; check the bus's baudrate, "
                "parity and stopbits against the port")

    def close(self) -> None:
        """Drop the connection (and a request still held for its silence)."""
        if self._held is not None:
            self._held.cancel()
            self._held = None
        self._client.close()

    async def read(self, unit: int, block: Block) -> list[int]:
        """Read one block from one unit."""
        client = self._client

        def call() -> Awaitable[Any]:
            if block.table is RegisterTable.HOLDING:
                return client.read_holding_registers(block.start, count=block.count, device_id=unit)
            return client.read_input_registers(block.start, count=block.count, device_id=unit)

        response = await self._execute(call, block.table.read_function, 2 * block.count + 5)
        registers = list(getattr(response, "registers", []))
        if len(registers) != block.count:
            raise DriveProtocolError(
                f"asked for {block.count} registers at {block.start}, got {len(registers)}"
            )
        return registers

    async def write(self, unit: int, address: int, values: Sequence[int]) -> None:
        """Write holding registers (function 16, or 6 for a single register)."""
        client = self._client
        if len(values) == 1:
            function = 6

            def call() -> Awaitable[Any]:
                return client.write_register(address, values[0], device_id=unit)
        else:
            function = 16

            def call() -> Awaitable[Any]:
                return client.write_registers(address, list(values), device_id=unit)

        await self._execute(call, function, WRITE_SINGLE_BYTES)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Look at received bytes before pymodbus parses them.

        RTU: notice a complete reply whose CRC is wrong (pymodbus silently drops it).
        TCP: refuse a reply whose MBAP length disagrees with its PDU, handing pymodbus
        nothing to parse, and end the request at once instead of after a timeout.
        """
        if sending:
            return data
        self._received_at = self.clock()  # the line is silent from here (RTU: t3.5 before the next frame)
        if self.timing is not None:
            size = response_size(data)
            if size is not None and len(data) >= size and not crc_ok(data[:size]):
                self._bad_crc = True
            return data
        problem = mbap_mismatch(data)
        if problem is None:
            return data
        self._malformed = problem
        pending = getattr(getattr(self._client, "ctx", None), "response_future", None)
        if isinstance(pending, asyncio.Future) and not pending.done():
            pending.set_exception(ModbusIOException(problem))
        return b""

    async def _execute(self, call: Callable[[], Awaitable[Any]], function: int, response_bytes: int) -> Any:
        # A hard deadline above pymodbus's own timeout × retries, so no request can hang.
        deadline = self.bus.timeout * (self.bus.retries + 1) + 1.0
        async with self._lock:
            if self.timing is not None and not self._pace_writes():
                await finetimer.sleep(self._line_free_at - self.clock())  # no transport to hold a frame in
            self._bad_crc = False
            self._malformed = None
            started = self._sent_at = self.clock()
            ok = False
            try:
                response = await asyncio.wait_for(call(), timeout=deadline)
                ok = True
            except asyncio.TimeoutError as exc:
                raise self._no_answer(f"no answer within {deadline:g} s") from exc
            except ConnectionException as exc:
                raise DriveConnectionError(str(exc)) from exc
            except ModbusIOException as exc:
                if self._malformed is not None:
                    raise self._framing_lost() from exc
                if not self.connected:
                    raise DriveConnectionError(str(exc)) from exc
                text = str(exc)
                if "No response" in text:
                    raise self._no_answer(text) from exc
                raise DriveProtocolError(text) from exc
            except (ModbusException, ValueError, struct.error) as exc:
                raise DriveProtocolError(str(exc)) from exc
            except OSError as exc:
                raise DriveConnectionError(str(exc)) from exc
            finally:
                self._account(started, ok, response_bytes)
        if response is None:
            raise DriveProtocolError("empty response")
        replied = int(getattr(response, "function_code", 0)) & 0x7F
        if replied != function:
            raise DriveProtocolError(f"asked with function {function}, the reply is function {replied}")
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise reply_error(function, code)
        return response

    def _pace_writes(self) -> bool:
        """Make the transport put each frame on the line no sooner than the silence before it allows.

        The request is built at once and held; a timerfd (``finetimer.call_later``) writes it the
        moment t3.5 (or the bus's ``inter_frame_delay``) has passed since the last reply's last
        byte. Awaiting that silence before asking pymodbus for the request cost a task wake-up,
        building the frame and pymodbus's deferred serial write after it: about 0.3 ms of idle
        line per read (1.5 % of a 19200-baud line, more at 115200). Timed in asyncio's
        millisecond timers it lost half a millisecond per read; sleeping it blocking would hold
        every other bus and the endpoint. pymodbus's timeout runs from its send, so it grows
        by at most that one silence. On a serial port the frame is written to the port's
        descriptor in the timer's callback (``direct_writer``). Returns
        False if pymodbus shows no transport to hold the frame in (then the silence is awaited
        before the request, as before): the frame is never sent early either way.
        """
        transport = getattr(getattr(self._client, "ctx", None), "transport", None)
        if transport is None:
            return False
        if getattr(transport, "_vfd_paced", False):
            return True
        write = direct_writer(transport) or transport.write

        def paced(data: bytes) -> None:
            wait = self._line_free_at - self.clock()
            if wait <= 0.0:
                self._sent(write, data)
                return
            self._held = finetimer.call_later(wait, lambda: self._sent(write, data))

        transport.write = paced
        transport._vfd_paced = True  # a new transport (after a reconnect) is wrapped anew
        return True

    def _sent(self, write: Callable[[bytes], None], data: bytes) -> None:
        self._held = None
        if self.connected:
            self._sent_at = self.clock()  # the exchange (and the turnaround learned from it) starts here
            write(data)

    def _no_answer(self, text: str) -> DriveError:
        if self._malformed is not None:
            return self._framing_lost()
        if self._bad_crc:
            self.stats.crc_errors += 1
            return LineNoiseError(f"reply failed its CRC check (line noise?); {text}")
        if self.bus.transport.socket:
            # A one-request-at-a-time gateway may still be busy with this request (or send its
            # reply into the next one's); a fresh connection clears that backlog.
            self.close()
            return DriveTimeoutError(f"{text}; connection reopened")
        return DriveTimeoutError(text)

    def _framing_lost(self) -> DriveError:
        """A TCP reply whose MBAP length was wrong: the stream has lost its framing, so reopen it."""
        self.close()
        return DriveProtocolError(f"{self._malformed}; connection reopened")

    def _account(self, started: float, ok: bool, response_bytes: int) -> None:
        now = self.clock()
        if self._held is not None:  # failed before its silence was over: it never goes out
            self._held.cancel()
            self._held = None
        started = max(started, self._sent_at)
        self.stats.transactions += 1
        self.stats.last_exchange_s = now - started
        if not ok:
            self.stats.failures += 1
            # One silent drive must never make pymodbus close a line the others still answer on.
            ctx = getattr(self._client, "ctx", None)
            if ctx is not None and hasattr(ctx, "max_until_disconnect"):
                ctx.count_until_disconnect = ctx.max_until_disconnect
        if self.timing is None:
            self.stats.busy_s += now - started
            return
        # Silent since the reply's last byte came in (parsing it is no line time); a failed read: now.
        last = self._received_at if ok and started <= self._received_at <= now else now
        self._line_free_at = last + self.timing.gap
        if ok:
            chars = READ_REQUEST_BYTES + response_bytes
            self.stats.busy_s += self.timing.frame_time(chars) + 2.0 * self.timing.gap
        else:
            waited = now - started
            self.stats.busy_s += self.timing.frame_time(READ_REQUEST_BYTES) + self.timing.gap + waited
