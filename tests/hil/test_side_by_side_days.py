"""The closed-loop days that run side by side: the small generated batch and the M&V day.

Both start together when the first of them is asked for, one process each: four agents at
once, about one core, with the machine to themselves (``tests.machine``). Both hold under
that load: the batch's thresholds are set for three agents on a loaded machine, and the M&V
day's interval held the truth with two cores busy. They share this file so that one worker
runs them (pytest-xdist's ``--dist loadfile``). The three shipped short days
(``test_scenarios.py``) run apart: their oracle fraction drops a few thousandths for each
quarter core of load beside them, and ahu-fan's sits within 0.01 of its threshold.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator

import pytest

from hil.generator import distribution, generate
from tests.hil.test_scenario_batch import CLAIM_TOLERANCE, GROSS_CLAIM_ERROR, booked_claim_error
from tests.support import ScenarioRuns

BATCH_SEEDS = (0, 1, 3)
BATCH_DAY = 30.0
MV_DAY = ("ahu-fan", "--mv", "--duration", "24", "--seed", "2")
MV_RUN = "mv-ahu-fan"


@pytest.fixture(scope="module")
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


def test_a_small_batch_of_generated_plants_with_the_right_curve(side_by_side_days):
    results = [side_by_side_days.result(f"seed-{seed}") for seed in BATCH_SEEDS]
    summary = distribution(results)
    print("\n" + json.dumps(summary))
    for result in results:
        print(json.dumps({k: result[k] for k in ("scenario", "fraction_of_oracle_savings",
                                                 "demand_unmet_seconds_after_settling", "saving_claim_error",
                                                 "extrapolated_share_of_claim",
                                                 "claim_with_extrapolated_error", "agent_took_control_at_s",
                                                 "saving_vs_good_practice_pct")}))
        assert result["limit_violations"] == 0, result["limit_violation_details"]
        assert result["energy_agent_j"] < result["energy_conventional_j"], result
        # The plant's day starts once the agent is built: it takes control after a few polls and its first
        # cycle (0.1-0.2 s at load 3-4), where its start-up ran on the plant's clock (0.65-0.8 s at load 1,
        # 2-3.6 s at load 3-4: 2-12 % of the oracle's savings on a 30 s day).
        assert result["agent_took_control_at_s"] <= 0.02 * result["duration_s"], result
        # The model's whole figure (booked, and labelled where the operator was never seen) as before;
        # the booked part against the truth where it was booked.
        assert abs(result["claim_with_extrapolated_error"]) <= GROSS_CLAIM_ERROR, result
        assert abs(booked_claim_error(result)) <= CLAIM_TOLERANCE, result
        # Today's agent on a 30 s day, three at once on a loaded machine. Seed 1 (two pumps of two
        # sizes, one worn) is short after settling even with the right curve: 0.3-0.6 s before the
        # losses by size and speed, 1.1-1.45 s (3.7-4.8 % of the day) after: for the agent side.
        # The oracle fraction was 0.73-0.93. (On 40 s days, three agents at once at load 8-10 went
        # stale and handed back mid-run; the operator's 0 % written back counts as a violation.)
        assert result["demand_unmet_seconds_after_settling"] <= 0.06 * result["duration_s"], result
        assert result["fraction_of_oracle_savings"] >= 0.5, result
    assert summary["limit_violations"] == 0
    whole = statistics.median(r["claim_with_extrapolated_error"] for r in results)
    assert abs(whole) <= CLAIM_TOLERANCE, summary


def test_a_short_seeded_run_measures_the_saving_and_its_interval_holds_the_truth(side_by_side_days):
    """``python -m hil.scenario ahu-fan --mv``: a 24 s baseline day, then 24 s of A/B blocks."""
    mv = side_by_side_days.result(MV_RUN)["mv"]
    print("\n" + json.dumps(mv))
    baseline = mv["baseline"]
    assert baseline["n"] >= 60
    assert math.isfinite(baseline["cv_rmse_pct"]) and math.isfinite(baseline["nmbe_pct"])
    assert baseline["passes_guideline_14"], baseline
    # An operator block due before the system model has judged the loads satisfied (its verdict is
    # "unknown" for the first averaged polls) is kept by the agent: at most the first one or two.
    assert mv["blocks"] >= 20 and mv["operator_blocks"] >= 5 and mv["overridden_blocks"] <= 2
    estimate, truth = mv["ab_estimate_joules"], mv["true_saving_joules"]
    assert truth > 0.0  # the static pressure reset saves
    assert estimate["lower90"] <= truth <= estimate["upper90"], (estimate, truth)
    assert mv["truth_inside_90"]
    # A hand-back restores the operator's strategy: its intervals draw what the conventional plant draws.
    assert abs(mv["operator_minus_conventional_joules"]) < 0.1 * truth
