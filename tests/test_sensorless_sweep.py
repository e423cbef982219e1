"""A short seeded sweep of bench/sensorless.py (seed 4; the constants were set on seed 1).

The sweep runs the agent's own estimator (agent.sensorless.FlowEstimator) on the
simulator's new losses. Where the issue's targets hold: a DP transmitter across a healthy
pump within 3 % above half the best-efficiency flow and 10 % below; the catalogue curve
alone within 5 % and 10 %; one clamp-on reading brings a worn pump within 3 % above half
flow; a shut-off test (a known zero flow) a worn pump within 5 % and 10 %, and with DP within
3 % above half flow; every 90 % interval holds the truth for at least 90 % of the estimates.
The Wilo CronoLine-IL family (digitized from Wilo's published curve, hil.catalogue.DIGITIZED)
is held to the catalogue curve's goals and, worn, to beating main. Where they cannot: a worn
pump with neither a flow reading nor a shut-off test below half flow (leakage moves head and
power along the flow axis together, invisible to both), a shut-off test on a power curve too
flat at zero flow to show a leak below half flow (its head shows part of it), and (bench,
README) one on a catalogue curve printed from 15 % flow only: the test's power is read against
the curve's extrapolation to zero flow.
"""

from __future__ import annotations

import functools
import importlib.util
import sys

import pytest

from hil.catalogue import Family, Wear
from tests.support import REPO


@functools.cache
def load_bench():
    spec = importlib.util.spec_from_file_location("bench_sensorless", REPO / "bench" / "sensorless.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@functools.cache
def rows_of(family: Family, worn: bool, points: int) -> dict:
    """The bench's rows of one case at the test's seed, computed once per run."""
    bench = load_bench()
    case = bench.Case(family, bench.WORN if worn else Wear())
    return {row.path: row for row in bench.run_case(case, points, seed=4)}


@pytest.mark.parametrize("family", [Family.RADIAL_STEEP, Family.FLAT_POWER])
def test_dp_transmitter_meets_the_targets_on_a_healthy_pump(family):
    rows = rows_of(family, False, 300)
    dp, main = rows["dp"], rows["main"]
    assert dp.mean_high <= 3.0
    assert dp.mean_low <= 10.0
    assert dp.coverage >= 90.0
    assert dp.available >= 60.0  # the wear the interval allows refuses light-load points
    assert dp.mean_high <= 0.2 * main.mean_high


@pytest.mark.parametrize("family", [Family.RADIAL_STEEP, Family.DROOPING, Family.WILO_IL80])
def test_catalogue_curve_meets_the_targets_on_a_healthy_pump(family):
    rows = rows_of(family, False, 300)
    main, new = rows["main"], rows["none"]
    assert new.mean_high <= 5.0
    assert new.mean_low <= 10.0
    assert new.coverage >= 90.0
    assert new.available >= 70.0
    assert new.mean_high <= 0.5 * main.mean_high


@pytest.mark.parametrize("family", [Family.RADIAL_STEEP, Family.DROOPING, Family.WILO_IL80])
def test_a_worn_pump_without_a_reading_beats_main_above_half_flow_and_its_interval_covers(family):
    """Leakage is invisible to head and power: without a known flow (a reading, a shut-off test) below
    half the BEP flow the target is missed (bench)."""
    rows = rows_of(family, True, 300)
    main = rows["main"]
    for path in ("none", "dp", "shut-off"):  # dp: the head lost learned from the polls
        assert rows[path].mean_high <= 0.5 * main.mean_high, path
        # 6.1-6.5 % at this seed: the losses' friction ∝ speed³ took away an over-read of the losses
        # at low speed that had hidden part of the unseen leak's (under 6 % before; unidentifiable).
        assert rows[path].mean_high <= 7.0, path
        assert rows[path].coverage >= 90.0, path
    # A shut-off test that shows part-load wear refuses the points it makes unidentifiable.
    assert rows["shut-off"].mean_low < 0.7 * rows["none"].mean_low


@pytest.mark.parametrize("family", [Family.RADIAL_STEEP, Family.DROOPING])
def test_one_clamp_on_reading_brings_a_worn_pump_within_3_percent_above_half_flow(family):
    rows = rows_of(family, True, 300)
    for path in ("clamp-on", "dp+clamp-on"):
        assert rows[path].mean_high <= 3.0, path
        assert rows[path].coverage >= 90.0, path
        assert rows[path].mean_high < 0.7 * rows["none"].mean_high, path
    # Alone it leaves the part-load loss below half flow unseen; a shut-off test shows it.
    both = rows["shut-off+clamp-on"]
    assert both.mean_low <= 10.0 < rows["clamp-on"].mean_low
    assert both.coverage >= 90.0
    # The reading weighed against what the test left of the leak (1.8-1.9 % here), where its offset
    # had been taken as the leak, exactly (2.2-2.3 %).
    assert both.mean_high <= 2.1


@pytest.mark.parametrize("family", [Family.RADIAL_STEEP, Family.DROOPING])
def test_a_shutoff_test_brings_a_worn_pump_within_the_goals(family):
    """The test's known zero flow bounds the leak and measures the part-load loss (on main: 14-18 % below)."""
    rows = rows_of(family, True, 300)
    for path in ("shut-off", "dp+shut-off"):
        assert rows[path].mean_high <= 5.0, path
        assert rows[path].mean_low <= 10.0, path
        assert rows[path].coverage >= 90.0, path
        assert rows[path].available >= 75.0, path
    assert rows["dp+shut-off"].mean_high <= 3.0


def test_a_shutoff_test_on_a_flat_power_curve_weighs_the_leak_its_head_shows():
    """Mixed flow: the power hardly rises from zero flow, so the test's power bounds no leak; its head,
    falling from shut-off, is weighed against the prior (5.7 -> 4.3 % above half flow here, with DP
    5.9 -> 4.8 %); the interval states what is left."""
    rows = rows_of(Family.FLAT_POWER, True, 300)
    for path in ("shut-off", "dp+shut-off"):
        assert rows[path].mean_high <= 5.0, path
        assert rows[path].coverage >= 90.0, path
    assert rows["dp+shut-off"].mean_low <= 10.0  # the head, pinned at the measured shut-off head, carries it


@pytest.mark.parametrize("family", [Family.RADIAL_STEEP, Family.WILO_IL80])
def test_a_drive_reporting_its_output_power_meets_the_catalogue_curves_targets(family):
    """Issue 18: most drives report their output (the motor's input); told so by its profile, the agent
    reads it without the drive's losses and meets the same goals as on a mains reading."""
    bench = load_bench()
    case = bench.Case(family, Wear(), bench.PowerMeasuredAt.DRIVE_OUTPUT)
    rows = {row.path: row for row in bench.run_case(case, 300, seed=4, paths=("none", "clamp-on"))}
    mains = rows_of(family, False, 300)
    for path in ("none", "clamp-on"):
        assert rows[path].mean_high <= 5.0, path
        assert rows[path].mean_low <= 10.0, path
        assert rows[path].coverage >= 90.0, path
        assert rows[path].mean_high <= mains[path].mean_high + 1.0, path
