"""The optimizer against simulated plants over loopback Modbus: modes, hand-back, dry run, demand sources."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.config.profile import Quantity
from agent.service import Agent
from agent.units import RHO_G
from hil import SimulatedPlant
from hil.plantfile import load_plant
from hil.scenario import PLANTS, SCENARIOS, Timing, scaled_plant, site_config
from tests.support import async_wait_until

DAY_S = 30.0


class Run:
    """A simulated plant and the agent in one event loop."""

    def __init__(self, sim: SimulatedPlant, agent: Agent, registry: CollectorRegistry,
                 stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.sim, self.agent, self.registry, self.stop, self.task = sim, agent, registry, stop, task

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def commands(self, drive: str) -> list:
        return self.sim.model.drives[drive].writes

    async def until(self, check: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
        await async_wait_until(check, timeout, what)

    async def finish(self) -> None:
        self.stop.set()
        await self.task
        await self.sim.stop()


async def start(tmp_path: Path, scenario: str, mode: str = "control", *, dry_run: bool = False,
                edit: Callable[[str], str] = lambda text: text) -> Run:
    definition = SCENARIOS[scenario]
    timing = Timing.for_duration(DAY_S)
    plant = scaled_plant(load_plant(PLANTS / definition.plant), timing)
    sim = SimulatedPlant(plant)
    await sim.start("127.0.0.1", 0)
    text = edit(site_config(definition, plant, plant.circuits[0], sim.port, timing, tmp_path, mode))
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    registry = CollectorRegistry()
    agent = Agent(load_config(path), registry=registry, dry_run=dry_run)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, serve_metrics=False))
    return Run(sim, agent, registry, stop, task)


def test_advise_mode_publishes_recommendations_and_never_writes(tmp_path):
    async def scenario() -> None:
        run = await start(tmp_path, "ahu-fan", mode="advise")
        try:
            await run.until(lambda: run.value("vfd_recommended_setpoint_pascals", drive="supply-fan"),
                            what="a setpoint")
            await run.until(lambda: (run.value("vfd_expected_saving_watts", drive="supply-fan") or 0) > 0,
                            what="an expected saving")
            setpoint = run.value("vfd_recommended_setpoint_pascals", drive="supply-fan")
            assert 200.0 <= setpoint < 800.0  # Pa: reset below the operator's 800 Pa, not below the minimum
        finally:
            await run.finish()
        assert run.commands("supply-fan") == []
        assert run.value("vfd_setpoint_writes_total", drive="supply-fan", result="ok") is None
        assert run.value("vfd_control_active", drive="supply-fan") == 0.0

    asyncio.run(scenario())


def test_monitor_mode_recommends_nothing(tmp_path):
    async def scenario() -> None:
        run = await start(tmp_path, "ahu-fan", mode="monitor")
        try:
            optimizer = run.agent.optimizer
            assert optimizer is not None
            await run.until(lambda: optimizer.cycles >= 5, what="five optimizer cycles")
            assert run.value("vfd_recommended_setpoint_pascals", drive="supply-fan") is None
            assert run.value("vfd_expected_saving_watts", drive="supply-fan") is None
        finally:
            await run.finish()
        assert run.commands("supply-fan") == []

    asyncio.run(scenario())


def test_control_resets_the_setpoint_and_hands_it_back_on_shutdown(tmp_path):
    async def scenario() -> Run:
        run = await start(tmp_path, "ahu-fan")
        try:
            await run.until(lambda: run.value("vfd_control_active", drive="supply-fan") == 1.0,
                            what="control")
            await run.until(lambda: run.sim.model.headers["supply-duct"].setpoint < 700.0, what="a reset")
            await run.until(lambda: run.value("vfd_fit_r_squared", drive="supply-fan", curve="power"),
                            what="a power fit")
        finally:
            await run.finish()
        return run

    run = asyncio.run(scenario())
    header = run.sim.model.headers["supply-duct"]
    assert header.setpoint == pytest.approx(800.0, rel=1e-6)  # the operator's setpoint again
    last = run.commands("supply-fan")[-1]
    assert last.quantity is Quantity.PRESSURE_SETPOINT and last.value == pytest.approx(800.0, rel=1e-6)
    assert run.value("vfd_setpoint_writes_total", drive="supply-fan", result="ok") >= 2
    assert run.value("vfd_control_active", drive="supply-fan") == 0.0


def test_staged_pumps_are_handed_back_to_their_own_cascade_on_shutdown(tmp_path):
    async def scenario() -> Run:
        run = await start(tmp_path, "chw-3pump")
        try:
            await run.until(lambda: all(run.value("vfd_control_active", drive=f"chw-pump-{i}") == 1.0
                                        for i in (1, 2, 3)), what="all three pumps under control")
        finally:
            await run.finish()
        return run

    run = asyncio.run(scenario())
    for name in ("chw-pump-1", "chw-pump-2", "chw-pump-3"):
        drive = run.sim.model.drives[name]
        assert not drive.remote_active, name  # back under its own control
        words = [w.value for w in drive.writes if w.quantity is Quantity.CONTROL_WORD]
        assert words[0] in (0x047E, 0x047F) and words[-1] == 0.0, words  # taken, then handed back


def test_a_fault_makes_the_agent_hand_back_and_resume_when_it_clears(tmp_path):
    async def scenario() -> None:
        run = await start(tmp_path, "ahu-fan")
        header = run.sim.model.headers["supply-duct"]
        try:
            await run.until(lambda: header.setpoint < 700.0, what="a reset")
            run.sim.model.drives["supply-fan"].fault_code = 1
            await run.until(lambda: header.setpoint == pytest.approx(800.0, rel=1e-6),
                            what="the hand-back")
            assert run.value("vfd_control_active", drive="supply-fan") == 0.0
            count = len(run.commands("supply-fan"))
            optimizer = run.agent.optimizer
            assert optimizer is not None
            cycles = optimizer.cycles
            await run.until(lambda: optimizer.cycles >= cycles + 5, what="five more cycles")
            assert len(run.commands("supply-fan")) == count  # nothing written while faulted
            run.sim.model.drives["supply-fan"].fault_code = 0
            await run.until(lambda: header.setpoint < 700.0, what="control again")
        finally:
            await run.finish()

    asyncio.run(scenario())


def test_stale_data_stops_the_writes(tmp_path):
    async def scenario() -> None:
        run = await start(tmp_path, "ahu-fan")
        try:
            await run.until(lambda: run.value("vfd_control_active", drive="supply-fan") == 1.0,
                            what="control")
            await run.sim.stop()  # the drive stops answering
            await run.until(lambda: run.value("vfd_control_active", drive="supply-fan") == 0.0,
                            what="writes stopped")
            refused = run.value("vfd_setpoint_writes_total", drive="supply-fan", result="failed")
            assert refused is not None and refused >= 1  # the hand-back was tried, and failed: counted
        finally:
            run.stop.set()
            await run.task

    asyncio.run(scenario())


def test_a_dry_run_counts_the_writes_and_sends_none(tmp_path, caplog):
    async def scenario() -> Run:
        run = await start(tmp_path, "chw-3pump", dry_run=True)
        try:
            await run.until(lambda: (run.value("vfd_setpoint_writes_total", drive="chw-pump-1",
                                               result="dry_run") or 0) >= 3, what="dry-run writes")
            # Nothing was sent: the drives' own values are in force, whatever the dry run would hold.
            for name in ("chw-pump-1", "chw-pump-2", "chw-pump-3"):
                assert run.value("vfd_control_active", drive=name) == 0.0, name
        finally:
            await run.finish()
        return run

    with caplog.at_level("INFO", logger="agent.control.writer"):
        run = asyncio.run(scenario())
    for name in ("chw-pump-1", "chw-pump-2", "chw-pump-3"):
        assert run.commands(name) == []
        assert run.value("vfd_setpoint_writes_total", drive=name, result="ok") == 0.0
    assert "dry run: would write" in caplog.text


def test_a_sensorless_demand_from_power_and_speed(tmp_path):
    def sensorless(text: str) -> str:
        start = text.index("    demand: {")
        end = text.index("\n", start)
        return text[:start] + "    demand: {source: sensorless, margin_pct: 1}" + text[end:]

    async def scenario() -> None:
        run = await start(tmp_path, "booster-static", mode="advise", edit=sensorless)
        try:
            await run.until(lambda: run.value("vfd_recommended_speed_ratio", drive="booster"),
                            what="a recommendation from the estimated flow")
            group = run.agent.optimizer.groups[0]
            true_demand = run.sim.model.headers["riser"].demand.flow(run.sim.model.t)
            assert group.demand.estimate(time.monotonic(), 0.0) == pytest.approx(true_demand, rel=0.1)
        finally:
            await run.finish()

    asyncio.run(scenario())


def test_a_demand_read_from_another_device_on_the_bus(tmp_path):
    def other_device(text: str) -> str:
        # The group is pump 1 alone; the demand comes from unit 3 (another drive of the plant's BMS link).
        text = text.replace("drives: [chw-pump-1, chw-pump-2, chw-pump-3]", "drives: [chw-pump-1]")
        start = text.index("    demand: {")
        end = text.index("\n", start)
        profile = PLANTS / "profiles" / "generic-process.yaml"
        demand = f"    demand: {{bus: plant, unit: 3, profile: {profile}, quantity: process_flow}}"
        return text[:start] + demand + text[end:]

    async def scenario() -> None:
        run = await start(tmp_path, "chw-3pump", mode="advise", edit=other_device)
        try:
            await run.until(lambda: run.value("vfd_recommended_speed_ratio", drive="chw-pump-1"),
                            what="a recommendation")
            group = run.agent.optimizer.groups[0]
            assert len(group.demand.samples) >= 1
        finally:
            await run.finish()

    asyncio.run(scenario())


def test_no_flow_meter_the_demand_is_the_head_the_critical_point_shows(tmp_path):
    """Issue 13: a group whose drives read no flow nor demanded flow, only pressures and the critical valve.

    The agent's profile drops flow and process_flow (the simulator still has them); the demand is the
    head the loads need, the header's less what the throttling critical valve shows beyond the curve.
    """
    text = (PLANTS / "profiles" / "generic-process.yaml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(("flow:", "process_flow:"))]
    (tmp_path / "no-flow.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def no_flow_meter(text: str) -> str:
        text = text.replace(str(PLANTS / "profiles" / "generic-process.yaml"), str(tmp_path / "no-flow.yaml"))
        start = text.index("    demand: {")
        end = text.index("\n", start)
        return text[:start] + "    demand: {source: critical, margin_pct: 1}" + text[end:]

    async def scenario() -> None:
        run = await start(tmp_path, "booster-static", mode="control", edit=no_flow_meter)
        try:
            drive = next(d for d in run.agent.drives if d.name == "booster")
            await run.until(lambda: run.commands("booster"), timeout=30.0, what="a speed written")
            header = run.sim.model.headers["riser"]
            excess, reset = [], []
            for _ in range(30):  # a third of the day in control, the demand moving
                await asyncio.sleep(0.01 * DAY_S)
                need = header.system.static + header.system.k * header.delivered ** 2  # m, the true curve
                excess.append(header.head - need)
                reset.append(50.0 - need)  # what the operator's 50 m setpoint would give beyond it
            assert drive.last is not None
            assert Quantity.FLOW not in drive.last.values and Quantity.PROCESS_FLOW not in drive.last.values
            group = run.agent.optimizer.groups[0]
            assert group.holding
            assert group.demand.estimate(time.monotonic(), 0.0) == pytest.approx(need, rel=0.05)
            # Near the curve, well below the operator's setpoint, and the loads served nearly always.
            assert np.median(excess) <= 1.0 < np.median(reset), (excess, reset)
            assert header.truth.unmet_s <= 0.05 * run.sim.model.t, header.truth.unmet_s
        finally:
            await run.finish()

    asyncio.run(scenario())


def test_a_remote_dp_on_its_own_io_module_is_the_critical_point_and_the_demand(tmp_path):
    """Issue 13: no flow meter, no valve position: a remote DP on a Modbus TCP I/O module (a sensor on a
    bus of its own, here the simulator's unit 1 over a second connection) with its setpoint, polled by
    that bus's poller; the agent trims the header to hold the DP at its setpoint and learns the curve."""
    profile = PLANTS / "profiles" / "remote-dp.yaml"

    def remote_dp(text: str) -> str:
        bus = text[text.index("buses: [") + len("buses: ["):text.index("]\ndrives:")]
        text = text.replace(f"buses: [{bus}]", f"buses: [{bus}, {bus.replace('name: plant', 'name: io')}]")
        sensor = f"  - {{name: remote-dp, bus: io, unit: 1, profile: {profile}}}"
        text = text.replace("drives:\n", f"sensors:\n{sensor}\ndrives:\n", 1)
        start = text.index("    demand: {")
        text = text[:start] + "    demand: {source: critical, margin_pct: 1}" + text[text.index("\n", start):]
        # The critical branch's need at the design flow (40 % of the 15 m dynamic head): enough all day.
        return text.replace("service: {critical_drive: booster}",
                            "service: {critical_drive: remote-dp, critical_setpoint_m: 6}")

    async def scenario() -> None:
        run = await start(tmp_path, "booster-static", mode="control", edit=remote_dp)
        try:
            await run.until(lambda: run.commands("booster"), timeout=30.0, what="a speed written")
            header = run.sim.model.headers["riser"]
            excess, reset = [], []
            for _ in range(20):  # a fifth of the day in control
                await asyncio.sleep(0.01 * DAY_S)
                need = header.system.static + header.system.k * header.delivered ** 2  # m, the true curve
                excess.append(header.head - need)
                reset.append(50.0 - need)  # what the operator's 50 m setpoint would give beyond it
            (sensor,) = run.agent.sensors
            assert sensor.polls > 20 and sensor.is_fresh(time.monotonic())
            # Exported as a sensor, never as a drive: dashboards counting drives by vfd_up stay right.
            sample = run.agent.registry.get_sample_value
            labels = {"sensor": "remote-dp"}
            assert sample("vfd_sensor_up", labels) == 1.0 and sample("vfd_sensor_data_fresh", labels) == 1.0
            assert sample("vfd_up", {"drive": "remote-dp"}) is None
            assert sample("vfd_sensor_poll_errors_total", {**labels, "kind": "timeout"}) == 0.0
            dp = sample("vfd_sensor_value", {**labels, "quantity": "critical_pressure"})
            assert dp is not None and 0.0 < dp < 60.0 * RHO_G  # Pa (a kPa point): below the shut-off head
            group = run.agent.optimizer.groups[0]
            assert group.holding and group.system.measured  # the curve shown by the DP beyond its setpoint
            # Above the curve by the DP setpoint's margin at part flow, well below the operator's setpoint.
            assert 0.0 < np.median(excess) < 0.8 * np.median(reset), (excess, reset)
            assert header.truth.unmet_s <= 0.05 * run.sim.model.t, header.truth.unmet_s
        finally:
            await run.finish()

    asyncio.run(scenario())


def test_the_plant_helpers_keep_the_demo_plant_unchanged():
    demo = load_plant(PLANTS / "demo.yaml")
    assert demo.circuits == () and all(d.head_wear == d.efficiency_wear == 1.0 for d in demo.drives)
    assert dataclasses.replace(demo, day_length=10.0).day_length == 10.0


def test_an_ab_block_hands_the_group_back_and_the_agent_takes_it_again(tmp_path):
    """An operator block writes the operator's setpoint back (no longer owed on disk); the next agent block
    keeps it on disk again before its first write, and its intervals are labelled by strategy."""
    ab = "    ab_blocks: {operator_share_pct: 50, block_s: 2, seed: 4}\n"

    def edit(text: str) -> str:
        text = text.replace("optimizer: {", "mv: {interval_s: 0.5, baseline_intervals: 12}\noptimizer: {", 1)
        return text.replace("    conventional:", ab + "    conventional:")

    async def scenario() -> None:
        run = await start(tmp_path, "ahu-fan", edit=edit)
        header = run.sim.model.headers["supply-duct"]
        optimizer = run.agent.optimizer
        assert optimizer is not None
        blocks = optimizer.ab_blocks["supply-duct"]
        try:
            await run.until(lambda: header.setpoint < 700.0, what="control")
            handed = blocks.operator_blocks
            await run.until(lambda: blocks.operator_blocks > handed, what="an operator block")
            await run.until(lambda: header.setpoint == pytest.approx(800.0, rel=1e-6), what="the hand-back")
            assert run.value("vfd_control_active", drive="supply-fan") == 0.0
            store = run.agent.handbacks
            assert store is not None and store.pending() == []  # handed back and verified: nothing owed
            last = run.commands("supply-fan")[-1]
            assert last.quantity is Quantity.PRESSURE_SETPOINT
            assert last.value == pytest.approx(800.0, rel=1e-6)
            await run.until(lambda: header.setpoint < 700.0, what="the agent again")
            assert [p.operator for p in store.pending()] == [pytest.approx(800.0, rel=1e-6)]
            ledger = run.agent.bookkeeper.ledger
            assert ledger is not None
            await run.until(lambda: {i.strategy for i in ledger.intervals("supply-duct")}
                            >= {"agent", "operator"}, what="recorded intervals of both strategies")
        finally:
            await run.finish()

    asyncio.run(scenario())
