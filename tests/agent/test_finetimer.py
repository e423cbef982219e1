"""The RTU client's inter-frame silence: kept in full, waited on a timerfd, never blocking the loop."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from agent.config import Transport
from agent.config.model import BusConfig
from agent.config.profile import RegisterTable
from agent.modbus import finetimer
from agent.modbus.client import BusClient
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


def test_the_client_keeps_the_inter_frame_delay_from_the_reply_it_received():
    """A serial server (RTU over TCP) answering at once: each request comes a full gap after the reply."""
    gap = 0.0033  # not a whole millisecond: the timer's rounding would show

    async def scenario() -> list[float]:
        silences: list[float] = []
        replied = [0.0]
        served = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while request := await reader.read(8):
                    if replied[0]:
                        silences.append(time.monotonic() - replied[0])
                    writer.write(_reply(request))
                    await writer.drain()
                    replied[0] = time.monotonic()
            finally:
                writer.close()
                served.set()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        bus = BusConfig("moxa", Transport.RTU_OVER_TCP, "127.0.0.1", port, 1.0, 0.5, 0, 5.0,
                        baudrate=115200, parity="N", stopbits=2, inter_frame_delay=gap)
        client = BusClient(bus)
        try:
            await client.connect()
            for _ in range(12):
                assert await client.read(1, Block(RegisterTable.HOLDING, 0, 4, ())) == [0, 0, 0, 0]
        finally:
            client.close()
            await asyncio.wait_for(served.wait(), 10.0)  # the server saw the client go
            server.close()
            await server.wait_closed()
        return silences

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
        silences: list[float] = []
        replied = [0.0]

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while request := await reader.read(8):
                    if replied[0]:
                        silences.append(time.monotonic() - replied[0])
                    writer.write(_reply(request))
                    await writer.drain()
                    replied[0] = time.monotonic()
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        bus = BusConfig("moxa", Transport.RTU_OVER_TCP, "127.0.0.1", port, 1.0, 0.5, 0, 5.0,
                        baudrate=115200, parity="N", stopbits=2, inter_frame_delay=gap)
        built: list[float] = []  # how long before the line is free pymodbus handed over each request

        class Watched(BusClient):
            def _trace_packet(self, sending: bool, data: bytes) -> bytes:
                if sending:
                    built.append(self._line_free_at - time.monotonic())
                return super()._trace_packet(sending, data)

        client = Watched(bus)
        try:
            await client.connect()
            for _ in range(5):
                assert await client.read(1, Block(RegisterTable.HOLDING, 0, 4, ())) == [0, 0, 0, 0]
        finally:
            client.close()
            server.close()
            await server.wait_closed()
        return built[1:], silences

    built, silences = asyncio.run(scenario())
    assert len(built) == 4 and min(built) > 0.0, built  # built while the line was still silent
    assert len(silences) == 4 and min(silences) >= gap, silences  # and never sent before the gap
