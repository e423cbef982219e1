"""Where a cold warm-up's time goes: each kernel compiled alone, in a fresh process, empty cache.

    python bench/warmup_profile.py                 # every kernel
    python bench/warmup_profile.py --config        # the kernels of bench/scale.py's config
    python bench/warmup_profile.py NAME ...        # these kernels

Per kernel: wall time of its first call (the compile of it and of every kernel it calls,
for the argument types it calls them with), the functions compiled in that process with
how many signatures each (a function compiled for two signatures is compiled twice), and
the process's peak RSS. Then the sum, and the load average it ran at (figures on a shared
machine are rough). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import kernels
from numba.core.dispatcher import Dispatcher
imported = time.perf_counter() - t0
name = sys.argv[1]
seconds = kernels.warmup([name])[name]
compiled = {}
for module in list(sys.modules.values()):
    if getattr(module, "__name__", "").startswith("kernels"):
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value.signatures:
                key = value.py_func.__module__ + "." + value.py_func.__name__
                compiled[key] = [str(s) for s in value.signatures]
print(json.dumps({"seconds": seconds, "import_s": imported, "compiled": compiled,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def config_kernels() -> list[str]:
    """The kernels of bench/scale.py's config (pumps in optimizer groups), in warm-up order."""
    code = ("import sys, tempfile; from pathlib import Path; sys.path.insert(0, '.');"
            "from bench.scale import agent_config; from agent.config import load_config;"
            "from agent.numba_cache import kernels_for; import kernels;"
            "d = Path(tempfile.mkdtemp()); p = d / 's.yaml';"
            "p.write_text(agent_config(d / 'state', 9999, [(5020, 0, 6)]));"
            "w = kernels_for(load_config(p)); print(' '.join(n for n in kernels.kernel_names() if n in w))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.split()


def profile(name: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="vfd-warm-profile-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(REPO))
        out = subprocess.run([sys.executable, "-c", _CHILD, name], cwd=REPO, env=env,
                             capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="kernels (default: every kernel)")
    parser.add_argument("--config", action="store_true", help="the kernels of bench/scale.py's config")
    parser.add_argument("--verbose", action="store_true", help="print every signature")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.config:
        names = config_kernels()
    elif args.names:
        names = args.names
    else:
        import kernels
        names = list(kernels.kernel_names())
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} CPUs; {len(names)} kernels, each alone, cold")
    print(f"{'kernel':32s} {'compile s':>9s} {'funcs':>5s} {'sigs':>4s} {'peak MiB':>8s}  "
          "compiled (xN: N signatures)")
    total = 0.0
    counts: dict[str, int] = {}
    for name in names:
        r = profile(name)
        compiled: dict[str, list[str]] = r["compiled"]  # type: ignore[assignment]
        sigs = sum(len(v) for v in compiled.values())
        total += float(r["seconds"])  # type: ignore[arg-type]
        for func in compiled:
            counts[func] = counts.get(func, 0) + 1
        shown = ", ".join(f.split(".", 1)[1] + (f" x{len(v)}" if len(v) > 1 else "")
                          for f, v in sorted(compiled.items()))
        print(f"{name:32s} {r['seconds']:9.2f} {len(compiled):5d} {sigs:4d} {r['peak_mib']:8.0f}  {shown}")
        if args.verbose:
            for f, v in sorted(compiled.items()):
                for s in v:
                    print(f"{'':34s}{f}{s}")
    print(f"{'sum':32s} {total:9.2f}   (load now {'/'.join(f'{x:.1f}' for x in os.getloadavg())})")
    shared = sorted(((n, f) for f, n in counts.items() if n > 1), reverse=True)
    print("compiled by more than one kernel: " + ", ".join(f"{f.split('.', 1)[1]} ({n})" for n, f in shared))
    return 0


if __name__ == "__main__":
    sys.exit(main())
