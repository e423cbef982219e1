"""A pair of linked pseudo-terminals made by socat: an RS-485 line for tests, without hardware."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def pty_pair(directory: Path, timeout: float = 10.0) -> Iterator[tuple[str, str]]:
    """Two linked ptys (paths A, B); socat is stopped and waited for on exit."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    a, b = directory / "ttyA", directory / "ttyB"
    process = subprocess.Popen(
        ["socat", "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not (a.exists() and b.exists()):
            if process.poll() is not None or time.monotonic() > deadline:
                said = process.stderr.read() if process.stderr else ""
                raise RuntimeError(f"socat did not make the pty pair: {said}")
            time.sleep(0.01)
        yield os.fspath(a), os.fspath(b)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
