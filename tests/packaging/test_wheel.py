"""The wheel works like the checkout: every data file in it, every command runs from it.

Every other test runs from the editable install, which reads ``configs/`` from the tree;
these install the built wheel into a venv of its own and run it from a folder that is not
the checkout, as a bundle, a package index or ``pip install .`` would.

The kernels wheel (systemd/kernels_wheel.py) is built here from the suite's warm cache
(``--kernel-cache-from``: nothing compiles): vfd-agent and its ``compiled`` extra, installed
from a local folder with ``--no-index`` as from a package index, load every kernel of a
config with an optimizer group on their first warm-up. (In this file: it shares the wheel.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import tomllib

from agent.numba_cache import Seeding, seed_kernel_cache
from hil.scenario import SCENARIOS
from tests.packaging.support import REPO, data_files_in_tree, make_venv, package_roots, pip_install, user_env

NOT_SHIPPED = {"tests", "bench"}  # folders of the repository that are not part of the product
SHORTEST_SCENARIO_S = 10.0  # hil.scenario's minimum day


def test_every_package_folder_of_the_tree_is_shipped():
    folders = {p.parent.name for p in REPO.glob("*/__init__.py")} - NOT_SHIPPED
    assert folders <= set(package_roots())
    assert "configs" in package_roots()


def test_the_wheel_holds_every_data_file_of_the_tree_and_the_licence(project_wheel):
    names = set(zipfile.ZipFile(project_wheel).namelist())
    shipped_data = {n for n in names if ".dist-info/" not in n and not n.endswith(".py")}
    in_tree = data_files_in_tree()
    assert "configs/plants/profiles/generic-process.yaml" in in_tree  # the file issue 17 found missing
    assert shipped_data == in_tree, f"missing: {sorted(in_tree - shipped_data)}; " \
                                    f"extra: {sorted(shipped_data - in_tree)}"
    licence = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert licence and "Apache License" in zipfile.ZipFile(project_wheel).read(licence[0]).decode()


def run(bin_dir: Path, cwd: Path, *args: str, timeout: float = 300, **env: str) -> str:
    result = subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=user_env(**env),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_the_installed_wheel_runs_every_command_outside_the_checkout(project_wheel, tmp_path):
    bin_dir = make_venv(tmp_path / "venv")
    pip_install(bin_dir, str(project_wheel))
    here = tmp_path / "elsewhere"
    here.mkdir()
    # The suite's kernels (tests/conftest.py), keyed by what they are made of: where the wheel's
    # kernels and versions are the same, its warm-up loads them instead of compiling all again.
    cache = str(tmp_path / "numba")
    shutil.copytree(os.environ["NUMBA_CACHE_DIR"], cache)
    site = Path(run(bin_dir, here, "python", "-c", "import agent, sysconfig; "
                    "print(sysconfig.get_paths()['purelib']); print(agent.__file__)").split()[0])
    assert not site.is_relative_to(REPO) and (site / "agent" / "cli.py").is_file()

    # The scenarios read plants and plant profiles from the wheel: three processes at once, started
    # first, since they run in real time while the commands below run one after the other.
    scenarios = {name: subprocess.Popen([str(bin_dir / "python"), "-m", "hil.scenario", name, "--duration",
                                         str(SHORTEST_SCENARIO_S)], cwd=here,
                                        env=user_env(NUMBA_CACHE_DIR=cache), text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for name in sorted(SCENARIOS)}
    try:
        version = metadata.version("vfd-agent")  # the checkout's, from the same pyproject
        assert run(bin_dir, here, "vfd-agent", "--version").strip() == f"vfd-agent {version}"
        run(bin_dir, here, "vfd-agent", "check-config", str(site / "configs" / "example.yaml"))
        run(bin_dir, here, "vfd-agent", "warmup", "--cache-dir", cache)
        demo = run(bin_dir, here, "vfd-agent", "demo", "--duration", "5", "--listen", "127.0.0.1:0",
                   "--state-dir", str(tmp_path / "demo"), NUMBA_CACHE_DIR=cache)
        assert "3 simulated drives" in demo and (tmp_path / "demo" / "ledger.sqlite").is_file()
        assert "--plant" in run(bin_dir, here, "vfd-sim", "--help")
        for name, process in scenarios.items():
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0 and "Traceback" not in err, f"{name}: {err}"
            result = json.loads(out)
            assert result["scenario"] == name and result["energy_agent_j"] > 0, result
    finally:
        for process in scenarios.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


def test_the_wheel_is_pure_python_for_every_platform(project_wheel):
    # One wheel serves x86_64 and aarch64 gateways (the offline bundle ships it once).
    assert project_wheel.name.endswith("-py3-none-any.whl"), project_wheel.name


def test_the_readme_stands_alone():
    # A wheel's or a bundle's README is read far from the workspace it was written in.
    text = (REPO / "README.md").read_text()
    assert "../" not in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert "://" not in target, target
        assert (REPO / target).resolve().is_relative_to(REPO) and (REPO / target).exists(), target


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
