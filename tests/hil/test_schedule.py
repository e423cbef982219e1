"""The poll schedule over a real RTU line (a pty pair, the simulator emulating wire time).

Rate classes, overload at 120 % of the line and the learned turnaround; counts over time
with generous margins, never wall-clock durations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap

from agent.config import load_config
from agent.config.profile import BUILTIN_PROFILES, PollRate, Quantity, load_profile
from agent.config.yamlsource import Issues
from agent.drive import DriveRuntime
from agent.modbus.client import BusClient
from agent.modbus.readplan import bus_budget, plan_classes
from agent.poller import BusPoller
from hil import SimulatedPlant, load_plant
from hil.faults import Fault
from tests.ptypair import pty_pair
from tests.support import REPO, async_wait_until

DRIVES = 4


def plant():
    demo = load_plant(REPO / "configs" / "plants" / "demo.yaml")
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    drives = tuple(dataclasses.replace(demo.drives[i % 3], name=f"g120-{i + 1}", unit=i + 1, profile=g120)
                   for i in range(DRIVES))
    return dataclasses.replace(demo, drives=drives)


def site(tmp_path, device, interval, rates=True):
    poll = ", poll: {rates: {status_word: slow, fault_code: slow}, slow_every: 2}" if rates else ""
    text = textwrap.dedent(f"""\
        site: {{name: s, grid_emission_factor_kg_per_kwh: 0.5, tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {tmp_path}}}
        buses:
          - {{name: line, transport: rtu, device: {device}, baudrate: 19200, parity: N, stopbits: 2,
             poll_interval_s: {interval}, timeout_s: 0.1}}
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


def _run(tmp_path, interval, turnaround_s=None, seconds=6.0):
    """Poll the pty line for a while; the poller after, with cycle count and per-drive counts."""
    result = {}

    async def scenario(a, b):
        sim = SimulatedPlant(plant(), seed=3)
        await sim.start_rtu(a, baudrate=19200, parity="N", stopbits=2)
        for name, delay in (turnaround_s or {}).items():
            sim.inject(name, Fault.SLOW, delay_s=delay)
        config = site(tmp_path, b, interval)
        (bus,) = config.buses
        drives = [DriveRuntime(d, config.site, config.max_gap) for d in config.drives]
        poller = BusPoller(bus, drives, BusClient(bus))
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        try:
            await async_wait_until(lambda: all(d.up for d in drives), 20, "all drives up")
            start = {d.name: (d.polls, poller.slow_reads(d.name)) for d in drives}
            cycles0 = poller.stats.cycles
            t0 = asyncio.get_running_loop().time()
            await asyncio.sleep(seconds)
            result["elapsed"] = asyncio.get_running_loop().time() - t0
            result["cycles"] = poller.stats.cycles - cycles0
            result["fast"] = {d.name: d.polls - start[d.name][0] for d in drives}
            result["slow"] = {d.name: poller.slow_reads(d.name) - start[d.name][1] for d in drives}
            result["poller"] = poller
            result["status"] = [d.last.values.get(Quantity.STATUS_WORD) for d in drives]
        finally:
            stop.set()
            await task
            await sim.stop()

    with pty_pair(tmp_path) as (a, b):
        asyncio.run(scenario(a, b))
    return result


def test_the_slow_class_is_read_every_n_intervals_and_merged_into_each_reading(tmp_path):
    r = _run(tmp_path, interval=0.5)
    cycles = r["cycles"]
    assert cycles >= 5
    for name in r["fast"]:
        assert r["fast"][name] >= cycles - 1  # every interval
        assert 1 <= r["slow"][name] <= cycles / 2 + 2  # every 2nd interval
    assert all(s is not None for s in r["status"])  # slow values ride along in every reading


def test_the_turnaround_is_learned_per_drive(tmp_path):
    r = _run(tmp_path, interval=0.5, turnaround_s={"g120-2": 0.030})
    learned = r["poller"].turnarounds()
    assert set(learned) == {f"g120-{i + 1}" for i in range(DRIVES)}
    others = [v for k, v in learned.items() if k != "g120-2"]
    # The simulator adds 30 ms to g120-2's answers: the estimate sees it, the others stay low.
    assert 0.020 < learned["g120-2"] - max(others) < 0.045, learned
    assert PollRate.SLOW.value == "slow"
