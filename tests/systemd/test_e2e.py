"""The lifecycle under a real systemd: tests/systemd/e2e.sh in a booted Debian 12 container.

About 3.5 minutes on 2 cores (three cold Numba compiles among it), more with a cold rootfs:
marked slow and left out of the README's test command (the suite's 15-minute budget); run it
with ``python -m pytest -m slow`` (or this file's path with ``-m slow``).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.systemd.support import REPO, tools_missing

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(tools_missing()), reason=f"needs {tools_missing()}")]


@pytest.mark.timeout(1500)
def test_install_upgrade_rollback_uninstall_under_systemd(tmp_path):
    result = subprocess.run(["bash", str(REPO / "tests" / "systemd" / "e2e.sh"), str(REPO), str(tmp_path)],
                            capture_output=True, text=True, timeout=1400)
    timeline = [line for line in result.stdout.splitlines() if line.startswith("[")]
    print("\n".join(timeline))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert timeline[-1].endswith("PASS")
