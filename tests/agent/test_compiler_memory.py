"""LLVM's code unmapped once the kernels a config calls are loaded (issue 14, memory).

No LLVM code runs after the kernels are loaded, and libllvmlite.so's text was a third
of the agent's RSS at 200 drives; ``agent.numba_cache.unmap_compiler_code`` drops it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from agent.numba_cache import COMPILER_LIBRARY, compiler_code, read_mappings
from tests.agent.test_warmup_config import _site
from tests.support import REPO

LIB = f"/venv/site-packages/llvmlite/binding/{COMPILER_LIBRARY}"
SMAPS = textwrap.dedent(f"""\
    7f0000000000-7f0000365000 r--p 00000000 fe:00 6210476                    {LIB}
    Rss:                2048 kB
    Anonymous:             0 kB
    7f0000365000-7f0005394000 r-xp 00365000 fe:00 6210476                    {LIB}
    Size:              82108 kB
    Rss:               61440 kB
    Anonymous:             0 kB
    VmFlags: rd ex mr mw me sd
    7f0009677000-7f000983c000 r--p 09677000 fe:00 6210476                    {LIB}
    Rss:                1812 kB
    Anonymous:          1812 kB
    7f000983c000-7f0009865000 rw-p 0983c000 fe:00 6210476                    {LIB}
    Rss:                 164 kB
    Anonymous:           100 kB
    7f1000000000-7f1000100000 r-xp 00000000 fe:00 1234                       /usr/lib/libpython3.11.so.1.0
    Rss:                1024 kB
    Anonymous:             0 kB
    7f2000000000-7f2000021000 rw-p 00000000 00:00 0
    Rss:                  12 kB
    Anonymous:            12 kB
    """)


def test_only_llvms_clean_read_only_mappings_are_chosen():
    """The relocated read-only data (private copies) and the writable data stay; other libraries too."""
    mappings = read_mappings(SMAPS)
    assert len(mappings) == 6
    assert mappings[1].rss == 61440 * 1024 and mappings[1].path == LIB and mappings[5].path == ""
    chosen = compiler_code(mappings)
    assert [(m.start, m.perms) for m in chosen] == [(0x7F0000000000, "r--p"), (0x7F0000365000, "r-xp")]


def test_the_agent_unmaps_llvm_after_loading_its_kernels_and_it_stays_out(tmp_path):
    """A fresh process on the suite's cache: the agent of a config with groups, then every kernel again."""
    path = _site(tmp_path, groups=True)
    script = textwrap.dedent(f"""\
        import asyncio
        from pathlib import Path
        import numpy as np
        from agent.config import load_config
        from agent.numba_cache import COMPILER_LIBRARY, kernels_for, read_mappings
        from agent.service import Agent
        import kernels

        def resident():
            text = Path("/proc/self/smaps").read_text()
            return sum(m.rss for m in read_mappings(text) if Path(m.path).name == COMPILER_LIBRARY
                       and m.perms == "r-xp")

        def fit():
            r = np.linspace(0.6, 1.0, 32)
            q = np.tile(np.linspace(0.01, 0.07, 8), 4) * r
            return np.array(kernels.fit_system_curve(q, 9.6 + 4000.0 * q * q))

        async def build(config):
            Agent(config)  # the agent's objects need a running loop

        config = load_config(Path({str(path)!r}))
        before = fit()
        loaded = resident()
        asyncio.run(build(config))
        unmapped = resident()
        for _ in range(20):
            kernels.warmup(kernels_for(config))  # every kernel the agent calls, 20 times
        print(loaded, unmapped, resident(), np.array_equal(before, fit()))
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    loaded, unmapped, again, same = done.stdout.split()
    mib = 2**20
    assert int(loaded) > 20 * mib  # LLVM's code ran to load the first kernel
    assert int(unmapped) < 2 * mib  # what the agent dropped once its kernels were loaded
    assert int(again) < 2 * mib  # and no call of a loaded kernel brought it back
    assert same == "True"
