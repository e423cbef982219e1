"""The simulator's independent pump curves: catalogue-shaped families, shape-changing wear, slip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from agent.errors import ConfigError
from hil.catalogue import DIGITIZED, SHAPES, Family, Pchip, TableCurves, Wear
from hil.model import PlantModel
from hil.physics import GRAVITY, PUMP_SHAPE, WATER_DENSITY, operating_flow, system_from_rated
from hil.plantfile import load_plant

RHO_G = WATER_DENSITY * GRAVITY
Q_B, H_B, P_B = 120.0 / 3600.0, 32.0, 13_500.0
FAMILIES = list(SHAPES)


AS_NEW = Wear()


def pump(family: Family, wear: Wear = AS_NEW) -> TableCurves:
    return TableCurves(family, Q_B, H_B, P_B, RHO_G, wear)


@pytest.mark.parametrize("family", FAMILIES)
def test_pchip_is_scipys(family):
    shape = SHAPES[family]
    for y in (shape.h, shape.p):
        ours, ref = Pchip(shape.q, y), PchipInterpolator(shape.q, y)
        for t in np.linspace(0.0, shape.q[-1], 301):
            assert ours(float(t)) == pytest.approx(float(ref(t)), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_families_have_their_best_efficiency_at_the_rated_point(family):
    c = pump(family)
    assert c.head(Q_B, 1.0) == pytest.approx(H_B)
    assert c.shaft_power(Q_B, 1.0) == pytest.approx(P_B)
    flows = np.linspace(0.05, 1.5, 300) * Q_B
    effs = [c.efficiency(float(q), 1.0) for q in flows]
    best = float(flows[int(np.argmax(effs))])
    assert 0.9 * Q_B <= best <= 1.1 * Q_B
    assert max(effs) <= 1.02 * c.efficiency(Q_B, 1.0)
    # Not the agent's construction: a shut-off head or power ratio of its own.
    shape = SHAPES[family]
    assert (shape.h[0], shape.p[0]) != (PUMP_SHAPE[0], PUMP_SHAPE[2])


@pytest.mark.parametrize("family", list(DIGITIZED))
def test_digitized_families_pass_through_the_published_numbers(family):
    """The shape is the record's numbers rescaled, not a fit: a pump built at the record's own best
    point reproduces every published point, and the shut-off follows the stated rule."""
    d, shape = DIGITIZED[family], SHAPES[family]
    bep = d.flow[-1] / shape.q[-1]
    h_bep, p_bep = d.pressure[-1] / shape.h[-1], d.power[-1] / shape.p[-1]
    c = TableCurves(family, bep, h_bep, p_bep, 1.0)  # head in Pa: ρg = 1
    published = d.flow[1:] if shape.printed_from == 0.0 else d.flow
    for q, dp, p in zip(d.flow, d.pressure, d.power, strict=True):
        if q in published:
            assert c.head(q, 1.0) == pytest.approx(dp, rel=1e-9)
            assert c.shaft_power(q, 1.0) == pytest.approx(p, rel=1e-9)
    if shape.printed_from > 0.0:  # extrapolated: a level parabola (head), a straight line (power)
        (q1, q2), (h1, h2), (p1, p2) = d.flow[:2], d.pressure[:2], d.power[:2]
        assert (c.head(0.0, 1.0) - h1) / q1**2 == pytest.approx((h1 - h2) / (q2**2 - q1**2))
        assert (p1 - c.shaft_power(0.0, 1.0)) / q1 == pytest.approx((p2 - p1) / (q2 - q1))
    assert shape.note.startswith("lbl-srg/modelica-buildings") and ".mo:" in shape.note


def test_families_span_the_documented_shapes():
    ratios = {f: (SHAPES[f].h[0], SHAPES[f].p[0]) for f in FAMILIES}
    assert min(h for h, _ in ratios.values()) <= 1.12 and max(h for h, _ in ratios.values()) >= 1.30
    droop = pump(Family.DROOPING)
    assert droop.max_head(1.0) > droop.head(0.0, 1.0)  # unstable: the head rises before it falls
    assert pump(Family.RADIAL_STEEP).max_head(1.0) == pytest.approx(pump(Family.RADIAL_STEEP).head(0.0, 1.0))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("r", [0.5, 0.8])
def test_affinity_laws(family, r):
    c = pump(family)
    for q in (0.3, 0.9, 1.3):
        assert c.head(q * Q_B * r, r) == pytest.approx(r * r * c.head(q * Q_B, 1.0))
        assert c.shaft_power(q * Q_B * r, r) == pytest.approx(r**3 * c.shaft_power(q * Q_B, 1.0))


@pytest.mark.parametrize("family", FAMILIES)
def test_inverses_agree(family):
    c = pump(family)
    for r in (0.5, 1.0):
        for q in (0.6, 1.0, 1.4):
            flow = q * Q_B * r
            head = c.head(flow, r)
            assert c.flow_at_head(head, r) == pytest.approx(flow, rel=1e-9)
            assert c.ratio_at(head, flow) == pytest.approx(r, rel=1e-9)
    assert c.flow_at_head(c.max_head(1.0) * 1.01, 1.0) == 0.0
    system = system_from_rated(Q_B, H_B, 0.3)
    q = operating_flow(c, system, 0.9)
    assert c.head(q, 0.9) == pytest.approx(system.head(q), rel=1e-9)


def test_wear_changes_the_shape_not_a_scale():
    new = pump(Family.RADIAL_FLAT)
    impeller = pump(Family.RADIAL_FLAT, Wear(impeller=0.04))
    assert impeller.head(0.0, 1.0) == new.head(0.0, 1.0)  # nothing lost at shut-off
    assert new.head(Q_B, 1.0) - impeller.head(Q_B, 1.0) == pytest.approx(0.04 * H_B)
    assert new.head(1.4 * Q_B, 1.0) - impeller.head(1.4 * Q_B, 1.0) == pytest.approx(0.04 * H_B * 1.96)
    leaky = pump(Family.RADIAL_FLAT, Wear(leakage=0.05))
    for head in (30.0, 34.0):  # at any head the worn pump delivers the leak less
        assert new.flow_at_head(head, 1.0) - leaky.flow_at_head(head, 1.0) == pytest.approx(0.05 * Q_B)
    assert leaky.shaft_power(0.0, 1.0) > new.shaft_power(0.0, 1.0)
    part = pump(Family.RADIAL_FLAT, Wear(part_load=0.08))
    assert part.shaft_power(0.0, 1.0) - new.shaft_power(0.0, 1.0) == pytest.approx(0.08 * P_B)
    assert part.shaft_power(0.5 * Q_B, 1.0) - new.shaft_power(0.5 * Q_B, 1.0) == pytest.approx(0.02 * P_B)
    assert part.shaft_power(1.2 * Q_B, 1.0) == new.shaft_power(1.2 * Q_B, 1.0)


PLANT = """\
day_s: 60
drives:
  - name: p1
    unit: 1
    profile: generic
    rated_power_kw: 15
    rated_speed_rpm: 1470
    load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}
    static_pct: 20
    min_demand_pct: 70
    max_demand_pct: 70
