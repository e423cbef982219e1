"""Closed-loop scenarios: the agent in control mode against a simulated plant, scored against references.

``python -m hil.scenario NAME [--duration SECONDS]`` (or ``--plant PATH`` for any plant file
with one header circuit) compresses one day of the plant's demand into the duration and
runs, on the same demand trace:

1. the conventional strategy: the plant left to its own drives (fixed pressure setpoint,
   threshold staging), stepped faster than real time (``hil.strategies``);
2. good practice without the agent: trim-and-respond pressure reset on the critical
   valve (ASHRAE Guideline 36) and best-efficiency staging (``hil.strategies.GoodPractice``);
3. the oracle: the least power that meets the demand, from the true curves;
4. the agent: a real ``agent.service.Agent`` in control mode, polling and writing over
   loopback Modbus TCP to the ``SimulatedPlant``, through its guard rails.

``--system-error static=-0.33,resistance=+0.2`` hands the agent a system curve off by
these shares (the static head and the resistance k of y = static + k·Q² the operator types
into the config); the plant is unchanged, so the run shows what a wrong guess costs.

It prints one JSON object: the four energies, the share of the oracle's savings the
agent captured, unmet demand, limit violations, stage changes, and the savings the
agent's own metrics claim against the conventional strategy (booked where the operator's
strategy was seen at the flow, labelled where it was not) beside the savings the plant
shows over the same polls.

Time scales with the duration: the agent's poll and optimizer intervals, the pumps'
minimum run time and time between stage changes, the drives' speed ramps, the local
cascade's delay and the slew limits are set for a 600 s day and scaled with it (the
poll and optimizer intervals have floors of 0.1 s and 0.5 s, so a much shorter day is
a harder test for the agent, not an easier one).

Long because a scenario is one experiment: its timing, the three runs and the scoring
are kept side by side so that a reviewer can check what is compared with what.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import math
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.config import BaselineConfig, BaselineMethod, load_config
from agent.config.profile import BUILTIN_CONFIGS, Quantity
from agent.errors import ConfigError, ConfigIssue
from agent.metrics import SavingsBasis
from hil.model import HeaderCircuit, PlantModel
from hil.mvscenario import OPERATOR_SHARE, MvTiming, run_mv
from hil.physics import RHO_G_WATER
from hil.plantfile import CircuitSpec, PlantSpec, load_plant
from hil.server import SimulatedPlant
from hil.strategies import conventional_run, good_practice_run, oracle_energy

log = logging.getLogger("hil.scenario")

PLANTS = BUILTIN_CONFIGS / "plants"
PROCESS_PROFILE = PLANTS / "profiles" / "generic-process.yaml"
REFERENCE_DAY_S = 600.0  # the time constants below are for a day of this length
DEFAULT_DURATION_S = 600.0
BEP_WINDOW = (0.3, 1.4)  # parallel pumps run within this share of their best-efficiency flow


@dataclass(frozen=True)
class Scenario:
    """One closed-loop scenario: a plant file and how the agent is set up for it."""

    name: str
    plant: str  # file in configs/plants
    control: str  # the group's control: speed | pressure_setpoint
    description: str
    margin_pct: float = 0.5
    min_setpoint_ratio: float = 0.0  # pressure loops: minimum setpoint above the static head, of the dynamic


SCENARIOS = {
    s.name: s for s in (
        Scenario("chw-3pump", "chw-3pump.yaml", "speed",
                 "three non-identical parallel chilled-water pumps, 30 % static head, pump 2 worn: "
                 "staging and speeds against the fitted curves"),
        Scenario("ahu-fan", "ahu-fan.yaml", "pressure_setpoint",
                 "a VAV supply fan whose drive holds the duct pressure: static pressure reset"),
        Scenario("booster-static", "booster-static.yaml", "speed",
                 "a booster pump with 70 % static head: the lowest speed meeting the demand saves little"),
    )
}


@dataclass(frozen=True)
class CurveOffset:
    """How far the system curve in the agent's config is off the plant's, as shares (-0.33: a third low)."""

    static: float = 0.0
    resistance: float = 0.0

    @classmethod
    def parse(cls, text: str) -> CurveOffset:
        """``static=-0.33,resistance=+0.2`` (either key may be left out); ValueError naming the bad part."""
        values: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in ("static", "resistance"):
                raise ValueError(f"{part!r}: expected static=SHARE or resistance=SHARE")
            if key in values:
                raise ValueError(f"{key} is given twice")
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{part!r}: {raw.strip()!r} is not a number") from None
            if not -0.95 <= value <= 5.0:
                raise ValueError(f"{part!r}: a share between -0.95 and +5 (e.g. -0.3 for 30 % low)")
            values[key] = value
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        """The shares, for the JSON."""
        return {"static": self.static, "resistance": self.resistance}


@dataclass(frozen=True)
class ConfiguredSystem:
    """The system curve and setpoint range the operator writes into the agent's config (machine units)."""

    static: float
    design_head: float  # static + k'·Q_design² of the configured curve
    min_setpoint: float
    max_setpoint: float

    @classmethod
    def of(cls, scenario: Scenario, circuit: CircuitSpec,
           error: CurveOffset = CurveOffset()) -> ConfiguredSystem:
        """The plant's curve off by ``error``; the setpoint range follows the configured static head.

        The maximum setpoint stays the design head the plant runs at today (the operator
        knows it from the drive's own setpoint); the minimum is the configured static head
        plus the scenario's share of the configured dynamic head, never above the maximum.
        """
        static = circuit.static_ratio * circuit.design_head
        k_dynamic = circuit.design_head - static  # k·Q_design²
        configured_static = static * (1.0 + error.static)
        design = configured_static + k_dynamic * (1.0 + error.resistance)
        minimum = configured_static + scenario.min_setpoint_ratio * max(design - configured_static, 0.0)
        return cls(static=configured_static, design_head=design,
                   min_setpoint=min(minimum, circuit.design_head), max_setpoint=circuit.design_head)


