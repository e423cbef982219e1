"""A short soak: 50 simulated drives, random faults, the agent polling them; memory stays bounded."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest

from tests.support import REPO

MIB = 1024 * 1024


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_soak", REPO / "bench" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.alone  # at load 5, three of fifty drives went unpolled in its window
def test_fifty_drives_with_random_faults_are_all_polled_and_memory_stays_bounded():
    soak = load_bench()
    report = asyncio.run(soak.run_soak(20.0, drives=50, buses=5, rtu=False, warmup=8.0, fault_every=1.0,
                                       seed=4))
    print(f"\nsoak 20 s: RSS {report.rss_warm_bytes / MIB:.1f} -> {report.rss_end_bytes / MIB:.1f} MiB, "
          f"traced {report.traced_warm_bytes / MIB:.2f} -> {report.traced_end_bytes / MIB:.2f} MiB, "
          f"faults {report.faults_injected}, errors {report.errors}")
    assert report.drives == 50
    assert report.unpolled == []
    assert sum(report.faults_injected.values()) >= 5
    # Generous: a leak of even a few hundred bytes per poll would show over a 10-minute run
    # (bench/soak.py); this only catches gross growth.
    assert report.rss_growth_bytes < 40 * MIB
    assert report.traced_end_bytes - report.traced_warm_bytes < 10 * MIB
