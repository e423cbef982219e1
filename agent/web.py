"""The agent's HTTP endpoint: ``/metrics``, a landing page, ``/-/healthy``, ``/-/ready``, TLS, basic auth.

TLS and basic auth are configured by the web-config file of Prometheus's exporter-toolkit
(``--web.config.file``; https://github.com/prometheus/exporter-toolkit, docs/web-configuration.md),
so an operator who secured node_exporter secures vfd-agent with the same file. Like the
toolkit, the file (and the certificate files it names) is looked at again on every new
connection: a renewed certificate is served without a restart. A broken file at start is a
located config error; a broken edit while running is logged once and the last good file kept.

Connections are served by a fixed pool of worker threads behind a bounded listen backlog:
fifty Prometheus servers scraping at once neither spawn fifty threads nor starve the poll
loop, and a client that stops talking is cut off after ``CONNECTION_TIMEOUT_S``. Scrapes that
arrive while the exposition is being rendered share the next rendering, so their cost stays
that of one or two renderings however many arrive.

Long because it is one security boundary: the web-config parsing, the TLS and basic-auth
checks and the worker pool that enforces them are read and reviewed together.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import html
import http.server
import logging
import os
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import bcrypt
from prometheus_client import CollectorRegistry, generate_latest

from agent.config.yamlsource import Issues, Section, load_yaml

log = logging.getLogger(__name__)

WORKERS = 4  # threads serving connections; more only contend for the GIL with the poll loop
BACKLOG = 128  # connections the kernel queues while every worker is busy (listen(2) backlog)
CONNECTION_TIMEOUT_S = 10.0  # a client silent this long (handshake, request) is disconnected
AUTH_CACHE_SIZE = 256
# The text format every Prometheus since 2.0 parses (the agent's names are all legacy-valid); newer
# prometheus-client releases announce version=1.0.0, which Debian's Prometheus 2.42 does not know.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# bcrypt hash (cost 10) of a password no user has: an unknown user costs the same time as a known one.
_DUMMY_HASH = b"$2b$10$SjYrTmkItaQJglvP4CnWweYWaq7qRmjSg.DCoTkyh3d9tuZ85AJmW"


class ClientAuth(Enum):
    """``client_auth_type``, in the toolkit's names.

    Python's ssl verifies every certificate it asks for, so the toolkit's ``RequestClientCert`` and
    ``RequireAnyClientCert`` (no verification) have no equivalent and are refused rather than
    silently made stricter or weaker.
    """

    NO_CLIENT_CERT = "NoClientCert"
    VERIFY_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY = "RequireAndVerifyClientCert"


_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
             "prefer_server_cipher_suites"}
# Keys of the toolkit's format that vfd-agent does not implement: named in the error, never ignored.
_TLS_UNSUPPORTED = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_ca": "an inline client CA is not supported; use client_ca_file",
    "client_allowed_sans": "not supported by vfd-agent",
    "cipher_suites": "not supported by vfd-agent (Go cipher suite names); OpenSSL's defaults are used",
    "curve_preferences": "not supported by vfd-agent; OpenSSL's defaults are used",
}
_HEADERS = {"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
            "Strict-Transport-Security"}


@dataclass(frozen=True)
class TlsSettings:
    """``tls_server_config`` with file names resolved against the web-config file's directory."""

    cert_file: Path
    key_file: Path
    client_auth: ClientAuth = ClientAuth.NO_CLIENT_CERT
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_ciphers: bool = True

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the context is built from (watched for changes)."""
        return (self.cert_file, self.key_file) + ((self.client_ca_file,) if self.client_ca_file else ())

    def context(self) -> ssl.SSLContext:
        """A server context; ssl.SSLError or OSError if a file is unusable."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version, ctx.maximum_version = self.min_version, self.max_version
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            ctx.load_verify_locations(cafile=self.client_ca_file)
        ctx.verify_mode = {ClientAuth.NO_CLIENT_CERT: ssl.CERT_NONE,
                           ClientAuth.VERIFY_IF_GIVEN: ssl.CERT_OPTIONAL,
                           ClientAuth.REQUIRE_AND_VERIFY: ssl.CERT_REQUIRED}[self.client_auth]
        if self.prefer_server_ciphers:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        return ctx


@dataclass(frozen=True)
class WebConfig:
    """A parsed web-config file: TLS (None: plain HTTP), basic-auth users, extra response headers."""

    tls: TlsSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def parse_web_config(path: Path) -> WebConfig:
    """Read and check a web-config file; ConfigError naming file, line and field for every mistake."""
    issues = Issues()
    sec = load_yaml(path, issues)
    config = _parse(sec, path.parent) if sec is not None else None
    issues.raise_if_any()
    assert config is not None
    return config


