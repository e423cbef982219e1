"""The simulator as a compliant Modbus RTU server, driven with raw bytes over a real pty pair.

The frames are built here byte by byte, with a CRC computed here (a bitwise CRC-16/MODBUS
written from the specification, checked against the textbook frame 01 03 00 00 00 01 84 0A),
so the simulator is judged by the specification, not by the agent's own framing code.

The line runs at 1200 baud: t1.5 is 13.75 ms and t3.5 32.1 ms, wide enough that a gap the
test puts inside a frame lands between the two whatever the scheduler does.
"""

from __future__ import annotations

import asyncio
import os
import struct

import pytest

from agent.modbus.rtu import LineTiming
from hil import SimulatedPlant, load_plant
from tests.ptypair import pty_pair
from tests.support import REPO

DEMO = REPO / "configs" / "plants" / "demo.yaml"
BAUD = 1200
SPEED_SETPOINT = 101  # generic profile, 0.01 %
QUIET_S = 0.4  # no reply within this (more than ten t3.5 at 1200 baud) is silence


def crc_modbus(data: bytes) -> bytes:
    """CRC-16/MODBUS: reflected polynomial 0x8005 (0xA001), init 0xFFFF, low byte first on the wire."""
    register = 0xFFFF
    for byte in data:
        for bit in range(8):
            feedback = (register ^ (byte >> bit)) & 1
            register >>= 1
            if feedback:
                register ^= 0xA001
    return bytes([register & 0xFF, register >> 8])


def frame(*parts: int | bytes) -> bytes:
    body = b"".join(bytes([p]) if isinstance(p, int) else p for p in parts)
    return body + crc_modbus(body)


def read_request(unit: int, address: int, count: int, function: int = 3) -> bytes:
    return frame(unit, function, struct.pack(">HH", address, count))


class Master:
    """The test's end of the line: raw writes, raw reads."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

    def close(self) -> None:
        os.close(self.fd)

    def send(self, data: bytes) -> None:
        assert os.write(self.fd, data) == len(data)

    async def receive(self, expected: int | None = None, quiet: float = QUIET_S) -> bytes:
        """Bytes until ``expected`` are in, or until the line stays quiet for ``quiet`` s."""
        got = bytearray()
        idle = 0.0
        while idle < quiet and (expected is None or len(got) < expected):
            try:
                chunk = os.read(self.fd, 512)
            except BlockingIOError:
                chunk = b""
            if chunk:
                got += chunk
                idle = 0.0
            else:
                await asyncio.sleep(0.01)
                idle += 0.01
        return bytes(got)

    async def ask(self, request: bytes, expected: int) -> bytes:
        self.send(request)
        reply = await self.receive(expected)
        assert len(reply) == expected, reply.hex(" ")
        assert crc_modbus(reply[:-2]) == reply[-2:], reply.hex(" ")
        return reply


def run_line(tmp_path, scenario) -> None:
    async def main(a: str, b: str) -> None:
        sim = SimulatedPlant(load_plant(DEMO), seed=2)
        await sim.start_rtu(a, baudrate=BAUD, parity="N", stopbits=2, wire_time=False)
        master = Master(b)
        try:
            async with asyncio.timeout(60):
                await scenario(sim, master)
        finally:
            master.close()
            await sim.stop()

    with pty_pair(tmp_path) as (a, b):
        asyncio.run(main(a, b))


def test_the_crc_is_the_textbook_one():
    assert read_request(1, 0, 1).hex(" ") == "01 03 00 00 00 01 84 0a"


def test_a_broadcast_write_is_carried_out_by_every_drive_and_answered_by_none(tmp_path):
    async def scenario(sim, master):
        units = sorted(sim.units.values())
        before = {unit: (await master.ask(read_request(unit, SPEED_SETPOINT, 1), 7))[3:5] for unit in units}
        assert all(value != struct.pack(">H", 6543) for value in before.values())
        master.send(frame(0, 6, struct.pack(">HH", SPEED_SETPOINT, 6543)))
        assert await master.receive() == b""  # a broadcast is never answered
        for unit in units:
            reply = await master.ask(read_request(unit, SPEED_SETPOINT, 1), 7)
            assert reply[:5] == bytes([unit, 3, 2]) + struct.pack(">H", 6543)
        for name in sim.drive_names:
            assert sim.model.drives[name].remote_setpoint == pytest.approx(0.6543)
        # Function 16 broadcast too; a broadcast read is ignored, not answered.
        master.send(frame(0, 16, struct.pack(">HHB", SPEED_SETPOINT, 1, 2), struct.pack(">H", 5000)))
        assert await master.receive() == b""
        master.send(read_request(0, 0, 2))
        assert await master.receive() == b""
        for unit in units:
            reply = await master.ask(read_request(unit, SPEED_SETPOINT, 1), 7)
            assert reply[3:5] == struct.pack(">H", 5000)
        assert sim.stats.requests[0] == 3

    run_line(tmp_path, scenario)


def test_an_unsupported_function_gets_exception_1(tmp_path):
    async def scenario(sim, master):
        # 0x11 report server id, 0x2B/0x0E read device identification, 0x01 read coils
        for unit, request in ((2, frame(2, 0x11)), (1, frame(1, 0x2B, b"\x0e\x01\x00")),
                              (3, read_request(3, 0, 8, function=1))):
            reply = await master.ask(request, 5)
            assert reply[:3] == bytes([unit, request[1] | 0x80, 0x01]), reply.hex(" ")
        # An absent unit stays silent whatever it is asked.
        master.send(frame(9, 0x11))
        assert await master.receive() == b""

    run_line(tmp_path, scenario)


def test_a_frame_with_a_gap_over_t15_inside_is_discarded(tmp_path):
    line = LineTiming.for_settings(BAUD, "N", 2)
    gap = (line.t15 + line.t35) / 2  # 23 ms: over t1.5, under t3.5
    assert line.t15 == pytest.approx(13.75e-3) and line.t35 == pytest.approx(32.08e-3, abs=1e-4)

    async def scenario(sim, master):
        request = read_request(1, 0, 4)
        await master.ask(request, 13)  # the whole frame is answered
        requests = sim.stats.requests[1]
        master.send(request[:3])
        await asyncio.sleep(gap)
        master.send(request[3:])
        assert await master.receive() == b""
        assert sim.stats.discarded["gap"] == 1 and sim.stats.requests[1] == requests
        await master.ask(request, 13)  # the line is usable again at once
        # A frame cut short (its end never comes) and a bad CRC: discarded too, never answered.
        master.send(request[:5])
        assert await master.receive() == b""
        master.send(request[:-1] + bytes([request[-1] ^ 0x01]))
        assert await master.receive() == b""
        assert sim.stats.discarded["crc"] == 2
        await master.ask(request, 13)

    run_line(tmp_path, scenario)
