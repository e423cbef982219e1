"""Staging of parallel pumps: how many run, which, and how fast.

Candidates are priced by ``kernels.stage_pumps_tables``; the decision adds what the kernel
cannot know: the minimum run time and the minimum interval between changes, the demand the
trend foresees, exploring a pump never observed running, and holding a stage change until
the pumps that stay have arrived. ``Stager.plan`` is the one public entry (the tests and the
group call it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.config.model import GroupConfig
from agent.config.profile import Quantity
from agent.control.writer import DriveWriter
from agent.drive import DriveRuntime
from agent.optimizer.demand import DemandTracker
from agent.optimizer.machine import FloatArray, MachineModel, common_ratio
from agent.optimizer.plans import STOPPED, DriveSpeed, StagingPlan
from kernels import stage_pumps_tables

log = logging.getLogger(__name__)

EXPLORE_TOLERANCE = 0.10  # a stage-up may start a never-observed pump that costs this much more
# Where no set runs within the best-efficiency window (at a low head even the lowest speed runs a
# pump out past it), the sets are priced without it before anything runs at full speed.
ANY_FLOW = (0.0, 100.0)

Option = tuple[float, set[int], FloatArray]  # modelled power [W], the pumps that run, their speeds


@dataclass
class StageState:
    """Staging history of a parallel group under the agent's control."""

    last_change: float = -math.inf
    started: dict[str, float] = field(default_factory=dict)
    changes: int = 0
    pending_stop: set[str] = field(default_factory=set)