def _parse(sec: Section, base: Path) -> WebConfig | None:
    sec.check_keys({"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"})
    if sec.has("rate_limit"):
        sec.error("rate_limit", "not supported by vfd-agent")
    tls = _parse_tls(sec.section("tls_server_config", required=False), base)
    users: dict[str, bytes] = {}
    user_sec = sec.section("basic_auth_users", required=False)
    if user_sec is not None:
        for name, hashed in user_sec.data.items():
            if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")) \
                    or len(hashed) != 60:
                user_sec.error(str(name), "must be a bcrypt hash ($2y$10$... from htpasswd -nBC 10)")
                continue
            users[str(name)] = hashed.encode()
    headers: dict[str, str] = {}
    server_sec = sec.section("http_server_config", required=False)
    if server_sec is not None:
        server_sec.check_keys({"http2", "headers"})
        if server_sec.has("http2"):
            server_sec.boolean("http2")  # vfd-agent speaks HTTP/1.1 only: either value serves
        header_sec = server_sec.section("headers", required=False)
        if header_sec is not None:
            header_sec.check_keys(_HEADERS)
            headers = {str(k): header_sec.string(str(k)) for k in header_sec.data if k in _HEADERS}
    if sec.issues.items:
        return None
    return WebConfig(tls, users, headers)


def _parse_tls(sec: Section | None, base: Path) -> TlsSettings | None:
    if sec is None:
        return None
    sec.check_keys(_TLS_KEYS | set(_TLS_UNSUPPORTED))
    for key, why in _TLS_UNSUPPORTED.items():
        if sec.has(key):
            sec.error(key, why)
    cert, key = sec.string("cert_file"), sec.string("key_file")
    auth = sec.choice("client_auth_type", ClientAuth, ClientAuth.NO_CLIENT_CERT)
    ca = sec.string("client_ca_file") if sec.has("client_ca_file") else ""
    versions = []
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        text = sec.raw(name, default)
        if text not in _TLS_VERSIONS:
            sec.error(name, f"must be one of: {', '.join(_TLS_VERSIONS)}; got {text!r}")
        versions.append(_TLS_VERSIONS.get(text, ssl.TLSVersion.TLSv1_2))
    prefer = sec.boolean("prefer_server_cipher_suites", True)
    if ca and auth is ClientAuth.NO_CLIENT_CERT:
        sec.error("client_ca_file", "a client CA needs client_auth_type VerifyClientCertIfGiven or "
                                    "RequireAndVerifyClientCert")
    if auth is not None and auth is not ClientAuth.NO_CLIENT_CERT and not ca:
        sec.error("client_auth_type", f"{auth.value} needs client_ca_file")
    if versions[0] > versions[1]:
        sec.error("min_version", "is above max_version")
    if not cert or not key or auth is None:
        return None
    settings = TlsSettings(base / cert, base / key, auth, base / ca if ca else None, versions[0], versions[1],
                           prefer)
    try:
        settings.context()
    except (OSError, ssl.SSLError) as exc:
        where = next((k for k, p in (("cert_file", settings.cert_file), ("key_file", settings.key_file),
                                     ("client_ca_file", settings.client_ca_file))
                      if p is not None and getattr(exc, "filename", None) == str(p)), "cert_file")
        sec.error(where, f"cannot load the certificate, key or CA: {exc}")
    return settings


