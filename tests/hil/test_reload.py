"""SIGHUP reloads the config of a running agent (a real process against the simulator).

A good config: a drive added, one removed, the kept drive's energy neither resets nor jumps,
systemd hears RELOADING=1 then READY=1. A bad config: the agent goes on with the old one and
logs the located errors.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

from hil import SimulatedPlant, load_plant
from tests.support import DRIVE_DATA, REPO, free_port, scrape, site_config, stop, value, wait_until

DEMO = REPO / "configs" / "plants" / "demo.yaml"
RATED_W = {"chw-pump-1": 15e3, "cw-pump-1": 7.5e3, "supply-fan": 11e3}


def drives(*names):
    units = {"chw-pump-1": 1, "cw-pump-1": 2, "supply-fan": 3}
    return [(name, "a", units[name], DRIVE_DATA[name]) for name in names]


def messages(notify: socket.socket) -> list[str]:
    """Every notification waiting on the socket."""
    received = []
    notify.setblocking(False)
    while True:
        try:
            received.append(notify.recv(4096).decode())
        except BlockingIOError:
            return received


def test_sighup_reloads_the_config_keeps_energy_and_refuses_a_bad_file(tmp_path):
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    log_path = tmp_path / "agent.log"

    async def scenario() -> None:
        sim = SimulatedPlant(load_plant(DEMO))
        await sim.start("127.0.0.1", 0)
        path = site_config(tmp_path, [("a", sim.port)], drives("chw-pump-1", "cw-pump-1"), metrics_port,
                           flush_interval_s=1.0)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp_path / "notify.sock"))
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
        with open(log_path, "w") as log:  # noqa: PTH123, ASYNC230 - the child writes it
            argv = [sys.executable, "-m", "agent.cli", "run", "--config", str(path)]
            agent = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            def energy_of(samples, drive):
                return value(samples, "vfd_energy_joules_total", drive=drive)

            def both_booking():
                samples = scrape(url)
                ok = all((energy_of(samples, d) or 0) > 0 for d in ("chw-pump-1", "cw-pump-1"))
                return samples if ok else None
            await asyncio.to_thread(wait_until, both_booking, 120, 0.3, "both drives booking energy")
            assert any(m.startswith("READY=1") for m in messages(notify))
            before = await asyncio.to_thread(scrape, url)
            t_before = time.monotonic()

            # A drive added, one removed, the third unchanged.
            site_config(tmp_path, [("a", sim.port)], drives("chw-pump-1", "supply-fan"), metrics_port,
                        flush_interval_s=1.0)
            agent.send_signal(signal.SIGHUP)

            def reloaded():
                samples = scrape(url)
                fan = (energy_of(samples, "supply-fan") or 0) > 0
                gone = value(samples, "vfd_up", drive="cw-pump-1") is None
                return samples if fan and gone else None
            after = await asyncio.to_thread(wait_until, reloaded, 60, 0.3, "the new config in effect")
            elapsed = time.monotonic() - t_before
            kept_before, kept_after = energy_of(before, "chw-pump-1"), energy_of(after, "chw-pump-1")
            assert kept_after >= kept_before  # no reset
            assert kept_after - kept_before <= 3.0 * RATED_W["chw-pump-1"] * elapsed  # no jump
            assert value(after, "vfd_up", drive="chw-pump-1") == 1.0
            assert energy_of(after, "cw-pump-1") is None
            notes = messages(notify)
            reloading = next(i for i, m in enumerate(notes) if m.startswith("RELOADING=1"))
            assert "MONOTONIC_USEC=" in notes[reloading]
            assert any(m.startswith("READY=1") for m in notes[reloading + 1 :])

            # A broken config: refused, located, the running config stays in effect.
            good = path.read_text()
            path.write_text(good.replace("rated_power_kw: 11", "rated_power_kw: -11"))
            bad_line = next(i for i, line in enumerate(good.splitlines(), 1) if "rated_power_kw: 11" in line)
            agent.send_signal(signal.SIGHUP)
            await asyncio.to_thread(wait_until, lambda: "reload refused: " in log_path.read_text(), 30, 0.3,
                                    "the reload refused")
            polled = value(await asyncio.to_thread(scrape, url), "vfd_last_poll_timestamp_seconds",
                           drive="supply-fan")
            await asyncio.to_thread(wait_until, lambda: value(
                scrape(url), "vfd_last_poll_timestamp_seconds", drive="supply-fan") > polled, 30, 0.3,
                "supply-fan still polled")
            assert agent.poll() is None
            notes = messages(notify)
            assert notes[0].startswith("RELOADING=1")
            assert notes[1].startswith("READY=1\nSTATUS=reload refused")
            located = f"{path}:{bad_line}: drives[1].rated_power_kw: must be > 0, got -11"
            assert f"reload refused: {located}" in log_path.read_text()
        finally:
            code, _, _ = stop(agent)
            notify.close()
            await sim.stop()
        assert code == 0, log_path.read_text()[-3000:]

    asyncio.run(scenario())
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "reloaded " in text and "added: supply-fan; removed: cw-pump-1" in text
