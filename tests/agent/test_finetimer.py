"""The RTU client's inter-frame silence: kept in full, waited on a timerfd, never blocking the loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from agent.config import Transport
from agent.config.model import BusConfig
from agent.config.profile import RegisterTable
from agent.modbus import client as client_module
from agent.modbus import finetimer
from agent.modbus.client import BusClient, direct_writer
from agent.modbus.readplan import Block
from agent.modbus.rtu import crc16

pytestmark = pytest.mark.skipif(not finetimer.available(), reason="no timerfd on this system")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_sleep_is_never_short_and_the_loop_runs_meanwhile():
    async def scenario() -> tuple[list[float], int]:
        ticks = 0
        stop = asyncio.Event()

        async def other_bus() -> None:  # another task on the same loop
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other_bus())
        waited = []
        for wait in (0.0004, 0.0013, 0.0021, 0.0035):
            started = time.monotonic()
            await finetimer.sleep(wait)
            waited.append(time.monotonic() - started - wait)
        stop.set()
        await task
        return waited, ticks

    waited, ticks = asyncio.run(scenario())
    assert min(waited) >= 0.0, waited  # a timerfd never expires early: t3.5 is kept in full
    assert ticks > 4  # the other task ran while each sleep waited


def test_a_cancelled_sleep_closes_its_timer():
    async def scenario() -> None:
        before = _open_fds()
        task = asyncio.create_task(finetimer.sleep(30.0))
        await asyncio.sleep(0.01)
        assert _open_fds() == before + 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _open_fds() == before

    asyncio.run(scenario())


def test_without_a_timerfd_it_is_asyncio_sleep(monkeypatch):
    monkeypatch.setattr(finetimer, "_LIBC", None)
    assert not finetimer.available()

    async def scenario() -> float:
        started = time.monotonic()
        await finetimer.sleep(0.003)
        return time.monotonic() - started

    assert asyncio.run(scenario()) >= 0.003


def _reply(request: bytes) -> bytes:
    unit, function, count = request[0], request[1], int.from_bytes(request[4:6], "big")
    body = bytes([unit, function, 2 * count]) + bytes(2 * count)
    return body + crc16(body).to_bytes(2, "little")


@dataclass
class Line:
    """Drives answering every 8-byte read request at once with zeroed registers.

    ``silences`` holds, per request after the first, the time from the last reply sent to
    the request's first bytes seen: never shorter than the line's gap if the master keeps it.
    """

    silences: list[float] = field(default_factory=list)
    replied: float = 0.0
    pending: bytes = b""

    def feed(self, data: bytes, send: Callable[[bytes], object]) -> None:
        if not self.pending and self.replied:
            self.silences.append(time.monotonic() - self.replied)
        self.pending += data
        while len(self.pending) >= 8:
            request, self.pending = self.pending[:8], self.pending[8:]
            send(_reply(request))
            self.replied = time.monotonic()


@contextlib.asynccontextmanager
async def answering(transport: Transport, gap: float) -> AsyncIterator[tuple[BusConfig, Line]]:
    """A line of answering drives and the bus that reaches it: a pty (RTU) or a serial server's socket."""
    line = Line()
    loop = asyncio.get_running_loop()
    settings = {"baudrate": 115200, "parity": "N", "stopbits": 2, "inter_frame_delay": gap}
    if transport is Transport.RTU:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)

        def readable() -> None:
            with contextlib.suppress(BlockingIOError, OSError):
                line.feed(os.read(master, 1024), lambda frame: os.write(master, frame))

        loop.add_reader(master, readable)
        try:
            yield BusConfig("line", transport, "", 0, 1.0, 0.5, 0, 5.0, device=os.ttyname(slave),
                            **settings), line
        finally:
            loop.remove_reader(master)
            os.close(master)
            os.close(slave)
        return
    connections: list[asyncio.Transport] = []

    class Serve(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            connections.append(transport)

        def data_received(self, data: bytes) -> None:
            line.feed(data, self.transport.write)

    server = await loop.create_server(Serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield BusConfig("moxa", transport, "127.0.0.1", port, 1.0, 0.5, 0, 5.0, **settings), line
    finally:
        server.close()
        for connection in connections:
            connection.close()
        await server.wait_closed()


_BLOCK = Block(RegisterTable.HOLDING, 0, 4, ())


async def _reads(client: BusClient, count: int) -> None:
    try:
        if not client.connected:
            await client.connect()
        for _ in range(count):
            assert await client.read(1, _BLOCK) == [0, 0, 0, 0]
    finally:
        client.close()


def test_the_client_keeps_the_inter_frame_delay_from_the_reply_it_received():
    """A serial server (RTU over TCP) answering at once: each request comes a full gap after the reply."""
    gap = 0.0033  # not a whole millisecond: the timer's rounding would show

    async def scenario() -> list[float]:
        async with answering(Transport.RTU_OVER_TCP, gap) as (bus, line):
            await _reads(BusClient(bus), 12)
        return line.silences

    silences = asyncio.run(scenario())
    assert len(silences) == 11
    assert min(silences) >= gap, silences


def test_a_timer_calls_back_never_early_and_a_cancelled_one_never():
    async def scenario() -> tuple[list[float], list[str], int, int]:
        before = _open_fds()
        late: list[float] = []
        calls: list[str] = []
        done = asyncio.Event()
        for wait in (0.0004, 0.0021):
            started = time.monotonic()
            finetimer.call_later(wait, lambda w=wait, s=started: late.append(time.monotonic() - s - w))
        cancelled = finetimer.call_later(0.001, lambda: calls.append("cancelled"))
        cancelled.cancel()
        finetimer.call_later(0.01, done.set)
        await asyncio.wait_for(done.wait(), 10.0)
        await asyncio.sleep(0.01)
        return late, calls, before, _open_fds()

    late, calls, before, after = asyncio.run(scenario())
    assert len(late) == 2 and min(late) >= 0.0, late
    assert calls == []  # cancelled before it was due: never called
    assert after == before  # every timer's descriptor closed, fired or cancelled


def test_the_request_is_built_during_the_silence_and_sent_when_it_ends():
    """Only the write is left for the end of t3.5: pymodbus builds the frame while the line is still silent.

    A 50 ms inter-frame delay makes "before the line is free" plain on a loaded machine too.
    """
    gap = 0.05

    async def scenario() -> tuple[list[float], list[float]]:
        built: list[float] = []  # how long before the line is free pymodbus handed over each request

        class Watched(BusClient):
            def _trace_packet(self, sending: bool, data: bytes) -> bytes:
                if sending:
                    built.append(self._line_free_at - time.monotonic())
                return super()._trace_packet(sending, data)

        async with answering(Transport.RTU_OVER_TCP, gap) as (bus, line):
            await _reads(Watched(bus), 5)
        return built[1:], line.silences

    built, silences = asyncio.run(scenario())
    assert len(built) == 4 and min(built) > 0.0, built  # built while the line was still silent
    assert len(silences) == 4 and min(silences) >= gap, silences  # and never sent before the gap


def _serial_reads(gap: float, count: int) -> tuple[list[float], int]:
    """``count`` reads over a pty: the silences before the requests, and how many pymodbus queued."""

    async def scenario() -> tuple[list[float], int]:
        queued = 0
        async with answering(Transport.RTU, gap) as (bus, line):
            client = BusClient(bus)
            await client.connect()
            transport = client._client.ctx.transport
            queue = transport.write

            def counted(data: bytes) -> None:  # pymodbus's write: queued for a writer callback
                nonlocal queued
                queued += 1
                queue(data)

            transport.write = counted
            await _reads(client, count)
        return line.silences, queued

    return asyncio.run(scenario())


def test_on_a_serial_port_the_request_leaves_in_the_timers_callback():
    """The held frame goes to the port when t3.5 ends, not to pymodbus's queue a loop iteration later."""
    gap = 0.0033
    silences, queued = _serial_reads(gap, 12)
    assert len(silences) == 11 and min(silences) >= gap, silences
    assert queued == 0  # every request written straight to the port


def test_a_serial_transport_without_the_port_it_expects_is_paced_by_its_own_write(monkeypatch):
    """Another pymodbus whose serial transport keeps its port elsewhere: its own write, still never early."""
    monkeypatch.setattr(client_module, "SERIAL_PORT_ATTRIBUTE", "no_such_port")
    gap = 0.0033
    silences, queued = _serial_reads(gap, 12)
    assert len(silences) == 11 and min(silences) >= gap, silences
    assert queued == 12  # each request through pymodbus's own write


def test_a_full_port_gets_the_frame_through_the_transports_queue_in_order():
    """EAGAIN (or what the kernel did not take) goes to the transport's own write, behind what it holds."""
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)

        class Port:
            def fileno(self) -> int:
                return write_end

        class Transport:
            sync_serial = Port()

            def __init__(self) -> None:
                self.queued: list[bytes] = []

            def get_write_buffer_size(self) -> int:
                return len(self.queued)

            def write(self, data: bytes) -> None:
                self.queued.append(data)

        transport = Transport()
        write = direct_writer(transport)
        assert write is not None
        write(b"request1")
        assert os.read(read_end, 100) == b"request1" and transport.queued == []  # written at once
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(write_end, bytes(4096))
        write(b"request2")
        assert transport.queued == [b"request2"]  # the pipe was full: queued whole
        os.set_blocking(read_end, False)
        with contextlib.suppress(BlockingIOError):
            while os.read(read_end, 65536):
                pass  # drained: the port takes bytes again, but the queue is not empty
        write(b"request3")
        assert transport.queued == [b"request2", b"request3"]  # behind the queued frame, never before it
        transport.queued.clear()
        transport.sync_serial = None  # type: ignore[assignment]  # closed by pymodbus
        write(b"request4")
        assert transport.queued == []  # nowhere to go: dropped
        with pytest.raises(BlockingIOError):
            os.read(read_end, 100)  # and nothing written
        os.set_blocking(write_end, True)
        assert direct_writer(transport) is None  # a blocking descriptor is never written from the loop
        assert direct_writer(object()) is None  # no port at all: the transport's own write
    finally:
        os.close(read_end)
        os.close(write_end)

