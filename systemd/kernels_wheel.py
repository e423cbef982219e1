#!/usr/bin/env python3
"""Build vfd-agent-kernels: vfd-agent's kernels compiled, as a platform wheel of their own.

    python3 systemd/kernels_wheel.py [--out DIR] [--wheels DIR] [--kernel-cache-from NUMBA_CACHE_DIR]

A gateway installed from a package index compiles its kernels on its first warm-up (15-17 s
and 224 MiB here, minutes on a Pi). This wheel carries them compiled, for this host's CPython
and architecture, so ``pip install 'vfd-agent[compiled]'`` loads them instead, as the offline
bundle's gateway does: the agent copies them into its cache directory on its first start
(``agent.numba_cache.seed_kernel_cache``).

- The kernels are compiled by the step the offline bundle uses (compile_kernels.sh): every
  kernel, with exactly the wheels a gateway installs, for the architecture's baseline CPU.
- The package, ``vfd_agent_kernels``, holds the Numba cache directory named
  ``kernels._numba.cache_name()`` as package data.
- Its metadata pins exactly what that name covers: numba, llvmlite and NumPy ``==`` the
  versions compiled with, and the CPython minor (``Requires-Python``); its tag is this
  CPython's ABI and the manylinux platform tags of the llvmlite wheel it was compiled with (the
  kernels load where that llvmlite loads), so pip picks it only where it loads. A gateway
  where the names still differ (another vfd-agent) compiles, as before.
- Its version is vfd-agent's, which requires it through the ``compiled`` extra.

``--wheels``: a directory with vfd-agent's wheel and every dependency's for this platform (an
unpacked bundle's ``wheels/``, or a pip download); by default the wheel is built from this
tree and the dependencies downloaded (pinned by constraints.txt). ``--kernel-cache-from`` as
bundle.sh's. ``--venv``: where the compile's venv (vfd-agent installed from ``--wheels`` alone,
no pip of its own) is made and kept, for a test to install the kernels wheel into. For
aarch64, run it on an aarch64 machine or in an arm64 rootfs under qemu-user (bench/arm64.sh
builds one), as bundle.sh's aarch64 cache is. Prints the wheel's path.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent
DISTRIBUTION = "vfd-agent-kernels"
PACKAGE = "vfd_agent_kernels"  # agent.numba_cache.SHIPPED_PACKAGE
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the same kernels give the same wheel, byte for byte
# What the compile venv says of itself: what the cache's name covers, and llvmlite's wheel tags.
ABOUT = """import json, sys
from importlib import metadata
tags = [line.split(": ", 1)[1] for line in metadata.distribution("llvmlite").read_text("WHEEL").splitlines()
        if line.startswith("Tag: ")]
print(json.dumps({"versions": {n: metadata.version(n) for n in ("numba", "llvmlite", "numpy")},
                  "python": "%d.%d" % sys.version_info[:2], "llvmlite_tags": tags}))