"""


def test_plant_file_chooses_family_wear_and_slip(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text(PLANT + "    curve: {family: drooping}\n"
                    "    wear: {impeller_pct: 3, leakage_pct: 4, part_load_pct: 6}\n    slip: true\n")
    spec = load_plant(path).drives[0]
    assert spec.family is Family.DROOPING and spec.shape_wear == Wear(0.03, 0.04, 0.06)
    assert spec.rated_slip == pytest.approx(0.02)
    assert isinstance(spec.true_curves(), TableCurves)
    model = PlantModel(load_plant(path))
    model.advance_to(5.0)
    snap = model.snapshot("p1")
    load = snap.shaft_power / spec.rated_power
    # The shaft turns below the frequency by the slip speed, proportional to torque.
    slip_speed = snap.speed_ratio / 0.98 - snap.shaft_speed_ratio
    assert slip_speed == pytest.approx(0.02 / 0.98 * load / snap.shaft_speed_ratio, rel=1e-3)
    # The drive's own loop still meets the demanded flow.
    assert snap.flow == pytest.approx(snap.demand_flow, rel=1e-3)


def test_default_plant_keeps_the_quadratic_family_and_no_slip(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text(PLANT)
    spec = load_plant(path).drives[0]
    assert spec.family is Family.QUADRATIC and spec.rated_slip == 0.0
    snap = PlantModel(load_plant(path)).snapshot("p1")
    assert snap.shaft_speed_ratio == snap.speed_ratio


@pytest.mark.parametrize(("extra", "expected"), [
    ("    curve: {family: axial}\n", "curve.family: unknown curve family 'axial'"),
    ("    wear: {leakage_pct: 4}\n", "wear.leakage_pct: shape-changing wear needs a catalogue curve family"),
    ("    curve: {family: radial-flat}\n    wear: {head_pct: 94}\n",
     "wear.head_pct: a catalogue curve family wears by"),
    ("    wear: {impeller_pct: 40}\n", "wear.impeller_pct"),
])
def test_bad_curve_and_wear_fields_are_located(tmp_path: Path, extra, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(PLANT + extra)
    with pytest.raises(ConfigError) as info:
        load_plant(path)
    assert any(expected in str(i) for i in info.value.issues), info.value.issues
    assert all(":" in str(i) and "bad.yaml" in str(i) for i in info.value.issues)


def test_unworn_catalogue_pump_is_not_a_nan_anywhere():
    c = pump(Family.FLAT_POWER, Wear(0.03, 0.04, 0.06))
    for q in np.linspace(0.0, 1.5, 31):
        for r in (0.4, 1.0):
            assert math.isfinite(c.head(float(q) * Q_B, r)) and c.shaft_power(float(q) * Q_B, r) > 0.0
