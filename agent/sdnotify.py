"""systemd notification protocol (sd_notify), without a dependency.

With ``Type=notify`` systemd waits for ``READY=1`` before it considers the
service started, and with ``WatchdogSec=`` it restarts the service when
``WATCHDOG=1`` stops arriving. Outside systemd (no NOTIFY_SOCKET) every call
is a no-op.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends state strings to the socket systemd named in NOTIFY_SOCKET."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        self._address = address or None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with notification enabled."""
        return self._address is not None

    def notify(self, state: str) -> bool:
        """Send one state string, e.g. ``READY=1``; False if it could not be delivered."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(state.encode())
        except OSError:
            return False
        return True

    def watchdog_interval(self) -> float | None:
        """Half the watchdog period systemd set for this process, in seconds, if any."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2e6
        except ValueError:
            return None
