"""``python -m hil.scenario NAME --mv``: the agent's savings measured as an auditor would, against the truth.

On one simulated plant, one day of demand after another (the plant's noise reseeded by ``--seed``):

1. baseline period (one day): the plant under its conventional strategy with the agent in
   monitor mode; the agent's own interval record (``agent.energy.verification``, read from its
   ledger) is fitted by ``agent.mv.baseline`` (power on a quadratic in flow) and judged by
   Guideline 14 (CV(RMSE), NMBE, coverage);
2. reporting period (one day): the agent in control mode with randomized A/B blocks
   (``agent.control.abblocks``): a share of the blocks handed back to the operator's strategy;
   the labelled intervals the agent stored in its ledger give the saving from the regression
   with a strategy indicator (``agent.energy.verification.ab_figure``), with its 90 % interval.

The truth is the simulator's: for every interval the estimate counts as the agent's, the
noise-free energy of the conventional strategy (a fresh plant nobody writes to, on the same
demand trace) less the energy the plant drew under the agent. The operator's intervals
against the conventional strategy show what a hand-back really restores.

Time scales as in ``hil.scenario``: a day of ``duration`` seconds stands for 24 hours; a
block is one hour of that day and an interval a quarter of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.control.abblocks import AbSnapshot
from agent.energy.ledger import LEDGER_FILE, MvInterval, open_readonly, read_intervals
from agent.energy.verification import AB_SPEC, ab_figure, to_intervals, usable
from agent.mv.abtest import Strategy
from agent.mv.baseline import BaselineModel, avoided_energy, fit_baseline
from agent.mv.estimate import Estimate
from agent.mv.stats import MvError
from hil.model import PlantModel
from hil.plantfile import CircuitSpec, PlantSpec
from hil.server import SimulatedPlant

if TYPE_CHECKING:  # hil.scenario imports this module
    from hil.scenario import Scenario, Timing

FloatArray = npt.NDArray[np.float64]

BLOCKS_PER_DAY = 24
INTERVALS_PER_BLOCK = 4
OPERATOR_SHARE = 0.5  # the most precise comparison for the time it costs
CONFIDENCE = 0.90


@dataclass(frozen=True)
class MvTiming:
    """The A/B design of a run: block and interval lengths in scenario seconds."""

    block_s: float
    interval_s: float

    @classmethod
    def for_day(cls, day: float) -> MvTiming:
        """One block per hour of the day, four intervals per block."""
        block = day / BLOCKS_PER_DAY
        return cls(block, block / INTERVALS_PER_BLOCK)


def reseeded(plant: PlantSpec, seed: int) -> PlantSpec:
    """The plant with every noise source's seed moved by ``seed`` (the same physics, other noise)."""
    if seed == 0:
        return plant
    drives = tuple(dataclasses.replace(d, seed=d.seed + 1000 * seed) for d in plant.drives)
    circuits = tuple(dataclasses.replace(c, seed=c.seed + 1000 * seed) for c in plant.circuits)
    return dataclasses.replace(plant, drives=drives, circuits=circuits)


@dataclass
class Trace:
    """What the scenario records every poll: wall time, the plant's time and its true energy."""

    wall: list[float] = dataclasses.field(default_factory=list)
    sim_t: list[float] = dataclasses.field(default_factory=list)
    energy_j: list[float] = dataclasses.field(default_factory=list)  # true energy of the circuit's drives


def stored_intervals(state_dir: Path, group: str) -> list[MvInterval]:
    """The group's intervals as the agent recorded them in the ledger of ``state_dir``."""
    db = open_readonly(state_dir / LEDGER_FILE)
    try:
        return read_intervals(db, group)
    finally:
        db.close()


def conventional_energy(plant: PlantSpec, circuit: CircuitSpec, times: FloatArray) -> FloatArray:
    """True energy of the circuit's drives under the conventional strategy at each (sorted) plant time."""
    model = PlantModel(plant)
    out = np.empty(len(times))
    for i, t in enumerate(times):
        model.advance_to(float(t))
        out[i] = sum(model.drives[n].snapshot.energy for n in circuit.drives)
    return out


