"""The savings' bases on a real scrape and a real ledger: stipulated apart, the optimizer's per group.

Two pumps of one group share the flow: the operator's strategy would run them differently, so
one pump's share of the optimizer's saving is negative while the group saves. The exposition
shows the group's saving by part (pressure reset, staging), never a drive's; the per-drive vfd
basis is labelled by the evidence behind the baseline, and a stipulated one earns no CO2 or money.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import load_config
from agent.config.profile import Quantity
from agent.drive import DriveRuntime
from agent.energy.bookkeeping import Bookkeeper
from agent.energy.ledger import LEDGER_FILE
from agent.metrics import AgentCollector, GroupSavingsCollector
from agent.units import RPM_TO_RAD_S

SITE = """\
site: {name: s, grid_emission_factor_kg_per_kwh: 0.5, tariff: {currency: EUR, price_per_kwh: 0.2}}
polling: {interval_s: 0.5, timeout_s: 0.2}
buses: [{name: gw, host: 127.0.0.1, port: 1}]
drives:
  - {name: p1, bus: gw, unit: 1, profile: generic, rated_power_kw: 15, rated_speed_rpm: 1470,
     load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32},
     baseline: {method: constant, power_kw: 12, measured_by: "clamp meter before the VFD, 2026-01-12"}}
  - {name: p2, bus: gw, unit: 2, profile: generic, rated_power_kw: 15, rated_speed_rpm: 1470,
     load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}, baseline: {method: constant, power_kw: 12}}
