"""A Numba cache on a full disk: the agent warns once, compiles in memory and keeps polling.

Outside systemd the cache goes to ``storage.path/numba-cache``. Here that directory is a real,
tiny tmpfs filled to the last byte: Numba can still create its empty probe file there, then gets
ENOSPC when it saves a compiled kernel (the traceback that ended the agent before).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil import SimulatedPlant, load_plant
from tests.support import DRIVE_DATA, REPO, free_port, scrape, site_config, stop, value, wait_until

DEMO = REPO / "configs" / "plants" / "demo.yaml"


@contextlib.contextmanager
def full_tmpfs(path: Path, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path``, filled until the kernel says ENOSPC."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {mounted.stderr.strip()}")
    try:
        fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        os.close(fd)
        with pytest.raises(OSError, match="No space left"):
            (path / "probe").write_bytes(b"\0" * 4096)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_cache_disk_is_a_warning_and_the_agent_keeps_polling(tmp_path):
    plant = load_plant(DEMO)
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "CACHE_DIRECTORY")}

    async def scenario() -> str:
        sim = SimulatedPlant(dataclasses.replace(plant, drives=plant.drives[:1]))
        await sim.start("127.0.0.1", 0)
        path = site_config(tmp_path, [("a", sim.port)], [("chw-pump-1", "a", 1, DRIVE_DATA["chw-pump-1"])],
                           metrics_port, flush_interval_s=1.0)
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(path)], cwd=REPO,
                                 env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # Compiling from cold takes long on a shared CI core: generous.
            def polled(after: float = 0.0):
                samples = scrape(url)
                last = value(samples, "vfd_last_poll_timestamp_seconds", drive="chw-pump-1") or 0.0
                return last if value(samples, "vfd_up", drive="chw-pump-1") == 1.0 and last > after else None
            first = await asyncio.to_thread(wait_until, polled, 240, 0.5, "the drive polled")
            # Kernels compiled (energy booked) and polling goes on after the cache failed.
            await asyncio.to_thread(wait_until, lambda: (value(scrape(url), "vfd_energy_joules_total",
                                                               drive="chw-pump-1") or 0) > 0, 240, 0.5)
            await asyncio.to_thread(wait_until, lambda: polled(first + 2.0), 60, 0.5, "polling goes on")
            assert agent.poll() is None
        finally:
            code, _, err = stop(agent)
            await sim.stop()
        assert code == 0, err[-3000:]
        return err

    with full_tmpfs(tmp_path / "numba-cache") as cache:
        err = asyncio.run(scenario())
        assert not list(cache.rglob("*.nbi"))  # nothing was cached: it was compiled in memory
    assert "Traceback" not in err, err[-3000:]
    warnings = [line for line in err.splitlines() if "compiling kernels in memory" in line]
    assert len(warnings) == 1, err[-3000:]
    assert f"Numba cache {tmp_path / 'numba-cache'}" in warnings[0]
    assert "No space left on device" in warnings[0]