async def _phase(sim: SimulatedPlant, text: str, state_dir: Path, circuit: CircuitSpec, until_sim_t: float,
                 poll: float, trace: Trace) -> tuple[AbSnapshot | None, float]:
    """Run one agent until the plant's time reaches ``until_sim_t``, recording the trace every poll."""
    from agent.service import Agent  # imports the kernels: after the Numba cache is set up

    path = state_dir / "site.yaml"
    path.write_text(text, encoding="utf-8")
    agent = Agent(load_config(path), registry=CollectorRegistry(), time_synchronized=lambda: None)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, serve_metrics=False))
    try:
        while sim.now() < until_sim_t and not task.done():
            await asyncio.sleep(poll)
            sim.update()
            trace.wall.append(time.time())
            trace.sim_t.append(sim.model.t)
            trace.energy_j.append(sum(sim.model.drives[n].snapshot.energy for n in circuit.drives))
    finally:
        stop.set()
        await task
    optimizer = agent.optimizer
    snapshot = optimizer.snapshot().ab_blocks.get(circuit.name) if optimizer is not None else None
    return snapshot, time.time()


def _estimate_dict(estimate: Estimate, digits: int = 1) -> dict[str, float]:
    return {"value": round(estimate.value, digits), "lower90": round(estimate.lower(CONFIDENCE), digits),
            "upper90": round(estimate.upper(CONFIDENCE), digits), "std": round(estimate.std, digits),
            "dof": round(estimate.dof, 1) if math.isfinite(estimate.dof) else -1.0}


def _baseline_dict(model: BaselineModel) -> dict[str, Any]:
    stats = model.stats
    return {"n": stats.n, "r_squared": round(stats.r_squared, 4),
            "cv_rmse_pct": round(100 * stats.cv_rmse, 2),
            "nmbe_pct": round(100 * stats.nmbe, 3), "coverage": round(model.coverage, 3),
            "rho": round(model.rho, 3), "passes_guideline_14": model.passed,
            "checks": {c.name: c.passed for c in model.checks}}


SiteText = Callable[[SimulatedPlant, Path, str, "MvTiming"], str]
"""The agent's site config for the plant: (plant, state directory, mode, A/B design) -> YAML."""


def run_mv(scenario: Scenario, timing: Timing, plant: PlantSpec, seed: int,  # noqa: PLR0913
           site_text: SiteText, state_dir: Path | None = None) -> dict[str, Any]:
    """Baseline day, then the A/B day; the ``mv`` object of the scenario's JSON."""
    design = MvTiming.for_day(timing.day)
    plant = reseeded(plant, seed)
    circuit = plant.circuits[0]
    if state_dir is None:
        with tempfile.TemporaryDirectory(prefix=f"vfd-mv-{scenario.name}-") as tmp:
            return asyncio.run(_run(plant, circuit, timing, design, seed, site_text, Path(tmp)))
    state_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_run(plant, circuit, timing, design, seed, site_text, state_dir))


