"""The optimizer's per-drive sample ring: order, wrap, NaN, and its float32 storage."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.config import load_config
from agent.config.profile import Quantity
from agent.history import Channel, RingBuffer
from agent.service import Agent
from tests.agent.test_optimizer import site


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


def test_only_a_drive_in_an_optimizer_group_records_its_history(tmp_path):
    path = site(tmp_path, pumps=2)
    path.write_text(path.read_text().replace("drives: [p1, p2]", "drives: [p1]"))

    async def built() -> Agent:
        return Agent(load_config(path))

    agent = asyncio.run(built())
    grouped, alone = agent.drives
    assert grouped.in_group and not alone.in_group
    values = {Quantity.STATUS_WORD: 0b111, Quantity.SPEED: 100.0, Quantity.POWER: 5000.0,
              Quantity.FLOW: 0.02, Quantity.PRESSURE: 2.0e5, Quantity.PROCESS_FLOW: 0.05}
    for drive in agent.drives:
        drive.accept(1.0, 1.0, dict(values))
    assert len(grouped.history) == 1 and len(alone.history) == 0 and alone.history.nbytes == 0
