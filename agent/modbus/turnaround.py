"""Each drive's turnaround: learned per drive while polling, kept on disk for the next start and check-config.

The turnaround is the time a drive takes to answer beyond the frames' wire time (on TCP the
whole round trip). Real drives take 5..45 ms, a busy one up to 500 ms now and then; it is part
of every read's line time, so the poll budget charges it. Before any measurement the bus's
configured ``turnaround_s`` stands in; the learned values are saved in the storage directory
(``TURNAROUND_FILE``), which ``vfd-agent check-config`` and the next start read.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from agent.jsonfile import finite_number, read_json, write_json

TURNAROUND_WINDOW = 15  # recent exchanges a drive's turnaround is the median of
TURNAROUND_FILE = "turnaround.json"
MAX_TURNAROUND_S = 10.0  # a stored value beyond this is not a turnaround (the config's own limit)


class TurnaroundEstimate:
    """A drive's turnaround [s]: the median of its recent residuals beyond the wire time.

    A median shrugs off the odd slow answer (a drive busy with its own work), which a mean
    would carry for many cycles; before any measurement, the default (configured or stored).
    """

    def __init__(self, default: float, window: int = TURNAROUND_WINDOW) -> None:
        self.default = default
        self._recent: deque[float] = deque(maxlen=window)

    def add(self, residual: float) -> None:
        """One successful exchange's time beyond its wire time [s]."""
        self._recent.append(max(0.0, residual))

    @property
    def measured(self) -> bool:
        """True once a read has been measured."""
        return bool(self._recent)

    @property
    def value(self) -> float:
        """The estimate [s]."""
        return statistics.median(self._recent) if self._recent else self.default


def load_turnarounds(path: Path) -> dict[str, float]:
    """The stored turnaround of each drive [s]; empty if there is none or the file is unusable.

    The file is a cache of measurements, never configuration: a missing, unreadable or
    damaged one only means the configured default stands in until the drives are measured.
    """
    data = read_json(path)
    drives = data.get("drives") if isinstance(data, dict) else None
    if not isinstance(drives, dict):
        return {}
    return {str(name): float(seconds) for name, seconds in drives.items()
            if finite_number(seconds) and 0.0 <= seconds <= MAX_TURNAROUND_S}


def save_turnarounds(path: Path, turnarounds: Mapping[str, float]) -> None:
    """Write the drives' turnarounds [s] atomically (a reader sees the old file or the new one)."""
    write_json(path, {"drives": dict(sorted(turnarounds.items()))})