def _signature(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is replaced or rewritten (inode, size, mtime)."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)


class WebConfigSource:
    """The web-config file, re-read when it or a certificate file it names changes.

    ``current()`` is called for every new connection; it costs a few ``stat`` calls unless
    something changed. A file that no longer parses is logged once and the last good one kept.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._config = parse_web_config(path) if path is not None else WebConfig()
        self._context = self._config.tls.context() if self._config.tls else None
        self._seen = self._watch()
        self._failing = False

    def _watch(self) -> tuple[tuple[int, int, int], ...]:
        files = (self.path,) if self.path is not None else ()
        return _signature(files + (self._config.tls.files if self._config.tls else ()))

    def current(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        """The config and TLS context to serve the next connection with."""
        if self.path is None:
            return self._config, None
        with self._lock:
            seen = self._watch()
            if seen != self._seen:
                self._seen = seen
                self._reload(self.path)
            return self._config, self._context

    def _reload(self, path: Path) -> None:
        try:
            config = parse_web_config(path)
            context = config.tls.context() if config.tls else None
        except Exception as exc:  # any broken edit: keep serving with the last good config
            if not self._failing:
                log.error("web config %s: %s; still serving with the previous one", path, exc)
                self._failing = True
            return
        self._config, self._context = config, context
        self._seen = self._watch()
        self._failing = False
        log.info("web config %s: reloaded (TLS %s, %d user(s))", path, "on" if context else "off",
                 len(config.users))


class Authenticator:
    """Basic auth against bcrypt hashes, each (user, password, hash) result cached.

    bcrypt is slow on purpose (~70 ms at cost 10 on a desktop core, several times that on a
    Pi); without the cache every scrape would pay it.
    """

    def __init__(self, size: int = AUTH_CACHE_SIZE) -> None:
        self._size = size
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._lock = threading.Lock()
        self.hashes = 0  # bcrypt computations made (the cache's misses)

    def check(self, users: dict[str, bytes], header: str | None) -> bool:
        """True if no users are configured or the Authorization header names one with its password."""
        if not users:
            return True
        if header is None or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed or b""))).digest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH) and hashed is not None
        with self._lock:
            self.hashes += 1
            self._cache[key] = ok
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return ok


class Exposition:
    """The text exposition of a registry; a rendering that began after a request arrived serves it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._started = -1.0
        self._body = b""
        self._gzipped: bytes | None = None
        self.renders = 0

    def render(self, want_gzip: bool) -> bytes:
        """The exposition, gzipped if asked; never older than the request."""
        arrived = time.monotonic()
        with self._lock:
            if self._started < arrived:
                self._started = time.monotonic()
                self._body, self._gzipped = generate_latest(self.registry), None
                self.renders += 1
            if not want_gzip:
                return self._body
            if self._gzipped is None:
                self._gzipped = gzip.compress(self._body, compresslevel=6)
            return self._gzipped


@dataclass(frozen=True)
class AgentStatus:
    """What the landing page and ``/-/ready`` show."""

    ready: bool
    reason: str  # why not ready ("" when ready)
    drives_up: int
    drives_total: int
    version: str
    sensors_up: int = 0  # devices read for a group's critical point, not drives
    sensors_total: int = 0


class _Server(http.server.HTTPServer):
    """HTTP(S) server with a fixed worker pool; beyond it, connections wait in the bounded backlog."""

    request_queue_size = BACKLOG
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, app: _App,
                 workers: int) -> None:
        self.address_family = family
        self.app = app
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="http")
        super().__init__(address, _Handler)  # binds; on failure it calls server_close, which needs the pool

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to a free worker; while none is free, the accept loop waits here."""
        self._slots.acquire()
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        conn: socket.socket = request
        try:
            request.settimeout(CONNECTION_TIMEOUT_S)
            config, context = self.app.source.current()
            if context is not None:
                conn = context.wrap_socket(request, server_side=True)
            self.finish_request(conn, client_address)
        except (OSError, ssl.SSLError) as exc:  # handshake refused, client gone, timeout
            log.debug("http: connection from %s: %s", client_address, exc)
        except Exception:
            log.exception("http: serving %s failed", client_address)
        finally:
            self.shutdown_request(conn)
            self._slots.release()

    def server_close(self) -> None:
        """Close the socket, then wait for the requests in flight."""
        super().server_close()
        self._pool.shutdown(wait=True)


@dataclass
class _App:
    registry: CollectorRegistry
    status: Callable[[], AgentStatus]
    source: WebConfigSource
    exposition: Exposition
    auth: Authenticator


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a worker is never held by an idle client
    server_version = "vfd-agent"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """Route a GET (and HEAD) after basic auth."""
        app = self.server.app
        config, _ = app.source.current()
        if not app.auth.check(config.users, self.headers.get("Authorization")):
            self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8",
                       {"WWW-Authenticate": 'Basic realm="vfd-agent"', **config.headers})
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            body = app.exposition.render(gzipped)
            extra = {"Content-Encoding": "gzip"} if gzipped else {}
            self._send(200, body, CONTENT_TYPE, {**extra, **config.headers})
        elif path == "/":
            self._send(200, _landing(app.status()).encode(), "text/html; charset=utf-8", config.headers)
        elif path == "/-/healthy":
            self._send(200, b"Healthy\n", "text/plain; charset=utf-8", config.headers)
        elif path == "/-/ready":
            status = app.status()
            if status.ready:
                self._send(200, b"Ready\n", "text/plain; charset=utf-8", config.headers)
            else:
                self._send(503, f"Not ready: {status.reason}\n".encode(), "text/plain; charset=utf-8",
                           config.headers)
        else:
            self._send(404, b"Not found\n", "text/plain; charset=utf-8", config.headers)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        """As GET, without the body."""
        self.do_GET()

    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, text in headers.items():
            self.send_header(name, text)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """Requests are logged at DEBUG only: a scrape every few seconds is not news."""
        log.debug("http: %s " + format, self.address_string(), *args)


def _landing(status: AgentStatus) -> str:
    state = "ready" if status.ready else f"not ready: {html.escape(status.reason)}"
    sensors = f"; sensors up: {status.sensors_up} of {status.sensors_total}" if status.sensors_total else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vfd-agent</title></head>\n<body>\n"
        f"<h1>vfd-agent {html.escape(status.version)}</h1>\n"
        f"<p>Drives up: {status.drives_up} of {status.drives_total}{sensors}; {state}.</p>\n"
        "<ul>\n<li><a href=\"/metrics\">Metrics</a></li>\n<li><a href=\"/-/healthy\">Health</a></li>\n"
        "<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n</body></html>\n"
    )


class WebServer:
    """The running endpoint: a bound socket served by a background thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, status: Callable[[], AgentStatus],
                 source: WebConfigSource | None = None, workers: int = WORKERS) -> None:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
        self.app = _App(registry, status, source or WebConfigSource(None), Exposition(registry),
                        Authenticator())
        self._server = _Server((host, port), family, self.app, workers)
        self.port = int(self._server.server_address[1])
        self.tls = self.app.source.current()[1] is not None
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, finish the requests in flight, release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
