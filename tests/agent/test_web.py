"""The metrics endpoint over real sockets: paths, readiness, basic auth, TLS, cert reload, bad files."""

import base64
import gzip
import http.client
import os
import shutil
import socket
import ssl

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Counter

from agent.errors import ConfigError
from agent.web import AgentStatus, WebConfigSource, WebServer
from tests.certs import make_ca, make_cert
from tests.support import REPO, finish, spawn

PASSWORD = "s3cret pump"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


class Status:
    def __init__(self):
        self.value = AgentStatus(False, "ledger not restored", 1, 3, "9.9.9")

    def __call__(self):
        return self.value


@pytest.fixture
def registry():
    registry = CollectorRegistry()
    Counter("demo_things", "Things", registry=registry).inc(3)
    return registry


def get(port, path, auth=None, context=None, headers=None):
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10) if context
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    sent = dict(headers or {})
    if auth is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        conn.request("GET", path, headers=sent)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def serve(registry, status=None, web_file=None):
    return WebServer(registry, "127.0.0.1", 0, status or Status(), WebConfigSource(web_file))


def test_paths_landing_health_readiness_and_404(registry):
    status = Status()
    server = serve(registry, status)
    try:
        code, headers, body = get(server.port, "/metrics")
        assert code == 200 and b"demo_things_total 3.0" in body
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        code, _, body = get(server.port, "/")
        assert code == 200 and b"vfd-agent 9.9.9" in body and b"Drives up: 1 of 3" in body
        assert b'href="/metrics"' in body
        assert get(server.port, "/-/healthy")[0] == 200
        code, _, body = get(server.port, "/-/ready")
        assert code == 503 and b"ledger not restored" in body
        status.value = AgentStatus(True, "", 3, 3, "9.9.9")
        assert get(server.port, "/-/ready")[:1] == (200,)
        assert b"sensors" not in get(server.port, "/")[2]  # a site without any says nothing of them
        status.value = AgentStatus(True, "", 3, 3, "9.9.9", sensors_up=0, sensors_total=1)
        assert b"Drives up: 3 of 3; sensors up: 0 of 1; ready" in get(server.port, "/")[2]
        assert get(server.port, "/nothing-here")[0] == 404
        assert get(server.port, "/metrics/extra")[0] == 404
    finally:
        server.close()


def test_gzip_when_asked(registry):
    server = serve(registry)
    try:
        code, headers, body = get(server.port, "/metrics", headers={"Accept-Encoding": "gzip"})
        assert code == 200 and headers["Content-Encoding"] == "gzip"
        assert b"demo_things_total" in gzip.decompress(body)
    finally:
        server.close()


def test_basic_auth_refuses_wrong_and_missing_credentials_and_caches_bcrypt(registry, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n"
                   "http_server_config:\n  headers: {X-Frame-Options: deny}\n")
    server = serve(registry, web_file=web)
    try:
        code, headers, _ = get(server.port, "/metrics")
        assert code == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert get(server.port, "/metrics", auth=("prometheus", "wrong"))[0] == 401
        assert get(server.port, "/-/healthy", auth=("nobody", PASSWORD))[0] == 401
        code, headers, body = get(server.port, "/metrics", auth=("prometheus", PASSWORD))
        assert code == 200 and b"demo_things_total" in body
        assert headers["X-Frame-Options"] == "deny"
        hashes = server.app.auth.hashes
        for _ in range(5):
            assert get(server.port, "/metrics", auth=("prometheus", PASSWORD))[0] == 200
        assert server.app.auth.hashes == hashes  # cached: a scrape does not pay bcrypt again
    finally:
        server.close()


def tls_files(tmp_path):
    ca = make_ca(tmp_path / "pki")
    cert, key = make_cert(tmp_path / "pki", ca, "server")
    return ca, cert, key


def client_context(ca_cert, client=None):
    context = ssl.create_default_context(cafile=str(ca_cert))
    if client is not None:
        context.load_cert_chain(*client)
    return context