@dataclass(frozen=True)
class Timing:
    """Time constants of one run, scaled from the reference day."""

    day: float
    poll: float
    optimizer: float
    ramp: float
    stage_delay: float
    min_run: float
    min_interval: float
    slew_pct_per_min: float
    settle: float

    @property
    def lookahead(self) -> float:
        """How far ahead the agent must see the demand: until its next setpoints are in force.

        One optimizer interval, the data's age (two polls), and three time constants of the
        drives' speed ramp.
        """
        return self.optimizer + 2.0 * self.poll + 3.0 * self.ramp

    @classmethod
    def for_duration(cls, duration: float) -> Timing:
        """The reference constants scaled to a day of ``duration`` seconds.

        At the reference day (600 s, 144 times faster than a real day) the optimizer runs
        every 0.5 s (72 s of a real day), drives ramp with 0.2 s (30 s), pumps run at least
        10 s (24 min), stage changes are 10 s (24 min) apart, and a setpoint moves by at most 10 % of
        its range per second (4 % per minute of a real day).
        """
        scale = duration / REFERENCE_DAY_S
        poll = 0.1 if scale >= 0.5 else 0.05
        optimizer = max(0.1, 0.5 * scale)
        ramp = max(0.05, 0.2 * scale)
        return cls(
            day=duration, poll=poll, optimizer=optimizer, ramp=ramp, stage_delay=5.0 * scale,
            min_run=10.0 * scale, min_interval=10.0 * scale, slew_pct_per_min=600.0 / scale,
            settle=max(10.0 * optimizer, 0.05 * duration),
        )


def scaled_plant(plant: PlantSpec, timing: Timing) -> PlantSpec:
    """The plant with its day, ramps and cascade delay set for this run."""
    drives = tuple(dataclasses.replace(d, ramp_time=timing.ramp) for d in plant.drives)
    circuits = tuple(
        dataclasses.replace(c, control=dataclasses.replace(c.control, stage_delay=timing.stage_delay))
        for c in plant.circuits
    )
    return dataclasses.replace(plant, day_length=timing.day, drives=drives, circuits=circuits)


