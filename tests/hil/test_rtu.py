"""Modbus RTU for real: the simulator on one end of a socat pty pair, the agent on the other.

ptys take no parity bit, so the line runs 8N2: still 11 bits per character, the same frame
times as the drives' factory 8E1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
import time

import pytest

from agent.config import load_config
from agent.config.profile import BUILTIN_PROFILES, load_profile
from agent.config.yamlsource import Issues
from agent.modbus.readplan import bus_budget
from agent.service import Agent
from hil import SimulatedPlant, load_plant
from hil.faults import Fault
from tests.ptypair import pty_pair
from tests.support import REPO, DeviceLoop, async_wait_until

DEMO = REPO / "configs" / "plants" / "demo.yaml"
DRIVES = 8


def g120_line():
    demo = load_plant(DEMO)
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    drives = tuple(dataclasses.replace(demo.drives[i % 3], name=f"g120-{i + 1}", unit=i + 1, profile=g120)
                   for i in range(DRIVES))
    return dataclasses.replace(demo, drives=drives)


def site(tmp_path, device, drives, absent_unit):
    text = textwrap.dedent(f"""\
        site: {{name: rtu, grid_emission_factor_kg_per_kwh: 0.5,
                tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {tmp_path}}}
        polling: {{interval_s: 1.0, timeout_s: 0.1, retries: 0, max_gap_s: 5}}
        buses:
          - {{name: line, transport: rtu, device: {device}, baudrate: 19200, parity: N, stopbits: 2}}
        drives:
        """)
    units = [(d.name, d.unit) for d in drives] + [("absent", absent_unit)]
    for name, unit in units:
        text += (f"  - {{name: {name}, bus: line, unit: {unit}, profile: sinamics-g120, rated_power_kw: 15,\n"
                 "     rated_speed_rpm: 1470, load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}\n")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_config(path)


def test_eight_drives_on_one_rtu_line_an_absent_one_and_line_noise(tmp_path):
    plant = g120_line()
    figures = {}

    async def scenario(a, b):
        sim = SimulatedPlant(plant, seed=5)
        devices = DeviceLoop()  # the drives answer from their own thread, as from their own line
        await devices.run(sim.start_rtu(a, baudrate=19200, parity="N", stopbits=2))  # wire time emulated
        config = site(tmp_path, b, plant.drives, absent_unit=20)
        agent = Agent(config)
        (poller,) = agent.pollers
        drives = {d.name: d for d in agent.drives}
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop, serve_metrics=False))
        try:
            await async_wait_until(lambda: all(drives[d.name].up for d in plant.drives), 20,
                                   "all eight drives up")
            start_cycles = poller.stats.cycles
            await async_wait_until(lambda: poller.stats.cycles >= start_cycles + 6, 30, "six more cycles")
            # The absent unit times out; it never takes the others down.
            assert drives["absent"].up is False and drives["absent"].errors["timeout"] >= 1
            assert all(drives[d.name].up and drives[d.name].errors == {} for d in plant.drives)
            assert sum(sim.stats.requests[d.unit] for d in plant.drives) > 0
            eight = bus_budget(config.buses[0], [d.profile for d in plant.drives])
            figures["computed"] = eight.utilization
            figures["measured"] = poller.utilization()
            figures["metric"] = agent.registry.get_sample_value("vfd_bus_utilization_ratio", {"bus": "line"})
            figures["sim"] = sim.stats.line_busy_s
            figures["agent"] = poller.client.stats.busy_s
            # Noise on the line: CRC errors, counted as such, the other drives unaffected.
            sim.inject("g120-3", Fault.NOISE, probability=1.0)
            await async_wait_until(lambda: drives["g120-3"].errors["crc"] >= 1, 15, "a CRC error counted")
            assert drives["g120-3"].up is False
            sim.clear("g120-3")
            cleared = time.monotonic()
            await async_wait_until(lambda: drives["g120-3"].up, 10, "g120-3 back after the noise")
            figures["recovered_s"] = time.monotonic() - cleared
            assert all(drives[d.name].up for d in plant.drives)
        finally:
            stop.set()
            await run
            await devices.run(sim.stop())
            await devices.close()

    with pty_pair(tmp_path) as (a, b):
        asyncio.run(scenario(a, b))
    print(f"\n8 x G120 at 19200 baud, 1 s interval: computed utilization {figures['computed']:.3f}, "
          f"measured {figures['measured']:.3f} (metric {figures['metric']:.3f}); line time agent "
          f"{figures['agent']:.2f} s vs simulator {figures['sim']:.2f} s; noise recovered in "
          f"{figures['recovered_s']:.1f} s")
    assert 0.4 < figures["computed"] < 0.5
    # Measured over the pty: the drives' frames plus the absent unit's occasional timeouts.
    assert figures["measured"] == pytest.approx(figures["computed"], rel=0.3)
    assert figures["metric"] is not None and figures["metric"] > 0


def test_vfd_sim_serves_rtu_and_probe_and_scan_find_the_drives(tmp_path):
    with pty_pair(tmp_path) as (a, b):
        sim = subprocess.Popen(
            [sys.executable, "-m", "hil.cli", "--plant", str(DEMO), "--rtu", a, "--parity", "N", "--stopbits",
             "2", "--metrics", "127.0.0.1:0"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = sim.stdout.readline()
            assert line.startswith("vfd-sim: modbus rtu:") and "@19200N2" in line, line
            bus = f"rtu://{b}?baudrate=19200&parity=N&stopbits=2"
            scan = subprocess.run([sys.executable, "-m", "agent.cli", "scan", "--bus", bus, "--units", "1-5",
                                   "--timeout", "0.1"], cwd=REPO, capture_output=True, text=True, timeout=60)
            assert scan.returncode == 0, scan.stderr
            assert [ln for ln in scan.stdout.splitlines() if ln.startswith("unit ")] == [
                "unit 1: answers", "unit 2: answers", "unit 3: answers"]
            probe = subprocess.run([sys.executable, "-m", "agent.cli", "probe", "--bus", bus, "--unit", "2",
                                    "--profile", "generic", "--rated-power-kw", "7.5", "--rated-speed-rpm",
                                    "2900"], cwd=REPO, capture_output=True, text=True, timeout=60)
            assert probe.returncode == 0, probe.stdout + probe.stderr
            assert "power" in probe.stdout and "ready running remote" in probe.stdout
            assert "0 problem(s)" in probe.stdout
            # The same drive through the wrong profile: every implausible value is flagged.
            wrong = subprocess.run([sys.executable, "-m", "agent.cli", "probe", "--bus", bus, "--unit", "2",
                                    "--profile", "abb-acs580"], cwd=REPO, capture_output=True, text=True,
                                   timeout=60)
            assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
        finally:
            sim.terminate()
            out, err = sim.communicate(timeout=15)
        assert sim.returncode == 0, err
        assert "Traceback" not in err
