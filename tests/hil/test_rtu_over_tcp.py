"""RTU over TCP for real: the simulator as a transparent Ethernet↔RS-485 serial server, the agent its client.

RTU frames with their CRC go over a real TCP socket (no MBAP header); the simulator answers them
one at a time on one emulated 19200 baud line, with the wire time a real line would take.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
import time

import pytest

from agent.config import Transport, load_config
from agent.config.profile import BUILTIN_PROFILES, load_profile
from agent.config.yamlsource import Issues
from agent.modbus.readplan import bus_budget
from agent.service import Agent
from hil import SimulatedPlant, load_plant
from hil.faults import Fault
from tests.support import (
    REPO,
    DeviceLoop,
    async_wait_until,
    free_port,
    scrape,
    spawn,
    stop,
    value,
    wait_until,
)

DEMO = REPO / "configs" / "plants" / "demo.yaml"
DRIVES = 8


def g120_line():
    demo = load_plant(DEMO)
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    drives = tuple(dataclasses.replace(demo.drives[i % 3], name=f"g120-{i + 1}", unit=i + 1, profile=g120)
                   for i in range(DRIVES))
    return dataclasses.replace(demo, drives=drives)


def site(tmp_path, port, drives, absent_unit, metrics_port=0):
    text = textwrap.dedent(f"""\
        site: {{name: rtu-over-tcp, grid_emission_factor_kg_per_kwh: 0.5,
                tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        metrics: {{listen: "127.0.0.1:{metrics_port}"}}
        storage: {{path: {tmp_path}}}
        polling: {{interval_s: 1.0, timeout_s: 0.2, retries: 0, max_gap_s: 5}}
        buses:
          - {{name: moxa, transport: rtu_over_tcp, host: 127.0.0.1, port: {port}, baudrate: 19200,
              parity: E, stopbits: 1, reconnect_delay_max_s: 1}}
        drives:
        """)
    units = [(d.name, d.unit, d.profile.name) for d in drives] + [("absent", absent_unit, "sinamics-g120")]
    for name, unit, profile in units:
        text += (f"  - {{name: {name}, bus: moxa, unit: {unit}, profile: {profile}, rated_power_kw: 15,\n"
                 "     rated_speed_rpm: 1470, load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}\n")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_eight_drives_behind_a_serial_server_an_absent_one_line_noise_and_a_timeout(tmp_path):
    plant = g120_line()
    figures = {}

    async def scenario():
        sim = SimulatedPlant(plant, seed=7)
        devices = DeviceLoop()  # the drives answer from their own thread, as from their own line
        await devices.run(sim.start_rtu_over_tcp("127.0.0.1", 0, baudrate=19200, parity="E", stopbits=1))
        config = load_config(site(tmp_path, sim.serial_server_address[1], plant.drives, absent_unit=20))
        assert config.buses[0].transport is Transport.RTU_OVER_TCP
        agent = Agent(config)
        (poller,) = agent.pollers
        drives = {d.name: d for d in agent.drives}
        healthy = [drives[d.name] for d in plant.drives]
        stop_event = asyncio.Event()
        run = asyncio.create_task(agent.run(stop_event, serve_metrics=False))
        try:
            await async_wait_until(lambda: all(d.up for d in healthy), 20, "all eight drives up")
            start_cycles = poller.stats.cycles
            await async_wait_until(lambda: poller.stats.cycles >= start_cycles + 6, 30, "six more cycles")
            # The absent unit times out, the socket is reopened after each of its timeouts, and it
            # never takes the others down.
            assert drives["absent"].up is False and set(drives["absent"].errors) == {"timeout"}
            assert all(d.up and d.errors == {} for d in healthy)
            assert poller.stats.connects >= 2 and sim.stats.connections == poller.stats.connects
            eight = bus_budget(config.buses[0], [d.profile for d in plant.drives])
            assert eight is not None
            figures["computed"] = eight.utilization
            figures["measured"] = poller.utilization()
            figures["metric"] = agent.registry.get_sample_value("vfd_bus_utilization_ratio", {"bus": "moxa"})
            figures["sim"] = sim.stats.line_busy_s
            figures["agent"] = poller.client.stats.busy_s

            # Noise on the serial side: the serial server forwards a reply with a flipped bit; the
            # agent counts a CRC error (not a timeout) and keeps the socket.
            connects = poller.stats.connects
            sim.inject("g120-3", Fault.NOISE, probability=1.0)
            await async_wait_until(lambda: drives["g120-3"].errors["crc"] >= 2, 15, "CRC errors counted")
            assert drives["g120-3"].up is False and "timeout" not in drives["g120-3"].errors
            sim.clear("g120-3")
            cleared = time.monotonic()
            await async_wait_until(lambda: drives["g120-3"].up, 10, "g120-3 back after the noise")
            figures["noise_recovered_s"] = time.monotonic() - cleared

            # A drive that goes silent: each of its timeouts drops and reopens the socket (as on
            # Modbus TCP), and the drives after it are polled on the new socket in the same cycle.
            before = {d.name: dict(d.errors) for d in healthy}
            timeouts = drives["g120-5"].errors["timeout"]
            connects = poller.stats.connects
            sim.inject("g120-5", Fault.TIMEOUT)
            await async_wait_until(lambda: drives["g120-5"].errors["timeout"] >= timeouts + 3, 30,
                                   "three timeouts of g120-5")
            assert poller.stats.connects >= connects + 3  # absent's and g120-5's timeouts each reopen it
            polls = {d.name: d.polls for d in healthy}
            start_cycles = poller.stats.cycles
            await async_wait_until(lambda: poller.stats.cycles >= start_cycles + 3, 20, "three more cycles")
            for d in healthy:
                if d.name != "g120-5":
                    assert d.up and d.errors == before[d.name], (d.name, d.errors)
                    assert d.polls >= polls[d.name] + 2  # in every cycle (the first may have been under way)
            sim.clear("g120-5")
            cleared = time.monotonic()
            await async_wait_until(lambda: drives["g120-5"].up, 15, "g120-5 back")
            figures["timeout_recovered_s"] = time.monotonic() - cleared
            figures["connects"] = poller.stats.connects
        finally:
            stop_event.set()
            await run
            await devices.run(sim.stop())
            await devices.close()

    asyncio.run(scenario())
    print(f"\n8 x G120 behind a serial server at 19200 baud, 1 s interval: computed utilization "
          f"{figures['computed']:.3f}, measured {figures['measured']:.3f} (metric {figures['metric']:.3f}); "
          f"line time agent {figures['agent']:.2f} s vs simulator {figures['sim']:.2f} s; noise recovered "
          f"in {figures['noise_recovered_s']:.1f} s, a timeout in {figures['timeout_recovered_s']:.1f} s; "
          f"{figures['connects']} connections")
    assert 0.4 < figures["computed"] < 0.5
    # The serial side's frame times (not the time on loopback): the same figure as over a pty.
    assert figures["measured"] == pytest.approx(figures["computed"], rel=0.3)
    assert figures["metric"] is not None and figures["metric"] > 0


def test_vfd_sim_serves_rtu_over_tcp_and_scan_probe_and_run_reach_the_drives(tmp_path):
    sim = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "--plant", str(DEMO), "--rtu-over-tcp", "127.0.0.1:0",
         "--baudrate", "9600", "--parity", "N", "--stopbits", "2", "--metrics", "127.0.0.1:0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    agent = None
    try:
        line = sim.stdout.readline()
        assert line.startswith("vfd-sim: modbus rtu+tcp:127.0.0.1:") and "@9600N2" in line, line
        port = int(line.split()[2].removeprefix("rtu+tcp:127.0.0.1:").partition("@")[0])
        bus = f"rtu+tcp://127.0.0.1:{port}?baudrate=9600&parity=N&stopbits=2"
        scan = subprocess.run([sys.executable, "-m", "agent.cli", "scan", "--bus", bus, "--units", "1-5",
                               "--timeout", "0.2"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert scan.returncode == 0, scan.stderr
        assert [ln for ln in scan.stdout.splitlines() if ln.startswith("unit ")] == [
            "unit 1: answers", "unit 2: answers", "unit 3: answers"]
        assert f"3 of 5 unit(s) answer on 127.0.0.1:{port}" in scan.stdout
        probe = subprocess.run([sys.executable, "-m", "agent.cli", "probe", "--bus", bus, "--unit", "2",
                                "--profile", "generic", "--rated-power-kw", "7.5", "--rated-speed-rpm",
                                "2900"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert "ready running remote" in probe.stdout and "0 problem(s)" in probe.stdout

        # vfd-agent run on the same serial server: the drives up, the line's utilization exported.
        demo = load_plant(DEMO)
        metrics_port = free_port()
        path = site(tmp_path, port, demo.drives, absent_unit=9, metrics_port=metrics_port)
        path.write_text(path.read_text().replace("baudrate: 19200,\n              parity: E, stopbits: 1",
                                                 "baudrate: 9600,\n              parity: N, stopbits: 2"))
        agent = spawn("agent.cli", "run", "--config", str(path))
        url = f"http://127.0.0.1:{metrics_port}/metrics"

        def all_up():
            samples = scrape(url)
            up = [value(samples, "vfd_up", drive=d.name) for d in demo.drives]
            ratio = value(samples, "vfd_bus_utilization_ratio", bus="moxa")
            return samples if up == [1.0] * len(up) and ratio is not None else None

        samples = wait_until(all_up, 60, what="every drive up under vfd-agent run")
        assert value(samples, "vfd_up", drive="absent") == 0.0
        assert 0.0 < value(samples, "vfd_bus_utilization_ratio", bus="moxa") < 1.0
    finally:
        if agent is not None:
            code, _, err = stop(agent)
            assert code == 0 and "Traceback" not in err, err
        sim.terminate()
        _, err = sim.communicate(timeout=15)
    assert sim.returncode == 0, err
    assert "Traceback" not in err
