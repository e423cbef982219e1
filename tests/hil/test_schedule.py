"""The poll schedule over real lines: a pty pair (RTU), a Modbus TCP gateway and a serial server.

Rate classes, overload at 120 % of the line, the lag gauge and its log lines, the learned
turnaround and the simulator's exact frame timing; counts over time with generous margins,
never wall-clock durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import statistics
import textwrap

import pytest
from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.config.profile import BUILTIN_PROFILES, PollRate, Quantity, load_profile
from agent.config.yamlsource import Issues
from agent.drive import DriveRuntime
from agent.metrics import BusCollector
from agent.modbus.client import BusClient
from agent.modbus.readplan import bus_budget, line_timing, plan_classes
from agent.modbus.rtu import READ_REQUEST_BYTES, READ_RESPONSE_OVERHEAD_BYTES
from agent.poller import BusPoller
from hil import SimulatedPlant, load_plant
from hil.faults import Fault
from tests.ptypair import pty_pair
from tests.support import REPO, async_wait_until

DRIVES = 4
SLOW_RATES = "{status_word: slow, fault_code: slow}"


def plant(turnaround_s=0.0):
    demo = load_plant(REPO / "configs" / "plants" / "demo.yaml")
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    drives = tuple(dataclasses.replace(demo.drives[i % 3], name=f"g120-{i + 1}", unit=i + 1, profile=g120,
                                       turnaround=turnaround_s)
                   for i in range(DRIVES))
    return dataclasses.replace(demo, drives=drives)


def site(tmp_path, where, interval, rates=True, transport="rtu", baud=19200, slow_every=2, turnaround_s=0.0):
    """A site of DRIVES G120 on one bus; ``where`` is the pty (rtu) or (host, port)."""
    poll = f", poll: {{rates: {SLOW_RATES}, slow_every: {slow_every}}}" if rates else ""
    line = f"baudrate: {baud}, parity: N, stopbits: 2"
    bus = {"rtu": f"transport: rtu, device: {where}, {line}",
           "tcp": f"host: {where[0]}, port: {where[1]}" if transport == "tcp" else "",
           "rtu_over_tcp": f"transport: rtu_over_tcp, host: {where[0]}, port: {where[1]}, {line}"
           if transport == "rtu_over_tcp" else ""}[transport]
    text = textwrap.dedent(f"""\
        site: {{name: s, grid_emission_factor_kg_per_kwh: 0.5, tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {tmp_path}}}
        buses:
          - {{name: line, {bus},
             poll_interval_s: {interval}, timeout_s: 0.2, turnaround_s: {turnaround_s}}}
        drives:
        """)
    for i in range(DRIVES):
        text += (f"  - {{name: g120-{i + 1}, bus: line, unit: {i + 1}, profile: sinamics-g120,\n"
                 "     rated_power_kw: 15, rated_speed_rpm: 1470,\n"
                 f"     load: {{kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}{poll}}}\n")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_config(path)


def test_rate_classes_are_planned_apart_and_charged_in_the_budget(tmp_path):
    config = site(tmp_path, "/dev/null", 1.0)
    drive = config.drives[0]
    plan = plan_classes(config.buses[0], drive.profile)
    fast = {p.quantity for b in plan.fast for p in b.points}
    slow = {p.quantity for b in plan.slow for p in b.points}
    assert slow == {Quantity.STATUS_WORD, Quantity.FAULT_CODE} and not fast & slow
    assert Quantity.POWER in fast and Quantity.ENERGY in fast and plan.slow_every == 2
    every = bus_budget(site(tmp_path, "/dev/null", 1.0, rates=False).buses[0],
                       [load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())] * DRIVES)
    mixed = bus_budget(config.buses[0], [d.profile for d in config.drives])
    assert mixed.fast_reads == 2 * DRIVES and mixed.slow_reads == 2 * DRIVES
    assert mixed.cycle_time < every.cycle_time  # the slow class costs half its reads per cycle
    charged = bus_budget(config.buses[0], [d.profile for d in config.drives], [0.02] * DRIVES)
    assert charged.cycle_time > mixed.cycle_time + 0.02 * 2 * DRIVES - 1e-9
    assert "turnaround 20.0 ms" in charged.describe()


@contextlib.asynccontextmanager
async def serving(sim, transport, pty):
    """The plant served on ``transport``; yields where the agent finds it."""
    if transport == "rtu":
        await sim.start_rtu(pty, baudrate=19200, parity="N", stopbits=2)
        where = None
    elif transport == "tcp":
        await sim.start()
        where = (sim.host, sim.port)
    else:
        await sim.start_rtu_over_tcp(baudrate=19200, parity="N", stopbits=2)
        where = sim.serial_server_address
    try:
        yield where
    finally:
        await sim.stop()


def _run(tmp_path, interval, transport="rtu", turnaround_s=None, seconds=6.0):
    """Poll the line for a while; the poller after, with cycle count and per-drive counts."""
    result = {}

    async def scenario(a, b):
        sim = SimulatedPlant(plant(), seed=3)
        async with serving(sim, transport, a) as where:
            for name, delay in (turnaround_s or {}).items():
                sim.inject(name, Fault.SLOW, delay_s=delay)
            config = site(tmp_path, where or b, interval, transport=transport)
            (bus,) = config.buses
            drives = [DriveRuntime(d, config.site, config.max_gap) for d in config.drives]
            poller = BusPoller(bus, drives, BusClient(bus))
            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop))
            try:
                await async_wait_until(lambda: all(d.up for d in drives), 20, "all drives up")
                start = {d.name: (d.polls, poller.slow_reads(d.name)) for d in drives}
                cycles0 = poller.stats.cycles
                await asyncio.sleep(seconds)
                result["cycles"] = poller.stats.cycles - cycles0
                result["fast"] = {d.name: d.polls - start[d.name][0] for d in drives}
                result["slow"] = {d.name: poller.slow_reads(d.name) - start[d.name][1] for d in drives}
                result["poller"] = poller
                result["status"] = [d.last.values.get(Quantity.STATUS_WORD) for d in drives]
            finally:
                stop.set()
                await task

    with pty_pair(tmp_path) as (a, b):
        asyncio.run(scenario(a, b))
    return result


@pytest.mark.parametrize("transport", ["rtu", "tcp", "rtu_over_tcp"])
def test_the_slow_class_is_read_every_n_intervals_and_merged_into_each_reading(tmp_path, transport):
    # One scheduler for every transport: a one-request-at-a-time gateway and a serial server too.
    r = _run(tmp_path, interval=0.5, transport=transport)
    cycles = r["cycles"]
    assert cycles >= 5
    for name in r["fast"]:
        assert r["fast"][name] >= cycles - 1  # every interval
        assert 1 <= r["slow"][name] <= cycles / 2 + 2  # every 2nd interval
    assert all(s is not None for s in r["status"])  # slow values ride along in every reading
    assert set(r["poller"].turnarounds()) == {f"g120-{i + 1}" for i in range(DRIVES)}  # measured on each


def test_the_turnaround_is_learned_per_drive(tmp_path):
    r = _run(tmp_path, interval=0.5, turnaround_s={"g120-2": 0.030})
    learned = r["poller"].turnarounds()
    assert set(learned) == {f"g120-{i + 1}" for i in range(DRIVES)}
    others = [v for k, v in learned.items() if k != "g120-2"]
    # The simulator adds 30 ms to g120-2's answers: the estimate sees it, the others stay low.
    assert 0.020 < learned["g120-2"] - max(others) < 0.045, learned
    assert PollRate.SLOW.value == "slow"


@pytest.mark.alone  # a reply late by a process wake-up on a loaded machine
def test_the_simulator_answers_when_the_reply_would_end_on_a_real_line(tmp_path):
    """Request frame, t3.5, the drive's turnaround, response frame: no second t3.5, nothing else.

    At 4800 baud t3.5 is 8 ms, so the extra silence the simulator once charged shows plainly.
    While the line is polled, the physics steps only with each request's answer (its own task
    once stepped it at any moment too, and a reply due meanwhile was late by the ~1 ms it took).
    """
    turnaround = 0.005

    async def scenario(a, b):
        sim = SimulatedPlant(plant(turnaround), seed=3)
        events = []  # the plant's physics steps, answers and replies, in order

        def recorded(call, what):
            def wrapped(*args, **kwargs):
                events.append(what)
                return call(*args, **kwargs)
            return wrapped

        for name, what in (("update", "step"), ("answer", "answer"), ("mangle", "reply")):
            setattr(sim, name, recorded(getattr(sim, name), what))
        await sim.start_rtu(a, baudrate=4800, parity="N", stopbits=2)
        config = site(tmp_path, b, 1.0, rates=False, baud=4800)
        (bus,) = config.buses
        timing = line_timing(bus)
        client = BusClient(bus)
        try:
            await client.connect()
            block = plan_classes(bus, config.drives[0].profile).fast[0]
            exchanges = []
            for _ in range(15):
                await client.read(1, block)
                exchanges.append(client.stats.last_exchange_s)
        finally:
            client.close()
            await sim.stop()
        chars = READ_REQUEST_BYTES + READ_RESPONSE_OVERHEAD_BYTES + 2 * block.count
        exact = timing.frame_time(chars) + timing.t35 + turnaround
        return statistics.median(exchanges), exact, timing.t35, events

    with pty_pair(tmp_path) as (a, b):
        measured, exact, t35, events = asyncio.run(scenario(a, b))
    assert t35 > 0.008
    # Never early; late only by the two processes' wake-ups, well under one t3.5.
    assert exact - 0.0005 < measured < exact + 0.5 * t35, (measured, exact)
    polled = events[events.index("answer"):len(events) - events[::-1].index("reply")]
    steps = outside = 0
    waiting = False  # between an answer and its reply
    for what in polled:
        if what == "step":
            steps += 1
            outside += not waiting
        else:
            waiting = what == "answer"
    # 15 reads of ~60 ms and the old task's step every 50 ms: 13 of 44 fell between a reply and
    # the next answer. The task still steps after 0.1 s without a request: a read stalled that
    # long on a loaded machine may let one through.
    assert steps >= 8 and outside <= 1, (steps, outside, polled)


def test_at_120_percent_the_fast_class_keeps_its_rate_and_the_slow_class_is_stretched(tmp_path):
    """Offered load 120 % of the line (every class at its rate, turnaround included): the fast
    class (68 % of it) keeps every tick, the slow class gets what is left, never starved."""
    turnaround, baud, every = 0.003, 9600, 1

    async def scenario(a, b):
        sim = SimulatedPlant(plant(turnaround), seed=3)
        await sim.start_rtu(a, baudrate=baud, parity="N", stopbits=2)
        probe = site(tmp_path, b, 1.0, baud=baud, slow_every=every, turnaround_s=turnaround)
        budget = bus_budget(probe.buses[0], [d.profile for d in probe.drives])
        interval = round(budget.cycle_time / 1.2, 4)
        config = site(tmp_path, b, interval, baud=baud, slow_every=every, turnaround_s=turnaround)
        (bus,) = config.buses
        drives = [DriveRuntime(d, config.site, config.max_gap) for d in config.drives]
        poller = BusPoller(bus, drives, BusClient(bus))
        assert not poller.budget.fits and poller.budget.fast_time < 0.75 * interval
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        loop = asyncio.get_running_loop()
        try:
            await async_wait_until(lambda: all(d.up for d in drives), 20, "all drives up")
            await asyncio.sleep(2 * interval)
            polls0 = {d.name: d.polls for d in drives}
            slow0 = {d.name: poller.slow_reads(d.name) for d in drives}
            cycles0, t0 = poller.stats.cycles, loop.time()
            await asyncio.sleep(8.0)
            elapsed = loop.time() - t0
            cycles = (poller.stats.cycles - cycles0) / elapsed
            fast = {d.name: (d.polls - polls0[d.name]) / elapsed for d in drives}
            slow = {d.name: (poller.slow_reads(d.name) - slow0[d.name]) / elapsed for d in drives}
            errors = {d.name: dict(d.errors) for d in drives if d.errors}
        finally:
            stop.set()
            await task
            await sim.stop()
        return interval, cycles, fast, slow, errors

    with pty_pair(tmp_path) as (a, b):
        interval, cycles, fast, slow, errors = asyncio.run(scenario(a, b))
    asked = 1 / interval
    assert cycles > 0.9 * asked, (cycles, asked)  # every tick, but for a late wake-up or two
    for name in fast:
        # Every cycle reads every drive's fast class (a read that a loaded machine made time out
        # costs that drive one backoff interval).
        assert fast[name] > 0.75 * asked, (fast, asked, errors)
        # The slow class asked every interval, stretched to what the line leaves (about half),
        # but read at least once a period late (never starved).
        assert 0.1 * asked < slow[name] < 0.8 * asked, (slow, asked)


def test_the_lag_gauge_rises_under_overload_and_returns_to_zero_logged_once_each(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.poller")
    interval = 0.4  # the 12 reads need about 0.23 s at 19200 baud

    async def scenario(a, b):
        sim = SimulatedPlant(plant(), seed=3)
        await sim.start_rtu(a, baudrate=19200, parity="N", stopbits=2)
        config = site(tmp_path, b, interval, rates=False)
        (bus,) = config.buses
        drives = [DriveRuntime(d, config.site, config.max_gap) for d in config.drives]
        poller = BusPoller(bus, drives, BusClient(bus))
        registry = CollectorRegistry()
        registry.register(BusCollector([poller]))

        def lag():
            return registry.get_sample_value("vfd_poll_lag_seconds", {"bus": "line", "rate": "fast"})

        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        try:
            await async_wait_until(lambda: all(d.up for d in drives), 20, "all drives up")
            await async_wait_until(lambda: lag() == 0.0, 10, "on time at first")
            for drive in drives:  # 40 ms more per read: 12 reads need about 0.7 s
                sim.inject(drive.config.name, Fault.SLOW, delay_s=0.04)
            await async_wait_until(lambda: lag() > 0.15, 10, "the fast class late")
            cycles = poller.stats.cycles
            await async_wait_until(lambda: poller.stats.cycles >= cycles + 5, 20, "five overloaded cycles")
            behind = lag()
            for drive in drives:
                sim.clear(drive.config.name, Fault.SLOW)
            await async_wait_until(lambda: lag() == 0.0, 10, "back on time")
            await async_wait_until(lambda: any("back on schedule" in r.getMessage() for r in caplog.records),
                                   20, "three cycles on time in a row")
            after = lag()
        finally:
            stop.set()
            await task
            await sim.stop()
        return behind, after

    with pty_pair(tmp_path) as (a, b):
        behind, after = asyncio.run(scenario(a, b))
    assert 0.15 < behind < 1.5  # a cycle of ~0.7 s for an interval of 0.4 s
    assert after < 0.02 * interval  # on time, but for a late wake-up on a loaded machine
    said = [r.getMessage() for r in caplog.records if r.name == "agent.poller"]
    assert sum("behind schedule" in m for m in said) == 1, said
    assert sum("back on schedule" in m for m in said) == 1, said


def test_the_agent_stores_the_learned_turnarounds_and_starts_from_them(tmp_path):
    from agent.modbus.turnaround import TURNAROUND_FILE, load_turnarounds
    from agent.service import Agent
    from tests.support import DRIVE_DATA, site_config

    async def scenario():
        sim = SimulatedPlant(load_plant(REPO / "configs" / "plants" / "demo.yaml"))
        await sim.start("127.0.0.1", 0)
        config = load_config(site_config(
            tmp_path, [("plant", sim.port)],
            [(name, "plant", sim.units[name], DRIVE_DATA[name]) for name in sim.drive_names]))
        agent = Agent(config, registry=CollectorRegistry())
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop, serve_metrics=False))
        try:
            await async_wait_until(lambda: all(len(p.turnarounds()) == len(p.drives) for p in agent.pollers),
                                   20, "every drive measured")
            measured = {n: v for p in agent.pollers for n, v in p.turnarounds().items()}
        finally:
            stop.set()
            await run
            await sim.stop()
        return set(sim.drive_names), measured

    names, measured = asyncio.run(scenario())
    stored = load_turnarounds(tmp_path / TURNAROUND_FILE)
    assert set(stored) == names == set(measured)
    assert all(0.0 <= v < 0.2 for v in stored.values()), stored

    # The next start charges the stored turnaround until the drive is measured again.
    config = site(tmp_path, "/dev/null", 1.0)
    (bus,) = config.buses
    drives = [DriveRuntime(d, config.site, config.max_gap) for d in config.drives]

    async def restart():  # pymodbus's client needs the loop it will run on
        return BusPoller(bus, drives, BusClient(bus), learned={"g120-2": 0.05})

    poller = asyncio.run(restart())
    assert poller.budget.turnaround == 0.05 and poller.budget.learned == 1
    assert "learned on 1 of 4 devices" in poller.budget.describe()
    assert poller.turnarounds() == {}  # nothing measured in this run yet: no gauge
