"""Randomized A/B blocks: the agent against the operator's strategy, measured on the same plant.

Schedule. Time is cut into blocks of ``block_s`` from ``epoch_s``; blocks are grouped into
rounds of ``round_blocks`` and in each round exactly round(share × round_blocks) blocks,
chosen by a seeded permutation, go to the operator (restricted randomization: the share holds
in every round, not only on average). A block's strategy is a pure function of (seed, block
index), so a restarted agent finds the same schedule. An operator block is never run while
service is short: ``decide`` returns the agent and says it overrode the plan.

Estimate. Power of each interval is regressed on the baseline terms (flow, speed, pumps,
pressure, time of week) plus an indicator that is 1 when the operator's strategy ran. Its
coefficient is the extra power of the operator's strategy: the agent's saving rate [W].

Standard error. The strategy is assigned per block, so the indicator is constant over many
consecutive intervals and the residuals are autocorrelated (AR(1)-like, ρ ≈ 0.5–0.8 hourly).
Classical OLS errors are then far too small. The default is cluster-robust by block
(the sandwich whose "meat" sums the scores within each randomized block, CR1 small-sample
factor, t on G − 1 degrees of freedom): the block is the unit of randomization, so this is
the variance the design implies, whatever the shape of the residuals' autocorrelation within
a block (Abadie, Athey, Imbens & Wooldridge 2017: cluster at the level of assignment). The
autocorrelation-adjusted sample size n' = n(1 − ρ)/(1 + ρ) assumes AR(1) noise and a regressor
that is itself persistent; Newey–West (Bartlett kernel, Andrews' 1991 AR(1) plug-in
bandwidth) is kept as the alternative for runs with too few blocks to cluster on (it needs no
block structure, but under-covers when ρ is high and the sample short; the tests measure
both).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from agent.mv.baseline import DesignSpec, Intervals, design_matrix, with_observed_levels
from agent.mv.estimate import Estimate
from agent.mv.stats import FloatArray, MvError, ols

MIN_CLUSTERS = 10
"""Fewer blocks than this and the cluster-robust variance is itself too uncertain to use."""


class Strategy(Enum):
    """Who sets the group's setpoints during a block."""

    AGENT = "agent"
    OPERATOR = "operator"


@dataclass(frozen=True)
class BlockPlan:
    """The randomized block design of one group."""

    seed: int
    block_s: float
    operator_share: float
    epoch_s: float
    """Start of block 0 (UTC seconds); align to local midnight so blocks fall on the same hours."""
    round_blocks: int = 8

    def __post_init__(self) -> None:
        """Refuse a design that cannot give both strategies blocks in every round."""
        if self.block_s <= 0:
            raise MvError(f"block length must be positive, got {self.block_s} s")
        if self.round_blocks < 2:
            raise MvError(f"a round needs at least 2 blocks, got {self.round_blocks}")
        k = self.operator_blocks_per_round
        if not 1 <= k <= self.round_blocks - 1:
            raise MvError(f"operator share {self.operator_share} gives {k} of {self.round_blocks} blocks "
                          "per round to the operator; it must be at least 1 and leave one to the agent")
        if self.seed < 0:
            raise MvError(f"seed must be non-negative, got {self.seed}")

    @property
    def operator_blocks_per_round(self) -> int:
        """Exactly this many blocks of each round go to the operator."""
        return int(round(self.operator_share * self.round_blocks))

    @property
    def effective_share(self) -> float:
        """The share the rounding gives (what the schedule really does)."""
        return self.operator_blocks_per_round / self.round_blocks