def site_config(scenario: Scenario, plant: PlantSpec, circuit: CircuitSpec, port: int, timing: Timing,
                state_dir: Path, mode: str = "control", error: CurveOffset = CurveOffset()) -> str:
    """The agent's site config for the plant as an operator would write it, system curve off by ``error``."""
    fan = circuit.kind.value == "fan"
    head_key = "pressure_pa" if fan else "head_m"
    configured = ConfiguredSystem.of(scenario, circuit, error)
    control = circuit.control
    text = textwrap.dedent(f"""\
        site: {{name: scenario, grid_emission_factor_kg_per_kwh: 0.5703, \
        tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        metrics: {{listen: "127.0.0.1:0"}}
        storage: {{path: {state_dir}, flush_interval_s: {max(0.5, 2 * timing.optimizer):g}}}
        polling: {{interval_s: {timing.poll:g}, timeout_s: {0.4 * timing.poll:g}, retries: 0, \
        max_gap_s: {max(5.0, 10 * timing.poll):g}}}
        optimizer: {{interval_s: {timing.optimizer:g}, min_samples: 40, min_r_squared: 0.9}}
        buses: [{{name: plant, host: 127.0.0.1, port: {port}, reconnect_delay_max_s: 1}}]
        drives:
        """)
    for drive in (plant.drive(n) for n in circuit.drives):
        load = drive.load
        rated = f"rated_pressure_pa: {load.rated_pressure:g}" if fan else f"rated_head_m: {load.rated_head:g}"
        text += textwrap.indent(textwrap.dedent(f"""\
            - name: {drive.name}
              bus: plant
              unit: {drive.unit}
              profile: {PROCESS_PROFILE}
              rated_power_kw: {drive.rated_power / 1e3:g}
              rated_speed_rpm: {drive.rated_speed * 60 / (2 * math.pi):.6g}
              motor_efficiency_pct: {drive.motor_efficiency * 100:g}
              load: {{kind: {load.kind.value}, rated_flow_m3h: {load.rated_flow * 3600:g}, {rated}}}
              baseline: {_baseline(drive.baseline)}
              control: {{mode: {mode}, min_speed_pct: {drive.min_speed_ratio * 100:g}, \
            max_speed_pct: {drive.max_speed_ratio * 100:g}, \
            max_slew_pct_per_min: {timing.slew_pct_per_min:g}, writes_per_hour: 100000, deadband_pct: 0.2}}
            """), "  ")
    text += textwrap.dedent(f"""\
        groups:
          - name: {circuit.name}
            drives: [{', '.join(circuit.drives)}]
            control: {scenario.control}
            demand: {{drive: {circuit.drives[0]}, quantity: process_flow, \
        margin_pct: {scenario.margin_pct:g}, lookahead_s: {timing.lookahead:g}}}
            system: {{static_{head_key}: {configured.static:.6g}, \
        design_flow_m3h: {circuit.design_flow * 3600:g}, design_{head_key}: {configured.design_head:.6g}}}
            setpoint: {{min_{head_key}: {configured.min_setpoint:.6g}, \
        max_{head_key}: {configured.max_setpoint:.6g}, \
        max_slew_pct_per_min: {timing.slew_pct_per_min:g}}}
            staging: {{min_run_s: {timing.min_run:g}, min_interval_s: {timing.min_interval:g}, \
        bep_window_pct: [{BEP_WINDOW[0] * 100:g}, {BEP_WINDOW[1] * 100:g}], min_gain_pct: 1}}
            conventional: {{stage_up_speed_pct: {control.stage_up_ratio * 100:g}, \
        stage_down_speed_pct: {control.stage_down_ratio * 100:g}, stage_delay_s: {timing.stage_delay:g}}}
            service: {{critical_drive: {circuit.drives[0]}}}
        """)
    return text


def _baseline(baseline: BaselineConfig) -> str:
    """The plant drive's baseline section as the agent's config writes it (the same method and figures)."""
    fields = [f"method: {baseline.method.value}"]
    if baseline.method is BaselineMethod.CONSTANT:
        fields.append(f"power_kw: {baseline.constant_power / 1e3:g}")
    if baseline.table_x_pct:
        pairs = ", ".join(f"[{x:g}, {y:g}]" for x, y in zip(baseline.table_x_pct, baseline.table_y_pct,
                                                             strict=True))
        fields.append(f"table: [{pairs}]")
    return "{" + ", ".join(fields) + "}"


@dataclass
class RunResult:
    """What the agent's run left behind."""

    energy_j: float
    unmet_s: float
    unmet_after_settle_s: float
    t_end: float
    writes: dict[str, list[Any]]
    transitions: list[tuple[float, str, bool]]
    stage_changes: int
    registry: CollectorRegistry
    reported_saving_j: float
    reported_vfd_saving_j: float  # the agent's savings against its baseline method (either vfd basis)
    claimed_vfd_saving_j: float  # of those, the vfd_measured basis: what earns CO2 and money now
    true_vfd_saving_j: float  # the physics of the machine without a VFD, less the energy drawn
    formula_vfd_saving_j: float  # the baseline method's formula on the true state, less the energy
    current_limited_s: dict[str, float]  # per drive: time its current limit held it below its setpoint
    write_results: dict[str, dict[str, float]]
    fits: dict[str, dict[str, float | str]]
    service_shortfall_s: float = 0.0  # the agent's own count: loads short, no optimizer savings booked
    extrapolated_saving_j: float = 0.0  # the model's saving where the operator was never seen: not booked
    # (plant time, agent energy J, the agent's priced and extrapolated seconds so far) per optimizer interval
    samples: list[tuple[float, float, float, float]] = dataclasses.field(default_factory=list)


