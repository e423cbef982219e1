"""Hostile YAML: alias bombs, deep nesting and huge files are refused, located, fast and in bounded memory.

Each case runs ``vfd-agent check-config`` and ``vfd-agent run`` as real processes, under an address-space
limit (so that a regression fails with a MemoryError instead of taking the test machine's memory), and
reads the child's peak RSS from ``getrusage`` in a wrapper process of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from agent.config.yamlsource import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, Issues, parse_yaml
from tests.support import REPO

PEAK_RSS_LIMIT_MB = 200  # generous: the agent reading a good config peaks near 30 MB
ADDRESS_SPACE_LIMIT = 2 << 30

# Runs a command with an address-space limit and prints its exit code, stderr and peak RSS as JSON.
WRAPPER = textwrap.dedent("""\
    import json, resource, subprocess, sys
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (%d, %d))
    result = subprocess.run(sys.argv[1:], preexec_fn=limit, capture_output=True, text=True, timeout=120)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"code": result.returncode, "stderr": result.stderr, "peak_mb": peak_mb}))
    """) % (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT)

SITE_TAIL = """\
  grid_emission_factor_kg_per_kwh: 0.5
  tariff: {currency: EUR, price_per_kwh: 0.2}
buses:
  - {name: line, host: 127.0.0.1, port: 5020}
drives:
  - {name: p1, bus: line, unit: 1, profile: generic, rated_power_kw: 15, rated_speed_rpm: 1500,
     load: {kind: pump, rated_flow_m3h: 36, rated_head_m: 20}}
"""


def alias_bomb() -> str:
    """The "billion laughs" in site.name: nine aliases to nine aliases ... to nine strings (9^10 values)."""
    levels = ['    - &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"    - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "site:\n  name:\n" + "\n".join(levels) + "\n" + SITE_TAIL


def deep_nesting(levels: int = 1000) -> str:
    return "site:\n  name: " + "[" * levels + "]" * levels + "\n" + SITE_TAIL


def oversize() -> str:
    filler = "".join(f"# padding line {i:07d} of a config that grew far beyond any site\n"
                     for i in range(MAX_FILE_BYTES // 60 + 100))
    return "site:\n  name: big\n" + SITE_TAIL + filler


def run_limited(*args: str) -> dict[str, object]:
    wrapper = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "agent.cli", *args],
                             capture_output=True, text=True, cwd=REPO, timeout=180)
    assert wrapper.returncode == 0, wrapper.stderr
    result: dict[str, object] = json.loads(wrapper.stdout)
    return result


@pytest.mark.parametrize(("case", "text", "line", "field", "message"), [
    ("alias bomb", alias_bomb(), 8, "site.name[5][", f"more than {MAX_VALUES} values once aliases"),
    ("deep nesting", deep_nesting(), 2, "site.name[0][0]", f"nested deeper than {MAX_DEPTH} levels"),
    ("oversize file", oversize(), None, "(file)", f"is larger than {MAX_FILE_BYTES // 1024} KiB"),
])
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_hostile_yaml_is_a_located_error_in_bounded_memory(tmp_path, case, text, line, field, message,
                                                           command):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    result = run_limited(*(["check-config", str(path)] if command == "check-config" else
                           ["run", "--config", str(path)]))
    stderr = str(result["stderr"])
    assert result["code"] == 2, stderr[-2000:]
    assert "Traceback" not in stderr and "Error:" not in stderr, stderr[-2000:]
    if line is None:  # where the file goes past the limit
        line = text.encode()[:MAX_FILE_BYTES].count(b"\n") + 1
    assert f"{path}:{line}: {field}" in stderr and message in stderr, stderr
    assert len(stderr) < 2000  # the message names the problem, it does not print the bomb
    assert float(result["peak_mb"]) < PEAK_RSS_LIMIT_MB, f"{case}: peak RSS {result['peak_mb']} MB"


def issues_of(text: str) -> list[str]:
    issues = Issues()
    parse_yaml(text, "f.yaml", issues)
    return [str(i) for i in issues.items]


def test_a_structure_containing_itself_is_refused():
    assert issues_of("site:\n  name: &a [1, *a]\n") == [
        "f.yaml:2: site.name[1]: an alias inside the anchor it names (a structure containing itself)"]


def test_files_within_the_limits_load():
    nested = "a: " + "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2) + "\n"
    assert issues_of(nested) == []
    shared = "base: &b {x: 1, y: 2}\n" + "".join(f"d{i}: *b\n" for i in range(1000))
    assert issues_of(shared) == []


def test_a_wrong_value_is_shown_shortened_in_the_message(tmp_path):
    from agent.config import load_config
    from agent.errors import ConfigError

    path = tmp_path / "site.yaml"
    path.write_text("site:\n  name: [" + ", ".join(["x" * 100] * 5000) + "]\n" + SITE_TAIL)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (issue,) = [i for i in info.value.issues if i.field == "site.name"]
    assert issue.message.startswith("must be a non-empty string, got ['xxx") and len(issue.message) < 300
