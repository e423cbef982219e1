"""Plant files: located errors for every mistake, found at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError
from hil.plantfile import load_plant

GOOD_DRIVE = """\
  - name: p1
    unit: 1
    profile: generic
    rated_power_kw: 15
    rated_speed_rpm: 1470
    load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}
"""


def issues_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_plant(path)
    return [str(i) for i in info.value.issues]


def test_a_minimal_plant_gets_the_documented_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("day_s: 60\ndrives:\n" + GOOD_DRIVE, encoding="utf-8")
    plant = load_plant(path)
    d = plant.drives[0]
    assert plant.step == 0.05 and plant.name == "p"
    assert (d.rated_frequency, d.rated_voltage) == (50, 400)
    assert (d.motor_efficiency, d.shaft_power_ratio) == (pytest.approx(0.921), 0.9)  # IE3, 15 kW, 4 poles
    assert (d.min_demand_ratio, d.max_demand_ratio) == (0.5, 1.0)
    assert (d.min_speed_ratio, d.max_speed_ratio) == (0.0, 1.0)
    assert d.ramp_time == 3.0 and d.remote and d.noise.power == pytest.approx(0.003)
    assert d.seed == 1  # plant seed 0 + unit


def test_every_mistake_is_reported_with_file_line_and_field(tmp_path):
    text = (
        "day_s: 60\n"                                   # 1
        "stepp_s: 0.1\n"                                # 2
        "drives:\n"                                     # 3
        + GOOD_DRIVE                                    # 4..9
        + "    static_pct: 120\n"                       # 10
        "  - name: p1\n"                                # 11
        "    unit: 1\n"                                 # 12
        "    profile: no-such-profile\n"                # 13
        "    rated_power_kw: 15\n"                      # 14
        "    rated_speed_rpm: 1470\n"                   # 15
        "    load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}\n"  # 16
        "    min_demand_pct: 90\n"                      # 17
        "    max_demand_pct: 60\n"                      # 18
    )
    issues = issues_of(tmp_path, text)
    file = str(tmp_path / "bad.yaml")
    expected = "stepp_s: unknown field; expected one of: circuits, day_s, drives, name, seed, step_s"
    assert f"{file}:2: {expected}" in issues
    assert f"{file}:10: drives[0].static_pct: must be <= 95, got 120" in issues
    assert any(i.startswith(f"{file}:13: drives[1].profile: no profile 'no-such-profile'") for i in issues)
    assert f"{file}:17: drives[1].min_demand_pct: must not exceed max_demand_pct (60)" in issues
    assert len(issues) == 4


def test_duplicates_are_reported_once_each(tmp_path):
    issues = issues_of(tmp_path, "day_s: 60\ndrives:\n" + GOOD_DRIVE + GOOD_DRIVE)
    assert [i.split(": ", 1)[1] for i in issues] == [
        "drives[1].name: duplicate drive name 'p1'", "drives[1].unit: unit 1 is already used",
    ]


def test_an_implausible_rated_point_is_caught(tmp_path):
    drive = GOOD_DRIVE.replace("rated_power_kw: 15", "rated_power_kw: 5")
    (issue,) = issues_of(tmp_path, "day_s: 60\ndrives:\n" + drive)
    assert ":6: drives[0].rated_power_kw: the rated duty point needs a pump efficiency of 2.32" in issue


def test_load_and_baseline_use_the_agent_parsers(tmp_path):
    drive = GOOD_DRIVE.replace("rated_head_m: 32", "rated_pressure_pa: 32")
    drive += "    baseline: {method: guesswork}\n"
    issues = issues_of(tmp_path, "day_s: 60\ndrives:\n" + drive)
    assert any("drives[0].load.rated_pressure_pa: unknown field" in i for i in issues)
    assert any("drives[0].baseline.method: must be one of: constant, characteristic" in i for i in issues)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("day_s: [1\n", ":2: (syntax):"),
        ("- 1\n", ":1: (top level): must be a mapping of fields"),
        ("drives: []\n", ": day_s: is required"),
        ("day_s: 60\ndrives:\n" + GOOD_DRIVE.replace("unit: 1", "unit: 0"),
         "drives[0].unit: must be in [1, 247]"),
    ],
)
def test_malformed_files(tmp_path, text, expected):
    assert any(expected in i for i in issues_of(tmp_path, text))


def test_a_profile_next_to_the_plant_file_wins(tmp_path):
    (tmp_path / "profiles").mkdir()
    generic = Path(__file__).resolve().parents[2] / "configs" / "profiles" / "generic.yaml"
    (tmp_path / "profiles" / "generic.yaml").write_text(
        generic.read_text(encoding="utf-8").replace("name: generic", "name: local-copy"), encoding="utf-8"
    )
    path = tmp_path / "p.yaml"
    path.write_text("day_s: 60\ndrives:\n" + GOOD_DRIVE, encoding="utf-8")
    assert load_plant(path).drives[0].profile.name == "local-copy"