def block_index(plan: BlockPlan, t_s: float) -> int:
    """Index of the block holding time ``t_s``."""
    if t_s < plan.epoch_s:
        raise MvError(f"time {t_s} lies before the schedule's epoch {plan.epoch_s}")
    return int((t_s - plan.epoch_s) // plan.block_s)


def planned_strategy(plan: BlockPlan, index: int) -> Strategy:
    """The strategy the randomization gives block ``index`` (pure: same seed, same answer)."""
    round_index, position = divmod(index, plan.round_blocks)
    operator = _operator_positions(plan.seed, round_index, plan.round_blocks, plan.operator_blocks_per_round)
    return Strategy.OPERATOR if position in operator else Strategy.AGENT


@functools.lru_cache(maxsize=64)
def _operator_positions(seed: int, round_index: int, round_blocks: int,
                        operator_blocks: int) -> frozenset[int]:
    """The operator's positions in one round: a seeded permutation's first ``operator_blocks``.

    Kept, since a schedule or a record asks for the blocks of one round again and again and a
    generator and permutation cost about 20 us.
    """
    order = np.random.default_rng([seed, round_index]).permutation(round_blocks)
    return frozenset(int(i) for i in order[:operator_blocks])


@dataclass(frozen=True)
class BlockDecision:
    """What runs now, and why."""

    index: int
    start_s: float
    end_s: float
    planned: Strategy
    strategy: Strategy
    overridden: bool
    """True when the plan said operator but service was short, so the agent kept control."""


def decide(plan: BlockPlan, t_s: float, service_short: bool) -> BlockDecision:
    """The strategy for time ``t_s``: the plan's, except never the operator's while service is short."""
    index = block_index(plan, t_s)
    planned = planned_strategy(plan, index)
    overridden = planned is Strategy.OPERATOR and service_short
    strategy = Strategy.AGENT if overridden else planned
    start = plan.epoch_s + index * plan.block_s
    return BlockDecision(index, start, start + plan.block_s, planned, strategy, overridden)


def schedule(plan: BlockPlan, start_s: float, end_s: float) -> tuple[BlockDecision, ...]:
    """The planned blocks covering [start, end), for display and for the ledger."""
    first = block_index(plan, start_s)
    stop = max(first + 1, math.ceil((end_s - plan.epoch_s) / plan.block_s))
    return tuple(decide(plan, plan.epoch_s + i * plan.block_s, service_short=False)
                 for i in range(first, stop))


class Covariance(Enum):
    """How the standard error of the strategy coefficient is computed."""

    BLOCK_CLUSTER = "block_cluster"
    NEWEY_WEST = "newey_west"


@dataclass(frozen=True)
class AbEstimate:
    """The agent's measured saving against the operator's strategy."""

    saving_rate_w: Estimate
    """Operator power − agent power at the same conditions [W]; positive = the agent saves."""
    agent_time_s: float
    """Time the agent ran in the analysed intervals."""
    operator_time_s: float
    covariance: Covariance
    clusters: int
    """Blocks in the data (both strategies)."""
    newey_west_lags: int
    """Bandwidth used (0 unless Newey–West)."""
    n: int
    p: int
    names: tuple[str, ...]
    coefficients: tuple[float, ...]

    @property
    def saving_j(self) -> Estimate:
        """Energy the agent saved over the time it ran: rate × agent time [J]."""
        return self.saving_rate_w.scaled(self.agent_time_s)


def _bartlett_meat(scores: FloatArray, lags: int) -> FloatArray:
    meat = scores.T @ scores
    for k in range(1, lags + 1):
        gamma = scores[k:].T @ scores[:-k]
        meat += (1.0 - k / (lags + 1.0)) * (gamma + gamma.T)
    return np.asarray(meat, dtype=np.float64)


def andrews_bandwidth(series: FloatArray) -> int:
    """Bartlett-kernel lag from an AR(1) fitted to ``series`` (Andrews 1991, eq. 6.4)."""
    v = series - series.mean()
    den = float(v[:-1] @ v[:-1])
    rho = float(v[1:] @ v[:-1]) / den if den > 0 else 0.0
    rho = min(max(rho, -0.97), 0.97)
    alpha = 4.0 * rho**2 / ((1.0 - rho) ** 2 * (1.0 + rho) ** 2)
    n = len(series)
    return max(1, min(n - 1, int(math.floor(1.1447 * (alpha * n) ** (1.0 / 3.0)))))


def ab_estimate(data: Intervals, strategy: npt.NDArray[np.bool_], blocks: npt.NDArray[np.int64],
                spec: DesignSpec, interval_s: float,
                covariance: Covariance = Covariance.BLOCK_CLUSTER) -> AbEstimate:
    """Regress power on the spec's terms and an operator indicator; the saving rate with its error.

    ``strategy`` is True where the operator's strategy actually ran (an overridden block is
    agent time); ``blocks`` is each interval's block index. Intervals a caller wants left out
    (a switch's transient) are simply not passed.
    """
    operator = np.asarray(strategy, dtype=bool)
    blocks = np.asarray(blocks, dtype=np.int64)
    if len(operator) != len(data) or len(blocks) != len(data):
        raise MvError("strategy and block columns must have one value per interval")
    if operator.all() or not operator.any():
        raise MvError("both strategies must appear in the data to compare them")
    X0, names0 = design_matrix(with_observed_levels(spec, data), data)
    X = np.column_stack([X0, operator.astype(np.float64)])
    names = (*names0, "operator")
    fit = ols(X, np.asarray(data.power_w, dtype=np.float64), names)
    n, p = fit.n, fit.p
    scores = X * fit.residuals[:, None]
    clusters = len(np.unique(blocks))
    lags = 0
    if covariance is Covariance.BLOCK_CLUSTER:
        if clusters < MIN_CLUSTERS:
            raise MvError(f"{clusters} blocks are too few to cluster on (need {MIN_CLUSTERS}); "
                          "use Newey–West or run longer")
        order = np.argsort(blocks, kind="stable")
        _, starts = np.unique(blocks[order], return_index=True)
        sums = np.add.reduceat(scores[order], starts, axis=0)
        meat = sums.T @ sums
        meat *= clusters / (clusters - 1.0) * (n - 1.0) / (n - p)
        dof = clusters - 1.0
    else:
        lags = andrews_bandwidth(scores[:, -1])
        meat = _bartlett_meat(scores, lags) * n / (n - p)
        dof = float(n - p)
    cov = fit.xtx_inv @ meat @ fit.xtx_inv
    se = math.sqrt(float(cov[-1, -1]))
    rate = Estimate(float(fit.coefficients[-1]), se, dof)
    agent_time = float(np.sum(~operator)) * interval_s
    operator_time = float(np.sum(operator)) * interval_s
    return AbEstimate(rate, agent_time, operator_time, covariance, clusters, lags, n, p, names,
                      tuple(float(b) for b in fit.coefficients))
