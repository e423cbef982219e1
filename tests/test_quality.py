"""The project's own checks, run as part of the suite so CI enforces them."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=600)


def test_ruff_is_clean():
    result = run(str(BIN / "ruff"), "check", "agent", "kernels", "hil", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean():
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    commands = re.findall(r"^```sh\n(.+?)\n```", readme, flags=re.MULTILINE | re.DOTALL)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command.strip() in ci.splitlines()
