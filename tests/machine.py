"""The suite's two workers share the machine; a load-sensitive test has it to itself.

Why: most of the suite waits on real processes, sockets and clocks, not on the CPU (the
energy-accuracy HIL: 30 s of wall time, 4.6 s of CPU), so it runs in two pytest-xdist
workers. A few tests measure something the machine's load changes: a closed-loop day runs
in real time compressed about 1,000 times, so a quarter core taken beside it costs its
agent cycles and the oracle fraction a few thousandths. Those run ``alone``: every other
test file holds the machine's lock shared while it runs (a module fixture's server or agent
runs between its tests), an alone test holds it exclusive: it starts once the other worker's
current file has ended, and nothing starts beside it until it ends.

A gate in front of the lock keeps the other worker's stream of shared tests from starving
a waiting alone one (flock gives a waiting writer no priority): every taker passes the
gate, an alone one holds it until it has the lock. Only an xdist worker takes it (``use``,
from tests/conftest.py): in one process (``-n 0``), or in a pytest a test starts, both are
no-ops.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum

LOCK_ENV = "VFD_TEST_MACHINE_LOCK"


class Share(Enum):
    BESIDE_OTHERS = fcntl.LOCK_SH
    ALONE = fcntl.LOCK_EX


_held: Share | None = None
_files: dict[str, int] = {}
_path: str | None = None  # the lock file: set in an xdist worker only


def use(path: str | None) -> None:
    global _path
    _path = path


def _fd(path: str) -> int:
    if path not in _files:
        _files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    return _files[path]


def _through_gate(path: str, share: Share) -> None:
    """Take the lock as ``share`` says, behind the gate (a waiting ALONE holds the gate)."""
    gate = _fd(path + ".gate")
    fcntl.flock(gate, fcntl.LOCK_EX)
    try:
        fcntl.flock(_fd(path), share.value)
    finally:
        fcntl.flock(gate, fcntl.LOCK_UN)


@contextmanager
def machine(share: Share) -> Iterator[None]:
    """Hold the machine as ``share`` says; nested in ALONE, anything is a no-op."""
    global _held
    path = _path
    if path is None or _held is Share.ALONE or _held is share:
        yield
        return
    before = _held
    if before is not None:  # shared to alone: let go first, or two workers doing so would wait on each other
        fcntl.flock(_fd(path), fcntl.LOCK_UN)
    _through_gate(path, share)
    _held = share
    try:
        yield
    finally:
        if before is None:
            fcntl.flock(_fd(path), fcntl.LOCK_UN)
        else:  # back to shared at once, not behind the gate: the other worker may hold the gate
            fcntl.flock(_fd(path), before.value)  # while it waits for this very lock (a deadlock)
        _held = before
