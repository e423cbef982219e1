"""Randomized A/B blocks of one group in control mode: who runs now, the labelled intervals, the estimate.

The agent's saving is measured, not modelled: for a configured share of randomized blocks
(``agent.mv.abtest``'s schedule) the group is handed back to the operator's strategy through
the ordinary hand-back (``GroupActuator.release``: the operator's values, kept on disk before
the agent's first write, are written back and verified; taking over again is slew limited
from the drive's value). Power and flow are averaged per interval and each interval is
labelled with the strategy that ran through all of it; an interval holding a switch, a
fault's hand-back, or a block whose decision is not yet made is left out. The saving rate is
the strategy coefficient of a regression of power on flow (``agent.mv.abtest.ab_estimate``,
cluster-robust by block), and the energy saved is that rate × the agent's time, with a
90 % interval.

A block is decided once, at its first optimizer cycle: the operator's block is refused (and
counted as overridden; the agent keeps that block) while the loads are short or the wall
clock cannot be trusted, and is never started part way through.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agent.config.model import AbBlocksConfig
from agent.mv.abtest import MIN_CLUSTERS, AbEstimate, BlockPlan, Strategy, ab_estimate, decide
from agent.mv.baseline import DesignSpec, Intervals, TimeOfWeek
from agent.mv.stats import MvError
from agent.optimizer.system import Service

if TYPE_CHECKING:
    from agent.optimizer.group import GroupRuntime

log = logging.getLogger(__name__)

MAX_INTERVALS = 24 * 7 * 26
"""Intervals kept for the estimate: half a year of hours."""
SPEC = DesignSpec(flow_degree=2, time_of_week=TimeOfWeek.NONE)
"""Power on a quadratic in flow. The randomized blocks balance the time of day between the
strategies, so time-of-week columns would only spend degrees of freedom."""
HAND_BACK_REASON = "A/B block: the operator's strategy runs"


def service_short(service: Service) -> bool:
    """No operator block may start: the loads are short, or it is not known that they are not."""
    return service is not Service.SATISFIED


@dataclass(frozen=True)
class AbInterval:
    """One interval that a single strategy ran through."""

    start_s: float  # UTC
    power_w: float  # mean electrical power of the group's drives
    flow: float  # mean demand (m³/s, or the group's demand unit)
    strategy: Strategy
    block: int


@dataclass(frozen=True)
class AbSnapshot:
    """What the metrics and the scenario runner read of one group's A/B blocks."""

    plan: BlockPlan
    interval_s: float
    intervals: tuple[AbInterval, ...]
    operator_blocks: int  # blocks handed back to the operator
    overridden_blocks: int  # operator blocks the agent kept because the loads were short
    estimate: AbEstimate | None
    why_no_estimate: str


@dataclass
class _Open:
    """The interval being averaged."""

    index: int
    power_sum: float = 0.0
    flow_sum: float = 0.0
    samples: int = 0
    mixed: bool = False
    strategy: Strategy | None = None
    block: int = -1


