"""A serial port the OS refuses: a located error for that bus, the other buses keep polling, retries.

A Linux pty takes no parity bit: asked for parity E with nothing else to change, it refuses
(``termios.error``, EINVAL), as some USB adapters do. The agent runs as a real process with a
TCP bus beside the refused line, and opens the port again and again, backing off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
import sys
import termios
import textwrap

import pytest
import serial

from hil import SimulatedPlant, load_plant
from tests.ptypair import pty_pair
from tests.support import REPO, free_port, scrape, spawn, stop, value, wait_until

DEMO = REPO / "configs" / "plants" / "demo.yaml"


def refuse_parity(device: str) -> None:
    """Leave the pty at 19200 8N1, so that asking for parity E changes nothing it can do: refused."""
    serial.Serial(device, baudrate=19200, parity="N", exclusive=True).close()
    try:
        serial.Serial(device, baudrate=19200, parity="E", exclusive=True).close()
    except termios.error:
        return
    pytest.skip("this kernel's ptys accept parity E: nothing here refuses a line setting")


def config(tmp_path, tcp_port, device, metrics_port):
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(f"""\
        site: {{name: refused, grid_emission_factor_kg_per_kwh: 0.5,
                tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        metrics: {{listen: "127.0.0.1:{metrics_port}"}}
        storage: {{path: {tmp_path}}}
        polling: {{interval_s: 0.5, timeout_s: 0.2, retries: 0}}
        buses:
          - {{name: gw, host: 127.0.0.1, port: {tcp_port}, reconnect_delay_max_s: 1}}
          - {{name: line, transport: rtu, device: {device}, baudrate: 19200, parity: E, stopbits: 1,
              reconnect_delay_max_s: 1}}
        drives:
          - {{name: chw-pump-1, bus: gw, unit: 1, profile: generic, rated_power_kw: 15,
              rated_speed_rpm: 1470, load: {{kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}}}
          - {{name: supply-fan, bus: line, unit: 3, profile: generic, rated_power_kw: 11,
              rated_speed_rpm: 1460, load: {{kind: fan, rated_flow_m3h: 30000, rated_pressure_pa: 800}}}}
        """))
    return path


def test_a_refused_serial_port_is_a_located_bus_error_and_the_other_bus_keeps_polling(tmp_path):
    plant = load_plant(DEMO)
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    refusal = "{a} refuses the line settings 19200 baud, 8 data bits, parity E, 1 stop bit(s)"

    async def scenario(a: str, b: str) -> str:
        tcp = SimulatedPlant(dataclasses.replace(plant, drives=plant.drives[:1]))
        rtu = SimulatedPlant(dataclasses.replace(plant, drives=plant.drives[2:]))
        await tcp.start("127.0.0.1", 0)
        await rtu.start_rtu(b, baudrate=19200, parity="N", stopbits=1)
        refuse_parity(a)
        path = config(tmp_path, tcp.port, a, metrics_port)
        agent = spawn("agent.cli", "--log-level", "DEBUG", "run", "--config", str(path))
        try:
            def refused_and_polling():
                samples = scrape(url)
                errors = value(samples, "vfd_poll_errors_total", drive="supply-fan", kind="connection") or 0
                up = value(samples, "vfd_up", drive="chw-pump-1") == 1.0
                return samples if up and errors >= 3 else None
            samples = await asyncio.to_thread(wait_until, refused_and_polling, 30, what="refused, gw polled")
            assert value(samples, "vfd_up", drive="supply-fan") == 0.0
            first_poll = value(samples, "vfd_last_poll_timestamp_seconds", drive="chw-pump-1")
            later = await asyncio.to_thread(
                wait_until, lambda: (s := scrape(url)) and value(
                    s, "vfd_last_poll_timestamp_seconds", drive="chw-pump-1") > first_poll and s, 10)
            assert value(later, "vfd_up", drive="chw-pump-1") == 1.0
            assert agent.poll() is None  # still running

            # The commissioning tools say the same, without a traceback.
            for command in (["scan", "--units", "3"], ["probe", "--unit", "3", "--profile", "generic"]):
                bus = ["--bus", f"rtu://{a}?parity=E"]
                argv = [sys.executable, "-m", "agent.cli", command[0], *bus, *command[1:]]
                result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
                assert result.returncode == 1, result.stderr
                assert "Traceback" not in result.stderr
                assert f"{a} refuses the line settings 19200 baud, 8 data bits, parity E" in result.stderr

            # Three attempts to open the line (the first logged at ERROR, the others at DEBUG), counted.
            def failures() -> float | None:
                count = value(scrape(url), "vfd_bus_connect_failures_total", bus="line")
                return count if count is not None and count >= 3 else None
            await asyncio.to_thread(wait_until, failures, 30, what="three failed attempts to open the line")
            samples = scrape(url)
            assert value(samples, "vfd_bus_connects_total", bus="line") == 0.0
            assert (value(samples, "vfd_bus_connects_total", bus="gw") or 0) >= 1
            assert (value(samples, "vfd_bus_cycles_total", bus="gw") or 0) >= 2

        finally:
            # In a thread, so the simulators keep serving while the agent shuts down.
            code, _, err = await asyncio.to_thread(stop, agent)
            await tcp.stop()
            await rtu.stop()
        assert code == 0, err
        return err

    with pty_pair(tmp_path) as (a, b):
        err = asyncio.run(scenario(a, b))
    assert "Traceback" not in err
    assert err.count(f"ERROR agent.poller: bus line: {refusal.format(a=a)}") == 1, err
    assert "retrying after 0.5 s, backing off to 1 s" in err
    # Every later attempt really opens the port again (the refused one is released each time), backing off.
    retries = re.findall(r"bus line: attempt (\d+) failed: (.*); next in ([0-9.]+) s", err)
    assert len(retries) >= 2, err[-3000:]
    assert all(refusal.format(a=a) in text for _, text, _ in retries)
    assert [float(delay) for _, _, delay in retries[:2]] == [1.0, 1.0]
    assert "bus gw: connected to" in err and "bus line: connected" not in err
