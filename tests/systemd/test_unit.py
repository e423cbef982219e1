import configparser
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "vfd-agent.service"
MAX_EXPOSURE = 2.0


def unit_entries():
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keep key case
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_is_a_hardened_notify_service():
    unit = unit_entries()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["User"] == "vfd-agent"
    assert float(service["WatchdogSec"].rstrip("s")) > 0
    assert service["StateDirectory"] == "vfd-agent"
    # Private directories; without the modes systemd warns on every start that they differ.
    for directory in ("State", "Cache", "Configuration"):
        assert service[f"{directory}DirectoryMode"] == "0750"
    # Releases side by side: the unit runs whichever one `current` points at.
    assert service["ExecStart"].startswith("/opt/vfd-agent/current/venv/bin/vfd-agent run")
    assert "NUMBA_CACHE_DIR=/var/cache/vfd-agent/numba" in UNIT.read_text()
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""


def test_systemd_analyze_security_exposure_is_low():
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by the README's test command"
    result = subprocess.run([analyze, "security", "--offline=yes", str(UNIT)], capture_output=True,
                            text=True, timeout=120)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


@pytest.mark.parametrize("script", ["install.sh", "bundle.sh", "compile_kernels.sh"])
def test_scripts_are_valid_posix_shell(script):
    result = subprocess.run(["sh", "-n", str(REPO / "systemd" / script)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["check-config", "warmup", "run --config"])
def test_unit_runs_existing_cli_commands(command):
    assert f"vfd-agent {command}" in UNIT.read_text()


def test_unit_is_ordered_after_the_clock_is_synchronized_without_pulling_it_in():
    unit = unit_entries()["Unit"]
    assert "time-sync.target" in unit["After"].split()
    assert "time-sync.target" not in unit.get("Wants", "").split()  # a passive target: order, never pull


def test_a_failing_start_is_given_up_after_a_start_limit():
    """check-config failing in ExecStartPre must not restart the unit every RestartSec forever."""
    unit = unit_entries()
    interval = float(unit["Unit"]["StartLimitIntervalSec"].rstrip("s"))
    burst = int(unit["Unit"]["StartLimitBurst"])
    restart_sec = float(unit["Service"]["RestartSec"].rstrip("s"))
    assert "StartLimitIntervalSec" not in unit["Service"] and "StartLimitBurst" not in unit["Service"]
    assert burst >= 2
    # Starts RestartSec apart must hit the burst within the interval, or the limit never applies.
    assert burst * restart_sec < interval


def test_reload_sends_sighup_to_the_agent():
    unit = unit_entries()
    # /bin/sh's builtin kill: /bin/kill (procps) is not in a minimal image (the e2e's rootfs has none).
    assert unit["Service"]["ExecReload"] == "/bin/sh -c 'kill -HUP $$MAINPID'"


def test_systemd_reads_the_unit_without_complaint():
    """systemd-analyze verify, on a copy whose programs exist here (the real ones are installed later)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by the README's test command"
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "vfd-agent.service"
        program = "/opt/vfd-agent/current/venv/bin/vfd-agent"
        copy.write_text(UNIT.read_text().replace(program, shutil.which("true") or program))
        result = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True,
                                timeout=120)
    complaints = [line for line in result.stderr.splitlines()
                  if "vfd-agent.service" in line and "User" not in line and "Group" not in line]
    assert not complaints, result.stderr
