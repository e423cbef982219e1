"""The closed-loop scenarios in shortened form: a day of demand in 90 s, thresholds asserted.

Each runs the real agent in control mode over loopback Modbus against the simulated plant
(``python -m hil.scenario``, one process each). A shorter day is a harder test for the agent
than the 600 s reference day: the demand moves further between its cycles (see
``hil.scenario.Timing``). The days run in real time and use about a quarter of a core each, so
the three start together when the first of them is asked for (the suite's time budget).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from hil.scenario import CurveOffset, run_scenario
from tests.support import ScenarioRuns

SHORT = {"chw-3pump": 90.0, "ahu-fan": 90.0, "booster-static": 90.0}
# booster-static's day is as long as the others' (no wall time: they run side by side). On a 40 s
# day it was short for 1.05-1.5 s after settling in four runs out of twelve, all within ten minutes
# of each other on this shared machine (the same tree read 0 s before and after).
# Of the oracle's savings on these short days: chw-3pump 0.953-0.957 alone, 0.9527 with the three
# days at once, 0.940 at load 5.6. ahu-fan's day is as long as chw-3pump's (it costs no wall time):
# on a 60 s day it read 0.946-0.953 at a quiet load but 0.933 at load 3.4 and 0.916 at 5.6, on a
# 90 s day beside it 0.948 and 0.939. 600 s days reach ~0.97.
ORACLE_SHARE = 0.94
CLAIM_TOLERANCE = 0.10  # the agent's own savings figure agrees with the plant's within 10 %


def check_claim(result: dict) -> None:
    """The model's figure (booked and labelled) within 10 % of the day's saving; the booked part within
    10 % of the day's saving of the truth where it was booked (a share of the day: the operator's
    strategy is seen only before the agent's first write)."""
    true, reported = result["true_optimizer_saving_joules"], result["reported_optimizer_saving_joules"]
    assert true > 0.0
    assert abs(result["claim_with_extrapolated_error"]) <= CLAIM_TOLERANCE, result
    counted = result["true_optimizer_saving_where_counted_joules"]
    assert abs(reported - counted) <= CLAIM_TOLERANCE * true, result
    assert result["extrapolated_optimizer_saving_joules"] > 0.0  # labelled, never booked


def check_common(result: dict) -> None:
    assert result["demand_unmet_seconds_after_settling"] == 0.0, result
    assert result["limit_violations"] == 0, result["limit_violation_details"]
    assert result["stage_changes"] <= result["stage_changes_allowed"], result
    check_claim(result)
    writes = sum(sum(counts.values()) for counts in result["writes"].values())
    ok = sum(counts.get("ok", 0) for counts in result["writes"].values())
    assert ok >= 1 and ok == writes, result["writes"]  # every write passed its guards and read back


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioRuns]:
    """The three short days, started together when the first is asked for."""
    runs = ScenarioRuns.alone(tmp_path_factory.mktemp("days"),
                        {name: [name, "--duration", str(day)] for name, day in SHORT.items()},
                        timeout=max(SHORT.values()) * 3 + 180)
    yield runs
    runs.close()


def day(days: ScenarioRuns, name: str) -> dict:
    result = days.result(name)
    print("\n" + json.dumps({k: v for k, v in result.items() if k not in ("timing", "writes")}))
    return result


@pytest.mark.parametrize("name", ["chw-3pump", "ahu-fan"])
def test_the_agent_captures_nearly_all_the_oracles_savings(days, name):
    result = day(days, name)
    check_common(result)
    assert result["fraction_of_oracle_savings"] >= ORACLE_SHARE, result
    assert result["energy_agent_j"] < result["energy_conventional_j"]


def test_booster_with_high_static_head_saves_little_and_says_so(days):
    result = day(days, "booster-static")
    check_common(result)
    # With 70 % static head even the oracle saves little, and the agent claims no more than it made.
    assert result["oracle_saving_vs_conventional_pct"] < 20.0
    assert result["reported_optimizer_saving_joules"] <= 1.1 * result["true_optimizer_saving_joules"]
    assert result["fraction_of_oracle_savings"] >= 0.8, result


@pytest.mark.slow  # 90 s; the -m slow acceptance covers chw-3pump's curve 30 % off (static and resistance)
@pytest.mark.alone  # a closed-loop day: load-sensitive
def test_a_static_head_configured_10_percent_of_design_too_low_starves_no_load_and_books_no_shortfall():
    """The issue's case: 20 % static instead of 30 % on chw-3pump (before: 13-19 % of the day unmet)."""
    result = run_scenario("chw-3pump", SHORT["chw-3pump"], system_error=CurveOffset(static=-1.0 / 3.0))
    print("\n" + json.dumps({k: v for k, v in result.items() if k not in ("timing", "writes")}))
    assert result["demand_unmet_seconds_after_settling"] <= 0.005 * result["duration_s"], result
    assert result["limit_violations"] == 0, result["limit_violation_details"]
    check_claim(result)
