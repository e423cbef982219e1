"""A/B blocks: the scheduler's properties and the interval's coverage on seeded synthetic plants."""

import numpy as np
import pytest
from scipy import stats as sps

from agent.mv.abtest import (
    BlockPlan,
    Covariance,
    Strategy,
    ab_estimate,
    block_index,
    decide,
    planned_strategy,
    schedule,
)
from agent.mv.baseline import DesignSpec, TimeOfWeek
from agent.mv.stats import MvError
from tests.agent.mv_synth import HOUR, plant

SPEC = DesignSpec(flow_degree=2, time_of_week=TimeOfWeek.DAYPART)
RUNS = 200


def _binomial_band(p, runs):
    lo, hi = sps.binom.interval(0.998, runs, p)
    return lo / runs, hi / runs


@pytest.mark.parametrize("share", [0.125, 0.25, 0.5, 0.75])
def test_every_round_gives_the_operator_exactly_its_share(share):
    plan = BlockPlan(seed=3, block_s=4 * HOUR, operator_share=share, epoch_s=1_700_000_000.0)
    blocks = schedule(plan, plan.epoch_s, plan.epoch_s + 40 * 8 * plan.block_s)
    assert len(blocks) == 320
    for r in range(40):
        chunk = blocks[r * 8:(r + 1) * 8]
        assert sum(b.planned is Strategy.OPERATOR for b in chunk) == round(share * 8)
    # Consecutive, gap-free blocks.
    assert all(a.end_s == b.start_s for a, b in zip(blocks, blocks[1:], strict=False))


def test_schedule_is_a_pure_function_of_seed_and_block():
    plan = BlockPlan(seed=11, block_s=6 * HOUR, operator_share=0.25, epoch_s=0.0)
    first = [planned_strategy(plan, i) for i in range(200)]
    assert first == [planned_strategy(plan, i) for i in range(200)]  # a restart finds the same plan
    other = BlockPlan(seed=12, block_s=6 * HOUR, operator_share=0.25, epoch_s=0.0)
    assert first != [planned_strategy(other, i) for i in range(200)]
    # Not a fixed pattern: the operator's position varies between rounds.
    positions = {tuple(i % 8 for i in range(r * 8, r * 8 + 8) if first[i] is Strategy.OPERATOR)
                 for r in range(25)}
    assert len(positions) > 5


def test_never_an_operator_block_while_service_is_short():
    plan = BlockPlan(seed=5, block_s=HOUR, operator_share=0.5, epoch_s=0.0)
    for i in range(64):
        t = i * HOUR + 10.0
        planned = planned_strategy(plan, i)
        short = decide(plan, t, service_short=True)
        assert short.strategy is Strategy.AGENT
        assert short.overridden == (planned is Strategy.OPERATOR)
        normal = decide(plan, t, service_short=False)
        assert normal.strategy is planned and not normal.overridden
        assert (normal.index, normal.start_s, normal.end_s) == (i, i * HOUR, (i + 1) * HOUR)


def test_bad_plans_are_refused_with_the_reason():
    with pytest.raises(MvError, match="operator share"):
        BlockPlan(seed=1, block_s=HOUR, operator_share=0.02, epoch_s=0.0)
    with pytest.raises(MvError, match="operator share"):
        BlockPlan(seed=1, block_s=HOUR, operator_share=1.0, epoch_s=0.0)
    with pytest.raises(MvError, match="block length"):
        BlockPlan(seed=1, block_s=0.0, operator_share=0.5, epoch_s=0.0)
    plan = BlockPlan(seed=1, block_s=HOUR, operator_share=0.3, epoch_s=100.0)
    assert plan.effective_share == 0.25  # 0.3 x 8 rounds to 2 blocks per round, said openly
    with pytest.raises(MvError, match="before the schedule's epoch"):
        block_index(plan, 50.0)


def _coverage(covariance, rho, block_h, truth=1500.0):
    hits = 0
    for seed in range(RUNS):
        data, operator, blocks = plant(seed, rho=rho, block_h=block_h, saving_w=truth)
        est = ab_estimate(data, operator, blocks, SPEC, HOUR, covariance)
        hits += est.saving_rate_w.lower(0.90) <= truth <= est.saving_rate_w.upper(0.90)
    return hits / RUNS


def test_block_cluster_interval_covers_the_true_saving_90_percent_of_the_time():
    # AR(1) noise with rho = 0.7, 8 weeks hourly, 24-hour blocks, half to the operator.
    lo, hi = _binomial_band(0.90, RUNS)
    assert lo <= _coverage(Covariance.BLOCK_CLUSTER, rho=0.7, block_h=24) <= hi


def test_newey_west_covers_with_white_noise():
    lo, hi = _binomial_band(0.90, RUNS)
    assert lo <= _coverage(Covariance.NEWEY_WEST, rho=0.0, block_h=6) <= hi


def test_classical_errors_would_not_cover():
    # The reason for robust errors: with rho = 0.7 the i.i.d. standard error is far too small.
    data, operator, blocks = plant(1, rho=0.7)
    robust = ab_estimate(data, operator, blocks, SPEC, HOUR)
    from agent.mv.baseline import design_matrix, with_observed_levels
    from agent.mv.stats import ols
    X0, names = design_matrix(with_observed_levels(SPEC, data), data)
    classical = ols(np.column_stack([X0, operator]), data.power_w, (*names, "operator")).std_errors[-1]
    assert robust.saving_rate_w.std > 1.8 * classical


def test_estimate_reports_time_energy_and_refuses_one_sided_data():
    data, operator, blocks = plant(2, weeks=4)
    est = ab_estimate(data, operator, blocks, SPEC, HOUR)
    assert est.names[-1] == "operator" and est.coefficients[-1] == est.saving_rate_w.value
    assert est.agent_time_s + est.operator_time_s == len(data) * HOUR
    assert est.saving_j.value == pytest.approx(est.saving_rate_w.value * est.agent_time_s)
    assert est.clusters == 28 and est.saving_rate_w.dof == 27
    with pytest.raises(MvError, match="both strategies"):
        ab_estimate(data, np.zeros(len(data), dtype=bool), blocks, SPEC, HOUR)
    with pytest.raises(MvError, match="too few to cluster"):
        ab_estimate(data, operator, blocks // 7, SPEC, HOUR)