"""


def project_wheels(work: Path) -> Path:
    """vfd-agent's wheel from a clean copy of this tree, and its dependencies' for this platform."""
    src, wheels = work / "src", work / "wheels"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(SRC / name, src / name)
    for name in ("agent", "kernels", "hil", "configs"):
        shutil.copytree(SRC / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(src)], check=True)
    (wheel,) = wheels.glob("vfd_agent-*.whl")
    subprocess.run([*pip, "download", "--quiet", "--only-binary=:all:", "--constraint",
                    str(SRC / "constraints.txt"), "--dest", str(wheels), str(wheel)], check=True)
    return wheels


def platform_tag(python: str, llvmlite_tags: list[str]) -> str:
    """``cpXY-cpXY-PLATFORMS``: this CPython's ABI, the platforms llvmlite's wheel was built for."""
    cp = "cp" + python.replace(".", "")
    platforms = sorted({p for tag in llvmlite_tags if tag.startswith(f"{cp}-{cp}-")
                        for p in tag.split("-", 2)[2].split(".")})
    if not platforms or not all(p.startswith("manylinux") for p in platforms):
        raise SystemExit(f"kernels_wheel.py: llvmlite's wheel is tagged {llvmlite_tags}: no manylinux "
                         f"tag for CPython {python}")
    return f"{cp}-{cp}-{'.'.join(platforms)}"


def metadata_text(version: str, name: str, about: dict[str, object]) -> str:
    """METADATA: the pins the cache name covers (``==``), the CPython minor."""
    versions = about["versions"]
    assert isinstance(versions, dict)
    python = about["python"]
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {DISTRIBUTION}",
        f"Version: {version}",
        f"Summary: vfd-agent {version}'s Numba kernels compiled for CPython {python} on this "
        f"architecture's baseline CPU ({name})",
        "License: Apache-2.0",
        f"Requires-Python: =={python}.*",
        *(f"Requires-Dist: {dist}=={versions[dist]}" for dist in ("numba", "llvmlite", "numpy")),
        "",
        "Installed with `pip install 'vfd-agent[compiled]'`: the agent copies these kernels into its",
        "Numba cache on its first start instead of compiling them (vfd-agent's README, install).",
        "",
    ]
    return "\n".join(lines)


def write_wheel(out: Path, version: str, tag: str, cache: Path, name: str, about: dict[str, object]) -> Path:
    """The wheel, written by hand: the package, its cache directory, the licence and dist-info."""
    dist_info = f"{PACKAGE}-{version}.dist-info"
    files: dict[str, bytes] = {
        f"{PACKAGE}/__init__.py": (f'"""vfd-agent {version}\'s kernels compiled: the Numba cache directory '
                                   f'{name}.\n\nRead by agent.numba_cache.seed_kernel_cache, never imported.'
                                   f'"""\n\nCACHE_NAME = "{name}"\n').encode(),
    }
    for path in sorted((cache / name).iterdir()):
        if path.is_file():
            files[f"{PACKAGE}/{name}/{path.name}"] = path.read_bytes()
    files[f"{dist_info}/METADATA"] = metadata_text(version, name, about).encode()
    files[f"{dist_info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: vfd-agent systemd/kernels_wheel.py\n"
                                   "Root-Is-Purelib: false\n"
                                   + "".join(f"Tag: {tag.split('-')[0]}-{tag.split('-')[1]}-{p}\n"
                                             for p in tag.split("-", 2)[2].split("."))).encode()
    files[f"{dist_info}/licenses/LICENSE"] = (SRC / "LICENSE").read_bytes()
    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = [f"{path},sha256={digest(data)},{len(data)}" for path, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{PACKAGE}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel.with_suffix(".tmp"), "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    wheel.with_suffix(".tmp").replace(wheel)
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SRC / "dist")
    parser.add_argument("--wheels", type=Path, default=None,
                        help="vfd-agent's wheel and its dependencies' for this platform (default: built "
                             "from this tree and downloaded)")
    parser.add_argument("--kernel-cache-from", type=Path, default=None,
                        help="a Numba cache directory whose kernels of the same name are taken, not compiled")
    parser.add_argument("--venv", type=Path, default=None,
                        help="make the compile's venv here and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vfd-agent-kernels-") as name:
        work = Path(name)
        wheels = args.wheels.resolve() if args.wheels else project_wheels(work)
        found = sorted(wheels.glob("vfd_agent-*.whl"))
        if len(found) != 1:
            raise SystemExit(f"kernels_wheel.py: {wheels} holds {len(found)} vfd-agent wheels; one is needed")
        version = found[0].name.split("-")[1]
        venv, cache = (args.venv.resolve() if args.venv else work / "venv"), work / "cache"
        compiled = subprocess.run(["sh", str(SRC / "systemd" / "compile_kernels.sh"), str(wheels),
                                   str(SRC / "constraints.txt"), version, str(venv), str(cache),
                                   str(args.kernel_cache_from.resolve()) if args.kernel_cache_from else ""],
                                  check=True, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHON": sys.executable})  # this CPython's kernels
        cache_name = compiled.stdout.split()[-1]
        about = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", ABOUT], cwd=venv, check=True,
                                          stdout=subprocess.PIPE, text=True).stdout)
        tag = platform_tag(about["python"], about["llvmlite_tags"])
        print(write_wheel(args.out.resolve(), version, tag, cache, cache_name, about))
    return 0


if __name__ == "__main__":
    sys.exit(main())
