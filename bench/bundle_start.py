"""The first warm-up of a fresh install from the offline bundle, against compiling on the device.

    python bench/bundle_start.py                    # builds a bundle for this machine first
    python bench/bundle_start.py --bundle dist/vfd-agent-X-bundle.tar --repeats 3
    python bench/bundle_start.py --every          # vfd-agent warmup of every kernel instead

Installs the bundle's wheels into a fresh venv as install.sh does (``pip --no-index``), then,
alternately and ``--repeats`` times, the first ``vfd-agent warmup --config`` (the config of
bench/scale.py: pumps in optimizer groups) of that venv:

- from the bundle: the cache seeded with the bundle's ``kernel-cache/``, as install.sh seeds it;
- from the kernels wheel: a second venv, ``vfd-agent[compiled]`` from the bundle's wheels and
  a kernels wheel built from them (systemd/kernels_wheel.py ``--kernel-cache-from`` the bundle's
  cache), an empty cache the agent seeds from the installed wheel (an install from an index);
- compiled on the device, serial: an empty cache, ``--jobs 1`` (one lane of processes);
- compiled on the device, parallel: an empty cache, ``--jobs`` by default (``warmup_jobs``:
  one lane per core while each fits in half of MemAvailable).

Wall time, CPU time, the peak RSS summed over the process tree (the concurrent processes
together) and the largest one process's own peak, and how many processes (bench/scale.py's
``cold_warmup``), medians, with the load average before and after. Figures only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.scale import MIB, PYTHON, Warmup, _free_port, _load, agent_config, cold_warmup  # noqa: E402


def build(out: Path) -> Path:
    """systemd/bundle.sh for this machine's CPython and architecture (with its kernel cache)."""
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    done = subprocess.run(["sh", str(REPO / "systemd" / "bundle.sh"), "--out", str(out), "--python", python,
                           "--arch", platform.machine()], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def install(bundle: Path, tmp: Path) -> tuple[Path, Path]:
    """The bundle unpacked and its wheels in a fresh venv: (the venv's python, the shipped cache)."""
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp / "unpacked", filter="tar")
    (top,) = (tmp / "unpacked").iterdir()
    version = (top / "VERSION").read_text().strip()
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    subprocess.run([str(tmp / "venv/bin/pip"), "install", "--quiet", "--no-index", "--find-links",
                    str(top / "wheels"), "--constraint", str(top / "constraints.txt"),
                    f"vfd-agent=={version}"], check=True)
    return tmp / "venv/bin/python", top / "kernel-cache"


def install_kernels_wheel(top: Path, tmp: Path) -> Path:
    """A venv of ``vfd-agent[compiled]``: the bundle's wheels and a kernels wheel built from them."""
    version = (top / "VERSION").read_text().strip()
    built = subprocess.run([sys.executable, str(REPO / "systemd" / "kernels_wheel.py"), "--wheels",
                            str(top / "wheels"), "--out", str(tmp / "kernels-wheel"), "--kernel-cache-from",
                            str(top / "kernel-cache")], capture_output=True, text=True, check=True)
    print(f"built {Path(built.stdout.split()[-1]).name}")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv-compiled")], check=True)
    subprocess.run([str(tmp / "venv-compiled/bin/pip"), "install", "--quiet", "--no-index", "--find-links",
                    str(top / "wheels"), "--find-links", str(tmp / "kernels-wheel"), "--constraint",
                    str(top / "constraints.txt"), f"vfd-agent[compiled]=={version}"], check=True)
    return tmp / "venv-compiled/bin/python"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="a bundle built for this machine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", action="store_true", help="every kernel, not the site's (no --config)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vfd-bundle-start-") as name:
        tmp = Path(name)
        bundle = args.bundle or build(tmp / "dist")
        python, shipped = install(bundle, tmp)
        if not shipped.is_dir():
            raise SystemExit(f"{bundle} carries no kernel cache (built for another platform?)")
        with_wheel = install_kernels_wheel(shipped.parent, tmp)
        work = tmp / "cwd"  # no source tree here: the venv's agent runs
        work.mkdir()
        site = tmp / "site.yaml"
        site.write_text(agent_config(tmp / "state", _free_port(), [(5020, 0, 6)]))
        extra = [] if args.every else ["--config", str(site)]
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CACHE_DIR", "CACHE_DIRECTORY", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
        jobs = "from agent.warmup import warmup_jobs; print(warmup_jobs())"
        default_jobs = subprocess.run([str(python), "-c", jobs], capture_output=True, text=True, cwd=work,
                                      check=True).stdout.strip()
        cases = {"first start from the bundle": ([], shipped, python),
                 "first start from the kernels wheel": ([], None, with_wheel),
                 "compiled on the device, serial (--jobs 1)": (["--jobs", "1"], None, python),
                 f"compiled on the device, parallel (default: {default_jobs} jobs)": ([], None, python)}
        what = "every kernel" if args.every else "--config (bench/scale.py's site)"
        print(f"{bundle.name}; vfd-agent warmup {what}; load before {_load()} "
              f"on {os.cpu_count()} CPUs")
        runs: dict[str, list[Warmup]] = {label: [] for label in cases}
        for _ in range(args.repeats):
            for label, (case_args, seed, interpreter) in cases.items():
                PYTHON[0] = str(interpreter)
                runs[label].append(cold_warmup(tmp, env, extra + case_args, work, seed))
                print(f"  {label}: {runs[label][-1]} (load {_load()})", flush=True)
        for label, warm in runs.items():
            each = ", ".join(f"{w.seconds:.1f} s/{w.peak_rss_bytes / MIB:.0f} MiB" for w in warm)
            print(f"{label:52s} median {statistics.median(w.seconds for w in warm):5.1f} s "
                  f"({statistics.median(w.cpu_s for w in warm):5.1f} CPU s), peak RSS of the tree "
                  f"{statistics.median(w.peak_rss_bytes for w in warm) / MIB:4.0f} MiB, of one process "
                  f"{statistics.median(w.process_peak_bytes for w in warm) / MIB:4.0f} MiB, "
                  f"{statistics.median(w.processes for w in warm):.0f} processes  (runs: {each})")
        print(f"load after {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
