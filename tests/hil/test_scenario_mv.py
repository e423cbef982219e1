"""``python -m hil.scenario NAME --mv``: a baseline day, a day of A/B blocks, the estimate and the truth."""

from __future__ import annotations

import pytest

from hil.mvscenario import MvTiming
from hil.scenario import main


def test_the_design_cuts_a_block_into_four_intervals():
    design = MvTiming.for_day(48.0)
    assert design.block_s == 2.0 and design.block_s / design.interval_s == 4.0


def test_mv_refuses_a_dry_run(capsys):
    with pytest.raises(SystemExit):
        main(["ahu-fan", "--mv", "--dry-run"])
    assert "--dry-run" in capsys.readouterr().err