async def _agent_run(scenario: Scenario, plant: PlantSpec, circuit: CircuitSpec, timing: Timing,
                     state_dir: Path, dry_run: bool, error: CurveOffset) -> RunResult:
    from agent.service import Agent  # imports the kernels: after the Numba cache is set up

    # The plant's day starts once the agent is built and its kernels are loaded, as on a gateway where it
    # runs for months: in a day compressed 1,200-2,900 times, the 0.5-3.5 s a process takes to load them
    # (with the machine's load) counted as 20 min to 2 h of the plant left at the conventional strategy,
    # 2-12 % of the oracle's savings on a 30 s day. Its first polls and cycles, its learning, still count.
    day_start: list[float] = []

    def plant_clock() -> float:
        return time.monotonic() - day_start[0] if day_start else 0.0

    sim = SimulatedPlant(plant, clock=plant_clock)
    await sim.start("127.0.0.1", 0)
    try:
        path = state_dir / "site.yaml"
        text = site_config(scenario, plant, circuit, sim.port, timing, state_dir, error=error)
        path.write_text(text, encoding="utf-8")
        config = load_config(path)
        registry = CollectorRegistry()
        agent = Agent(config, registry=registry, dry_run=dry_run)
        day_start.append(time.monotonic())
        header: HeaderCircuit = sim.model.headers[circuit.name]
        marks: dict[str, float] = {}
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def vfd_truth() -> tuple[float, float]:
            snapshots = [sim.model.drives[n].snapshot for n in circuit.drives]
            return (sum(s.baseline_energy - s.energy for s in snapshots),
                    sum(s.formula_baseline_energy - s.energy for s in snapshots))

        def settle() -> None:
            sim.update()
            marks["unmet_at_settle"] = header.truth.unmet_s

        def finish() -> None:
            sim.update()
            marks["t_end"] = sim.model.t
            marks["energy"] = sum(sim.model.drives[n].snapshot.energy for n in circuit.drives)
            marks["unmet"] = header.truth.unmet_s
            marks["vfd_true"], marks["vfd_formula"] = vfd_truth()
            for n in circuit.drives:
                marks[f"limited:{n}"] = sim.model.drives[n].snapshot.current_limited_s
            stop.set()

        samples: list[tuple[float, float, float, float]] = []

        async def sample() -> None:
            """Each optimizer interval: the plant's time and energy, the agent's priced, extrapolated time."""
            while not stop.is_set():  # the physics as the latest request stepped it: time and energy agree
                optimizer = agent.optimizer
                groups = optimizer.snapshot(only=(circuit.name,)).groups if optimizer is not None else ()
                energy = sum(sim.model.drives[n].snapshot.energy for n in circuit.drives)
                samples.append((sim.model.t, energy, sum(g.priced_seconds for g in groups),
                                sum(g.extrapolated_seconds for g in groups)))
                await asyncio.sleep(timing.optimizer)

        started = sim.now()
        sim.update()  # the agent books from its first poll, a poll interval from now
        sampler = asyncio.create_task(sample())
        marks["vfd_start_true"], marks["vfd_start_formula"] = vfd_truth()
        loop.call_later(max(timing.settle - started, 0.0), settle)
        loop.call_later(max(timing.day - started, 0.0), finish)
        await agent.run(stop, serve_metrics=False)
        await sampler
        optimizer = agent.optimizer
        assert optimizer is not None
        reported = 0.0  # the optimizer's savings are the group's (every part), never a drive's
        for family in registry.collect():
            sign = {"vfd_optimizer_energy_saved_joules": 1.0, "vfd_optimizer_energy_penalty_joules": -1.0}
            if family.name in sign:
                totals = [s.value for s in family.samples if s.name.endswith("_total")]
                reported += sign[family.name] * sum(totals)
        # The VFD's savings against the baseline method, whichever basis backs it (never both at once).
        reported_vfd, claimed_vfd = 0.0, 0.0
        for name in circuit.drives:
            for basis in SavingsBasis:
                labels = {"drive": name, "basis": basis.value}
                saved = registry.get_sample_value("vfd_energy_saved_joules_total", labels) or 0.0
                penalty = registry.get_sample_value("vfd_energy_penalty_joules_total", labels) or 0.0
                reported_vfd += saved - penalty
                if basis is SavingsBasis.VFD_MEASURED:
                    claimed_vfd += saved - penalty
        fits: dict[str, dict[str, float | str]] = {}
        write_results: dict[str, dict[str, float]] = {}
        for group in optimizer.snapshot().groups:
            for drive in group.drives:
                fits[drive.name] = {
                    "r2_head": drive.r2_head,
                    "r2_power": drive.r2_power,
                    "head_fit_in_use": float(drive.head_fit_in_use),
                    "power_fit_in_use": float(drive.power_fit_in_use),
                    "efficiency_drift": drive.efficiency_drift,
                    "latest_fit_rejected_because": drive.fit_rejected_because,
                }
                if drive.controlled:
                    write_results[drive.name] = {k: float(v) for k, v in drive.writes.items()}
        t_end = marks["t_end"]
        # Writes at or after the end are the hand-back to the operator's values, not the agent's control.
        writes = {n: [w for w in sim.model.drives[n].writes if w.t < t_end] for n in circuit.drives}
        return RunResult(
            energy_j=marks["energy"], unmet_s=marks["unmet"],
            unmet_after_settle_s=marks["unmet"] - marks.get("unmet_at_settle", 0.0), t_end=t_end,
            writes=writes, transitions=[x for x in header.truth.transitions if x[0] <= t_end],
            stage_changes=sum(1 for _ in _events(header.truth.transitions, t_end)),
            registry=registry, reported_saving_j=reported, reported_vfd_saving_j=reported_vfd,
            claimed_vfd_saving_j=claimed_vfd,
            true_vfd_saving_j=marks["vfd_true"] - marks["vfd_start_true"],
            formula_vfd_saving_j=marks["vfd_formula"] - marks["vfd_start_formula"],
            current_limited_s={n: marks[f"limited:{n}"] for n in circuit.drives},
            write_results=write_results, fits=fits,
            service_shortfall_s=sum(g.service_shortfall_seconds for g in optimizer.snapshot().groups),
            extrapolated_saving_j=sum(g.extrapolated_saving_joules for g in optimizer.snapshot().groups),
            samples=samples,
        )
    finally:
        await sim.stop()


