"""Log output: plain text, logfmt or JSON, with syslog priority prefixes under journald.

systemd connects a service's stderr to the journal and says so in ``JOURNAL_STREAM``
(``device:inode`` of that stream). When stderr is that stream, every line starts with
``<N>`` (sd-daemon(3): 3 error, 4 warning, 6 info, 7 debug), which journald strips and
stores as the priority, so ``journalctl -p err -u vfd-agent`` shows the agent's errors.
Elsewhere (a terminal, a test) the lines carry no prefix.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from enum import Enum
from typing import TextIO


class LogFormat(Enum):
    """``--log-format``: ``text`` for people, ``logfmt`` and ``json`` for Loki, ELK and friends."""

    TEXT = "text"
    LOGFMT = "logfmt"
    JSON = "json"


# sd-daemon(3) / syslog(3) priorities of Python's levels.
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a Python log level (levels in between take the next more severe one)."""
    return next((p for level, p in sorted(_PRIORITY.items()) if levelno <= level), 2)


def under_journald(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """True if ``stream`` is the journal stream systemd named in ``JOURNAL_STREAM``."""
    value = (environ if environ is not None else os.environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return bool(value) and (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' ="\\\n\t'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class AgentFormatter(logging.Formatter):
    """One record per line in the chosen format, optionally behind a ``<N>`` priority prefix."""

    def __init__(self, fmt: LogFormat, priority_prefix: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.fmt = fmt
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        """Format the record; under journald each line of it carries the record's priority."""
        if self.fmt is LogFormat.TEXT:
            text = super().format(record)
        else:
            stamp = datetime.fromtimestamp(record.created, timezone.utc)
            fields = {
                "time": stamp.isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
            if record.exc_info:
                fields["exc"] = self.formatException(record.exc_info)
            if self.fmt is LogFormat.JSON:
                text = json.dumps(fields, ensure_ascii=False)
            else:
                text = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        if not self.priority_prefix:
            return text
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


def quiet_libraries() -> None:
    """Silence pymodbus below CRITICAL, at start-up (the command line, ``Agent``), never at import.

    pymodbus logs every timeout at ERROR, and the poller reports each failure itself, once
    per outage; importing the agent's modules changes no one else's logging.
    """
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def setup_logging(level: str, fmt: LogFormat, stream: TextIO | None = None) -> None:
    """Configure the root logger once, for the command line."""
    quiet_libraries()
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(AgentFormatter(fmt, under_journald(out)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
