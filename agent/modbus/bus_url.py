"""Buses written as URLs, for the command line: ``tcp://``, ``rtu://`` and ``rtu+tcp://``.

``tcp://HOST:PORT`` is Modbus TCP (port 502 by default). ``rtu:///dev/ttyUSB0?...``
takes the serial device as its path; ``rtu+tcp://HOST:PORT?...`` is RTU framing
through a transparent Ethernet↔RS-485 serial server (its port is required: a serial
server's raw port is its own). Both take the line settings as query parameters:
``baudrate`` (19200), ``parity`` (N, E or O; default E), ``stopbits`` (1 or 2) —
for rtu+tcp those of the serial side, which set the frame times — and ``timeout``
(seconds per request). A URL that cannot be a bus raises ``BusUrlError`` (a
``ValueError``) with a message for the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, urlsplit

from agent.config import BusConfig, Transport
from agent.errors import BusUrlError
from agent.modbus.rtu import STANDARD_BAUDRATES

DEFAULT_TCP_PORT = 502
_LINE_PARAMS = ("baudrate", "parity", "stopbits", "timeout")
_EXAMPLE = ("tcp://HOST:PORT, rtu:///dev/ttyUSB0?baudrate=19200&parity=E&stopbits=1 or "
            "rtu+tcp://HOST:PORT?baudrate=19200")


@dataclass(frozen=True)
class _Line:
    """The serial settings a URL's query gives."""

    baudrate: int
    parity: str
    stopbits: int
    timeout: float


def parse_bus_url(
    text: str, *, name: str = "cli", timeout: float = 0.5, poll_interval: float = 1.0
) -> BusConfig:
    """A bus from a URL; ``timeout`` applies unless the URL sets its own."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BusUrlError(f"bad bus URL {text!r}: {exc}; expected {_EXAMPLE}") from None
    scheme = parts.scheme.lower()
    if scheme == "tcp":
        _check_host(text, parts, port, "tcp://HOST:PORT")
        if parts.path not in ("", "/") or parts.query:
            raise BusUrlError(f"bad bus URL {text!r}: a tcp URL has only a host and a port")
        return BusConfig(name, Transport.TCP, parts.hostname or "", port or DEFAULT_TCP_PORT, poll_interval,
                         timeout, 0, 5.0)
    if scheme == "rtu+tcp":
        _check_host(text, parts, port, "rtu+tcp://HOST:PORT?baudrate=19200")
        if port is None:
            raise BusUrlError(f"bad bus URL {text!r}: no port; rtu+tcp needs the serial server's TCP port "
                              "(e.g. 4001 on a Moxa NPort)")
        if parts.path not in ("", "/"):
            raise BusUrlError(f"bad bus URL {text!r}: an rtu+tcp URL has a host, a port and line settings")
        line = _line(text, parts.query, timeout)
        return BusConfig(name, Transport.RTU_OVER_TCP, parts.hostname or "", port, poll_interval,
                         line.timeout, 0, 5.0, baudrate=line.baudrate, parity=line.parity,
                         stopbits=line.stopbits)
    if scheme != "rtu":
        raise BusUrlError(f"bad bus URL {text!r}: unknown scheme {parts.scheme or '(none)'!r}; "
                          f"expected {_EXAMPLE}")
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise BusUrlError(f"bad bus URL {text!r}: expected rtu:///DEVICE (three slashes, an absolute "
                          "device path)")
    line = _line(text, parts.query, timeout)
    return BusConfig(name, Transport.RTU, "", 0, poll_interval, line.timeout, 0, 5.0, device=parts.path,
                     baudrate=line.baudrate, parity=line.parity, stopbits=line.stopbits)


def _check_host(text: str, parts: SplitResult, port: int | None, form: str) -> None:
    if not parts.hostname:
        raise BusUrlError(f"bad bus URL {text!r}: no host; expected {form}")
    if port == 0:
        raise BusUrlError(f"bad bus URL {text!r}: port must be in 1..65535")


def _line(text: str, query_text: str, timeout: float) -> _Line:
    """The serial line's settings from a URL's query (rtu and rtu+tcp alike)."""
    query = parse_qs(query_text, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - set(_LINE_PARAMS))
    if unknown:
        raise BusUrlError(f"bad bus URL {text!r}: unknown parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(_LINE_PARAMS)}")
    values = {key: items[-1] for key, items in query.items()}
    baudrate = _integer(text, values, "baudrate", 19200)
    if baudrate not in STANDARD_BAUDRATES:
        raise BusUrlError(f"bad bus URL {text!r}: baudrate must be one of "
                          f"{', '.join(map(str, STANDARD_BAUDRATES))}")
    parity = values.get("parity", "E").upper()
    if parity not in ("N", "E", "O"):
        raise BusUrlError(f"bad bus URL {text!r}: parity must be N, E or O")
    stopbits = _integer(text, values, "stopbits", 1)
    if stopbits not in (1, 2):
        raise BusUrlError(f"bad bus URL {text!r}: stopbits must be 1 or 2")
    if "timeout" in values:
        try:
            timeout = float(values["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0.001 <= timeout <= 60.0:
            raise BusUrlError(f"bad bus URL {text!r}: timeout must be a number of seconds in 0.001..60")
    return _Line(baudrate, parity, stopbits, timeout)


def _integer(text: str, values: dict[str, str], key: str, default: int) -> int:
    raw = values.get(key)
    if raw is None:
        return default
    if not raw.isdigit():
        raise BusUrlError(f"bad bus URL {text!r}: {key} must be a whole number, got {raw!r}")
    return int(raw)