def _split_truth(plant: PlantSpec, circuit: CircuitSpec, samples: Sequence[tuple[float, float, float, float]],
                 t_end: float) -> tuple[float, float]:
    """The true saving against the conventional plant (J) where the agent priced it, where it extrapolated.

    Each poll's truth (the conventional plant's energy less the agent's over it) is shared by the
    parts of that poll the agent's counterfactual was priced on the operator's points, and was the
    model's extrapolation; the rest (the operator's values in force, loads short, no price) is neither.
    """
    model = PlantModel(plant)
    conventional_before = 0.0
    priced = extrapolated = 0.0
    previous: tuple[float, float, float, float] | None = None
    for sample in samples:
        t, agent_energy, priced_s, extrapolated_s = sample
        if t > t_end:
            break
        model.advance_to(t)
        conventional = sum(model.drives[n].snapshot.energy for n in circuit.drives)
        if previous is not None and t > previous[0]:
            span = t - previous[0]
            truth = (conventional - conventional_before) - (agent_energy - previous[1])
            priced += min(max((priced_s - previous[2]) / span, 0.0), 1.0) * truth
            extrapolated += min(max((extrapolated_s - previous[3]) / span, 0.0), 1.0) * truth
        conventional_before, previous = conventional, sample
    return priced, extrapolated


def _events(transitions: Sequence[tuple[float, str, bool]], t_end: float) -> list[float]:
    """Times at which the set of running machines changed (simultaneous transitions are one change)."""
    times: list[float] = []
    for t, _, _ in transitions:
        if t <= t_end and (not times or t > times[-1]):
            times.append(t)
    return times


def _violations(configured: ConfiguredSystem, plant: PlantSpec, circuit: CircuitSpec, timing: Timing,
                writes: dict[str, list[Any]]) -> list[str]:
    """Every write the plant took from the agent outside the agent's configured limits.

    Speed and pressure setpoints must lie within their limits, and a running drive's
    setpoint must not move faster than the slew limit. The speed a pump is started to
    (written while it is stopped, or after a stop command) is exempt from the slew limit.
    """
    found: list[str] = []
    fan = circuit.kind.value == "fan"
    rho_g = 1.0 if fan else RHO_G_WATER
    minimum = configured.min_setpoint * rho_g
    maximum = configured.max_setpoint * rho_g
    per_second = timing.slew_pct_per_min / 100.0 / 60.0
    tolerance = 1e-4
    for name, records in writes.items():
        drive = plant.drive(name)
        stop_word = drive.profile.control_words.get("stop")
        last: dict[Quantity, tuple[float, float]] = {}
        stopped = False
        for record in records:
            q, value = record.quantity, record.value
            if q is Quantity.CONTROL_WORD:
                stopped = int(value) == stop_word
                continue
            if q is Quantity.SPEED_SETPOINT:
                if not drive.min_speed_ratio - tolerance <= value <= drive.max_speed_ratio + tolerance:
                    found.append(f"{name}: speed setpoint {value:.4f} outside its limits at t={record.t:.2f}")
                reference = 1.0
                start = stopped or not record.running
            elif q is Quantity.PRESSURE_SETPOINT:
                if not minimum * (1 - tolerance) <= value <= maximum * (1 + tolerance):
                    found.append(f"{name}: pressure setpoint {value:.1f} Pa outside "
                                 f"[{minimum:.1f}, {maximum:.1f}] at t={record.t:.2f}")
                reference = circuit.design_head * rho_g
                start = False
            else:
                continue
            before = last.get(q)
            if before is not None and not start:
                # The plant stamps commands on its physics grid: one step of slack on the interval.
                elapsed = min(record.t - before[0] + plant.step, 60.0)
                allowed = per_second * reference * elapsed + 1e-3 * reference
                if abs(value - before[1]) > allowed:
                    found.append(f"{name}: {q.value} moved {abs(value - before[1]):.4g} in "
                                 f"{record.t - before[0]:.2f} s, more than the slew limit {allowed:.4g}")
            last[q] = (record.t, value)
    return found


