"""The simulated plant over real loopback sockets, with a real pymodbus client, and vfd-sim as a process."""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pymodbus.client import AsyncModbusTcpClient

from agent.config.profile import Quantity, RegisterTable
from agent.modbus.readplan import decode_blocks, plan_reads
from agent.units import KWH_TO_J, RPM_TO_RAD_S
from hil.plantfile import PlantSpec, load_plant
from hil.server import SimulatedPlant
from hil.truth import GroundTruthCollector

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "plants" / "demo.yaml"
PLANTS = REPO / "configs" / "plants"
DEADLINE = 10.0  # s, for anything awaited on loopback; never an asserted duration


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro: Awaitable[None]) -> None:
    async def guarded() -> None:
        async with asyncio.timeout(60.0):  # a hung socket fails the test instead of the run
            await coro
    asyncio.run(guarded())


def client_for(sim: SimulatedPlant) -> AsyncModbusTcpClient:
    return AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=1.0, retries=0, reconnect_delay=0)


async def read_drive(client: AsyncModbusTcpClient, sim: SimulatedPlant, name: str) -> dict[Quantity, float]:
    """Read and decode every point of a drive the way the agent does."""
    spec = sim.spec.drive(name)
    blocks = plan_reads(spec.profile.points.values())
    registers = []
    for block in blocks:
        holding = block.table is RegisterTable.HOLDING
        read = client.read_holding_registers if holding else client.read_input_registers
        response = await read(block.start, count=block.count, device_id=spec.unit)
        assert not response.isError(), response
        registers.append(response.registers)
    return decode_blocks(blocks, registers)


async def poll_until(check: Callable[[], Awaitable[bool]], deadline: float = DEADLINE) -> None:
    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(loop(), timeout=deadline)


def assert_matches_physics(values: dict[Quantity, float], sim: SimulatedPlant, name: str) -> None:
    s, spec = sim.snapshot(name), sim.spec.drive(name)
    # The served values are the measured (noisy) ones, within the registers' resolution.
    measured_speed = s.measured.speed_ratio * spec.rated_speed
    assert values[Quantity.SPEED] == pytest.approx(measured_speed, abs=0.06 * RPM_TO_RAD_S)
    assert values[Quantity.POWER] == pytest.approx(s.measured.power, rel=1e-6)
    assert 0.0 <= s.measured.energy_counter - values[Quantity.ENERGY] < 0.01 * KWH_TO_J  # counts whole 10 Wh
    # ... and the measured values lie within a few sigma of the truth.
    assert values[Quantity.POWER] == pytest.approx(s.power, rel=5 * spec.noise.power)
    assert values[Quantity.SPEED] == pytest.approx(s.speed_ratio * spec.rated_speed, rel=0.005)
    assert values[Quantity.OUTPUT_FREQUENCY] == pytest.approx(s.speed_ratio * spec.rated_frequency, abs=0.006)
    assert values[Quantity.STATUS_WORD] == 0b0111


def test_served_values_decode_through_the_profile_to_the_physics():
    clock = FakeClock()
    sim = SimulatedPlant(load_plant(DEMO), clock=clock)

    async def scenario() -> None:
        await sim.start(host="127.0.0.1", port=0)
        client = client_for(sim)
        try:
            assert await client.connect()
            for name in sim.drive_names:
                assert_matches_physics(await read_drive(client, sim, name), sim, name)
            clock.now += 45.0  # demand has moved: the next request catches the physics up
            for name in sim.drive_names:
                values = await read_drive(client, sim, name)
                assert sim.snapshot(name).t == pytest.approx(45.0)
                assert_matches_physics(values, sim, name)
                assert values[Quantity.ENERGY] > 0.0
        finally:
            client.close()
            await sim.stop()

    run(scenario())
    assert sim.units == {"chw-pump-1": 1, "cw-pump-1": 2, "supply-fan": 3}
    assert set(sim.profile_names.values()) == {"generic"}