class Stager:
    """Decides the staging of one group's parallel pumps."""

    def __init__(self, config: GroupConfig, drives: Sequence[DriveRuntime], machines: Sequence[MachineModel],
                 writers: Mapping[str, DriveWriter], trend: DemandTracker, state: StageState) -> None:
        self.config = config
        self.drives = list(drives)
        self.machines = list(machines)
        self.writers = writers
        self.trend = trend
        self.state = state

    def _priced(self, allowed: set[int], static: float, k: float, flow: float,
                window: tuple[float, float] | None = None) -> tuple[FloatArray, float]:
        """The kernel's optimal staging within ``allowed``: speeds (0: stopped) and total power [W].

        ``window``: the collapsed flows allowed, as shares of each pump's best-efficiency flow
        (default the group's ``bep_window``).
        """
        machines = self.machines
        low, high = window or self.config.staging.bep_window
        electric = machines[0].electric
        header = static + k * flow * flow
        speeds, total = stage_pumps_tables(
            np.array([m.head for m in machines]), np.array([m.power for m in machines]),
            np.array([m.config.rated_power for m in machines]), static, k, flow,
            np.array([m.min_ratio for m in machines]),
            np.array([m.top_ratio(header) if i in allowed else 0.0 for i, m in enumerate(machines)]),
            np.full(len(machines), low), np.full(len(machines), high), electric.motor, electric.drive,
        )
        return np.asarray(speeds, dtype=np.float64), float(total)

    def plan(self, now: float, static: float, k: float, flow: float) -> StagingPlan:
        """Staging of parallel pumps, within the minimum run time and the minimum time between changes.

        Candidates are the running set and the running set plus any one stopped pump, each
        staged optimally within itself (so a candidate may also leave pumps out). A change
        needs the minimum interval since the last one, a gain of ``min_gain``, and a set that
        can still deliver the demand the trend foresees one minimum interval ahead (so that
        a stage-down is not undone by the next rise); it never stops a pump before its
        minimum run time. A running set that will not deliver that foreseen demand is
        staged up once the interval allows; one that cannot deliver the demand now, at once.
        Until a change is allowed, exactly the running pumps run.

        At a stage-up, a pump never observed running is preferred to the best one if its
        (datasheet) price is within ``EXPLORE_TOLERANCE``: the agent learns its real curves
        (a worn pump is then priced, staged and counted as worn) at the cost of a little power.
        No new decision is taken while a leaving pump still waits for its stop.
        """
        names = [d.name for d in self.drives]
        staging, stage = self.config.staging, self.state
        running = {i for i, d in enumerate(self.drives) if self._on(d)}
        ahead = self.trend.estimate(now, staging.min_interval) * (1.0 + self.config.demand.margin)
        future = min(max(flow, ahead if math.isfinite(ahead) else flow), 1.3 * flow)

        def may_stop(i: int) -> bool:
            return now - stage.started.get(names[i], -math.inf) >= staging.min_run

        def capable(members: set[int], demand: float) -> bool:
            head = static + k * demand * demand
            return sum(self.machines[i].top_flow(head) for i in members) >= demand

        waited = now - stage.last_change >= staging.min_interval
        if stage.pending_stop and running:
            hold = self._common_speeds(running, static + k * flow * flow, flow)
            if hold is not None:
                return hold

        options = self._options(running, static, k, flow) or self._options(running, static, k, flow, ANY_FLOW)
        if not options:
            return self._outside(running, static + k * flow * flow, flow)
        # One stop per decision, and none before the minimum run time.
        permitted = [o for o in options
                     if len(running - o[1]) <= 1 and all(may_stop(i) for i in running - o[1])]
        if not permitted:
            hold = self._common_speeds(running, static + k * flow * flow, flow) if running else None
            if hold is not None:
                return hold
        options = permitted or options
        options.sort(key=lambda o: o[0])
        lasting = [o for o in options if capable(o[1], future)] or options
        lasting = self._explore(lasting, running, names)
        if not running or not capable(running, flow):
            best = lasting[0]  # must change now
        elif waited and not capable(running, future):
            best = lasting[0]  # stage up ahead of the rise
        else:
            best = self._keep_or_change(options, lasting[0], running, static + k * flow * flow, flow, waited)
        speeds = best[2]
        return StagingPlan({name: DriveSpeed(float(speeds[i]), True) if i in best[1] else STOPPED
                            for i, name in enumerate(names)})

    def _options(self, running: set[int], static: float, k: float, flow: float,
                 window: tuple[float, float] | None = None) -> list[Option]:
        """The running set, and it plus any one stopped pump, each staged optimally within itself."""
        options: list[Option] = []
        for extra in [None, *(j for j in range(len(self.drives)) if j not in running)]:
            allowed = running | ({extra} if extra is not None else set())
            speeds, total = self._priced(allowed, static, k, flow, window)
            if math.isfinite(total):
                options.append((total, {i for i, s in enumerate(speeds) if s > 0.0}, speeds))
        return options

    def _keep_or_change(self, options: list[Option], best: Option, running: set[int], header: float,
                        flow: float, waited: bool) -> Option:
        """The running set, unless ``best`` is another set, cheaper by ``min_gain``, and a change is due."""
        current = next((o for o in options if o[1] == running), None)
        if current is None:  # the kernel would leave a running pump out: price exactly the running set
            hold = self._common_speeds(running, header, flow)
            if hold is None:
                return best
            names = [d.name for d in self.drives]
            speeds = np.array([hold.of(n).ratio if hold.of(n).running else 0.0 for n in names])
            current = (self._plan_power(speeds, header), running, speeds)
        cheaper = best[0] < current[0] * (1.0 - self.config.staging.min_gain)
        return best if waited and best[1] != running and cheaper else current

    def _on(self, drive: DriveRuntime) -> bool:
        """Running, or started by the agent and on its way up; not waiting for its stop."""
        if drive.name in self.state.pending_stop:
            return False
        if drive.last is not None and drive.last.running:
            return True
        writer = self.writers.get(drive.name)
        run = drive.config.profile.control_words.get("run")
        word = writer.last.get(Quantity.CONTROL_WORD) if writer is not None else None
        return word is not None and run is not None and word[0] == run and drive.name in self.state.started

    def _explore(self, options: list[Option], running: set[int], names: list[str]) -> list[Option]:
        """Put first a stage-up that starts a never-observed pump, if it costs little more than the best."""
        if not options or not options[0][1] - running:
            return options
        for option in options:
            added = option[1] - running
            if added and all(not self.machines[i].observed for i in added) \
                    and option[0] <= options[0][0] * (1.0 + EXPLORE_TOLERANCE):
                if option is not options[0]:
                    log.info("group %s: starting %s to learn its curves (never observed running)",
                             self.config.name, ", ".join(names[i] for i in sorted(added)))
                return [option, *(o for o in options if o is not option)]
        return options

    def _outside(self, running: set[int], head: float, flow: float) -> StagingPlan:
        """No set delivers the demand at any speed within its limits: below or beyond what the pumps give.

        Below (a low head at a low demand: one pump at its lowest speed gives more than the
        demand, and the valves take the rest), the running pumps, or the first, at their lowest
        speed; beyond, every pump at full speed.
        """
        names = [d.name for d in self.drives]
        members = running or {0}
        if sum(self.machines[i].flow_at(head, self.machines[i].min_ratio) for i in members) >= flow:
            return StagingPlan({n: DriveSpeed(m.min_ratio, True) if i in members else STOPPED
                                for i, (n, m) in enumerate(zip(names, self.machines, strict=True))})
        return StagingPlan({n: DriveSpeed(m.max_ratio, True)
                            for n, m in zip(names, self.machines, strict=True)})

    def _plan_power(self, speeds: FloatArray, head: float) -> float:
        """Modelled electrical power [W] of the machines at ``speeds`` on a header at ``head``."""
        return sum(m.electrical(m.flow_at(head, float(r)), float(r))
                   for m, r in zip(self.machines, speeds, strict=True) if r > 0.0)

    def _common_speeds(self, members: set[int], head: float, flow: float) -> StagingPlan | None:
        """Exactly ``members`` at one common speed delivering ``flow`` at ``head``; None if they cannot."""
        machines = [self.machines[i] for i in sorted(members)]
        top = min(m.top_ratio(head) for m in machines)
        if sum(m.flow_at(head, top) for m in machines) < flow:
            return None
        ratio = common_ratio(machines, head, flow, top)
        return StagingPlan({d.name: DriveSpeed(max(ratio, m.min_ratio), True) if i in members else STOPPED
                            for i, (d, m) in enumerate(zip(self.drives, self.machines, strict=True))})