def _stage_violations(transitions: Sequence[tuple[float, str, bool]], timing: Timing, takeover: float,
                      t_end: float) -> list[str]:
    """Pumps stopped before their minimum run time; starts, or stops, closer than the minimum interval.

    Only the agent's own transitions count (after it took control). A tolerance of one and
    a half optimizer cycles allows for the time a command takes to show in the physics.
    """
    found = []
    tolerance = 1.5 * timing.optimizer
    started: dict[str, float] = {}
    last: dict[bool, float] = {}
    for t, name, running in transitions:
        if t <= takeover or t > t_end:
            if running:
                started[name] = t
            continue
        kind = "start" if running else "stop"
        before = last.get(running)
        if before is not None and t - before < timing.min_interval - tolerance:
            found.append(f"{kind}s at {before:.2f} s and {t:.2f} s are closer than {timing.min_interval:g} s")
        last[running] = t
        if running:
            started[name] = t
        elif name in started and t - started[name] < timing.min_run - tolerance:
            found.append(f"{name} stopped {t - started[name]:.2f} s after it started "
                         f"(minimum {timing.min_run:g})")
    return found


def scenario_for_plant(path: Path, control: str | None = None) -> Scenario:
    """A scenario for any plant file with a header circuit; ConfigError if it has none.

    The agent controls the first circuit; by default fans through their pressure setpoint
    (static pressure reset) and pumps by speed, as in the built-in scenarios.
    """
    plant = load_plant(path)
    if not plant.circuits:
        raise ConfigError([ConfigIssue(str(path), 1, "circuits",
                                       "the scenario needs a header circuit for the agent's group")])
    fan = plant.circuits[0].kind.value == "fan"
    chosen = control or ("pressure_setpoint" if fan else "speed")
    return Scenario(plant.name, str(path.resolve()), chosen, f"plant file {path}")


