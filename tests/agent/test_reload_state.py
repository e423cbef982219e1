"""What a reload keeps: the same runtime for an unchanged drive, the totals of a changed one."""

from __future__ import annotations

import asyncio

from agent.config import load_config
from agent.service import Agent
from tests.support import DRIVE_DATA, site_config


def test_a_reload_keeps_unchanged_drives_and_carries_the_totals_of_changed_ones(tmp_path):
    asyncio.run(_reload(tmp_path))  # pymodbus clients are made inside an event loop


async def _reload(tmp_path):
    drives = [("chw-pump-1", "a", 1, DRIVE_DATA["chw-pump-1"]),
              ("cw-pump-1", "a", 2, DRIVE_DATA["cw-pump-1"])]
    agent = Agent(load_config(site_config(tmp_path, [("a", 5020)], drives)))
    agent.open_ledger()  # the cumulative series are exported once the ledger's totals are restored
    pump, other = agent.drives
    pump.account.totals.energy_j, other.account.totals.energy_j = 1.5e6, 2.5e6
    other.errors["timeout"] = 3

    changed = [drives[0], ("cw-pump-1", "a", 2, DRIVE_DATA["cw-pump-1"].replace("7.5", "9")),
               ("supply-fan", "a", 3, DRIVE_DATA["supply-fan"])]
    config = load_config(site_config(tmp_path, [("a", 5020)], changed))
    agent._build(config, {d.name: d for d in agent.drives})

    kept, carried, added = agent.drives
    assert kept is pump  # unchanged: the same runtime, integration chain and all
    assert carried is not other and carried.config.rated_power == 9e3
    assert carried.account.totals.energy_j == 2.5e6 and carried.errors["timeout"] == 3
    assert added.account.totals.energy_j == 0.0
    # The collectors read the lists a reload changed in place.
    assert agent.registry.get_sample_value("vfd_energy_joules_total", {"drive": "cw-pump-1"}) == 2.5e6
    assert agent.registry.get_sample_value("vfd_energy_joules_total", {"drive": "supply-fan"}) == 0.0
    assert [p.bus.name for p in agent.pollers] == ["a"] and len(agent.pollers[0].drives) == 3
    assert agent.bookkeeper.drives is agent.drives
