"""Counters against the simulated plant: negative power, and a wall clock that starts in 1970 and steps
when "NTP" syncs (a Pi without an RTC)."""

import asyncio
import logging
import sqlite3
import time

import pytest
from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.config.schedule import hour_start
from agent.service import Agent
from hil import SimulatedPlant, load_plant
from hil.faults import Fault
from tests.support import DRIVE_DATA, REPO, async_wait_until, site_config

BOOT_WALL = 24_710_400.0  # 1970-10-14 00:00 UTC: where the clock of a Pi without an RTC may start


def test_energy_before_ntp_is_held_and_filed_at_the_hours_it_happened(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.wallclock")
    offset = [BOOT_WALL - time.monotonic()]  # wall − monotonic; "NTP" sets it to the truth

    def wall() -> float:
        return time.monotonic() + offset[0]

    async def scenario():
        sim = SimulatedPlant(load_plant(REPO / "configs" / "plants" / "demo.yaml"))
        await sim.start("127.0.0.1", 0)
        names = list(sim.drive_names)
        config = load_config(site_config(
            tmp_path, [("plant", sim.port)], [(n, "plant", sim.units[n], DRIVE_DATA[n]) for n in names],
            flush_interval_s=0.5,
        ))
        registry = CollectorRegistry()
        agent = Agent(config, registry=registry, wall_clock=wall, time_synchronized=lambda: None)
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop, serve_metrics=False))
        try:
            await async_wait_until(lambda: all(d.account.held_s > 2.0 for d in agent.drives), 30,
                                   what="energy held before the clock is set")
            assert registry.get_sample_value("vfd_clock_trusted") == 0.0
            assert all(d.account.totals.energy_j == 0.0 for d in agent.drives)  # nothing filed in 1970
            await asyncio.sleep(1.0)  # let a flush or two run while the clock is wrong
            synced_at = time.time()
            offset[0] = synced_at - time.monotonic()  # NTP steps the clock to the truth
            await async_wait_until(lambda: all(d.account.held_s == 0.0 and d.account.totals.energy_j > 0
                                               for d in agent.drives), 30, what="held energy filed")
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await run
            await sim.stop()
        return agent, registry, names, synced_at

    agent, registry, names, synced_at = asyncio.run(scenario())
    assert registry.get_sample_value("vfd_clock_steps_total") == 1.0
    assert registry.get_sample_value("vfd_clock_trusted") == 1.0
    assert caplog.text.count("wall clock stepped by") == 1
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    rows = db.execute("SELECT drive, hour, energy_j FROM hourly").fetchall()
    db.close()
    assert rows
    # Every row in an hour the run really spanned (the held seconds back-dated by monotonic time).
    assert {hour for _, hour, _ in rows} <= {hour_start(synced_at - 60.0), hour_start(time.time())}
    for drive in agent.drives:
        filed = sum(e for d, _, e in rows if d == drive.name)
        assert filed == pytest.approx(drive.account.totals.energy_j)
        assert drive.account.totals.covered_s > 3.0  # the seconds before the step are in, not lost


def test_negative_power_from_a_drive_is_refused_and_the_energy_counter_never_goes_down(tmp_path):
    async def scenario():
        sim = SimulatedPlant(load_plant(REPO / "configs" / "plants" / "demo.yaml"))
        await sim.start("127.0.0.1", 0)
        name = "chw-pump-1"
        config = load_config(site_config(tmp_path, [("plant", sim.port)],
                                         [(name, "plant", sim.units[name], DRIVE_DATA[name])]))
        registry = CollectorRegistry()
        agent = Agent(config, registry=registry, time_synchronized=lambda: None)
        drive = agent.drive(name)
        exported = []
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop, serve_metrics=False))

        def energy_seen(condition):
            exported.append(registry.get_sample_value("vfd_energy_joules_total", {"drive": name}))
            return condition()
        try:
            await async_wait_until(lambda: energy_seen(lambda: drive.account.totals.energy_j > 0), 30)
            sim.inject(name, Fault.IMPLAUSIBLE, factor=-1.0)  # the sign flipped: -P within 3 x rated
            polls = drive.polls
            await async_wait_until(lambda: energy_seen(lambda: drive.polls >= polls + 6), 30)
            sim.clear(name)
            after, cleared_at = drive.errors["implausible"], drive.account.totals.energy_j
            await async_wait_until(lambda: energy_seen(lambda: drive.up
                                                       and drive.account.totals.energy_j > cleared_at), 30)
        finally:
            stop.set()
            await run
            await sim.stop()
        return drive, exported, after

    drive, exported, refused = asyncio.run(scenario())
    series = [e for e in exported if e is not None]
    assert series == sorted(series)  # went -17.5 kJ -> -32.5 kJ on the old code
    assert refused >= 4 and drive.errors["implausible"] == refused  # counted while it lasted, then not
    assert drive.account.totals.regenerated_j == 0.0
