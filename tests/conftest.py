"""Test-wide settings, in one place.

Numba compiles each kernel once per run into the on-disk cache below, shared by this
process and every agent or simulator process the tests start. Under pytest-xdist (the
default: ``-n 2`` in pyproject.toml) the controller compiles every kernel before the
workers start, and each worker works on its own copy of that cache: two processes
compiling one function for new argument types at once could each write its cache index
and pair an entry with the other's code (``agent.warmup`` keeps its lanes apart for the
same reason).

Each test file runs whole on one worker (``--dist loadfile``: its module fixtures run once).
A test marked ``alone`` has the machine to itself (``tests/machine.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Generator
from contextlib import ExitStack, nullcontext
from pathlib import Path

import pytest

from agent.numba_cache import choose_cpu
from tests import machine as machine_lock
from tests.machine import LOCK_ENV, Share, machine

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
choose_cpu()  # the agent's machine code (generic), so its processes load what this one compiled


def pytest_configure(config: pytest.Config) -> None:
    """In an xdist worker (not in a pytest a test starts): its own copy of the warmed cache
    (before any test module imports numba), and the machine's lock."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker is None:
        return
    base, own = os.environ["NUMBA_CACHE_DIR"], f"{os.environ['NUMBA_CACHE_DIR']}-{worker}"
    shutil.rmtree(own, ignore_errors=True)
    if os.path.isdir(base):
        shutil.copytree(base, own, symlinks=True)
    os.environ["NUMBA_CACHE_DIR"] = own
    machine_lock.use(os.environ.get(LOCK_ENV))


def _is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession") and not hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)  # before xdist starts its workers (its hook is trylast)
def pytest_sessionstart(session: pytest.Session) -> None:
    if not _is_xdist_controller(session.config):
        return
    os.environ[LOCK_ENV] = str(Path(tempfile.mkdtemp(prefix="vfd-tests-")) / "machine.lock")
    session.config.add_cleanup(lambda: shutil.rmtree(Path(os.environ[LOCK_ENV]).parent, ignore_errors=True))
    done = subprocess.run([sys.executable, "-m", "agent.warmup", json.dumps([None, 2, None])],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise pytest.UsageError(f"compiling the kernels failed:\n{done.stdout}{done.stderr}")


_file_share = ExitStack()  # the machine held shared for the file this worker runs
_file_path: Path | None = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item,
                            nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """The machine held around a test's whole run, its fixtures' set-up and teardown included
    (a session fixture such as the wheel's build runs in its first test's set-up): shared from
    a file's first test to its last, since a module fixture's processes (test_monitoring's
    Prometheus and demo) run between its tests; alone where the test is marked so."""
    global _file_path
    if item.path != _file_path:
        _file_share.close()
        _file_share.enter_context(machine(Share.BESIDE_OTHERS))
        _file_path = item.path
    alone = item.get_closest_marker("alone") is not None
    try:
        with machine(Share.ALONE) if alone else nullcontext():  # the file's share holds the rest
            return (yield)
    finally:
        if nextitem is None or nextitem.path != item.path:
            _file_share.close()
            _file_path = None
