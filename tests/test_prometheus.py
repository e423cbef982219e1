"""A real Prometheus server scrapes the demo; PromQL sees savings for every drive."""

import json
import shutil
import subprocess
import urllib.parse
import urllib.request

from tests.support import free_port, scrape, spawn, stop, value, wait_until

DEMO_DRIVES = {"chw-pump-1", "cw-pump-1", "supply-fan"}


def promql(port, query):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return {r["metric"].get("drive"): float(r["value"][1]) for r in body["data"]["result"]}


def test_prometheus_scrapes_positive_savings_for_every_drive(tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "the Debian package prometheus is installed by the README's test command"
    demo_port, prom_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: vfd-demo\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{demo_port}']}}]\n"
    )
    demo = spawn("agent.cli", "demo", "--listen", f"127.0.0.1:{demo_port}", "--duration", "120",
                 "--state-dir", str(tmp_path / "demo"))
    log = (tmp_path / "prometheus.log").open("w")
    prometheus = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        samples = wait_until(lambda: scrape(f"http://127.0.0.1:{demo_port}/metrics"), 60, what="demo up")
        assert value(samples, "vfd_agent_build_info", version="0.1.0", **_build_labels(samples)) == 1.0

        def savings_for_all():
            result = promql(prom_port, "vfd_energy_saved_joules_total")
            return result if set(result) == DEMO_DRIVES and all(v > 0 for v in result.values()) else None

        saved = wait_until(savings_for_all, 60, interval=0.5, what="positive savings in Prometheus")
        assert all(v > 0 for v in saved.values())
        up = promql(prom_port, "vfd_up")
        assert up == dict.fromkeys(DEMO_DRIVES, 1.0)
        # The ground truth is on the same endpoint, so PromQL can put the two side by side.
        truth = promql(prom_port, "hil_true_energy_joules_total")
        assert set(truth) == DEMO_DRIVES
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()
        code, out, err = stop(demo)
    assert code == 0, err
    assert "Traceback" not in err
    assert "metrics (agent and ground truth) on http://127.0.0.1:" in out


def _build_labels(samples):
    labels = next(dict(lbl) for (name, lbl) in samples if name == "vfd_agent_build_info")
    labels.pop("version")
    return labels
