"""Hostile and broken Modbus TCP replies, from a gateway written here on raw asyncio sockets.

The gateway serves several unit ids on one connection, one request at a time, as many
Ethernet-to-RS485 gateways do. The registers come from the simulated plant (``answer``
gives the correct reply PDU, physics included); what the gateway then puts on the wire is
its own: the wrong function code, an MBAP length shorter than the payload, or a reply
trickled one byte a second. The real agent (its pollers, its pymodbus client) polls it.

The gateway runs on its own thread and event loop (``DeviceLoop``), as a real gateway is its
own device.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import struct
import textwrap
import time
from enum import Enum

import pytest

from agent.config import load_config
from agent.modbus.client import mbap_mismatch
from agent.service import Agent
from hil import SimulatedPlant, load_plant
from tests.support import REPO, DeviceLoop, async_wait_until

DEMO = REPO / "configs" / "plants" / "demo.yaml"
INTERVAL = 0.5
UNITS = (1, 2, 3, 4)


class Reply(Enum):
    """What the gateway does with one unit's replies."""

    OK = "ok"
    WRONG_FUNCTION = "wrong_function"  # fc 4 in the reply to fc 3 (and 3 to 4)
    SHORT_MBAP = "short_mbap"  # MBAP length 4 bytes short of the payload that follows
    TRICKLE = "trickle"  # one byte every TRICKLE_S


TRICKLE_S = 1.0


class HostileGateway:
    """A Modbus TCP gateway on raw sockets: one request at a time per connection."""

    def __init__(self, sim: SimulatedPlant) -> None:
        self.sim = sim
        self.replies: dict[int, Reply] = dict.fromkeys(UNITS, Reply.OK)
        self.connections = 0
        self.requests: list[int] = []  # the unit of every request, in the order they came in
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._devices = DeviceLoop()

    async def start(self) -> None:
        await self._devices.run(self._start())

    async def stop(self) -> None:
        await self._devices.run(self._stop())
        await self._devices.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def frame(self, tid: int, unit: int, pdu: bytes) -> bytes:
        """The reply ADU as this unit's behaviour has it."""
        behaviour = self.replies[unit]
        if behaviour is Reply.WRONG_FUNCTION and pdu[0] in (3, 4):
            pdu = bytes([7 - pdu[0]]) + pdu[1:]
        length = len(pdu) + 1
        if behaviour is Reply.SHORT_MBAP:
            length -= 4
        return struct.pack(">HHHB", tid, 0, length, unit) + pdu

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                request = await reader.readexactly(length - 1)
                self.requests.append(unit)
                reply = self.sim.answer(unit, request, rtu=False)
                assert reply.pdu is not None
                frame = self.frame(tid, unit, reply.pdu)
                if self.replies[unit] is Reply.TRICKLE:
                    for byte in frame:  # the next request waits until this one is out
                        writer.write(bytes([byte]))
                        await writer.drain()
                        await asyncio.sleep(TRICKLE_S)
                else:
                    writer.write(frame)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


def plant():
    demo = load_plant(DEMO)
    drives = tuple(dataclasses.replace(demo.drives[0], name=f"d{unit}", unit=unit) for unit in UNITS)
    return dataclasses.replace(demo, drives=drives)


def site(tmp_path, port):
    text = textwrap.dedent(f"""\
        site: {{name: hostile, grid_emission_factor_kg_per_kwh: 0.5,
                tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {tmp_path}}}
        polling: {{interval_s: {INTERVAL}, timeout_s: 0.25, retries: 0, max_gap_s: 3}}
        buses:
          - {{name: gw, host: 127.0.0.1, port: {port}, reconnect_delay_max_s: 1}}
        drives:
        """)
    for unit in UNITS:
        text += (f"  - {{name: d{unit}, bus: gw, unit: {unit}, profile: generic, rated_power_kw: 15,\n"
                 "     rated_speed_rpm: 1470, load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}\n")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_config(path)


