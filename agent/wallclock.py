"""The wall clock, watched: when it may file energy into hours, and when it steps.

A Raspberry Pi has no real-time clock: it boots at 1970 or at its last shutdown
time and jumps when NTP synchronizes. Intervals always come from the monotonic
clock; the wall clock only says which hour (and which tariff) an interval falls
in, and only once it is trustworthy:

- systemd-timesyncd says synchronized (``/run/systemd/timesync/synchronized``;
  its runtime directory without that file means "running, not synchronized yet");
  read from the file system, so it works without D-Bus and under the hardened unit;
- and the time is not earlier than this release's date or the ledger's newest
  hour (a clock earlier than data already filed is certainly wrong).

Without timesyncd (chrony, an RTC, a container) only the floor applies. A clock
that timesyncd still calls unsynchronized after ``UNSYNCED_HOLD_S`` is used
anyway, with a warning, if it is past the floor: an air-gapped plant may never
synchronize, and energy held in memory forever would never reach the ledger.

A step is a change of wall − monotonic by more than ``STEP_S`` between two
readings; each is counted and logged once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

# No wall time before this release's date can be real (bump at each release).
RELEASE_FLOOR = datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp()
STEP_S = 1.0  # a change of wall − monotonic larger than this between readings is a step
UNSYNCED_HOLD_S = 600.0  # after this long unsynchronized, a clock past the floor is used anyway
SYNC_CHECK_S = 1.0  # the synchronization flag is looked at most this often
TIMESYNC_DIR = Path("/run/systemd/timesync")

SyncState = Callable[[], bool | None]


def timesyncd_synchronized(directory: Path = TIMESYNC_DIR) -> bool | None:
    """True once systemd-timesyncd has synchronized, False while it runs unsynchronized, None without it."""
    if (directory / "synchronized").exists():
        return True
    return False if directory.is_dir() else None


class WallClock:
    """Reads the wall clock for filing energy: NaN while it cannot be trusted; counts its steps."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        synchronized: SyncState = timesyncd_synchronized,
        floor: float = RELEASE_FLOOR,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._synchronized = synchronized
        self.floor = floor
        self.steps = 0
        self.trusted = False
        self._offset: float | None = None
        self._since = monotonic()  # when the clock was found untrusted (for the hold limit)
        self._sync: bool | None = None
        self._sync_checked = -math.inf
        self._said: str | None = None

    def raise_floor(self, wall: float) -> None:
        """No wall time before ``wall`` is real (e.g. the ledger's newest hour)."""
        if wall > self.floor:
            self.floor = wall
            if self.trusted and self._wall() < wall:
                self.trusted = False
                self._since = self._monotonic()

    def raw(self) -> float:
        """The wall clock as it is, trusted or not (for ``updated_at`` and the like)."""
        return self._wall()

    def read(self) -> float:
        """The wall time to file energy at, or NaN while the clock is not trustworthy."""
        mono, wall = self._monotonic(), self._wall()
        offset = wall - mono
        if self._offset is not None and abs(offset - self._offset) > STEP_S:
            self.steps += 1
            log.warning("wall clock stepped by %+.1f s (now %s)", offset - self._offset, _iso(wall))
        self._offset = offset
        trusted = self._judge(mono, wall)
        if trusted != self.trusted:
            self.trusted = trusted
            if trusted:
                self._said = None
                log.info("wall clock trusted at %s; held energy is filed at the hours it happened",
                         _iso(wall))
            else:
                self._since = mono
        return wall if trusted else math.nan

    def _judge(self, mono: float, wall: float) -> bool:
        if mono - self._sync_checked >= SYNC_CHECK_S:
            self._sync, self._sync_checked = self._synchronized(), mono
        if self._sync is True:
            if wall < self.floor:
                self._say("synchronized, but earlier than the ledger's newest hour: trusting the time server",
                          logging.WARNING)
            return True
        if wall < self.floor:
            self._say(f"wall clock is before {_iso(self.floor)} (not set yet?): energy is held in memory "
                      "until it is", logging.WARNING)
            return False
        if self._sync is False:
            if mono - self._since < UNSYNCED_HOLD_S:
                self._say("wall clock not synchronized yet (systemd-timesyncd): energy is held in memory "
                          f"for up to {UNSYNCED_HOLD_S:g} s", logging.INFO)
                return False
            self._say(f"wall clock still not synchronized after {UNSYNCED_HOLD_S:g} s: filing energy by it "
                      "anyway", logging.WARNING)
        return True

    def _say(self, message: str, level: int) -> None:
        """Log a state of the clock once, not once per reading."""
        if message != self._said:
            log.log(level, "%s", message)
            self._said = message


def _iso(wall: float) -> str:
    try:
        return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{wall:g}"
