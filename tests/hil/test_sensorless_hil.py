"""Sensorless flow end to end: the agent's exported estimate against the simulator's true flow.

The booster pump gets a curve the agent did not design (hil.catalogue's radial-steep family),
slip (the drive reports its output frequency), and the agent gets the pump's catalogue curve
as a person reads it off the printed graph (to 1 %) and the pump's DP. Its estimate, read
from the metrics while the plant runs, must hold the truth inside its stated 90 % interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.service import Agent
from hil import SimulatedPlant
from hil.catalogue import Family, TableCurves
from hil.plantfile import load_plant
from hil.scenario import PLANTS, SCENARIOS, Timing, scaled_plant, site_config
from tests.support import async_wait_until

CATALOGUE_Q = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)  # × rated flow, where the graph is read


def _catalogue(curves: TableCurves, rated_flow: float, rated_head: float, rated_shaft: float) -> str:
    flows = [x * rated_flow for x in CATALOGUE_Q]
    head = [round(curves.head(q, 1.0) / rated_head, 2) * rated_head for q in flows]
    power = [round(curves.shaft_power(q, 1.0) / rated_shaft, 2) * rated_shaft / 1e3 for q in flows]
    pairs = ", ".join(f"[{q * 3600:.3f}, {h:.3f}]" for q, h in zip(flows, head, strict=True))
    kw = ", ".join(f"[{q * 3600:.3f}, {p:.4f}]" for q, p in zip(flows, power, strict=True))
    return (f"    sensorless:\n      dp_across_pump: true\n"
            f"      catalogue:\n        head: [{pairs}]\n        power: [{kw}]\n")


@pytest.mark.alone  # the plant moves on while a loaded agent is late to read it
def test_the_exported_estimate_holds_the_true_flow_in_its_interval(tmp_path: Path) -> None:
    definition = SCENARIOS["booster-static"]
    timing = Timing.for_duration(30.0)
    plant = scaled_plant(load_plant(PLANTS / definition.plant), timing)
    spec = dataclasses.replace(plant.drives[0], family=Family.RADIAL_STEEP, slip=True)
    plant = dataclasses.replace(plant, drives=(spec, *plant.drives[1:]))
    rated_shaft = spec.shaft_power_ratio * spec.rated_power
    new = TableCurves(Family.RADIAL_STEEP, spec.load.rated_flow, spec.rated_head, rated_shaft, spec.rho_g)

    async def scenario() -> list[tuple[float, float, float]]:
        sim = SimulatedPlant(plant)
        await sim.start("127.0.0.1", 0)
        text = site_config(definition, plant, plant.circuits[0], sim.port, timing, tmp_path, "advise")
        anchor = "    baseline: {method: characteristic}\n"
        text = text.replace(anchor, anchor + _catalogue(new, spec.load.rated_flow, spec.rated_head,
                                                        rated_shaft), 1)
        path = tmp_path / "site.yaml"
        path.write_text(text, encoding="utf-8")
        registry = CollectorRegistry()
        agent = Agent(load_config(path), registry=registry)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop, serve_metrics=False))
        samples = []
        try:
            def estimate() -> float | None:
                return registry.get_sample_value("vfd_flow_estimate_m3_per_second", {"drive": "booster"})

            await async_wait_until(estimate, 15.0, "a flow estimate")
            assert registry.get_sample_value("vfd_flow_calibration_in_use",
                                             {"drive": "booster", "calibration": "dp"}) == 1.0
            for _ in range(60):  # ten seconds of the plant's day, across its demand
                await asyncio.sleep(1.0 / 6.0)
                flow = estimate()
                u90 = registry.get_sample_value("vfd_flow_estimate_relative_uncertainty",
                                                {"drive": "booster"})
                truth = sim.model.drives["booster"].flow
                samples.append((flow if flow is not None else math.nan,
                                u90 if u90 is not None else math.nan, truth))
        finally:
            stop.set()
            await task
            await sim.stop()
        return samples

    samples = asyncio.run(scenario())
    have = [(q, u, t) for q, u, t in samples if math.isfinite(q) and t > 0.0]
    assert len(have) >= 0.5 * len(samples), samples
    errors = [abs(q - t) / t for q, _, t in have]
    # The truth moves between the poll the estimate is from and the moment it is read: 1 % allowed.
    covered = [abs(q - t) <= u * q + 0.01 * t for q, u, t in have]
    assert sum(errors) / len(errors) <= 0.05, errors
    assert sum(covered) >= 0.9 * len(have), list(zip(errors, [u for _, u, _ in have], strict=True))
