"""The non-routine events the running agent records: faults once per episode, clock steps, reloads, modes."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from agent.config import load_config
from agent.energy.ledger import EventKind, read_events, read_intervals, read_models
from agent.energy.verification import model_from_json
from agent.service import Agent
from hil import SimulatedPlant, load_plant
from hil.faults import Fault
from tests.support import DRIVE_DATA, REPO, async_wait_until, site_config

DEMO = REPO / "configs" / "plants" / "demo.yaml"
UNITS = {"chw-pump-1": 1, "cw-pump-1": 2, "supply-fan": 3}


def write_config(tmp_path, port, advise=()):
    drives = [(d, "plant", u, DRIVE_DATA[d] + ("control: {mode: advise}\n" if d in advise else ""))
              for d, u in UNITS.items()]
    return site_config(tmp_path, [("plant", port)], drives, storage=tmp_path / "state", flush_interval_s=0.5)


def test_faults_clock_steps_reloads_and_mode_changes_are_events(tmp_path):
    offset = [0.0]

    async def scenario():
        sim = SimulatedPlant(load_plant(DEMO), seed=4)
        await sim.start("127.0.0.1", 0)
        path = write_config(tmp_path, sim.port)
        agent = Agent(load_config(path), wall_clock=lambda: time.time() + offset[0],
                      time_synchronized=lambda: True)
        pump = agent.drive("chw-pump-1")
        stop, reload = asyncio.Event(), asyncio.Event()
        run = asyncio.create_task(agent.run(stop, serve_metrics=False, reload=reload))
        try:
            await async_wait_until(lambda: all(d.up for d in agent.drives), 20, "every drive up")
            for _ in range(2):  # two episodes, many failed polls each: two events
                sim.inject("chw-pump-1", Fault.TIMEOUT)
                await async_wait_until(lambda: pump.up is False and pump.errors["timeout"] >= 3, 20,
                                       "several failed polls")
                sim.clear("chw-pump-1")
                await async_wait_until(lambda: pump.up is True, 20, "the pump back")
            steps = agent.wall.steps
            offset[0] = 120.0  # the wall clock steps two minutes ahead (NTP after a boot)
            await async_wait_until(lambda: agent.wall.steps > steps, 20, "the step seen")
            changed = write_config(tmp_path, sim.port, advise=("cw-pump-1",))
            changed.write_text(changed.read_text() + "mv: {interval_s: 60}\n")
            reload.set()
            await async_wait_until(lambda: agent.reloads == 1, 20, "the reload applied")
            # The record's interval is bound at start: a baseline never mixes two interval lengths.
            assert agent.config.mv.interval == agent.verifier.recorder.interval_s == 3600.0
            await asyncio.sleep(1.0)  # a flush or two
        finally:
            stop.set()
            await run
            await sim.stop()

    asyncio.run(scenario())
    db = sqlite3.connect(tmp_path / "state" / "ledger.sqlite")
    events = read_events(db)
    db.close()
    kinds = [(e.kind, e.subject) for e in events]
    assert kinds.count((EventKind.FAULT, "chw-pump-1")) == 2
    assert all("timeout" in e.detail for e in events if e.kind is EventKind.FAULT)
    assert (EventKind.CLOCK_STEP, "") in kinds
    (mode,) = [e for e in events if e.kind is EventKind.MODE_CHANGE]
    assert mode.subject == "cw-pump-1" and mode.detail == "monitor -> advise"
    configs = [e.detail for e in events if e.kind is EventKind.CONFIG]
    assert [c.split(":")[0] for c in configs] == ["start", "reload"] and configs[0][7:] != configs[1][8:]


def test_an_optimizer_group_records_its_metered_demand_and_its_hand_backs(tmp_path):
    """booster-static in advise mode (the baseline), then control: the model, the savings, the hand-back."""
    from hil.plantfile import load_plant as load_plant_file
    from hil.scenario import PLANTS, PROCESS_PROFILE, SCENARIOS, Timing
    from hil.scenario import site_config as scenario_config

    text = (PLANTS / "booster-static.yaml").read_text(encoding="utf-8").replace("day_s: 600", "day_s: 60")
    plant_path = tmp_path / "booster.yaml"
    plant_path.write_text(text.replace("profile: generic-process", f"profile: {PROCESS_PROFILE}"))
    spec = load_plant_file(plant_path)
    scenario, circuit = SCENARIOS["booster-static"], spec.circuits[0]
    path = tmp_path / "site.yaml"
    mv = "mv: {interval_s: 1, baseline_intervals: 12, time_of_week: none}\n"

    def write(port, mode):
        path.write_text(scenario_config(scenario, spec, circuit, port, Timing.for_duration(60.0),
                                        tmp_path / "state", mode=mode) + mv, encoding="utf-8")

    async def run():
        sim = SimulatedPlant(spec, seed=5)
        await sim.start("127.0.0.1", 0)
        write(sim.port, "advise")
        agent = Agent(load_config(path))
        stop, reload = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(agent.run(stop, serve_metrics=False, reload=reload))
        try:
            await async_wait_until(lambda: circuit.name in agent.verifier.figures, 60, "the group's model")
            write(sim.port, "control")
            reload.set()
            def holding():
                return agent.optimizer is not None and any(
                    d.holding for g in agent.optimizer.snapshot().groups for d in g.drives)
            await async_wait_until(holding, 60, "the agent holding")
            await async_wait_until(lambda: agent.verifier.figures[circuit.name].savings_j is not None, 60,
                                   "savings against the model")

            def control_recorded() -> bool:  # the interval of the switch itself is still an advise one
                db = sqlite3.connect(tmp_path / "state" / "ledger.sqlite")
                try:
                    return any(r.mode == "control" for r in read_intervals(db, circuit.name))
                finally:
                    db.close()
            await async_wait_until(control_recorded, 60, "a control interval in the ledger")
        finally:
            stop.set()
            await task
            await sim.stop()

    asyncio.run(run())
    db = sqlite3.connect(tmp_path / "state" / "ledger.sqlite")
    events, rows = read_events(db), read_intervals(db, circuit.name)
    (stored,) = read_models(db, circuit.name)
    db.close()
    assert (EventKind.HAND_BACK, circuit.name) in [(e.kind, e.subject) for e in events]  # at the stop
    changed = {e.subject for e in events if e.kind is EventKind.MODE_CHANGE}
    assert changed == set(circuit.drives)
    baseline = [r for r in rows if r.start < stored.period_end]
    assert baseline and all(r.mode == "advise" and r.flow is not None and r.flow > 0 for r in baseline)
    assert any(r.mode == "control" for r in rows if r.start >= stored.period_end)
    assert all(r.pumps_running is not None and r.speed_ratio is not None for r in rows)
    assert "flow" in model_from_json(stored.model).names  # the metered demand explains the power