class AbBlocks:
    """One group's A/B blocks: the decision per block, the labelled intervals and the estimate."""

    def __init__(self, group: str, config: AbBlocksConfig) -> None:
        self.group = group
        self.config = config
        self.plan = BlockPlan(config.seed, config.block_s, config.operator_share, 0.0, config.round_blocks)
        self.decided: dict[int, Strategy] = {}  # this block and the one before (samples may lag a cycle)
        self.operator_blocks = 0
        self.overridden_blocks = 0
        self.intervals: deque[AbInterval] = deque(maxlen=MAX_INTERVALS)
        self._open: _Open | None = None
        self._estimate: AbEstimate | None = None
        self._why = "no interval yet"
        self._stale = False

    def operator_now(self, wall: float, short: bool) -> bool:
        """True if the operator's strategy runs now; decides a block at its first call."""
        if not math.isfinite(wall) or wall < 0.0:
            return False  # no trusted wall clock, no schedule: the agent keeps control
        decision = decide(self.plan, wall, service_short=short)
        if decision.index not in self.decided:
            self.decided = {i: s for i, s in self.decided.items() if i >= decision.index - 1}
            self.decided[decision.index] = decision.strategy
            if decision.overridden:
                self.overridden_blocks += 1
                log.info("group %s: A/B block %d stays with the agent: the loads are short", self.group,
                         decision.index)
            elif decision.strategy is Strategy.OPERATOR:
                self.operator_blocks += 1
                log.info("group %s: A/B block %d: handing back to the operator's strategy for %g s",
                         self.group, decision.index, self.plan.block_s)
        return self.decided[decision.index] is Strategy.OPERATOR

    def sample(self, wall: float, power_w: float, flow: float, holding: bool) -> None:
        """One poll of the group: its power and demand, and whether the agent's values are in force."""
        if not math.isfinite(wall) or wall < 0.0:
            return
        index = int(wall // self.config.interval_s)
        current = self._open
        if current is None or index != current.index:
            if current is not None and index > current.index:
                self._close(current)
            current = self._open = _Open(index)
        block = int(wall // self.plan.block_s)
        decided = self.decided.get(block)
        label = None
        if decided is Strategy.AGENT and holding:
            label = Strategy.AGENT
        elif decided is Strategy.OPERATOR and not holding:
            label = Strategy.OPERATOR
        if (label is None or not (math.isfinite(power_w) and math.isfinite(flow))
                or (current.strategy is not None and current.strategy is not label)):
            current.mixed = True
            return
        current.strategy, current.block = label, block
        current.power_sum += power_w
        current.flow_sum += flow
        current.samples += 1

    def _close(self, done: _Open) -> None:
        if done.mixed or done.strategy is None or done.samples < 2:
            return
        self.intervals.append(AbInterval(done.index * self.config.interval_s, done.power_sum / done.samples,
                                         done.flow_sum / done.samples, done.strategy, done.block))
        self._stale = True

    def estimate(self) -> AbEstimate | None:
        """The saving from the intervals so far (None until both strategies span enough blocks)."""
        if not self._stale:
            return self._estimate
        self._stale = False
        self._estimate, self._why = None, ""
        rows = list(self.intervals)
        blocks = np.array([r.block for r in rows], dtype=np.int64)
        if len(np.unique(blocks)) < MIN_CLUSTERS:
            self._why = f"{len(np.unique(blocks))} blocks so far, the estimate needs {MIN_CLUSTERS}"
            return None
        t = np.array([r.start_s for r in rows])
        data = Intervals(t, np.array([r.power_w for r in rows]), np.zeros(len(rows), dtype=np.int64),
                         flow_m3s=np.array([r.flow for r in rows]))
        operator = np.array([r.strategy is Strategy.OPERATOR for r in rows])
        try:
            self._estimate = ab_estimate(data, operator, blocks, SPEC, self.config.interval_s)
        except MvError as exc:
            self._why = str(exc)
        return self._estimate

    def snapshot(self) -> AbSnapshot:
        """The intervals, the block counts and the estimate, read at once."""
        estimate = self.estimate()
        return AbSnapshot(self.plan, self.config.interval_s, tuple(self.intervals), self.operator_blocks,
                          self.overridden_blocks, estimate, self._why)


def group_reading(group: GroupRuntime, now: float) -> tuple[float, float]:
    """(power of the group's drives [W], its demand) from the latest polls; NaN unless all are fresh."""
    if not all(d.is_fresh(now) and d.last is not None for d in group.drives):
        return math.nan, math.nan
    power = sum(d.last.power for d in group.drives if d.last is not None)
    samples = group.demand.samples  # the demand as the optimizer sees it (heads for a pressure demand)
    if not samples or now - samples[-1][0] > group.demand.window:
        return power, math.nan
    return power, samples[-1][1]


def group_short(group: GroupRuntime, now: float) -> bool:
    """The system model's verdict on the group's loads (``agent.optimizer.system``: one rule)."""
    return service_short(group.system.service)
