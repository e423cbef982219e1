"""``python -m hil.scenario``'s new inputs: any plant file, and a configured system curve that is off."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from hil.plantfile import load_plant
from hil.scenario import (
    PLANTS,
    SCENARIOS,
    ConfiguredSystem,
    CurveOffset,
    Timing,
    main,
    scenario_for_plant,
    site_config,
)


def test_a_curve_offset_reads_its_shares_and_names_what_is_wrong():
    assert CurveOffset.parse("static=-0.33,resistance=+0.2") == CurveOffset(-0.33, 0.2)
    assert CurveOffset.parse("resistance=0.3") == CurveOffset(0.0, 0.3)
    assert CurveOffset.parse("") == CurveOffset()
    for text, words in (("static=x", "not a number"), ("head=0.1", "expected static"),
                        ("static=0.1,static=0.2", "twice"), ("static=-1.5", "between")):
        with pytest.raises(ValueError, match=words):
            CurveOffset.parse(text)


def test_the_operator_types_the_curve_off_by_the_shares_and_the_plant_keeps_its_own(tmp_path):
    scenario = SCENARIOS["chw-3pump"]
    plant = load_plant(PLANTS / scenario.plant)
    circuit = plant.circuits[0]
    static = circuit.static_ratio * circuit.design_head  # 9.6 m of 32 m
    configured = ConfiguredSystem.of(scenario, circuit, CurveOffset(static=-0.3, resistance=0.2))
    assert configured.static == pytest.approx(0.7 * static)
    k = (circuit.design_head - static) / circuit.design_flow**2
    assert configured.design_head == pytest.approx(0.7 * static + 1.2 * k * circuit.design_flow**2)
    assert configured.max_setpoint == circuit.design_head
    text = site_config(scenario, plant, circuit, 5020, Timing.for_duration(60.0), tmp_path,
                       error=CurveOffset(static=-0.3, resistance=0.2))
    group = yaml.safe_load(text)["groups"][0]
    assert group["system"]["static_head_m"] == pytest.approx(configured.static, rel=1e-5)
    assert group["system"]["design_head_m"] == pytest.approx(configured.design_head, rel=1e-5)
    assert group["setpoint"]["min_head_m"] == pytest.approx(configured.static, rel=1e-5)
    # The plant's baseline method goes into the agent's config as it is.
    drives = yaml.safe_load(text)["drives"]
    assert {d["baseline"]["method"] for d in drives} == {"characteristic"}
    assert math.isclose(load_plant(PLANTS / scenario.plant).circuits[0].static_ratio, 0.3)


def test_any_plant_file_with_a_circuit_makes_a_scenario_and_one_without_is_refused(tmp_path, capsys):
    fan = scenario_for_plant(PLANTS / "ahu-fan.yaml")
    assert (fan.name, fan.control) == ("ahu-fan", "pressure_setpoint")
    assert scenario_for_plant(PLANTS / "chw-3pump.yaml").control == "speed"
    assert main(["--plant", str(PLANTS / "demo.yaml")]) == 2
    err = capsys.readouterr().err
    assert "demo.yaml:1: circuits: the scenario needs a header circuit" in err
    assert "Traceback" not in err
    missing = tmp_path / "absent.yaml"
    assert main(["--plant", str(missing)]) == 2
    assert "absent.yaml" in capsys.readouterr().err
    for argv, words in ((["chw-3pump", "--system-error", "static=x"], "--system-error"),
                        (["chw-3pump", "--plant", str(PLANTS / "ahu-fan.yaml")], "one of them"),
                        ([], "one of them"), (["chw-3pump", "--control", "speed"], "--control goes with")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert words in capsys.readouterr().err


def test_a_shipped_plant_file_path_is_the_same_plant_as_its_scenario():
    path = Path(PLANTS / "booster-static.yaml")
    scenario = scenario_for_plant(path)
    assert load_plant(PLANTS / scenario.plant) == load_plant(path)