@contextlib.asynccontextmanager
async def running(tmp_path):
    """The gateway and the agent polling it, every drive up."""
    sim = SimulatedPlant(plant(), seed=11)
    gateway = HostileGateway(sim)
    await gateway.start()
    agent = Agent(site(tmp_path, gateway.port))
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop, serve_metrics=False))
    try:
        await async_wait_until(lambda: all(d.up for d in agent.drives), 20, "every drive up")
        yield gateway, agent, {d.config.unit: d for d in agent.drives}
    finally:
        stop.set()
        await run
        await gateway.stop()


async def keep_up(drives, stop: asyncio.Event, fresh: asyncio.Event | None = None) -> None:
    """Fail as soon as one of ``drives`` is down or, once ``fresh`` is set (always if None), stale."""
    while not stop.is_set():
        for drive in drives:
            assert drive.up, (drive.name, dict(drive.errors))
            if fresh is None or fresh.is_set():
                assert drive.is_fresh(time.monotonic()), (drive.name, time.monotonic() - drive.last.t)
        await asyncio.sleep(0.05)


def test_mbap_length_is_checked_against_the_pdu():
    read = struct.pack(">HHHBBB", 1, 0, 7, 1, 3, 4) + b"\x00\x01\x00\x02"
    assert mbap_mismatch(read) is None
    assert mbap_mismatch(read[:4] + struct.pack(">H", 3) + read[6:]) == (
        "MBAP length 3 for a function 3 reply that needs 7")
    assert mbap_mismatch(read[:4] + struct.pack(">H", 9) + read[6:]) is not None  # longer: a hang
    assert mbap_mismatch(read[:8]) is None  # not enough in yet to tell
    assert mbap_mismatch(struct.pack(">HHHBBB", 1, 0, 3, 1, 0x83, 2)) is None  # exception reply
    assert mbap_mismatch(struct.pack(">HHHBBH", 1, 0, 6, 1, 6, 99) + b"\x00\x01") is None  # write echo


def test_wrong_function_code_and_short_mbap_are_protocol_errors_logged_once(tmp_path, caplog):
    figures: dict[str, float] = {}

    async def scenario():
        async with running(tmp_path) as (gateway, agent, drives):
            healthy = [drives[1], drives[4]]
            wrong, short = drives[2], drives[3]
            polls_wrong = wrong.polls
            caplog.clear()
            gateway.replies[2], gateway.replies[3] = Reply.WRONG_FUNCTION, Reply.SHORT_MBAP
            stop_watch = asyncio.Event()
            watcher = asyncio.create_task(keep_up(healthy, stop_watch))
            await async_wait_until(lambda: wrong.errors["protocol"] >= 5 and short.errors["protocol"] >= 5,
                                   15, "five protocol errors each")
            assert wrong.up is False and short.up is False
            assert wrong.polls == polls_wrong  # not one reply of the wrong function taken as data
            assert set(wrong.errors) == {"protocol"} and set(short.errors) == {"protocol"}
            assert agent.registry.get_sample_value(
                "vfd_poll_errors_total", {"drive": "d3", "kind": "protocol"}) >= 5
            cleared = time.monotonic()
            gateway.replies[2] = gateway.replies[3] = Reply.OK
            await async_wait_until(lambda: wrong.up and short.up, 10, "both back")
            figures["recovered_s"] = time.monotonic() - cleared
            stop_watch.set()
            await watcher  # raises if a healthy drive was down at any moment
            assert all(dict(d.errors) == {} for d in healthy)
            figures["connections"] = gateway.connections

    caplog.set_level(logging.DEBUG)
    asyncio.run(scenario())
    print(f"\nwrong fc / short MBAP: both back {figures['recovered_s']:.2f} s after the gateway mends, "
          f"{figures['connections']:.0f} connections")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    # One line per drive when it starts failing, no traceback from asyncio or pymodbus.
    assert [r.getMessage() for r in errors if "d2" in r.getMessage()] == [
        "drive d2: asked with function 3, the reply is function 4 (protocol)"]
    assert len([r for r in errors if "d3" in r.getMessage()]) == 1
    assert "MBAP length" in next(r.getMessage() for r in errors if "d3" in r.getMessage())
    assert [r for r in caplog.records if r.exc_info or r.name == "asyncio"] == []
    assert len(errors) == 2


