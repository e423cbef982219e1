"""Helpers shared by tests that run real servers and processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from tests.machine import Share, machine

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class DeviceLoop:
    """An event loop on its own thread, for the devices the agent polls (simulators, gateways).

    A real drive or gateway is its own machine: a pause of the agent's loop (a collection, a
    slow disk, a loaded CI host) delays the agent only, which then finds the reply waiting
    before its timeout fires. Served from the agent's own loop, the same pause would hold the
    reply back too and make a healthy unit look silent.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="devices", daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[object, object, T]) -> T:
        """Run ``coro`` on the devices' loop and wait for it from the caller's."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def call(self, coro: Coroutine[object, object, T], timeout: float = 30.0) -> T:
        """``run`` for a caller outside any event loop (a fixture): blocks until ``coro`` is done."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def shutdown(self) -> None:
        """Stop the loop (after the devices were stopped through ``run``/``call``) and join its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()

    async def close(self) -> None:
        """``shutdown`` from inside an event loop, which goes on meanwhile."""
        await asyncio.to_thread(self.shutdown)


def site_config(tmp_path, buses, drives, metrics_port=0, storage=None, flush_interval_s=10.0,
                name="site.yaml"):
    """A site config for simulated drives: buses are (name, port), drives (name, bus, unit, data)."""
    text = textwrap.dedent(f"""\
        site:
          name: HIL
          grid_emission_factor_kg_per_kwh: 0.5703
          tariff: {{currency: EUR, price_per_kwh: 0.2}}
        metrics: {{listen: "127.0.0.1:{metrics_port}"}}
        storage: {{path: {storage or tmp_path}, flush_interval_s: {flush_interval_s}}}
        polling: {{interval_s: 0.5, timeout_s: 0.2, retries: 0, max_gap_s: 3}}
        buses:
        """)
    for bus_name, port in buses:
        text += f"  - {{name: {bus_name}, host: 127.0.0.1, port: {port}, reconnect_delay_max_s: 1}}\n"
    text += "drives:\n"
    for drive, bus, unit, extra, *profile in drives:
        text += textwrap.indent(textwrap.dedent(f"""\
            - name: {drive}
              bus: {bus}
              unit: {unit}
              profile: {profile[0] if profile else "generic"}
            """), "  ") + textwrap.indent(textwrap.dedent(extra), "    ")
    path = tmp_path / name
    path.write_text(text)
    return path


DRIVE_DATA = {
    "chw-pump-1": """\
        rated_power_kw: 15
        rated_speed_rpm: 1470
        load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}
        baseline: {method: characteristic}
        """,
    "cw-pump-1": """\
        rated_power_kw: 7.5
        rated_speed_rpm: 2900
        load: {kind: pump, rated_flow_m3h: 90, rated_head_m: 22}
        baseline: {method: characteristic}
        """,
    "supply-fan": """\
        rated_power_kw: 11
        rated_speed_rpm: 1460
        load: {kind: fan, rated_flow_m3h: 30000, rated_pressure_pa: 800}
        baseline: {method: constant, power_kw: 11}
        """,
}


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str, timeout: float = 5.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus endpoint, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the series is absent."""
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_until(check: Callable[[], T], timeout: float, interval: float = 0.2, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, ValueError) as exc:  # endpoint not up yet
            last_error, result = exc, None
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check}: {last_error}")


async def async_wait_until(check: Callable[[], object], timeout: float, what: str = "") -> None:
    """``wait_until`` inside an event loop: the loop (servers, pollers) runs while we wait."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.05)


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a Python module of this repo as a real child process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(process: subprocess.Popen[str], timeout: float = 15.0) -> tuple[int, str, str]:
    """SIGTERM a child, wait for it, and return (exit code, stdout, stderr)."""
    if process.poll() is None:
        process.terminate()
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def finish(process: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str, str]:
    """Wait for a child that should exit by itself; returns (exit code, stdout, stderr)."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


class ScenarioRuns:
    """``python -m hil.scenario`` processes started side by side, each writing its JSON to a file.

    A day runs in real time on a fraction of a core, so days run together; each caller reads
    its own run's result (``result``) when it needs it. Files, not pipes: a run that logs
    much never blocks on a pipe nobody reads yet.
    """

    def __init__(self, folder: Path, runs: Mapping[str, Sequence[str]], timeout: float) -> None:
        self.folder = folder
        self.timeout = timeout
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        for key, args in runs.items():
            with (folder / f"{key}.json").open("w") as out, (folder / f"{key}.log").open("w") as err:
                command = [sys.executable, "-m", "hil.scenario", *args]
                self.processes[key] = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err)

    @classmethod
    def alone(cls, folder: Path, runs: Mapping[str, Sequence[str]], timeout: float) -> ScenarioRuns:
        """The runs started and ended with nothing else on the machine (``tests.machine``): a
        closed-loop day's oracle fraction drops a few thousandths per quarter core beside it."""
        with machine(Share.ALONE):
            days = cls(folder, runs, timeout)
            try:
                for process in days.processes.values():
                    process.wait(timeout=timeout)
            except BaseException:
                days.close()
                raise
        return days

    def result(self, key: str) -> dict:
        """The run's result once its process has ended by itself, exit 0 and no traceback."""
        code = self.processes[key].wait(timeout=self.timeout)
        err = (self.folder / f"{key}.log").read_text()
        assert code == 0, err
        assert "Traceback" not in err
        result: dict = json.loads((self.folder / f"{key}.json").read_text())
        return result

    def close(self) -> None:
        """Kill what still runs (a failed test)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
