"""``python -m hil.scenario NAME --mv``: a baseline day, a day of A/B blocks, the estimate and the truth."""

from __future__ import annotations

import json
import math

import pytest

from hil.mvscenario import MvTiming
from hil.scenario import main
from tests.hil.conftest import MV_RUN

pytestmark = pytest.mark.xdist_group("side-by-side")  # one worker runs side_by_side_days once


def test_the_design_cuts_a_block_into_four_intervals():
    design = MvTiming.for_day(48.0)
    assert design.block_s == 2.0 and design.block_s / design.interval_s == 4.0


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


def test_mv_refuses_a_dry_run(capsys):
    with pytest.raises(SystemExit):
        main(["ahu-fan", "--mv", "--dry-run"])
    assert "--dry-run" in capsys.readouterr().err
