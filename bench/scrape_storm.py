"""Fifty Prometheus-like scrapers at once against a running agent (the demo): scrape latencies and
whether polling kept its interval. Prints figures; asserts nothing (tests/test_scrape_load.py checks
that no scrape fails and polling goes on).

    .venv/bin/python -m bench.scrape_storm [--scrapers 50] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import free_port, scrape, spawn, stop, value, wait_until  # noqa: E402


def storm(url: str, scrapers: int, rounds: int) -> tuple[list[float], list[str]]:
    """Every scraper scrapes ``rounds`` times back to back; (latencies, failures)."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(scrapers)

    def scraper() -> None:
        start.wait()
        for _ in range(rounds):
            began = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    response.read()
                with lock:
                    latencies.append(time.monotonic() - began)
            except OSError as exc:
                with lock:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=scraper) for _ in range(scrapers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures


def poll_cycles(url: str) -> float:
    return value(scrape(url), "vfd_poll_duration_seconds_count", bus="demo") or 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with tempfile.TemporaryDirectory() as tmp:
        demo = spawn("agent.cli", "demo", "--listen", f"127.0.0.1:{port}", "--duration", "600",
                     "--state-dir", tmp)
        try:
            wait_until(lambda: poll_cycles(url) >= 2, 60, what="demo polling")
            cycles_before, began = poll_cycles(url), time.monotonic()
            latencies, failures = storm(url, args.scrapers, args.rounds)
            elapsed = time.monotonic() - began
            cycles = poll_cycles(url) - cycles_before
        finally:
            stop(demo)
    latencies.sort()
    n = len(latencies)
    print(f"{args.scrapers} scrapers x {args.rounds} scrapes in {elapsed:.1f} s: "
          f"{n} ok, {len(failures)} failed")
    if n:
        p95 = latencies[int(0.95 * (n - 1))]
        print(f"latency p50 {statistics.median(latencies) * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms, "
              f"max {latencies[-1] * 1e3:.0f} ms; over 1 s: {sum(t > 1.0 for t in latencies) / n:.1%}")
    print(f"poll cycles during the storm: {cycles:.0f} in {elapsed:.1f} s "
          f"(interval 1 s: {elapsed:.0f} expected)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
