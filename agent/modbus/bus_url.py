"""Buses written as URLs, for the command line: ``tcp://HOST:PORT`` and ``rtu:///dev/ttyUSB0?...``.

``rtu://`` takes the serial device as its path and the line settings as query
parameters: ``baudrate`` (19200), ``parity`` (N, E or O; default E), ``stopbits``
(1 or 2), ``timeout`` (seconds per request). A URL that cannot be a bus raises
``BusUrlError`` (a ``ValueError``) with a message for the user.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from agent.config import BusConfig, Transport
from agent.errors import BusUrlError
from agent.modbus.rtu import STANDARD_BAUDRATES

DEFAULT_TCP_PORT = 502
_RTU_PARAMS = ("baudrate", "parity", "stopbits", "timeout")


def parse_bus_url(
    text: str, *, name: str = "cli", timeout: float = 0.5, poll_interval: float = 1.0
) -> BusConfig:
    """A bus from a URL; ``timeout`` applies unless the URL sets its own."""
    example = "tcp://HOST:PORT or rtu:///dev/ttyUSB0?baudrate=19200&parity=E&stopbits=1"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BusUrlError(f"bad bus URL {text!r}: {exc}; expected {example}") from None
    scheme = parts.scheme.lower()
    if scheme == "tcp":
        if not parts.hostname:
            raise BusUrlError(f"bad bus URL {text!r}: no host; expected tcp://HOST:PORT")
        if parts.path not in ("", "/") or parts.query:
            raise BusUrlError(f"bad bus URL {text!r}: a tcp URL has only a host and a port")
        if port == 0:
            raise BusUrlError(f"bad bus URL {text!r}: port must be in 1..65535")
        return BusConfig(name, Transport.TCP, parts.hostname, port or DEFAULT_TCP_PORT, poll_interval,
                         timeout, 0, 5.0)
    if scheme != "rtu":
        raise BusUrlError(f"bad bus URL {text!r}: unknown scheme {parts.scheme or '(none)'!r}; "
                          f"expected {example}")
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise BusUrlError(f"bad bus URL {text!r}: expected rtu:///DEVICE (three slashes, an absolute "
                          "device path)")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - set(_RTU_PARAMS))
    if unknown:
        raise BusUrlError(f"bad bus URL {text!r}: unknown parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(_RTU_PARAMS)}")
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
    return BusConfig(name, Transport.RTU, "", 0, poll_interval, timeout, 0, 5.0, device=parts.path,
                     baudrate=baudrate, parity=parity, stopbits=stopbits)


def _integer(text: str, values: dict[str, str], key: str, default: int) -> int:
    raw = values.get(key)
    if raw is None:
        return default
    if not raw.isdigit():
        raise BusUrlError(f"bad bus URL {text!r}: {key} must be a whole number, got {raw!r}")
    return int(raw)