def served_certificate(port, ca_cert):
    with ssl.create_default_context(cafile=str(ca_cert)).wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1") as sock:
        return sock.getpeercert(binary_form=True)


def der(path):
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_tls_serves_https_and_a_replaced_certificate_on_the_next_connection(registry, tmp_path):
    ca, cert, key = tls_files(tmp_path)
    web = tmp_path / "web.yml"
    # Relative paths are relative to the web-config file, as in exporter-toolkit.
    web.write_text("tls_server_config:\n  cert_file: pki/server.crt\n  key_file: pki/server.key\n"
                   "  min_version: TLS12\n")
    server = serve(registry, web_file=web)
    try:
        assert server.tls
        code, _, body = get(server.port, "/metrics", context=client_context(ca[0]))
        assert code == 200 and b"demo_things_total" in body
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            get(server.port, "/metrics")  # plain HTTP on a TLS port: no answer
        assert served_certificate(server.port, ca[0]) == der(cert)
        new_cert, new_key = make_cert(tmp_path / "pki", ca, "renewed")
        # Renewal as certbot and friends do it: new files moved over the old ones.
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        renewed = der(cert)
        assert served_certificate(server.port, ca[0]) == renewed
        assert get(server.port, "/metrics", context=client_context(ca[0]))[0] == 200
    finally:
        server.close()


def test_client_certificates_required_and_verified(registry, tmp_path):
    ca, _, _ = tls_files(tmp_path)
    client = make_cert(tmp_path / "pki", ca, "prometheus", client=True)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: pki/server.crt\n  key_file: pki/server.key\n"
                   "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: pki/ca.crt\n")
    server = serve(registry, web_file=web)
    try:
        assert get(server.port, "/metrics", context=client_context(ca[0], client))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            get(server.port, "/metrics", context=client_context(ca[0]))
    finally:
        server.close()


def test_a_broken_edit_keeps_the_last_good_config(registry, tmp_path, caplog):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    server = serve(registry, web_file=web)
    try:
        web.write_text("basic_auth_users: [oops\n")
        assert get(server.port, "/metrics", auth=("prometheus", PASSWORD))[0] == 200
        assert get(server.port, "/metrics")[0] == 401
        assert sum("still serving with the previous one" in r.getMessage() for r in caplog.records) == 1
        web.write_text("{}\n")  # auth removed: taken on the next connection
        assert get(server.port, "/metrics")[0] == 200
    finally:
        server.close()


@pytest.mark.parametrize(("text", "where"), [
    ("tls_server_config:\n  key_file: k.pem\n", ":2: tls_server_config.cert_file: is required"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
     ":2: tls_server_config.cert_file: cannot load"),
    ("basic_auth_users:\n  admin: plaintext\n", ":2: basic_auth_users.admin: must be a bcrypt hash"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n",
     ":4: tls_server_config.min_version: must be one of: TLS10, TLS11, TLS12, TLS13"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
     ":4: tls_server_config.client_auth_type: must be one of: NoClientCert"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca\n",
     ":4: tls_server_config.client_ca_file: a client CA needs client_auth_type"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
     ":4: tls_server_config.cipher_suites: not supported"),
    ("tls_config:\n  cert_file: a\n", ":1: tls_config: unknown field"),
])
def test_web_config_mistakes_are_located(tmp_path, text, where):
    web = tmp_path / "web.yml"
    web.write_text(text)
    with pytest.raises(ConfigError) as caught:
        WebConfigSource(web)
    assert any(where in f"{web}{str(issue)[len(str(web)):]}" for issue in caught.value.issues), \
        caught.value.issues


def test_cli_reports_a_bad_web_config_with_exit_2(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  admin: plaintext\n")
    config = shutil.copy(REPO / "configs" / "example.yaml", tmp_path / "site.yaml")
    code, _, err = finish(spawn("agent.cli", "run", "--config", str(config), "--web.config.file", str(web)))
    assert code == 2
    assert f"{web}:2: basic_auth_users.admin: must be a bcrypt hash" in err
    assert "Traceback" not in err