def test_a_written_speed_setpoint_moves_the_speed():
    clock = FakeClock()
    sim = SimulatedPlant(load_plant(DEMO), clock=clock)

    async def scenario() -> None:
        await sim.start()
        client = client_for(sim)
        try:
            assert await client.connect()
            reply = await client.write_register(101, 5000, device_id=1)  # 50.00 %
            assert not reply.isError(), reply
            values = await read_drive(client, sim, "chw-pump-1")
            assert values[Quantity.SPEED_SETPOINT] == pytest.approx(0.5)
            clock.now += 10 * sim.spec.drive("chw-pump-1").ramp_time
            values = await read_drive(client, sim, "chw-pump-1")
            assert values[Quantity.SPEED] == pytest.approx(0.5 * 1470 * RPM_TO_RAD_S, rel=0.003)
            assert sim.snapshot("chw-pump-1").remote_active
            # A block write of control word and setpoint, as the agent may send it.
            reply = await client.write_registers(100, [0x047F, 4000], device_id=1)
            assert not reply.isError(), reply
            clock.now += 10 * sim.spec.drive("chw-pump-1").ramp_time
            assert (await read_drive(client, sim, "chw-pump-1"))[Quantity.SPEED] == pytest.approx(
                0.4 * 1470 * RPM_TO_RAD_S, rel=0.003)
        finally:
            client.close()
            await sim.stop()

    run(scenario())


def test_speed_follows_a_write_in_real_time(tmp_path):
    text = DEMO.read_text(encoding="utf-8").replace("ramp_time_s: 3", "ramp_time_s: 0.05")
    plant_file = tmp_path / "fast.yaml"
    plant_file.write_text(text.replace("step_s: 0.05", "step_s: 0.01"), encoding="utf-8")
    sim = SimulatedPlant(load_plant(plant_file))

    async def scenario() -> None:
        await sim.start()
        client = client_for(sim)
        try:
            assert await client.connect()
            assert not (await client.write_register(101, 9500, device_id=1)).isError()

            async def at_target() -> bool:
                speed = (await read_drive(client, sim, "chw-pump-1"))[Quantity.SPEED]
                return abs(speed - 0.95 * 1470 * RPM_TO_RAD_S) < 0.005 * 1470 * RPM_TO_RAD_S

            await poll_until(at_target)
            # The physics task keeps the ground truth moving between requests too.
            before = sim.true_energy_j("supply-fan")
            await poll_until(lambda: _later(sim, before))
        finally:
            client.close()
            await sim.stop()

    run(scenario())


async def _later(sim: SimulatedPlant, before: float) -> bool:
    return sim.true_energy_j("supply-fan") > before


def test_start_and_stop_twice_leaves_nothing_behind():
    sim = SimulatedPlant(load_plant(DEMO))

    async def scenario() -> None:
        ports = []
        for _ in range(2):
            await sim.start(port=ports[0] if ports else 0)  # the second run rebinds the same port
            ports.append(sim.port)
            client = client_for(sim)
            assert await client.connect()
            assert (await read_drive(client, sim, "supply-fan"))[Quantity.POWER] > 0.0
            client.close()
            await sim.stop()
            assert not sim.serving
            assert asyncio.all_tasks() == {asyncio.current_task()}
        assert ports[0] == ports[1] > 0
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", ports[0])

    run(scenario())


def test_a_busy_port_is_an_oserror_and_leaves_nothing_behind():
    first, second = SimulatedPlant(load_plant(DEMO)), SimulatedPlant(load_plant(DEMO))

    async def scenario() -> None:
        await first.start()
        try:
            with pytest.raises(OSError, match="cannot listen"):
                await second.start(port=first.port)
            assert not second.serving
        finally:
            await first.stop()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(scenario())