def run_scenario(name: str | Scenario, duration: float = DEFAULT_DURATION_S, *, dry_run: bool = False,
                 state_dir: Path | None = None, system_error: CurveOffset = CurveOffset()) -> dict[str, Any]:
    """Run one scenario (a built-in name or a ``Scenario``) end to end; the result as a JSON-ready dict."""
    scenario = SCENARIOS[name] if isinstance(name, str) else name
    timing = Timing.for_duration(duration)
    plant = scaled_plant(load_plant(PLANTS / scenario.plant), timing)
    circuit = plant.circuits[0]
    configured = ConfiguredSystem.of(scenario, circuit, system_error)
    if state_dir is None:
        with tempfile.TemporaryDirectory(prefix=f"vfd-scenario-{scenario.name}-") as tmp:
            run = asyncio.run(_agent_run(scenario, plant, circuit, timing, Path(tmp), dry_run, system_error))
    else:
        state_dir.mkdir(parents=True, exist_ok=True)
        run = asyncio.run(_agent_run(scenario, plant, circuit, timing, state_dir, dry_run, system_error))
    conventional: PlantModel = conventional_run(plant, run.t_end)
    energy_conventional = sum(conventional.drives[n].snapshot.energy for n in circuit.drives)
    good: PlantModel = good_practice_run(plant, run.t_end)
    energy_good = sum(good.drives[n].snapshot.energy for n in circuit.drives)
    # Parallel pumps run within the same window around their best-efficiency flow as the agent's.
    window = BEP_WINDOW if len(circuit.drives) > 1 else None
    energy_oracle = oracle_energy(plant, circuit, run.t_end, window)
    oracle_saving = energy_conventional - energy_oracle
    true_saving = energy_conventional - run.energy_j
    writes = [w for records in run.writes.values() for w in records]
    takeover = min((w.t for w in writes), default=run.t_end)
    violations = _violations(configured, plant, circuit, timing, run.writes)
    stage_problems = _stage_violations(run.transitions, timing, takeover, run.t_end)
    allowed_changes = 2 * (math.floor((run.t_end - takeover) / timing.min_interval) + 1)  # starts and stops
    header = conventional.headers[circuit.name]
    true_counted, true_extrapolated = _split_truth(plant, circuit, run.samples, run.t_end)
    claimed_total = run.reported_saving_j + run.extrapolated_saving_j
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "plant": str(PLANTS / scenario.plant),
        "system_error": system_error.as_dict(),
        "configured_system": {k: round(v, 4) for k, v in dataclasses.asdict(configured).items()},
        "duration_s": round(run.t_end, 3),
        "timing": {k: round(v, 4) for k, v in dataclasses.asdict(timing).items()},
        "energy_agent_j": round(run.energy_j, 1),
        "energy_conventional_j": round(energy_conventional, 1),
        "energy_oracle_j": round(energy_oracle, 1),
        "saving_vs_conventional_pct": round(100.0 * true_saving / energy_conventional, 2),
        "oracle_saving_vs_conventional_pct": round(100.0 * oracle_saving / energy_conventional, 2),
        "fraction_of_oracle_savings": round(true_saving / oracle_saving, 4) if oracle_saving > 0 else None,
        "energy_good_practice_j": round(energy_good, 1),
        "good_practice_saving_vs_conventional_pct": round(100.0 * (energy_conventional - energy_good)
                                                          / energy_conventional, 2),
        "saving_vs_good_practice_pct": round(100.0 * (energy_good - run.energy_j) / energy_good, 2),
        "oracle_saving_vs_good_practice_pct": round(100.0 * (energy_good - energy_oracle) / energy_good, 2),
        # Of the agent's savings against the conventional plant, the share good practice delivers too.
        "share_of_agent_saving_good_practice_delivers": (
            round((energy_conventional - energy_good) / true_saving, 4) if true_saving > 0 else None),
        "good_practice_demand_unmet_seconds": round(good.headers[circuit.name].truth.unmet_s, 3),
        "good_practice_stage_changes": good.headers[circuit.name].truth.stage_changes,
        "demand_unmet_seconds": round(run.unmet_s, 3),
        "demand_unmet_seconds_after_settling": round(run.unmet_after_settle_s, 3),
        "agent_service_shortfall_seconds": round(run.service_shortfall_s, 3),
        "settling_allowance_s": round(timing.settle, 3),
        "conventional_demand_unmet_seconds": round(header.truth.unmet_s, 3),
        "limit_violations": len(violations) + len(stage_problems),
        "limit_violation_details": (violations + stage_problems)[:10],
        "stage_changes": run.stage_changes,
        "stage_change_times_s": [round(t, 2) for t in _events(run.transitions, run.t_end)],
        "stage_changes_allowed": allowed_changes,
        "conventional_stage_changes": header.truth.stage_changes,
        "agent_took_control_at_s": round(takeover, 3),
        "reported_optimizer_saving_joules": round(run.reported_saving_j, 1),
        "true_optimizer_saving_joules": round(true_saving, 1),
        # Where the operator's strategy was never seen at the flow the agent's saving is the model's
        # extrapolation: labelled, not claimed; the claim is graded on the truth where it was counted.
        "extrapolated_optimizer_saving_joules": round(run.extrapolated_saving_j, 1),
        "extrapolated_share_of_claim": (round(run.extrapolated_saving_j / claimed_total, 4)
                                        if claimed_total > 0 else None),
        "true_optimizer_saving_where_counted_joules": round(true_counted, 1),
        "true_optimizer_saving_where_extrapolated_joules": round(true_extrapolated, 1),
        "saving_claim_error": (round(run.reported_saving_j / true_counted - 1.0, 4)
                               if true_counted > 0 else None),
        # The model's whole figure, booked and labelled, against the whole day's saving.
        "claim_with_extrapolated_error": (round(claimed_total / true_saving - 1.0, 4)
                                          if true_saving > 0 else None),
        "current_limited_seconds": {n: round(v, 3) for n, v in run.current_limited_s.items()},
        "vfd_basis": {
            "reported_joules": round(run.reported_vfd_saving_j, 1),
            # Before issue 15 every vfd saving was claimed (CO2, money); now only a measured baseline's.
            "claimed_before_joules": round(run.reported_vfd_saving_j, 1),
            "claimed_now_joules": round(run.claimed_vfd_saving_j, 1),
            "formula_on_true_state_joules": round(run.formula_vfd_saving_j, 1),
            "physical_truth_joules": round(run.true_vfd_saving_j, 1),
            "claim_over_physical_truth": (round(run.reported_vfd_saving_j / run.true_vfd_saving_j, 4)
                                          if run.true_vfd_saving_j > 0 else None),
        },
        "writes": run.write_results,
        "fits": {n: {k: _rounded(v) for k, v in f.items()} for n, f in run.fits.items()},
        "dry_run": dry_run,
    }


