"""The closed-loop days that run side by side with each other (the suite's time budget).

The small generated batch (``test_scenario_batch.py``) and the M&V day (``test_scenario_mv.py``)
start together when the first of them is asked for: four agents at once, about one core. Both
hold under that load: the batch's thresholds are set for three agents on a loaded machine, and
the M&V day's interval held the truth with two cores busy. The three shipped short days
(``test_scenarios.py``) run apart: their oracle fraction drops a few thousandths for each
quarter core of load beside them, and ahu-fan's sits within 0.01 of its threshold.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil.generator import generate
from tests.support import ScenarioRuns

BATCH_SEEDS = (0, 1, 3)
BATCH_DAY = 30.0
MV_DAY = ("ahu-fan", "--mv", "--duration", "24", "--seed", "2")
MV_RUN = "mv-ahu-fan"


@pytest.fixture(scope="session")
def side_by_side_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioRuns]:
    """The batch's plants (``seed-N``) and the M&V day (``MV_RUN``), each its own process."""
    folder = tmp_path_factory.mktemp("side-by-side")
    runs: dict[str, list[str]] = {
        f"seed-{seed}": ["--plant", str(generate(seed).write(folder)), "--duration", str(BATCH_DAY)]
        for seed in BATCH_SEEDS}
    runs[MV_RUN] = list(MV_DAY)
    days = ScenarioRuns.alone(folder, runs, timeout=BATCH_DAY * 6 + 240)
    yield days
    days.close()
