"""The offline bundle: built by systemd/bundle.sh, installed by install.sh with no network.

The container runs in an empty network namespace (``unshare --net``): the install must come
from the bundle alone, as on an air-gapped plant network.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile

import pytest

from tests.systemd.support import (
    REPO,
    build_bundle,
    fresh_rootfs,
    in_container,
    python_version,
    tools_missing,
)

pytestmark = pytest.mark.skipif(bool(tools_missing()), reason=f"needs {tools_missing()}")
INSTALL = "/src/systemd/install.sh"


def tampered(bundle, tmp_path, name, change):
    """A copy of the bundle with ``change(path)`` applied to its unpacked tree."""
    unpacked = tmp_path / f"{name}-tree"
    with tarfile.open(bundle) as tar:
        tar.extractall(unpacked, filter="tar")
    (top,) = unpacked.iterdir()
    change(top)
    target = tmp_path / "bundles" / f"{name}.tar"
    target.parent.mkdir(exist_ok=True)
    with tarfile.open(target, "w") as tar:
        tar.add(top, arcname=top.name)
    return target


def test_bundle_installs_with_no_network_and_refuses_a_damaged_one(tmp_path):
    root = fresh_rootfs(tmp_path)
    bundle = build_bundle(REPO, tmp_path / "dist", python_version(root))
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    for member in ("install.sh", "vfd-agent.service", "example.yaml", "SHA256SUMS", "constraints.txt",
                   "LICENSE", "README.md"):
        assert f"{top}/{member}" in names
    assert any(n.startswith(f"{top}/wheels/numba-") for n in names)
    with tarfile.open(bundle) as tar:  # the kernels, compiled here with the bundle's wheels
        shipped = {m.name.split("/", 2)[2]: tar.extractfile(m).read() for m in tar.getmembers()
                   if m.name.startswith(f"{top}/kernel-cache/") and m.isfile()}
    assert any(n.endswith(".nbi") for n in shipped) and any(n.endswith(".nbc") for n in shipped)

    flipped = tampered(bundle, tmp_path, "flipped", lambda t: next((t / "wheels").glob("pyyaml-*.whl"))
                       .write_bytes(b"not the wheel the manifest names"))
    extra = tampered(bundle, tmp_path, "extra", lambda t: shutil.copy(
        next((t / "wheels").glob("pymodbus-*")), t / "wheels" / "evil-1.0-py3-none-any.whl"))
    binds = {REPO / "systemd": "/src/systemd", bundle.parent: "/bundle", extra.parent: "/bad"}
    for bad in (flipped, extra):
        result = in_container(root, "sh", INSTALL, "--bundle", f"/bad/{bad.name}", binds=binds)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "bundle verification failed" in result.stderr and "Traceback" not in result.stderr
    assert not (root / "opt" / "vfd-agent").exists()  # refused before anything was changed

    # No network in here: only the loopback interface.
    net = in_container(root, "ls", "/sys/class/net")
    assert net.stdout.split() == ["lo"], net.stdout

    result = in_container(root, "sh", INSTALL, "--bundle", f"/bundle/{bundle.name}", binds=binds)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bundle verified" in result.stdout and "no systemd running here" in result.stdout
    # The install's warm-up loaded the bundle's kernels and compiled none: not a byte of the cache changed.
    assert "kernel cache seeded from the bundle" in result.stdout
    numba_cache = root / "var/cache/vfd-agent/numba"
    assert {p.relative_to(numba_cache).as_posix(): p.read_bytes() for p in numba_cache.rglob("*")
            if p.is_file()} == shipped
    version = bundle.name.split("-")[2]
    assert (root / "opt/vfd-agent/current").readlink().as_posix() == f"releases/{version}"

    agent = "/opt/vfd-agent/current/venv/bin/vfd-agent"
    assert in_container(root, agent, "--version").stdout.strip() == f"vfd-agent {version}"
    checked = in_container(root, agent, "check-config", "/etc/vfd-agent/vfd-agent.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    warm = in_container(root, "runuser", "-u", "vfd-agent", "--", "env",
                        "NUMBA_CACHE_DIR=/var/cache/vfd-agent/numba", agent, "warmup")
    assert warm.returncode == 0, warm.stdout + warm.stderr

    # The unit runs the current release as vfd-agent, in the serial group; private directories.
    unit = (root / "etc/systemd/system/vfd-agent.service").read_text()
    assert f"ExecStart={agent} run" in unit and "SupplementaryGroups=dialout" in unit
    assert "vfd-agent" in in_container(root, "getent", "group", "dialout").stdout
    assert oct((root / "etc/vfd-agent").stat().st_mode & 0o777) == "0o750"


def test_install_refuses_a_32_bit_system_with_the_reason(tmp_path):
    # setarch linux32 makes uname say i686 (armv8l on an ARM host): install.sh stops before any change.
    result = subprocess.run(["setarch", "linux32", "sh", str(REPO / "systemd" / "install.sh"), "--bundle",
                             str(tmp_path / "none.tar")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "32-bit" in result.stderr and "numba and llvmlite publish no wheels" in result.stderr
