"""A/B blocks with a real agent process: the labelled intervals are in the ledger and survive SIGKILL.

The simulated plant (ahu-fan, a day of 30 s) runs in this test's process on its own thread;
the agent is a real ``vfd-agent run`` process, killed with SIGKILL and started again. Before
the fix the A/B intervals lived in the optimizer's memory: a restarted agent showed no
estimate until ten new blocks had passed, and then one of the new blocks only.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator

import pytest

from agent.energy.ledger import EventKind, read_events, read_intervals
from hil import SimulatedPlant
from hil.plantfile import PlantSpec, load_plant
from hil.scenario import PLANTS, SCENARIOS, Timing, scaled_plant, site_config
from tests.support import DeviceLoop, free_port, scrape, spawn, stop, value, wait_until

DAY_S = 30.0
BLOCK_S = 1.0
INTERVAL_S = 0.25
GROUP = "supply-duct"
ENOUGH_S = 10.0
"""Labelled time before the kill: some 20 blocks' worth, twice what the first estimate needs."""


@pytest.fixture
def plant() -> Iterator[tuple[SimulatedPlant, PlantSpec, Timing]]:
    """The ahu-fan plant served on loopback from a thread of this process (it outlives the agents)."""
    timing = Timing.for_duration(DAY_S)
    spec = scaled_plant(load_plant(PLANTS / SCENARIOS["ahu-fan"].plant), timing)
    sim = SimulatedPlant(spec)
    devices = DeviceLoop()
    devices.call(sim.start("127.0.0.1", 0))
    yield sim, spec, timing
    devices.call(sim.stop())
    devices.shutdown()


def strategy_seconds(url: str) -> float | None:
    """Agent plus operator time in the exported A/B estimate; None while there is none."""
    try:
        samples = scrape(url)
    except OSError:
        return None
    agent = value(samples, "vfd_ab_strategy_seconds", group=GROUP, strategy="agent")
    operator = value(samples, "vfd_ab_strategy_seconds", group=GROUP, strategy="operator")
    return None if agent is None or operator is None else agent + operator


def test_the_ab_record_survives_sigkill_and_the_restart_estimates_from_it(tmp_path, plant):
    sim, spec, timing = plant
    scenario = SCENARIOS["ahu-fan"]
    state = tmp_path / "state"
    metrics_port = free_port()
    text = site_config(scenario, spec, spec.circuits[0], sim.port, timing, state, "control")
    text = text.replace('listen: "127.0.0.1:0"', f'listen: "127.0.0.1:{metrics_port}"')
    mv = f"mv: {{interval_s: {INTERVAL_S}, baseline_intervals: 12}}\n"
    text = text.replace("optimizer: {", mv + "optimizer: {", 1)
    text = text.replace("    conventional:", f"    ab_blocks: {{operator_share_pct: 50, block_s: {BLOCK_S}, "
                                               "seed: 4}\n    conventional:", 1)
    config = tmp_path / "site.yaml"
    config.write_text(text, encoding="utf-8")
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    ledger = state / "ledger.sqlite"

    agent = spawn("agent.cli", "run", "--config", str(config))
    try:
        # Well past the ten blocks a first estimate needs, so a restart's own ten would show less.
        before = wait_until(lambda: (s := strategy_seconds(url)) is not None and s >= ENOUGH_S and s,
                            120, what=f"an A/B estimate over {ENOUGH_S:g} s of labelled intervals")
    except AssertionError:
        agent.send_signal(signal.SIGKILL)
        raise AssertionError(stop(agent)[2][-3000:]) from None
    agent.send_signal(signal.SIGKILL)
    stop(agent)

    def read(query):
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5.0)
        try:
            return query(db)
        finally:
            db.close()

    labelled = [r for r in read(lambda db: read_intervals(db, GROUP)) if r.strategy is not None]
    assert {r.strategy for r in labelled} == {"agent", "operator"}
    assert all(r.block == int(r.start // BLOCK_S) and r.mode == "control" for r in labelled)
    assert len({r.block for r in labelled}) >= 10
    events = read(read_events)
    assert any(e.kind is EventKind.AB_BLOCK and e.subject == GROUP for e in events)

    agent = spawn("agent.cli", "run", "--config", str(config))
    try:
        # The first estimate after the restart is made from the record the killed agent left.
        after = wait_until(lambda: strategy_seconds(url), 60, interval=0.05,
                           what="the estimate after a restart")
    finally:
        code, _, err = stop(agent)
    assert code == 0, err
    assert after >= before
