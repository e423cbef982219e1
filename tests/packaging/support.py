"""Build the project's wheel from a copy of the tree, and run it from a venv of its own.

The copy matters: setuptools builds in place and never cleans ``build/lib``, so a wheel
built in the checkout can carry a stale copy of a file the configuration no longer ships.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".*")
# The environment a user's shell would have: none of the test venv's or the checkout's paths.
_DROPPED = ("PYTHONPATH", "VIRTUAL_ENV", "NUMBA_CACHE_DIR", "PYTHONHOME", "PYTEST_CURRENT_TEST")


def package_roots() -> list[str]:
    """The top-level package folders pyproject ships (``agent``, ``configs``, ...)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({name.split(".")[0] for name in include})


def data_files_in_tree() -> set[str]:
    """Every file of the shipped packages that is not Python source, as wheel paths."""
    found = set()
    for root in package_roots():
        for path in (REPO / root).rglob("*"):
            relative = path.relative_to(REPO)
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in relative.parts:
                found.add(relative.as_posix())
    return found


def build_wheel(work: Path) -> Path:
    """``pip wheel`` of a clean copy of the tree; returns the wheel's path."""
    source = work / "src"
    source.mkdir(parents=True)
    for root in package_roots():
        shutil.copytree(REPO / root, source / root, ignore=SKIP)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    dist = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = dist.glob("vfd_agent-*.whl")
    return wheel


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment without the test venv and checkout, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(extra)
    return env


def make_venv(path: Path) -> Path:
    """A fresh venv with pip; returns its ``bin`` folder."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin"


def pip_install(bin_dir: Path, *args: str, timeout: float = 600) -> None:
    """``pip install`` into a venv; pip's cache is shared with the rest of the machine."""
    result = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", *args], env=user_env(),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
