"""The second reference: good practice without the agent, and the critical point it resets on."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hil.model import PlantModel
from hil.plantfile import load_plant
from hil.scenario import BEP_WINDOW, Timing, scaled_plant
from hil.strategies import (
    GoodPractice,
    best_efficiency_flow,
    conventional_run,
    good_practice_interval,
    good_practice_run,
    oracle_energy,
)

PLANTS = Path(__file__).resolve().parents[2] / "configs" / "plants"
DAY = 120.0


def plant(name: str):
    return scaled_plant(load_plant(PLANTS / name), Timing.for_duration(DAY))


def test_the_critical_valve_is_wide_open_exactly_when_the_header_gives_what_the_system_curve_needs():
    model = PlantModel(plant("chw-3pump.yaml"))
    model.advance_to(20.0)
    header = model.headers["chw"]
    share, system = header.spec.critical_path_share, header.system
    q = header.delivered
    dp = header.head - system.static - share * system.k * q * q
    assert header.critical_dp == pytest.approx(dp, rel=1e-12)
    need = (1.0 - share) * system.k * q * q
    assert header.critical_valve == pytest.approx(math.sqrt(need / dp), rel=1e-12)
    assert header.critical_valve < 0.9  # the fixed setpoint at design head throttles at part load
    # The header at exactly the system curve's head: the valve is wide open.
    header.head = system.head(q)
    header._critical_point()
    assert header.critical_valve == 1.0
    assert header.critical_dp == pytest.approx(need, rel=1e-9)
    # Every drive of the circuit serves it, noisy in the measured values, in Pa.
    model.advance_to(20.1)
    snap = model.snapshot("chw-pump-1")
    assert snap.critical_pressure == pytest.approx(header.critical_dp * header.spec.rho_g, rel=1e-12)
    assert snap.measured.critical_pressure == pytest.approx(snap.critical_pressure, rel=0.05)
    assert snap.measured.critical_valve == snap.critical_valve == header.critical_valve


@pytest.mark.parametrize("name", ["chw-3pump.yaml", "ahu-fan.yaml", "booster-static.yaml"])
def test_good_practice_lies_between_the_conventional_plant_and_the_oracle_and_keeps_the_loads_served(name):
    spec = plant(name)
    circuit = spec.circuits[0]
    conventional = conventional_run(spec, DAY)
    good = good_practice_run(spec, DAY)
    energy = {label: sum(m.drives[n].snapshot.energy for n in circuit.drives)
              for label, m in (("conventional", conventional), ("good", good))}
    window = BEP_WINDOW if len(circuit.drives) > 1 else None
    oracle = oracle_energy(spec, circuit, DAY, window)
    assert oracle < energy["good"] < energy["conventional"], (oracle, energy)
    header = good.headers[circuit.name]
    assert header.truth.unmet_s <= 0.01 * DAY
    # The reset moved the setpoint off the operator's fixed one, never below the static head.
    assert header.setpoint < circuit.control.pressure_setpoint
    assert header.setpoint >= header.system.static


def test_trim_and_respond_trims_without_requests_and_responds_to_a_short_load():
    model = PlantModel(plant("chw-3pump.yaml"))
    header = model.headers["chw"]
    policy = GoodPractice(interval=1.0)
    span = (header.spec.control.pressure_setpoint - header.system.static) * header.spec.rho_g
    top = header.setpoint_pa  # the operator's fixed setpoint: the top of the reset's range
    header.setpoint_pa = before = top - 0.5 * span
    header.critical_valve = 0.5
    policy.reset(header, 0.0, 1.0)
    assert header.setpoint_pa == pytest.approx(before + policy.trim * span)
    header.critical_valve = 1.0
    header.delivered = 0.5 * header.demand.flow(0.0)  # short: three requests, capped
    policy.reset(header, 0.0, 1.0)
    assert header.setpoint_pa == pytest.approx(before + (policy.trim + policy.respond_max) * span)
    policy.reset(header, 0.0, 0.5)  # within the interval: nothing moves
    assert header.setpoint_pa == pytest.approx(before + (policy.trim + policy.respond_max) * span)
    for _ in range(100):  # never above the operator's setpoint
        policy.reset(header, 0.0, 1.0)
    assert header.setpoint_pa == pytest.approx(top)


def test_best_efficiency_staging_compares_the_flow_with_the_datasheet_best_efficiency_flows():
    model = PlantModel(plant("chw-3pump.yaml"))
    header = model.headers["chw"]
    policy = GoodPractice(interval=good_practice_interval(DAY))
    local = header.drives
    beps = [best_efficiency_flow(d.spec.curves()) for d in local]
    header.staged = 1
    assert policy.stage(header, local, 1.2 * beps[0], 0.5) == (True, False)
    assert policy.stage(header, local, 1.1 * beps[0], 0.5) == (False, False)
    header.staged = 2
    assert policy.stage(header, local, 0.85 * beps[0], 0.5) == (False, True)
    # Three pumps pass up to 1.15 times the sum of their best-efficiency flows; beyond: the speed rule.
    header.staged = 3
    assert policy.stage(header, local, 0.6 * sum(beps), 0.99) == (True, False)
