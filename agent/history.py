"""Fixed-size per-drive sample history for the optimizer's fits.

One preallocated float64 array per drive: appending a sample writes one row
in place, so memory is constant however long the agent runs.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import NDArray


class Channel(IntEnum):
    """Columns of the history array; missing values are NaN."""

    TIME = 0  # monotonic seconds
    SPEED_RATIO = 1
    POWER = 2  # W, electrical
    FLOW = 3  # m³/s
    PRESSURE = 4  # Pa or m, as the profile reports it
    ENERGY_COUNTER = 5  # J


class RingBuffer:
    """The last ``capacity`` samples of a drive, oldest first on read."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._data = np.full((capacity, len(Channel)), np.nan)
        self._next = 0
        self._count = 0

    @property
    def capacity(self) -> int:
        """Rows the buffer holds at most."""
        return int(self._data.shape[0])

    def __len__(self) -> int:
        return self._count

    def append(self, row: NDArray[np.float64]) -> None:
        """Store one sample (a row of len(Channel) values), overwriting the oldest when full."""
        self._data[self._next] = row
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def snapshot(self) -> NDArray[np.float64]:
        """A copy of the stored samples in time order, shape (len, len(Channel))."""
        if self._count < self.capacity:
            head: NDArray[np.float64] = self._data[: self._count].copy()
            return head
        ordered: NDArray[np.float64] = np.concatenate((self._data[self._next :], self._data[: self._next]))
        return ordered

    def column(self, channel: Channel) -> NDArray[np.float64]:
        """One channel in time order."""
        column: NDArray[np.float64] = self.snapshot()[:, channel]
        return column
