"""The fault matrix: every simulated fault at once, on one Modbus TCP bus, against the real agent.

One drive per fault and one healthy drive share the bus. The agent must keep polling the
healthy drive every cycle, mark each faulty drive down (or its values stale) and count the
fault by kind, never integrate energy from implausible values, and recover every drive by
itself within 10 s of the faults clearing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
import time

from agent.config import load_config
from agent.config.profile import BUILTIN_PROFILES, load_profile
from agent.config.yamlsource import Issues
from agent.service import Agent
from agent.units import KWH_TO_J
from hil import SimulatedPlant, load_plant
from hil.faults import Fault, FaultSpec
from tests.support import REPO, DeviceLoop, async_wait_until

DEMO = REPO / "configs" / "plants" / "demo.yaml"
INTERVAL = 0.3
# fault -> (parameters, error kinds any of which shows it)
MATRIX: dict[Fault, tuple[dict[str, float], set[str]]] = {
    Fault.TIMEOUT: ({}, {"timeout"}),
    Fault.SLOW: ({"delay_s": 0.6}, {"timeout"}),
    Fault.EXCEPTION: ({"code": 4}, {"exception_4"}),
    Fault.DROP: ({}, {"connection"}),
    Fault.RESTART: ({"duration_s": 1.5}, {"timeout"}),
    Fault.GARBAGE: ({}, {"protocol", "timeout"}),
    Fault.TRUNCATED: ({}, {"protocol", "timeout"}),
    Fault.STUCK: ({}, {"stuck"}),
    Fault.NAN: ({}, {"implausible"}),
    Fault.IMPLAUSIBLE: ({"factor": 1000.0}, {"implausible"}),
}
PROFILES = ["generic", "sinamics-g120", "abb-acs580", "danfoss-fc102", "schneider-atv320"]


def plant_and_config(tmp_path):
    demo = load_plant(DEMO)
    profiles = {n: load_profile(BUILTIN_PROFILES / f"{n}.yaml", Issues()) for n in PROFILES}
    drives = []
    for index, fault in enumerate([*MATRIX, None]):
        template = demo.drives[0]
        name = fault.value if fault else "healthy"
        drives.append(dataclasses.replace(
            template, name=name, unit=index + 1, profile=profiles[PROFILES[index % len(PROFILES)]],
            # The restarted drive's counter must visibly go back to zero.
            energy_counter_start=500 * KWH_TO_J if fault is Fault.RESTART else 0.0,
        ))
    plant = dataclasses.replace(demo, drives=tuple(drives))
    return plant, drives


def site(tmp_path, port, drives):
    text = textwrap.dedent(f"""\
        site: {{name: faults, grid_emission_factor_kg_per_kwh: 0.5,
                tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {tmp_path}}}
        polling: {{interval_s: {INTERVAL}, timeout_s: 0.15, retries: 0, max_gap_s: 3}}
        buses:
          - {{name: gw, host: 127.0.0.1, port: {port}, reconnect_delay_max_s: 1}}
        drives:
        """)
    for drive in drives:
        text += (f"  - {{name: {drive.name}, bus: gw, unit: {drive.unit}, profile: {drive.profile.name}, "
                 "rated_power_kw: 15, rated_speed_rpm: 1470,\n"
                 "     load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32},\n"
                 "     baseline: {method: characteristic}}\n")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_config(path)


def test_every_fault_at_once_is_counted_contained_and_recovered(tmp_path):
    plant, specs = plant_and_config(tmp_path)
    report: list[str] = []

    async def scenario():
        sim = SimulatedPlant(plant, seed=3)
        devices = DeviceLoop()  # the drives answer from their own thread, as from their own machines
        await devices.run(sim.start("127.0.0.1", 0))
        agent = Agent(site(tmp_path, sim.port, specs))
        drives = {d.name: d for d in agent.drives}
        for drive in agent.drives:
            drive.stuck_polls, drive.stuck_min_s = 3, 0.5  # frozen data shows up within a few polls
        healthy = drives["healthy"]
        poller = agent.pollers[0]
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop, serve_metrics=False))
        try:
            await async_wait_until(lambda: all(d.up for d in agent.drives), 20, "every drive up")
            cycles0, polls0 = poller.stats.cycles, healthy.polls
            restarted = drives[Fault.RESTART.value]
            restart_energy, restart_t = restarted.account.totals.energy_j, time.monotonic()
            for fault, (params, _) in MATRIX.items():
                sim.inject(fault.value, fault, **params)
            energy_at = {}

            def shown(fault):
                drive = drives[fault.value]
                return drive.up is False and bool(MATRIX[fault][1] & set(drive.errors))

            watching, counted = asyncio.Event(), asyncio.Event()

            async def watch_healthy():
                # Never down; and fresh once every fault is counted: the cycle in which five
                # drives first time out at once is three intervals long, a stale moment for all.
                while not watching.is_set():
                    assert healthy.up, healthy.errors
                    if counted.is_set():
                        assert healthy.is_fresh(time.monotonic()), time.monotonic() - healthy.last.t
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch_healthy())
            await async_wait_until(lambda: all(shown(f) or f is Fault.RESTART for f in MATRIX), 15,
                        "every fault counted")
            counted.set()
            for fault in (Fault.NAN, Fault.IMPLAUSIBLE, Fault.STUCK):
                energy_at[fault] = drives[fault.value].account.totals.energy_j
            for fault in MATRIX:
                if fault is not Fault.RESTART:
                    assert not drives[fault.value].is_fresh(time.monotonic()), fault  # control must not act
            await asyncio.sleep(6 * INTERVAL)
            for fault, before in energy_at.items():
                assert drives[fault.value].account.totals.energy_j == before, fault  # nothing integrated
            observed = {f: dict(drives[f.value].errors) for f in MATRIX}
            cleared = time.monotonic()
            for fault in MATRIX:
                sim.clear(fault.value)
            recovered = {}

            def all_back():
                for fault in MATRIX:
                    if fault not in recovered and drives[fault.value].is_fresh(time.monotonic()):
                        recovered[fault] = time.monotonic() - cleared
                return len(recovered) == len(MATRIX)

            await async_wait_until(all_back, 10, "every drive recovered within 10 s")
            watching.set()
            await watcher  # raises if the healthy drive was down or stale at any moment
            # The healthy drive was polled in every cycle while the others failed.
            assert healthy.polls - polls0 >= poller.stats.cycles - cycles0 - 1
            assert dict(healthy.errors) == {}
            assert restarted.errors["counter_reset"] >= 1
            # The counter falling from 500 kWh to 0 books neither a negative nor a huge step.
            booked = restarted.account.totals.energy_j - restart_energy
            assert 0.0 <= booked <= 3 * 15e3 * (time.monotonic() - restart_t)
            for fault in MATRIX:
                report.append(f"{fault.value:12s} errors {observed[fault]}  "
                              f"recovered in {recovered[fault]:.1f} s")
        finally:
            stop.set()
            await run
            await devices.run(sim.stop())
            await devices.close()

    asyncio.run(scenario())
    print("\n" + "\n".join(report))


def test_fault_specs_are_checked():
    assert FaultSpec.make(Fault.NOISE).probability == 0.3
    assert FaultSpec.make(Fault.EXCEPTION, code=6).code == 6
    bads = ({"probability": 2.0}, {"code": 0}, {"delay_s": -1.0}, {"colour": 1.0}, {"factor": float("nan")})
    for bad in bads:
        try:
            FaultSpec.make(Fault.EXCEPTION, **bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_faults_from_the_plant_file_are_in_force_from_the_start(tmp_path):
    faults = "    faults:\n      - {kind: exception, code: 6}\n      - {kind: slow, delay_s: 0.2}\n"
    text = DEMO.read_text().replace("    ramp_time_s: 2\n", "    ramp_time_s: 2\n" + faults, 1)
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    plant = load_plant(path)
    sim = SimulatedPlant(plant)
    assert set(sim.faults("cw-pump-1")) == {Fault.EXCEPTION, Fault.SLOW}
    assert sim.faults("chw-pump-1") == ()
    sim.clear("cw-pump-1", Fault.SLOW)
    assert sim.faults("cw-pump-1") == (Fault.EXCEPTION,)
    bad = DEMO.read_text().replace("    ramp_time_s: 2\n", "    ramp_time_s: 2\n    faults:\n"
                                   "      - {kind: gremlins}\n      - {kind: slow, delay_s: -1}\n", 1)
    path.write_text(bad)
    try:
        load_plant(path)
    except Exception as exc:  # noqa: BLE001 - the message is what matters
        assert "faults[0].kind: must be one of" in str(exc) and "delay_s" in str(exc)
    else:
        raise AssertionError("bad faults accepted")
