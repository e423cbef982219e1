"""A kernel cache compiled elsewhere loads here, and one that does not match is compiled again.

The offline bundle carries a cache compiled where it was built (another path, other mtimes):
its key is what the code is made of (``kernels._numba.cache_name``). Each case runs a fresh
process on a copy of ``kernels/`` and reads Numba's own hit and miss counters.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

KERNEL = "integrate_energy"  # small, and calls no other kernel: a cheap compile
CHILD = (f"import json, kernels; from kernels._numba import cache_name; kernels.warmup([{KERNEL!r}]); "
         f"s = kernels.{KERNEL}.stats; print(json.dumps([cache_name(), sum(s.cache_hits.values()), "
         "sum(s.cache_misses.values())]))")


def _copy(tree: Path) -> Path:
    shutil.copytree(REPO / "kernels", tree / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def _warm(tree: Path, cache: Path) -> tuple[str, int, int]:
    """(cache name, hits, misses) of a fresh process warming ``KERNEL`` from ``tree``'s kernels."""
    env = dict(os.environ, PYTHONPATH=str(tree), NUMBA_CACHE_DIR=str(cache))
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    name, hits, misses = json.loads(done.stdout.splitlines()[-1])
    return name, hits, misses


def test_a_cache_moves_with_the_code_and_a_mismatch_recompiles(tmp_path):
    cache = tmp_path / "cache"
    built = _copy(tmp_path / "build")
    name, hits, misses = _warm(built, cache)
    assert (hits, misses) == (0, 1)
    assert [p.name for p in cache.iterdir()] == [name]  # one directory, named by the code

    # Elsewhere, with other mtimes (as pip and tar leave them): the same code loads, no compile.
    gateway = _copy(tmp_path / "gateway")
    for source in (gateway / "kernels").glob("*.py"):
        os.utime(source, (1e9, 1e9))
    assert _warm(gateway, cache) == (name, 1, 0)

    # Another numba wrote the index (its version heads the file): numba discards it and compiles.
    for index in (cache / name).glob(f"*{KERNEL}*.nbi"):
        with index.open("rb") as f:
            pickle.load(f)
            rest = f.read()
        with index.open("wb") as f:
            pickle.dump("0.0.0-other", f, protocol=-1)
            f.write(rest)
    assert _warm(gateway, cache) == (name, 0, 1)

    # A change in another kernels file than the kernel's own (a callee's, a table's): a new key.
    with (gateway / "kernels" / "curves.py").open("a") as f:
        f.write("\n# changed\n")
    changed, hits, misses = _warm(gateway, cache)
    assert changed != name and (hits, misses) == (0, 1)
