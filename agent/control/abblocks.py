"""Randomized A/B blocks of one group in control mode: who runs now, each sample's label, the estimate.

The agent's saving is measured, not modelled: for a configured share of randomized blocks
(``agent.mv.abtest``'s schedule) the group is handed back to the operator's strategy through
the ordinary hand-back (``GroupActuator.release``: the operator's values, kept on disk before
the agent's first write, are written back and verified; taking over again is slew limited
from the drive's value). Each poll is labelled with the strategy in force (``AbBlocks.label``);
the M&V interval record (``agent.energy.verification``) keeps an interval's label when one
strategy ran through all of it, in the ledger's ``mv_interval`` rows, so a restarted agent
keeps its A/B record. An interval holding a switch, a fault's hand-back, or a block whose
decision is not yet made has no label and is left out. The saving rate is the strategy
coefficient of a regression of power on flow (``agent.energy.verification.ab_figure``, with
``agent.mv.abtest.ab_estimate``: cluster-robust by block), and the energy saved is that rate ×
the agent's time, with 68 % and 90 % intervals.

A block is decided once, at its first optimizer cycle: the operator's block is refused (and
counted as overridden; the agent keeps that block) while the loads are short or the wall
clock cannot be trusted, and is never started part way through.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.config.model import AbBlocksConfig
from agent.mv.abtest import BlockPlan, Strategy, block_index, decide
from agent.optimizer.system import Service

if TYPE_CHECKING:
    from agent.optimizer.group import GroupRuntime

log = logging.getLogger(__name__)

HAND_BACK_REASON = "A/B block: the operator's strategy runs"


def service_short(service: Service) -> bool:
    """No operator block may start: the loads are short, or it is not known that they are not."""
    return service is not Service.SATISFIED


@dataclass(frozen=True)
class AbSnapshot:
    """What the metrics and the service read of one group's A/B blocks."""

    plan: BlockPlan
    operator_blocks: int  # blocks handed back to the operator
    overridden_blocks: int  # operator blocks the agent kept because the loads were short
    label: tuple[Strategy, int] | None  # the strategy in force at the latest sample and its block
    operator_block: bool  # the current block is the operator's (a hand-back now is planned)


class AbBlocks:
    """One group's A/B blocks: the decision per block and the label of each sample."""

    def __init__(self, group: str, config: AbBlocksConfig) -> None:
        self.group = group
        self.config = config
        self.plan = BlockPlan(config.seed, config.block_s, config.operator_share, 0.0, config.round_blocks)
        self.decided: dict[int, Strategy] = {}  # this block and the one before (samples may lag a cycle)
        self.operator_blocks = 0
        self.overridden_blocks = 0
        self.label: tuple[Strategy, int] | None = None

    def operator_now(self, wall: float, short: bool) -> bool:
        """True if the operator's strategy runs now; decides a block at its first call."""
        if not math.isfinite(wall) or wall < 0.0:
            return False  # no trusted wall clock, no schedule: the agent keeps control
        index = block_index(self.plan, wall)
        if index not in self.decided:  # the plan's draw (an RNG per call) once per block, not per cycle
            decision = decide(self.plan, wall, service_short=short)
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
        return self.decided[index] is Strategy.OPERATOR

    def sample(self, wall: float, holding: bool) -> None:
        """After a poll of the group: the strategy in force, if the block's decision is what runs.

        The agent's block counts while its values are in force, the operator's once they are
        handed back; anything else (a switch under way, a fault's hand-back, no decision yet,
        no trusted wall clock) has no label.
        """
        self.label = None
        if not math.isfinite(wall) or wall < 0.0:
            return
        block = int(wall // self.plan.block_s)
        decided = self.decided.get(block)
        if decided is Strategy.AGENT and holding or decided is Strategy.OPERATOR and not holding:
            self.label = (decided, block)

    def snapshot(self, wall: float) -> AbSnapshot:
        """The block counts and the latest label, read at once."""
        current = int(wall // self.plan.block_s) if math.isfinite(wall) and wall >= 0.0 else -1
        return AbSnapshot(self.plan, self.operator_blocks, self.overridden_blocks, self.label,
                          self.decided.get(current) is Strategy.OPERATOR)


def group_short(group: GroupRuntime, now: float) -> bool:
    """The system model's verdict on the group's loads (``agent.optimizer.system``: one rule)."""
    return service_short(group.system.service)