"""
RUNNING = 0b111


def scrape(registry):
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_group_savings_by_part_and_evidence_labelled_savings_on_a_scrape_and_across_a_restart(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    config = load_config(path)
    drives = [DriveRuntime(d, config.site, config.max_gap) for d in config.drives]
    for d in drives:
        d.in_group = True
    # (measured, counterfactual, staged) W: p1 draws more than the operator's strategy would give it
    # (its share is -2 kJ over 2 s) while p2 draws far less (+14 kJ): the group saves 12 kJ, of which
    # staging 2 + 8 = 10 kJ (counterfactual - staged) and pressure reset 2 kJ.
    figures = {"p1": (9e3, 8e3, 7e3), "p2": (3e3, 10e3, 6e3)}
    for t in (100.0, 102.0):
        for d in drives:
            power, counterfactual, staged = figures[d.name]
            d.accept(t, 1.7e9 + t, {Quantity.SPEED: 0.8 * 1470 * RPM_TO_RAD_S, Quantity.POWER: power,
                                    Quantity.STATUS_WORD: RUNNING})
            d.book(counterfactual, staged)
    keeper = Bookkeeper(drives, tmp_path / LEDGER_FILE, 10.0, "EUR")
    keeper.groups = {"chw": ("p1", "p2")}
    keeper.open()
    assert asyncio.run(keeper.flush())
    registry = CollectorRegistry()
    registry.register(AgentCollector(drives, "EUR", totals_restored=lambda: keeper.restored))
    registry.register(GroupSavingsCollector(keeper))
    samples = scrape(registry)

    def group(name, part):
        return value(samples, name, group="chw", part=part)

    assert group("vfd_optimizer_energy_saved_joules_total", "staging") == pytest.approx(10e3)
    assert group("vfd_optimizer_energy_saved_joules_total", "pressure_reset") == pytest.approx(2e3)
    assert group("vfd_optimizer_energy_saved_joules_total", "unsplit") == 0.0
    assert group("vfd_optimizer_energy_penalty_joules_total", "pressure_reset") == 0.0
    assert not [key for key in samples if key[0] == "vfd_energy_saved_joules_total"
                and ("basis", "optimizer") in key[1]]  # no per-drive optimizer saving any more
    # p1's baseline was metered: measured basis, with CO2 and money. p2's is a nameplate figure.
    saved_p1 = value(samples, "vfd_energy_saved_joules_total", drive="p1", basis="vfd_measured")
    assert saved_p1 == pytest.approx(2 * (12e3 - 9e3))
    assert value(samples, "vfd_energy_saved_joules_total", drive="p1", basis="vfd_stipulated") == 0.0
    assert value(samples, "vfd_co2_avoided_grams_total", drive="p1", basis="vfd_measured") == \
        pytest.approx(saved_p1 / 3.6e6 * 500.0)
    assert value(samples, "vfd_cost_saved_total", drive="p1", currency="EUR", basis="vfd_measured") == \
        pytest.approx(saved_p1 / 3.6e6 * 0.2)
    assert value(samples, "vfd_energy_saved_joules_total", drive="p2", basis="vfd_stipulated") == \
        pytest.approx(2 * (12e3 - 3e3))
    assert value(samples, "vfd_energy_saved_joules_total", drive="p2", basis="vfd_measured") == 0.0
    assert value(samples, "vfd_co2_avoided_grams_total", drive="p2", basis="vfd_measured") == 0.0
    assert value(samples, "vfd_cost_saved_total", drive="p2", currency="EUR", basis="vfd_measured") == 0.0
    asyncio.run(keeper.close())

    # A restart restores the group's totals from the ledger: the counters continue.
    again = Bookkeeper([DriveRuntime(d, config.site, config.max_gap) for d in config.drives],
                       tmp_path / LEDGER_FILE, 10.0, "EUR")
    again.groups = {"chw": ("p1", "p2")}
    again.open()
    registry = CollectorRegistry()
    registry.register(GroupSavingsCollector(again))
    samples = scrape(registry)
    assert value(samples, "vfd_optimizer_energy_saved_joules_total", group="chw", part="staging") == \
        pytest.approx(10e3)
    asyncio.run(again.close())


def test_the_measured_basis_is_bounded_by_both_declared_accuracies_and_the_stipulated_one_is_not(tmp_path):
    """Bounds from the comparison meter's accuracy_pct and the drive's power accuracy, independent."""
    import math

    from agent.mv.uncertainty import vfd_basis_saving

    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace('2026-01-12"}', '2026-01-12", accuracy_pct: 3}'))
    config = load_config(path)
    assert config.drives[0].baseline.accuracy == pytest.approx(0.03)
    assert config.drives[1].baseline.accuracy == pytest.approx(0.02)  # the default, said in the README
    drives = [DriveRuntime(d, config.site, config.max_gap) for d in config.drives]
    for t in (100.0, 102.0):
        for d in drives:
            d.accept(t, 1.7e9 + t, {Quantity.SPEED: 0.8 * 1470 * RPM_TO_RAD_S, Quantity.POWER: 9e3,
                                    Quantity.STATUS_WORD: RUNNING})
            d.book(float("nan"), float("nan"))
    keeper = Bookkeeper(drives, tmp_path / LEDGER_FILE, 10.0, "EUR")
    keeper.open()
    assert asyncio.run(keeper.flush())
    registry = CollectorRegistry()
    registry.register(AgentCollector(drives, "EUR", totals_restored=lambda: keeper.restored))
    samples = scrape(registry)
    asyncio.run(keeper.close())
    # 2 s at 9 kW against a metered 12 kW: 6 kJ saved; B = 24 kJ (±3 %), E = 18 kJ (± the profile's).
    power_accuracy = config.drives[0].profile.power_accuracy
    assert power_accuracy > 0
    u = math.hypot(0.03 * 24e3, power_accuracy * 18e3) / math.sqrt(3.0)
    expected = vfd_basis_saving(6e3, 24e3, 0.03, 18e3, power_accuracy)
    assert expected.std == pytest.approx(u)
    for level in ("0.68", "0.9"):
        lower = value(samples, "vfd_energy_saved_measured_lower_joules", drive="p1", confidence=level)
        upper = value(samples, "vfd_energy_saved_measured_upper_joules", drive="p1", confidence=level)
        assert lower == pytest.approx(expected.lower(float(level)))
        assert upper == pytest.approx(expected.upper(float(level)))
        assert lower < 6e3 < upper
        assert value(samples, "vfd_energy_saved_measured_lower_joules", drive="p2", confidence=level) is None
    assert value(samples, "vfd_energy_saved_measured_lower_joules", drive="p1", confidence="0.9") < \
        value(samples, "vfd_energy_saved_measured_lower_joules", drive="p1", confidence="0.68")


def test_a_bad_baseline_accuracy_is_located(tmp_path):
    from tests.agent.test_groups_config import issues

    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace('2026-01-12"}', '2026-01-12", accuracy_pct: 80}'))
    found = issues(path)
    assert any("accuracy_pct" in i and "site.yaml:" in i for i in found), found