def test_the_gateway_answers_like_a_drive_would():
    sim = SimulatedPlant(load_plant(DEMO), clock=FakeClock())

    async def scenario() -> None:
        await sim.start()
        client = client_for(sim)
        try:
            assert await client.connect()
            absent = await client.read_holding_registers(0, count=2, device_id=9)
            assert absent.isError() and absent.exception_code == 0x0B  # gateway target failed to respond
            beyond = await client.read_holding_registers(100, count=5, device_id=2)
            assert beyond.isError() and beyond.exception_code == 0x02
            read_only = await client.write_register(1, 1234, device_id=2)
            assert read_only.isError() and read_only.exception_code == 0x02
            # The drives stay available after those errors.
            assert (await read_drive(client, sim, "cw-pump-1"))[Quantity.POWER] > 0.0
        finally:
            client.close()
            await sim.stop()

    run(scenario())


def test_ground_truth_collector_exports_the_physics():
    clock = FakeClock()
    sim = SimulatedPlant(load_plant(DEMO), clock=clock)
    registry = CollectorRegistry()
    registry.register(GroundTruthCollector(sim))
    clock.now += 30.0
    sim.update()
    for name in sim.drive_names:
        labels = {"drive": name}
        snapshot = sim.snapshot(name)
        energy = registry.get_sample_value("hil_true_energy_joules_total", labels)
        assert energy == sim.true_energy_j(name) > 0
        assert registry.get_sample_value("hil_true_baseline_energy_joules_total", labels) == (
            sim.true_baseline_energy_j(name))
        assert registry.get_sample_value("hil_true_power_watts", labels) == snapshot.power
        demand = registry.get_sample_value("hil_demand_flow_cubic_meters_per_second", labels)
        assert demand == snapshot.demand_flow
    assert registry.get_sample_value("hil_formula_baseline_power_watts", {"drive": "supply-fan"}) == 11_000.0
    # The truth is the fan direct on line on its system: its rated point, 90 % of 11 kW at the shaft.
    fan = sim.snapshot("supply-fan")
    assert registry.get_sample_value("hil_true_baseline_power_watts", {"drive": "supply-fan"}) == (
        fan.baseline_power)
    assert 0.9 * 11_000.0 < fan.baseline_power < 11_000.0
    assert registry.get_sample_value("hil_physics_time_seconds") == pytest.approx(30.0)


MIXED_PROFILE = """\
name: mixed
description: holding and input registers apart
points:
  status_word:    {address: 0, type: uint16, unit: bits}
  speed_setpoint: {address: 1, type: uint16, scale: 0.01, unit: "%", writable: true}
  speed:          {address: 0, table: input, type: uint16, unit: rpm}
  power:          {address: 1, table: input, type: float32, unit: W}
"""


def mixed_plant(tmp_path: Path) -> PlantSpec:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mixed.yaml").write_text(MIXED_PROFILE, encoding="utf-8")
    text = DEMO.read_text(encoding="utf-8").replace("profile: generic", "profile: mixed", 1)
    (tmp_path / "plant.yaml").write_text(text, encoding="utf-8")
    return load_plant(tmp_path / "plant.yaml")


def test_a_profile_with_input_and_holding_registers_is_served_from_both_tables(tmp_path):
    sim = SimulatedPlant(mixed_plant(tmp_path), clock=FakeClock())

    async def scenario() -> None:
        await sim.start()
        client = client_for(sim)
        try:
            assert await client.connect()
            values = await read_drive(client, sim, "chw-pump-1")
            snapshot = sim.snapshot("chw-pump-1")
            assert values[Quantity.POWER] == pytest.approx(snapshot.measured.power, rel=1e-6)
            speed = snapshot.measured.speed_ratio * 1470 * RPM_TO_RAD_S
            assert values[Quantity.SPEED] == pytest.approx(speed, abs=0.6 * RPM_TO_RAD_S)
            assert not (await client.write_register(1, 5000, device_id=1)).isError()
            assert sim.model.drives["chw-pump-1"].remote_setpoint == pytest.approx(0.5)
        finally:
            client.close()
            await sim.stop()

    run(scenario())
    assert sim.profile_names["chw-pump-1"] == "mixed"


