"""Fixed-size per-drive sample history for the optimizer's fits.

One preallocated array per drive: appending a sample writes one row in place, so
memory is constant however long the agent runs. It holds what the fits read and
nothing else (speed, power, flow, pressure), stored as float32 and handed out as
float64: a register's value (16 or 32 bits, scaled) and its noise are far coarser
than float32's 7 digits, so the fits see the same data at 1/3 of the float64 ring
with six channels it replaced (1 h at 1 Hz: 56 KiB a drive instead of 169 KiB).
Energy is not kept here: it is integrated in float64 by ``agent.energy.account``.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

STORED = np.float32  # see the module docstring


class Channel(IntEnum):
    """Columns of the history array; missing values are NaN."""

    SPEED_RATIO = 0
    POWER = 1  # W, electrical
    FLOW = 2  # m³/s
    PRESSURE = 3  # Pa or m, as the profile reports it


class RingBuffer:
    """The last ``capacity`` samples of a drive, oldest first on read."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        # Allocated at the first sample: a drive nobody records (outside every group) costs nothing.
        self._data = np.empty((0, len(Channel)), dtype=STORED)
        self._next = 0
        self._count = 0

    @property
    def capacity(self) -> int:
        """Rows the buffer holds at most."""
        return self._capacity

    @property
    def nbytes(self) -> int:
        """Bytes the samples take (the whole ring from the first sample on, none before)."""
        return int(self._data.nbytes)

    def __len__(self) -> int:
        return self._count

    def append(self, row: NDArray[np.float64]) -> None:
        """Store one sample (a row of len(Channel) values), overwriting the oldest when full."""
        if not self._data.shape[0]:
            self._data = np.full((self._capacity, len(Channel)), np.nan, dtype=STORED)
        self._data[self._next] = row
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def snapshot(self) -> NDArray[np.float64]:
        """A float64 copy of the stored samples in time order, shape (len, len(Channel))."""
        if self._count < self.capacity:
            return self._data[: self._count].astype(np.float64)
        ordered: NDArray[np.float64] = np.concatenate(
            (self._data[self._next :], self._data[: self._next])).astype(np.float64)
        return ordered

    def column(self, channel: Channel) -> NDArray[np.float64]:
        """One channel in time order."""
        column: NDArray[np.float64] = self.snapshot()[:, channel]
        return column
