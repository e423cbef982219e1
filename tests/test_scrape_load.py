"""Fifty scrapers at once against a running agent: every scrape answered, polling goes on.

Timings are printed by bench/scrape_storm.py, never asserted here.
"""

from bench.scrape_storm import poll_cycles, storm
from tests.support import free_port, scrape, spawn, stop, value, wait_until

DRIVES = ("chw-pump-1", "cw-pump-1", "supply-fan")


def test_fifty_concurrent_scrapers_all_answered_while_polling_keeps_cycling(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    demo = spawn("agent.cli", "demo", "--listen", f"127.0.0.1:{port}", "--duration", "300",
                 "--state-dir", str(tmp_path))
    try:
        wait_until(lambda: poll_cycles(url) >= 2, 60, what="demo polling")
        before = poll_cycles(url)
        latencies, failures = storm(url, scrapers=50, rounds=4)
        assert failures == []
        assert len(latencies) == 200
        # Polling went on through the storm (a generous bound, not a timing: 1 s interval).
        wait_until(lambda: poll_cycles(url) >= before + 3, 30, what="polling after the storm")
        samples = scrape(url)
        assert all(value(samples, "vfd_up", drive=d) == 1.0 for d in DRIVES)
    finally:
        code, _, err = stop(demo)
    assert code == 0, err
    assert "Traceback" not in err