def retries_per_cycle(units: list[int], silent: set[int], last_healthy: int) -> list[list[int]]:
    """The silent units asked in each cycle (a cycle starts at unit 1's request), and each
    checked to come after ``last_healthy``'s request in its cycle."""
    cycles: list[list[int]] = []
    seen: list[int] = []
    for unit in units:
        if unit == 1:
            seen = []
            cycles.append([])
        elif unit in silent and cycles:
            assert last_healthy in seen, ("a silent unit asked before a healthy one", seen, unit)
            cycles[-1].append(unit)
        seen.append(unit)
    return cycles


@pytest.mark.timeout(120)
def test_trickling_units_do_not_take_the_others_on_their_connection_down(tmp_path):
    figures: dict[str, float] = {}

    async def scenario():
        async with running(tmp_path) as (gateway, agent, drives):
            healthy = [drives[1], drives[3]]
            tricklers = [drives[2], drives[4]]
            (poller,) = agent.pollers
            cycles0, polls0 = poller.stats.cycles, [d.polls for d in healthy]
            gateway.replies[2] = gateway.replies[4] = Reply.TRICKLE  # a whole reply takes 15 s
            # Fresh from the first retries on: the cycle in which both first time out is the
            # interval plus two timeouts long, and config order has unit 3 between them.
            stop_watch, retrying = asyncio.Event(), asyncio.Event()
            watcher = asyncio.create_task(keep_up(healthy, stop_watch, fresh=retrying))
            started = time.monotonic()
            await async_wait_until(lambda: all(t.errors["timeout"] >= 1 for t in tricklers), 20,
                                   "a timeout each")
            retrying_from = len(gateway.requests)  # both are on a retry from here on
            retrying.set()
            await async_wait_until(lambda: all(t.errors["timeout"] >= 3 for t in tricklers), 20, "three each")
            await async_wait_until(lambda: time.monotonic() - started >= 8.0, 20, "8 s of trickling")
            retry_cycles = retries_per_cycle(gateway.requests[retrying_from:], {2, 4}, last_healthy=3)
            assert all(t.up is False and set(t.errors) == {"timeout"} for t in tricklers)
            cycles = poller.stats.cycles - cycles0
            # Every healthy drive was polled in (nearly) every cycle while its neighbours trickled.
            for drive, polls in zip(healthy, polls0, strict=True):
                assert drive.polls - polls >= cycles - 2, drive.name
            # The retries came after the healthy drives, and at most one per cycle: two timeouts
            # (0.25 s each) do not fit in a 0.5 s interval, so the second waits for a later cycle.
            assert max(len(asked) for asked in retry_cycles) == 1, retry_cycles
            figures["timeouts"] = sum(t.errors["timeout"] for t in tricklers)
            figures["cycles"] = cycles
            cleared = time.monotonic()
            gateway.replies[2] = gateway.replies[4] = Reply.OK
            await async_wait_until(lambda: all(t.up for t in tricklers), 15, "the trickling units back")
            figures["recovered_s"] = time.monotonic() - cleared
            stop_watch.set()
            await watcher
            assert all(dict(d.errors) == {} for d in healthy)

    asyncio.run(scenario())
    print(f"\ntwo trickling units: {figures['timeouts']:.0f} timeouts in {figures['cycles']:.0f} cycles, "
          f"the healthy drives never down; both back {figures['recovered_s']:.1f} s after they stop")