def ab_section(design: MvTiming, seed: int) -> str:
    """The group's ``ab_blocks`` line (exact lengths: the M&V interval must divide the block)."""
    return (f"    ab_blocks: {{operator_share_pct: {OPERATOR_SHARE * 100:g}, block_s: {design.block_s!r}, "
            f"seed: {seed}}}\n")


def mv_section(design: MvTiming) -> str:
    """The ``mv`` line: the agent's interval record on the A/B design's intervals."""
    return f"mv: {{interval_s: {design.interval_s!r}, baseline_intervals: 12, time_of_week: none}}\n"


def run_scenario_mv(name: str | Scenario, duration: float = DEFAULT_DURATION_S, seed: int = 0,
                    system_error: CurveOffset = CurveOffset(),
                    state_dir: Path | None = None) -> dict[str, Any]:
    """``--mv``: a baseline day, then a day of A/B blocks (``hil.mvscenario``); the ``mv`` object."""
    scenario = SCENARIOS[name] if isinstance(name, str) else name
    timing = Timing.for_duration(duration)
    plant = scaled_plant(load_plant(PLANTS / scenario.plant), timing)
    if scenario.control == "speed" and len(plant.circuits[0].drives) == 1:
        # A single drive's hand-back writes back the speed it had, a fixed speed, not its own PI (the
        # operator's strategy): its pressure setpoint is what the A/B blocks must hand back.
        scenario = dataclasses.replace(scenario, control="pressure_setpoint")

    def text(sim: SimulatedPlant, state: Path, mode: str, design: MvTiming) -> str:
        config = site_config(scenario, plant, plant.circuits[0], sim.port, timing, state, mode, system_error)
        config = config.replace("optimizer: {", mv_section(design) + "optimizer: {", 1)
        if mode != "control":
            return config
        return config.replace("    conventional:", ab_section(design, seed) + "    conventional:", 1)

    return {"control": scenario.control, **run_mv(scenario, timing, plant, seed, text, state_dir)}


def _rounded(value: float | str) -> float | str | None:
    """A figure for the JSON: four decimals, None for NaN; text as it is."""
    if isinstance(value, str):
        return value
    return round(value, 4) if math.isfinite(value) else None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hil.scenario NAME | --plant PATH [options]``: print the scenario's result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m hil.scenario", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", choices=sorted(SCENARIOS), help="a built-in scenario")
    parser.add_argument("--plant", type=Path, help="any plant file with a header circuit, instead of NAME")
    parser.add_argument("--control", choices=["speed", "pressure_setpoint"],
                        help="with --plant: how the agent drives the group "
                             "(default: fans by pressure setpoint, pumps by speed)")
    parser.add_argument("--system-error", default="", metavar="static=SHARE,resistance=SHARE",
                        help="the configured system curve is off by these shares, "
                             "e.g. static=-0.33,resistance=+0.2")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S,
                        help=f"seconds one day of demand is compressed into (default {DEFAULT_DURATION_S:g})")
    parser.add_argument("--dry-run", action="store_true", help="the agent logs the writes it would do")
    parser.add_argument("--mv", action="store_true",
                        help="measure the savings as an auditor would: a baseline day under the conventional "
                             "strategy, then a day of A/B blocks; prints the mv object beside the truth")
    parser.add_argument("--seed", type=int, default=0, help="with --mv: reseeds the plant's noise and the "
                                                             "A/B schedule (default 0)")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if not args.duration >= 10.0:
        parser.error("--duration must be at least 10 s")
    if (args.name is None) == (args.plant is None):
        parser.error("give a scenario NAME or --plant PATH (one of them)")
    if args.control and args.plant is None:
        parser.error("--control goes with --plant (the built-in scenarios fix their own)")
    try:
        error = CurveOffset.parse(args.system_error)
    except ValueError as exc:
        parser.error(f"--system-error: {exc}")
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        scenario = SCENARIOS[args.name] if args.name else scenario_for_plant(args.plant, args.control)
    except ConfigError as exc:
        print(f"python -m hil.scenario: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    if args.mv:
        if args.dry_run:
            parser.error("--mv hands the group back and takes it again: not with --dry-run")
        mv: dict[str, Any] = {"scenario": scenario.name,
                              "mv": run_scenario_mv(scenario, args.duration, args.seed, error),
                              "wall_s": round(time.monotonic() - started, 1)}
        json.dump(mv, sys.stdout, indent=2)
        print()
        return 0
    result = run_scenario(scenario, args.duration, dry_run=args.dry_run, system_error=error)
    result["wall_s"] = round(time.monotonic() - started, 1)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
