"""The non-routine events the running agent records: faults once per episode, clock steps, reloads, modes."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from agent.config import load_config
from agent.energy.ledger import EventKind, read_events
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
            write_config(tmp_path, sim.port, advise=("cw-pump-1",))
            reload.set()
            await async_wait_until(lambda: agent.reloads == 1, 20, "the reload applied")
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
