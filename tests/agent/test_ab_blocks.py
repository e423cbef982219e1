"""A/B blocks in control mode: the section, the decision per block, the labelled intervals, the estimate.

The intervals go through the agent's own path: each poll labelled by ``AbBlocks``, recorded by
the M&V ``IntervalRecorder`` (the rows the ledger keeps), estimated by ``ab_figure``.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC

import numpy as np
import pytest

from agent.config import load_config
from agent.config.model import AbBlocksConfig
from agent.control.abblocks import AbBlocks, service_short
from agent.energy.verification import GroupSample, IntervalRecorder, ab_figure
from agent.metrics import ab_block_counts, ab_estimate_families
from agent.mv.abtest import Strategy, planned_strategy
from agent.optimizer.system import Service
from tests.agent.mv_synth import ar1
from tests.agent.test_groups_config import drive, issues, write

GROUP = """\
- name: chw
  drives: [p1]
  control: speed
  demand: {drive: p1, quantity: process_flow}
  system: {static_head_m: 9.6, design_flow_m3h: 240, design_head_m: 32}
  ab_blocks: {ab}
"""
EPOCH = 1_790_000_000.0  # a wall time past the release floor


def config(share=0.25, block_s=3600.0, seed=7, interval_s=600.0, round_blocks=8):
    return AbBlocksConfig(share, block_s, seed, interval_s, round_blocks)


def test_the_section_is_parsed(tmp_path):
    path = write(tmp_path, drive("p1", 1), GROUP.replace(
        "{ab}", "{operator_share_pct: 25, block_s: 14400, seed: 3}"))
    (group,) = load_config(path).groups
    assert group.ab_blocks == AbBlocksConfig(0.25, 14400.0, 3, 3600.0, 8)
    plain = write(tmp_path, drive("p1", 1), GROUP.replace("  ab_blocks: {ab}\n", ""))
    assert load_config(plain).groups[0].ab_blocks is None


@pytest.mark.parametrize(("ab", "mode", "field", "words"), [
    ("{operator_share_pct: 2, block_s: 7200, seed: 1}", "control", "operator_share_pct", "operator share"),
    ("{operator_share_pct: 100, block_s: 7200, seed: 1}", "control", "operator_share_pct", "leave one"),
    ("{operator_share_pct: 25, block_s: 5400, seed: 1}", "control", "block_s",
     "two or more whole M&V intervals"),
    ("{operator_share_pct: 25, block_s: 7200, seed: 1, interval_s: 600}", "control", "interval_s",
     "unknown field"),
    ("{operator_share_pct: 25, block_s: 0, seed: 1}", "control", "block_s", "must be > 0"),
    ("{operator_share_pct: 25, block_s: 7200}", "control", "seed", "is required"),
    ("{operator_share_pct: 25, block_s: 7200, seed: 1, blocks: 3}", "control", "blocks", "unknown field"),
    ("{operator_share_pct: 25, block_s: 7200, seed: 1}", "advise", "ab_blocks", "in advise mode"),
])
def test_a_bad_section_names_its_line_and_field(tmp_path, ab, mode, field, words):
    path = write(tmp_path, drive("p1", 1, mode=mode), GROUP.replace("{ab}", ab))
    found = issues(path)
    assert any(field in i and words in i and "site.yaml:" in i for i in found), found


@pytest.mark.parametrize("demand", ["{source: sensorless}", "{drive: p1, quantity: pressure}"])
def test_blocks_need_a_measured_flow_to_regress_on(tmp_path, demand):
    text = GROUP.replace("{drive: p1, quantity: process_flow}", demand)
    ab = "{operator_share_pct: 25, block_s: 7200, seed: 1}"
    path = write(tmp_path, drive("p1", 1), text.replace("{ab}", ab))
    found = issues(path)
    assert any("ab_blocks" in i and "measured flow" in i for i in found), found


def test_the_share_holds_in_every_round_and_a_seed_reproduces_the_schedule():
    plan_config = config(share=0.25)
    a, b = AbBlocks("g", plan_config), AbBlocks("g", plan_config)
    start = math.ceil(EPOCH / 3600.0) * 3600.0
    seen = [a.operator_now(start + i * 3600.0 + 5.0, short=False) for i in range(160)]
    assert seen == [b.operator_now(start + i * 3600.0 + 5.0, short=False) for i in range(160)]
    assert a.operator_blocks == sum(seen) == 40  # 2 of every 8, exactly
    first = int(start // 3600.0)
    for r in range(first // 8 + 1, (first + 160) // 8):
        assert sum(seen[i - first] for i in range(r * 8, r * 8 + 8)) == 2
    other = AbBlocks("g", config(share=0.25, seed=8))
    assert seen != [other.operator_now(start + i * 3600.0 + 5.0, short=False) for i in range(160)]
    # A block lasts block_s: the same answer to its last instant (decided once), the next block's after.
    assert [a.operator_now(start + i * 3600.0 + 3599.9, short=False) for i in range(160)] == seen
    assert a.operator_now(start + 160 * 3600.0, short=False) is (
        planned_strategy(a.plan, int(start // 3600.0) + 160) is Strategy.OPERATOR)


def test_no_operator_block_starts_while_the_loads_are_short():
    blocks = AbBlocks("g", config(share=0.5))
    start = math.ceil(EPOCH / 3600.0) * 3600.0
    operator = [i for i in range(40) if planned_strategy(blocks.plan, int(start // 3600.0) + i)
                is Strategy.OPERATOR]
    for i in operator:
        t = start + i * 3600.0
        assert not blocks.operator_now(t + 1.0, short=True)
        # Decided at its start: the block stays with the agent when the shortfall ends.
        assert not blocks.operator_now(t + 1800.0, short=False)
    assert blocks.overridden_blocks == len(operator) == 20 and blocks.operator_blocks == 0
    # No trusted wall clock: no schedule, the agent keeps control.
    assert not blocks.operator_now(math.nan, short=False)


def test_service_short_counts_unknown_as_short():
    assert not service_short(Service.SATISFIED)
    assert service_short(Service.SHORT) and service_short(Service.UNKNOWN)


def run_synthetic(seed: int, saving_w: float, days: int = 20):
    """A group polled every minute for ``days``: power rises with flow; the operator draws saving_w more.

    Returns the blocks, the recorded intervals (as the ledger would keep them) and the polls
    that found the other strategy in force.
    """
    rng = np.random.default_rng(seed)
    blocks = AbBlocks("g", config(share=0.5, block_s=4 * 3600.0, seed=seed, interval_s=3600.0))
    recorder = IntervalRecorder(3600.0, UTC, max_step_s=120.0)
    start = math.ceil(EPOCH / 86400.0) * 86400.0
    n = days * 24 * 60
    noise = ar1(rng, n, 0.95, 800.0)  # minute-scale drift, autocorrelated over hours
    before, switches = False, 0
    for i in range(n):
        wall = start + 60.0 * i
        operator = blocks.operator_now(wall, short=False)
        flow = 0.03 + 0.015 * math.sin(2 * math.pi * (wall % 86400.0) / 86400.0) + rng.normal(0.0, 0.002)
        # The first poll of a block still finds the other strategy in force (the cycle comes next).
        holding = not before if i % 240 == 0 else not operator
        switches += holding == operator  # a poll of the other strategy: its interval is left out
        power = 3000.0 + 1e5 * flow + 2e6 * flow**2 + (saving_w if not holding else 0.0) + noise[i]
        blocks.sample(wall, holding)
        sample = GroupSample(power, flow, 1.0, 1.0, math.nan, "control", blocks.label)
        recorder.sample("g", wall, wall, sample)
        before = operator
    return blocks, recorder.take(start + 60.0 * n + 3600.0), switches


def test_the_estimate_recovers_a_known_saving_with_a_90_percent_interval():
    truth = 1200.0
    hits = 0
    for seed in range(20):
        _, rows, switches = run_synthetic(seed, truth)
        figure = ab_figure(rows)
        assert figure is not None and figure.estimate is not None, figure
        rate = figure.estimate.saving_rate_w
        hits += rate.lower(0.9) <= truth <= rate.upper(0.9)
        # Every interval holding a switch is left out, the others keep their strategy and block.
        labelled = [r for r in rows if r.strategy is not None]
        assert switches > 10 and len(rows) == 20 * 24
        assert len(labelled) == figure.intervals == 20 * 24 - switches
        assert {r.strategy for r in labelled} == {Strategy.AGENT.value, Strategy.OPERATOR.value}
        assert all(r.block == int(r.start // (4 * 3600.0)) for r in labelled)
        assert figure.estimate.agent_time_s + figure.estimate.operator_time_s == len(labelled) * 3600.0
    assert hits >= 16  # 90 % coverage; 16 of 20 or more with probability 0.96
    zero = ab_figure(run_synthetic(99, 0.0)[1])
    assert zero is not None and zero.estimate is not None
    assert zero.estimate.saving_rate_w.lower(0.9) < 0.0 < zero.estimate.saving_rate_w.upper(0.9)


def test_a_young_record_says_why_it_has_no_estimate_and_unlabelled_rows_have_no_figure():
    _, rows, _ = run_synthetic(5, 1200.0, days=1)
    figure = ab_figure(rows)
    assert figure is not None and figure.estimate is None and "blocks so far" in figure.why_not
    assert ab_figure([dataclasses.replace(r, strategy=None, block=None) for r in rows]) is None


def test_the_gauges_show_the_estimate_and_its_intervals_once_there_is_one():
    blocks, rows, _ = run_synthetic(3, 1200.0)
    figure = ab_figure(rows)
    assert figure is not None and figure.estimate is not None
    young = AbBlocks("h", config())
    families = {f.name: f for f in ab_estimate_families({"g": figure})}
    families.update({f.name: f for f in ab_block_counts({"g": blocks.snapshot(EPOCH),
                                                         "h": young.snapshot(EPOCH)})})
    rate = figure.estimate.saving_rate_w
    values = {name: {tuple(s.labels.values()): s.value for s in f.samples} for name, f in families.items()}
    assert values["vfd_ab_power_saved_watts"] == {("g",): rate.value}
    for level in (0.68, 0.9):
        labels = ("g", f"{level:g}")
        assert values["vfd_ab_power_saved_lower_watts"][labels] == pytest.approx(rate.lower(level))
        assert values["vfd_ab_power_saved_upper_watts"][labels] == pytest.approx(rate.upper(level))
    energy = figure.estimate.saving_j
    assert values["vfd_ab_energy_saved_joules"][("g",)] == pytest.approx(energy.value)
    lower90 = values["vfd_ab_energy_saved_lower_joules"][("g", "0.9")]
    assert lower90 < values["vfd_ab_energy_saved_lower_joules"][("g", "0.68")] < energy.value
    assert values["vfd_ab_blocks"][("h", "operator")] == 0.0  # a young group shows counts, no estimate
    assert values["vfd_ab_blocks"][("g", "operator")] == blocks.operator_blocks > 0
    assert ("h",) not in values["vfd_ab_energy_saved_joules"]
    assert values["vfd_ab_strategy_seconds"][("g", "agent")] == figure.estimate.agent_time_s
