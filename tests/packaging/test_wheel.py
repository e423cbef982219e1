"""The wheel works like the checkout: every data file in it, every command runs from it.

Every other test runs from the editable install, which reads ``configs/`` from the tree;
these install the built wheel into a venv of its own and run it from a folder that is not
the checkout, as a bundle, a package index or ``pip install .`` would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path

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
