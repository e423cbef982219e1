"""The optimizer's per-drive sample ring: order, wrap, NaN, and its float32 storage."""

from __future__ import annotations

import numpy as np
import pytest

from agent.history import Channel, RingBuffer


def _row(i: float) -> np.ndarray:
    return np.array([0.5 + i / 1000, 1.0e4 + i, 0.01 * i, np.nan if i % 3 == 0 else 2.0e5 + i])


def test_the_ring_keeps_the_last_samples_oldest_first_as_float64():
    ring = RingBuffer(5)
    for i in range(8):
        ring.append(_row(i))
    assert len(ring) == 5
    got = ring.snapshot()
    assert got.dtype == np.float64 and got.shape == (5, len(Channel))
    want = np.array([_row(i) for i in range(3, 8)])
    np.testing.assert_allclose(got, want, rtol=1e-7)  # float32 storage: 7 digits
    assert np.array_equal(np.isnan(got), np.isnan(want))  # NaN (a missing value) survives
    np.testing.assert_allclose(ring.column(Channel.POWER), want[:, Channel.POWER], rtol=1e-7)


def test_a_partly_filled_ring_returns_what_it_has():
    ring = RingBuffer(10)
    ring.append(_row(1))
    ring.append(_row(2))
    np.testing.assert_allclose(ring.snapshot(), [_row(1), _row(2)], rtol=1e-7)


def test_the_ring_holds_the_fit_channels_in_float32():
    """What the memory figures in README rest on: 4 channels × 4 bytes per sample, from the first one."""
    ring = RingBuffer(3600)
    assert ring.nbytes == 0 and len(ring.snapshot()) == 0  # a drive outside every group: never recorded
    ring.append(_row(1))
    assert ring.nbytes == 3600 * 4 * 4


def test_a_ring_needs_room_for_one_sample():
    with pytest.raises(ValueError):
        RingBuffer(0)
