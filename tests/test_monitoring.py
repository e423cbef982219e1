"""The monitoring kit against the real tools: promtool on the rules and the live exposition, and a real
Prometheus scraping the demo over HTTPS with basic auth, evaluating every dashboard query and rule."""

import base64
import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import bcrypt
import pytest
import yaml

from tests.certs import make_ca, make_cert
from tests.support import REPO, free_port, spawn, stop, wait_until

MONITORING = REPO / "configs" / "monitoring"
RULES = MONITORING / "rules" / "vfd-agent.rules.yaml"
RULE_TESTS = MONITORING / "rules" / "vfd-agent.rules.test.yaml"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
USER, PASSWORD = "prometheus", "scrape me"
# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__range": "1h", "$__rate_interval": "15s", "$drive": ".*"}


def promtool(*args, stdin=None):
    binary = shutil.which("promtool")
    assert binary, "the Debian package prometheus ships promtool"
    return subprocess.run([binary, *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_rules_pass_promtool_check_and_unit_tests():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert len(alerts) == 10
    assert firing == alerts and quiet == alerts


def panel_queries():
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield f"{path.stem}: {panel['title']}", target["expr"]


def test_dashboards_are_provisionable_and_every_panel_has_a_query():
    provider = yaml.safe_load((MONITORING / "provisioning" / "dashboards.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(DASHBOARDS) == 2 and len(set(uids)) == 2
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


@pytest.fixture(scope="module")
def secured_demo(tmp_path_factory):
    """The demo behind TLS and basic auth, scraped every second by a real Prometheus with the rules."""
    tmp = tmp_path_factory.mktemp("monitoring")
    ca = make_ca(tmp / "pki")
    make_cert(tmp / "pki", ca, "server")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    web = tmp / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: pki/server.crt\n  key_file: pki/server.key\n"
                   f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    # The rules as shipped, evaluated every second instead of every minute so the test stays short.
    rules = tmp / "rules.yaml"
    rules.write_text(RULES.read_text().replace("interval: 1m", "interval: 1s"))
    demo_port, prom_port = free_port(), free_port()
    target = f"['127.0.0.1:{demo_port}']"
    tls = f"tls_config: {{ca_file: {ca[0]}}}"
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{rules}]\n"
        "scrape_configs:\n"
        f"  - {{job_name: vfd, scheme: https, {tls}, static_configs: [{{targets: {target}}}],\n"
        f"     basic_auth: {{username: {USER}, password: '{PASSWORD}'}}}}\n"
        f"  - {{job_name: vfd-wrong-password, scheme: https, {tls},\n"
        f"     static_configs: [{{targets: {target}}}],\n"
        f"     basic_auth: {{username: {USER}, password: 'not it'}}}}\n"
    )
    demo = spawn("agent.cli", "demo", "--listen", f"127.0.0.1:{demo_port}", "--duration", "300",
                 "--state-dir", str(tmp / "state"), "--web.config.file", str(web))
    log = (tmp / "prometheus.log").open("w")
    prometheus = subprocess.Popen(
        [shutil.which("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield {"prom": prom_port, "demo": demo_port, "ca": ca[0]}
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()
        code, _, err = stop(demo)
        assert code == 0, err
        assert "Traceback" not in err


def api(port, path, **params):
    url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:  # the error holds the connection open until closed
            body = exc.read().decode(errors="replace")
        finally:
            exc.close()
        if exc.code == 503:  # Prometheus is starting: wait_until tries again
            raise ConnectionError(f"{path}: HTTP 503 {body}") from None
        raise AssertionError(f"{path} {params}: HTTP {exc.code} {body}") from None  # a query error


def query(port, expr):
    body = api(port, "query", query=expr)
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def up_by_job(port):
    return {r["metric"]["job"]: float(r["value"][1]) for r in query(port, "up")}


def test_prometheus_scrapes_over_https_with_basic_auth_and_a_wrong_password_gets_401(secured_demo):
    port = secured_demo["prom"]
    # Generous: the demo loads its kernels before it listens, on a machine shared with other tests.
    up = wait_until(lambda: (lambda u: u if len(u) == 2 else None)(up_by_job(port)), 120, what="both targets")
    up = wait_until(lambda: (lambda u: u if u.get("vfd") == 1.0 else None)(up_by_job(port)), 120,
                    what="the https target up")
    assert up["vfd-wrong-password"] == 0.0

    def wrong_target():  # scraped once the demo listens (before, its error is "connection refused")
        targets = api(port, "targets")["data"]["activeTargets"]
        target = next(t for t in targets if t["labels"]["job"] == "vfd-wrong-password")
        return target if "refused" not in target["lastError"] else None

    wrong = wait_until(wrong_target, 30, what="a scrape with the wrong password")
    assert "401" in wrong["lastError"], wrong
    targets = api(port, "targets")["data"]["activeTargets"]
    assert next(t for t in targets if t["labels"]["job"] == "vfd")["scrapeUrl"].startswith("https://")


def test_the_live_exposition_passes_promtool_check_metrics(secured_demo):
    context = ssl.create_default_context(cafile=str(secured_demo["ca"]))
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"https://127.0.0.1:{secured_demo['demo']}/metrics",
                                     headers={"Authorization": f"Basic {token}"})

    def exposition():
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            text = response.read().decode()
        return text if "vfd_drive_status{" in text else None  # polled at least once

    text = wait_until(exposition, 60, what="a polled exposition")
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0 and checked.stdout == "" and checked.stderr == "", \
        checked.stdout + checked.stderr
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request.full_url, timeout=10, context=context)
    assert refused.value.code == 401
    refused.value.close()


def test_every_dashboard_query_and_recording_rule_returns_data(secured_demo):
    port = secured_demo["prom"]
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r]
    queries = [(f"rule {r['record']}", r["expr"]) for r in rules]
    queries += [(f"recorded {r['record']}", r["record"]) for r in rules]
    for where, expr in panel_queries():
        for name, text in GRAFANA_VARIABLES.items():
            expr = expr.replace(name, text)
        queries.append((where, expr))
    # The demo's optimizer groups (advise mode, a cycle every 5 s) publish recommendations within
    # a few cycles and their first fits after 20 polls; the rules need a few evaluations.
    empty: list[tuple[str, str]] = []

    def all_return_data():
        # Each query asserts that Prometheus evaluated it without an error.
        empty[:] = [(where, expr) for where, expr in queries if not query(port, expr)]
        return not empty

    try:
        wait_until(all_return_data, 150, interval=2.0, what="every dashboard query and rule to return data")
    except AssertionError:
        pytest.fail(f"queries without data: {empty}")
    assert len(queries) > 25