async def _run(plant: PlantSpec, circuit: CircuitSpec, timing: Timing, design: MvTiming, seed: int,
               site_text: SiteText, state_dir: Path) -> dict[str, Any]:
    from kernels import warmup

    warmup()  # a first compile must not eat the baseline day: the plant's clock runs from its start
    sim = SimulatedPlant(plant)
    await sim.start("127.0.0.1", 0)
    trace = Trace()
    try:
        base_start = time.time()
        base_dir = _dir(state_dir, "baseline")
        await _phase(sim, site_text(sim, base_dir, "monitor", design), base_dir, circuit, timing.day,
                     timing.poll, trace)
        base_end = time.time()
        ab_dir = _dir(state_dir, "ab")
        ab, report_end = await _phase(sim, site_text(sim, ab_dir, "control", design), ab_dir, circuit,
                                      2.0 * timing.day, timing.poll, trace)
    finally:
        await sim.stop()
    wall, sim_t, energy = np.array(trace.wall), np.array(trace.sim_t), np.array(trace.energy_j)
    result: dict[str, Any] = {"seed": seed, "block_s": round(design.block_s, 4),
                              "interval_s": round(design.interval_s, 4), "operator_share": OPERATOR_SHARE}
    period = (math.ceil((base_start + timing.settle) / design.interval_s) * design.interval_s,
              math.floor(base_end / design.interval_s) * design.interval_s)
    recorded = usable(stored_intervals(base_dir, circuit.name))
    base_rows = [r for r in recorded if period[0] <= r.start < period[1]]
    if len(base_rows) < 10:
        raise MvError(f"the baseline day gave {len(base_rows)} recorded intervals of {design.interval_s:g} s "
                      "(the agent never read the plant?)")
    model = fit_baseline(to_intervals(base_rows), AB_SPEC, design.interval_s, *period)
    result["baseline"] = _baseline_dict(model)
    ab_rows = stored_intervals(ab_dir, circuit.name)
    figure = ab_figure(ab_rows)
    if figure is None or figure.estimate is None:
        result["error"] = figure.why_not if figure is not None else "no labelled interval in the ledger"
        return result
    estimate = figure.estimate
    labelled = [r for r in usable(ab_rows) if r.strategy is not None and r.block is not None]
    # The truth of each analysed interval, on the plant's clock (wall and plant time move together).
    order = np.argsort(sim_t)
    conv_grid = np.arange(0.0, float(sim_t.max()) + plant.step, plant.step)
    conv = conventional_energy(plant, circuit, conv_grid)

    def truth(start_wall: float, strategy: str) -> float:
        a, b = start_wall, start_wall + design.interval_s
        sa, sb = np.interp([a, b], wall[order], sim_t[order])
        run = float(np.diff(np.interp([sa, sb], sim_t[order], energy[order]))[0])
        conventional = float(np.diff(np.interp([sa, sb], conv_grid, conv))[0])
        return conventional - run if strategy == Strategy.AGENT.value else run - conventional

    agent_rows = [r for r in labelled if r.strategy == Strategy.AGENT.value]
    agent_truth = sum(truth(r.start, Strategy.AGENT.value) for r in agent_rows)
    operator_extra = sum(truth(r.start, Strategy.OPERATOR.value) for r in labelled
                         if r.strategy == Strategy.OPERATOR.value)
    saving = estimate.saving_j
    operator_blocks = ab.operator_blocks if ab is not None else 0
    overridden_blocks = ab.overridden_blocks if ab is not None else 0
    result.update({
        "ab_estimate_joules": _estimate_dict(saving),
        "ab_saving_rate_watts": _estimate_dict(estimate.saving_rate_w),
        "true_saving_joules": round(agent_truth, 1),
        "truth_inside_90": saving.lower(CONFIDENCE) <= agent_truth <= saving.upper(CONFIDENCE),
        "agent_time_s": round(estimate.agent_time_s, 3),
        "operator_time_s": round(estimate.operator_time_s, 3),
        "blocks": estimate.clusters, "operator_blocks": operator_blocks,
        "overridden_blocks": overridden_blocks, "intervals": len(labelled),
        # What a hand-back restores: the operator's intervals less the conventional plant (0 if exactly).
        "operator_minus_conventional_joules": round(operator_extra, 1),
        "reporting_end_wall_s": round(report_end, 3),
    })
    try:  # the Option B cross-check: the baseline model's prediction for the agent's intervals
        agent_data = to_intervals(agent_rows)
        avoided = avoided_energy(model, agent_data, float(agent_data.t_s[0]),
                                 float(agent_data.t_s[-1]) + design.interval_s)
        result["baseline_model_saving_joules"] = _estimate_dict(avoided.savings_j)
    except MvError as exc:  # a cross-check that cannot be made is said, not fatal
        result["baseline_model_saving_joules"] = str(exc)
    return result


def _dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path