# --- vfd-sim as a real process --------------------------------------------------------------------


async def _start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.cli", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:  # noqa: S310 - loopback only
        return str(response.read().decode())


def test_vfd_sim_serves_a_plant_and_stops_cleanly_on_sigterm():
    async def scenario() -> None:
        proc = await _start_cli("--plant", str(DEMO), "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=DEADLINE)).decode().strip()
            words = line.split()
            assert words[:2] == ["vfd-sim:", "modbus"] and words[3] == "metrics", line
            modbus_port = int(words[2].rsplit(":", 1)[1])
            metrics_port = int(words[4].rsplit(":", 1)[1])
            client = AsyncModbusTcpClient("127.0.0.1", port=modbus_port, timeout=1.0, retries=0)
            assert await client.connect()
            response = await client.read_holding_registers(0, count=10, device_id=3)
            client.close()
            assert not response.isError() and response.registers[0] == 0b0111
            text = await asyncio.to_thread(_fetch, f"http://127.0.0.1:{metrics_port}/metrics")
            assert 'hil_true_energy_joules_total{drive="supply-fan"}' in text
            assert 'hil_true_baseline_energy_joules_total{drive="chw-pump-1"}' in text
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), timeout=DEADLINE)
        stderr = err.decode()
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert "INFO hil.cli: serving plant demo: modbus 127.0.0.1:" in stderr
        assert out == b""  # exactly one status line on stdout

    run(scenario())


def test_vfd_sim_rejects_a_bad_plant_file_with_located_messages(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("day_s: 60\ndrives:\n  - name: x\n    unit: 300\n", encoding="utf-8")

    async def scenario() -> None:
        proc = await _start_cli("--plant", str(bad))
        out, err = await asyncio.wait_for(proc.communicate(), timeout=DEADLINE)
        assert proc.returncode == 2
        lines = err.decode().splitlines()
        assert f"{bad}:4: drives[0].unit: must be in [1, 247], got 300" in lines
        assert f"{bad}:3: drives[0].profile: is required" in lines
        assert "Traceback" not in err.decode() and out == b""

    run(scenario())


def test_vfd_sim_rejects_a_bad_listen_address():
    from hil.cli import main

    assert main(["--plant", str(DEMO), "--listen", "nowhere"]) == 2


def test_the_critical_point_is_served_as_input_registers_of_every_drive_of_a_circuit():
    """Remote DP (kPa) and valve opening (%) as float32 at 200..203, read over a real socket."""
    from agent.modbus.codec import DataType, Order, decode
    from hil.registers import CRITICAL_PRESSURE_ADDRESS

    clock = FakeClock()
    sim = SimulatedPlant(load_plant(PLANTS / "chw-3pump.yaml"), clock=clock)

    async def scenario() -> None:
        await sim.start("127.0.0.1", 0)
        client = client_for(sim)
        try:
            await client.connect()
            clock.now += 20.0
            sim.update()
            for name in ("chw-pump-1", "chw-pump-3"):
                reply = await client.read_input_registers(CRITICAL_PRESSURE_ADDRESS, count=4,
                                                          device_id=sim.units[name])
                assert not reply.isError(), reply
                dp = decode(reply.registers[:2], DataType.FLOAT32, Order.BIG, Order.BIG) * 1e3
                valve = decode(reply.registers[2:], DataType.FLOAT32, Order.BIG, Order.BIG) / 100.0
                measured = sim.snapshot(name).measured
                assert dp == pytest.approx(measured.critical_pressure, rel=1e-6)
                assert valve == pytest.approx(measured.critical_valve, rel=1e-6)
                assert 0.0 < valve < 1.0 and dp > 0.0
        finally:
            client.close()
            await sim.stop()

    run(scenario())
