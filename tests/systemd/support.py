"""A Debian 12 container for install tests: a copy of a cached rootfs, run with systemd-nspawn."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTFS_SH = REPO / "tests" / "systemd" / "rootfs.sh"


def tools_missing() -> list[str]:
    """What these tests need that is not installed (the README's test command installs it)."""
    return [tool for tool in ("debootstrap", "systemd-nspawn", "unshare") if shutil.which(tool) is None]


def fresh_rootfs(work: Path) -> Path:
    """A private copy of the cached Debian 12 rootfs (built on first use, about a minute)."""
    base = subprocess.run(["sh", str(ROOTFS_SH)], check=True, capture_output=True, text=True,
                          timeout=900).stdout.strip()
    root = work / "rootfs"
    subprocess.run(["cp", "-a", base, str(root)], check=True, timeout=300)
    return root


def python_version(root: Path) -> str:
    """The rootfs's CPython, e.g. ``3.11``."""
    (python,) = [p for p in (root / "usr" / "bin").glob("python3.*") if p.name[8:].isdigit()]
    return python.name.removeprefix("python")


def build_bundle(source: Path, out: Path, python: str) -> Path:
    """``systemd/bundle.sh`` of ``source`` for one CPython and this machine's architecture.

    Its kernel cache starts from the suite's (tests/conftest.py): the kernels the tests before
    compiled with these versions are loaded, not compiled again.
    """
    command = ["sh", str(source / "systemd" / "bundle.sh"), "--out", str(out), "--python", python,
               "--arch", platform.machine(), "--kernel-cache-from", os.environ["NUMBA_CACHE_DIR"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def in_container(root: Path, *command: str, binds: dict[Path, str] | None = None, offline: bool = True,
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the rootfs (systemd-nspawn, not booted); offline: in an empty network namespace."""
    args = ["systemd-nspawn", "-q", "-D", str(root), "--register=no", "--keep-unit", "--as-pid2",
            "--console=pipe", "--setenv=LANG=C.UTF-8"]
    for host, inside in (binds or {}).items():
        args.append(f"--bind-ro={host}:{inside}")
    if offline:
        args = ["unshare", "--net", "--", *args]
    return subprocess.run([*args, *command], capture_output=True, text=True, timeout=timeout)
