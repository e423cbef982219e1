"""The kernels wheel: a gateway installed from a package index loads its kernels, never compiles them.

systemd/kernels_wheel.py builds ``vfd-agent-kernels`` from the suite's warm cache
(``--kernel-cache-from``: nothing compiles here); vfd-agent and its ``compiled`` extra are
installed from a local folder with ``--no-index``, as from a package index, and the first
warm-up of a config with an optimizer group, on an empty cache, loads every kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import tomllib

from agent.numba_cache import Seeding, seed_kernel_cache
from tests.packaging.support import REPO, user_env


def _site(path: Path, profiles: Path) -> Path:
    path.write_text(textwrap.dedent(f"""\
        site: {{name: t, grid_emission_factor_kg_per_kwh: 0.5, tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {path.parent / 'state'}}}
        buses: [{{name: b, host: 127.0.0.1, port: 5020}}]
        drives:
          - {{name: p1, bus: b, unit: 1, profile: {profiles / 'generic-process.yaml'}, rated_power_kw: 15,
              rated_speed_rpm: 1470, load: {{kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}}}
        groups:
          - name: g
            drives: [p1]
            demand: {{drive: p1, quantity: process_flow}}
            system: {{static_head_m: 9.6, design_flow_m3h: 120, design_head_m: 32}}
        """), encoding="utf-8")
    return path


def test_an_index_install_with_the_kernels_wheel_loads_every_kernel(project_wheel, tmp_path):
    version = metadata.version("vfd-agent")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["compiled"] == [f"vfd-agent-kernels=={version}"]
    # The package index: vfd-agent's wheel, its dependencies' (pinned as the bundle's) and the kernels.
    links = tmp_path / "index"
    links.mkdir()
    shutil.copy(project_wheel, links)
    pip = [sys.executable, "-m", "pip"]
    done = subprocess.run([*pip, "download", "-q", "--only-binary=:all:", "--constraint",
                           str(REPO / "constraints.txt"), "--dest", str(links), str(project_wheel)],
                          env=user_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    venv = tmp_path / "venv"  # compile_kernels.sh's: vfd-agent alone, from the local index
    built = subprocess.run([sys.executable, str(REPO / "systemd" / "kernels_wheel.py"), "--wheels",
                            str(links), "--out", str(links), "--venv", str(venv),
                            "--kernel-cache-from", os.environ["NUMBA_CACHE_DIR"]],
                           env=user_env(), capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = Path(built.stdout.split()[-1])
    cp = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert wheel.name.startswith(f"vfd_agent_kernels-{version}-{cp}-{cp}-manylinux"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        meta = archive.read(f"vfd_agent_kernels-{version}.dist-info/METADATA").decode()
    for dist in ("numba", "llvmlite", "numpy"):  # exactly what the cache's name covers
        assert f"Requires-Dist: {dist}=={metadata.version(dist)}\n" in meta
    assert f"Requires-Python: =={sys.version_info[0]}.{sys.version_info[1]}.*\n" in meta

    # The extra resolves to the kernels wheel alone (its pins are what is installed already).
    done = subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-index",
                           "--find-links", str(links), f"vfd-agent[compiled]=={version}"],
                          env=user_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    site_packages = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                         "print(sysconfig.get_paths()['purelib'])"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    site = _site(tmp_path / "site.yaml", site_packages / "configs" / "plants" / "profiles")
    cache = tmp_path / "numba"
    warm = subprocess.run([str(venv / "bin" / "vfd-agent"), "warmup", "--config", str(site)],
                          cwd=tmp_path, env=user_env(NUMBA_CACHE_DIR=str(cache)), capture_output=True,
                          text=True, timeout=600)
    assert warm.returncode == 0 and "Traceback" not in warm.stderr, warm.stdout + warm.stderr
    ready = next(line for line in warm.stdout.splitlines() if " kernels of " in line)
    count = int(ready.split()[0])
    assert count >= 20  # the energy, flow-estimate and optimizer kernels
    assert f"{count} loaded from the cache, 0 compiled; seeded {cache}" in warm.stdout, warm.stdout
    assert not any(site_packages.rglob("*.tmp.*"))  # nothing written into site-packages


def _shipped(tmp_path: Path, name: str) -> Path:
    """A wheel's package folder carrying one cache directory ``name`` (an index and its code)."""
    folder = tmp_path / "site-packages" / "vfd_agent_kernels"
    (folder / name).mkdir(parents=True)
    (folder / name / "curves.head-40.py311.nbi").write_bytes(b"index")
    (folder / name / "curves.head-40.py311.1.nbc").write_bytes(b"code")
    return folder


def test_a_kernels_wheel_of_another_name_is_not_used_and_the_kernels_compile(tmp_path):
    cache = tmp_path / "cache"
    other = _shipped(tmp_path, "kernels-0123456789abcdef01234567")  # another numba, or edited kernels
    result = seed_kernel_cache(cache, other, "kernels-fedcba9876543210fedcba98")
    assert result.seeding is Seeding.MISMATCH and "kernels-0123456789abcdef01234567" in result.detail
    assert not cache.exists()
    absent = seed_kernel_cache(cache, None, "kernels-fedcba9876543210fedcba98")  # none in this venv
    assert absent.seeding is Seeding.ABSENT


def test_the_wheels_kernels_are_copied_where_the_cache_has_none_of_them(tmp_path):
    name = "kernels-fedcba9876543210fedcba98"
    shipped = _shipped(tmp_path, name)
    cache = tmp_path / "cache"
    (cache / name).mkdir(parents=True)  # empty, as importing kernels leaves it
    assert seed_kernel_cache(cache, shipped, name).seeding is Seeding.SEEDED
    assert {p.name: p.read_bytes() for p in (cache / name).iterdir()} == {
        "curves.head-40.py311.nbi": b"index", "curves.head-40.py311.1.nbc": b"code"}
    assert [p.name for p in cache.iterdir()] == [name]  # no staging folder left
    # The device's own index (an earlier warm-up's, or this seeding's) is never overwritten.
    (cache / name / "curves.head-40.py311.nbi").write_bytes(b"the device's")
    assert seed_kernel_cache(cache, shipped, name).seeding is Seeding.OWN
    assert (cache / name / "curves.head-40.py311.nbi").read_bytes() == b"the device's"
