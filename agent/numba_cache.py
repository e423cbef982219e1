"""Where Numba keeps compiled kernels: decided once, before ``kernels`` is imported.

On a gateway the first compile of every kernel takes far longer than a poll
interval, so the service compiles them once (``vfd-agent warmup``) into a
cache directory it can write under ``ProtectSystem=strict``. Precedence: an
explicit NUMBA_CACHE_DIR, then systemd's CACHE_DIRECTORY, then the caller's
default; with none of them Numba caches beside the kernels' source.

A cache that cannot be written (a full or read-only state disk) must never stop
the agent: Numba raises the OSError out of the kernel call that compiled, so
``install_cache_fallback`` makes that a warning, logged once, after which every
kernel is compiled in memory (slower starts, the same results). What the cache
already holds is still loaded.

Which kernels a config makes the agent call (``kernels_for``) is decided here too: the
service loads only those (``load_kernels``), and ``vfd-agent warmup --config`` compiles
only those (``will_load`` says beforehand which of them the cache holds). Once they are
loaded no LLVM code runs, so ``load_kernels`` hands libllvmlite.so's resident code back to
the kernel (``unmap_compiler_code``).

Every kernel is compiled for the CPU architecture's baseline (``CPU_NAME``), not for this
CPU: the machine code in a cache is then the same on every gateway of one architecture, so
a cache compiled where the offline bundle is built loads on the gateway (its key:
``kernels._numba.cache_name``). The same cache ships as a platform wheel of its own,
``vfd-agent-kernels`` (``pip install 'vfd-agent[compiled]'``, systemd/kernels_wheel.py): a
process that loads kernels first copies it into its cache directory (``seed_kernel_cache``)
where that directory holds none of these kernels yet and the names match, so an install from
a package index loads its kernels too instead of compiling them. On x86-64 the compile took
as long and the fits ran 5-15 % slower than for an AVX-512 host, the optimizer's cycle as fast
(README, "First start from the bundle"); on aarch64, NEON is in the baseline.

The compile flags (``cache``, ``fastmath``, ``error_model``, ``nogil``) are the kernels'
own, in ``kernels._numba``; only the location is decided here. They cannot share one
module: the location must be set before Numba is imported, with I/O and logging, which
``kernels/`` never does, and ``kernels/`` imports nothing from ``agent/``.

Long because it is the one place for every fact about where compiled kernels come from and
go (location, CPU, fallback, seeding, which kernels, unmapping LLVM): split, each part would
import the others' state.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import mmap
import os
import pickle
import shutil
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger(__name__)

CPU_NAME = "generic"  # NUMBA_CPU_NAME: x86-64's baseline ISA (SSE2), armv8-a's (NEON) on aarch64

_lock = threading.Lock()
_fallback: str | None = None  # why the cache is no longer written, once it is not


def configure_numba_cache(default: Path | None = None, *, fallback: bool = True) -> Path | None:
    """Set NUMBA_CACHE_DIR for this process and its children; returns the directory used.

    Also, unless ``fallback`` is False, installs the in-memory fallback for a cache that
    cannot be written and seeds the cache from the installed kernels wheel
    (``seed_kernel_cache``): both import numba, which a process that only starts others
    that compile (``warmup``) does not.
    """
    chosen = _choose_cache_dir(default)
    choose_cpu()
    if fallback:
        install_cache_fallback()
        if chosen is not None:
            seed_kernel_cache(chosen)
    return chosen


def _choose_cache_dir(default: Path | None) -> Path | None:
    if "kernels" in sys.modules or "numba" in sys.modules:
        current = os.environ.get("NUMBA_CACHE_DIR")
        return Path(current) if current else None  # too late to change; report what is in force
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    systemd_cache = os.environ.get("CACHE_DIRECTORY")
    chosen = Path(systemd_cache.split(":")[0]) / "numba" if systemd_cache else default
    if chosen is not None:
        os.environ["NUMBA_CACHE_DIR"] = str(chosen)
    return chosen


def choose_cpu() -> None:
    """Compile for ``CPU_NAME`` in this process and its children, unless NUMBA_CPU_NAME says otherwise.

    Numba reads it once, at import: a process that imported numba already keeps its CPU.
    """
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_CPU_NAME", CPU_NAME)


def cache_fallback() -> str | None:
    """Why kernels are compiled in memory instead of cached, or None while the cache works."""
    return _fallback


def _fall_back(where: object, exc: BaseException) -> None:
    global _fallback
    with _lock:
        if _fallback is not None:
            return
        _fallback = f"{where}: {exc}"
    log.warning("Numba cache %s cannot be written (%s); compiling kernels in memory from now on "
                "(each start compiles again; results are the same)", where, exc)


def install_cache_fallback() -> None:
    """Turn a failure to write (or read) Numba's cache into one warning and in-memory compiles.

    Wraps three methods of Numba's caching (stable since Numba 0.49): ``enable_caching``
    (no usable cache directory at import), ``Cache.save_overload`` (ENOSPC, EROFS while
    saving) and ``Cache.load_overload`` (an unreadable index). Idempotent.
    """
    from numba.core import caching, dispatcher

    if getattr(caching.Cache, "_vfd_fallback", False):
        return
    save, load = caching.Cache.save_overload, caching.Cache.load_overload
    enable = dispatcher.Dispatcher.enable_caching

    def save_overload(self: Any, sig: Any, data: Any) -> None:
        if _fallback is not None:
            return  # compile in memory: do not fill a full disk further with partial files
        try:
            save(self, sig, data)  # type: ignore[no-untyped-call]
        except OSError as exc:
            _fall_back(self.cache_path, exc)

    def load_overload(self: Any, sig: Any, target_context: Any) -> Any:
        try:
            return load(self, sig, target_context)  # type: ignore[no-untyped-call]
        except OSError as exc:
            _fall_back(self.cache_path, exc)
            return None  # compile it

    def enable_caching(self: Any) -> None:
        try:
            enable(self)
        except (RuntimeError, OSError) as exc:  # "no locator available": the dispatcher keeps a NullCache
            _fall_back(os.environ.get("NUMBA_CACHE_DIR", "(beside the kernels)"), exc)

    caching.Cache.save_overload = save_overload  # type: ignore[method-assign]
    caching.Cache.load_overload = load_overload  # type: ignore[method-assign]
    dispatcher.Dispatcher.enable_caching = enable_caching  # type: ignore[method-assign]
    caching.Cache._vfd_fallback = True  # type: ignore[attr-defined]


SHIPPED_PACKAGE = "vfd_agent_kernels"  # the import package of the vfd-agent-kernels wheel


class Seeding(Enum):
    """What ``seed_kernel_cache`` found: why this process loads or compiles its kernels."""

    SEEDED = "seeded"  # copied from the wheel: the kernels load
    OWN = "own"  # the cache directory holds these kernels already (an earlier warm-up, the bundle)
    ABSENT = "absent"  # no vfd-agent-kernels installed: the kernels compile
    MISMATCH = "mismatch"  # installed, but built for other kernels or versions: they compile
    FAILED = "failed"  # matching, but the copy failed (a full or read-only disk): they compile


@dataclass(frozen=True)
class SeedResult:
    """``Seeding`` and the sentence the warm-up prints and the service logs."""

    seeding: Seeding
    detail: str


_seeded: SeedResult | None = None  # this process's seeding, once done


def shipped_caches(package: str = SHIPPED_PACKAGE) -> Path | None:
    """The installed kernels wheel's folder (one ``kernels-*`` cache directory in it), or None.

    Found without importing it (``find_spec`` of a top-level package runs none of its code).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def seed_kernel_cache(cache_dir: Path, shipped: Path | None = None, name: str | None = None) -> SeedResult:
    """Copy the installed wheel's compiled kernels into ``cache_dir`` where it has none of them yet.

    ``shipped``: the wheel's folder (``shipped_caches()``), ``name``: this install's cache
    name (``kernels._numba.cache_name()``); both found when None. Copies only a directory
    named exactly ``name`` (the same kernels' code, numba, llvmlite, NumPy and CPython) and
    only where ``cache_dir/name`` holds no index file: a directory with one is the device's
    own (an earlier warm-up, the bundle) and is left alone. The wheel's files are copied,
    never used in place: site-packages is read-only to the service and Numba writes its
    index. Copied beside the target, then renamed into place, so a second process sees
    all of it or none. Said once (logged; ``cache_seeding`` for the warm-up's report).
    """
    global _seeded
    if name is None:
        from kernels._numba import cache_name

        name = cache_name()
    target = cache_dir / name
    if any(target.glob("*.nbi")):
        result = SeedResult(Seeding.OWN, f"the cache holds these kernels ({target})")
    elif (shipped := shipped_caches() if shipped is None else shipped) is None:
        result = SeedResult(Seeding.ABSENT, "vfd-agent-kernels is not installed: the kernels compile here "
                                            "(pip install 'vfd-agent[compiled]' ships them compiled)")
    elif not (shipped / name).is_dir():
        carried = ", ".join(sorted(p.name for p in shipped.glob("kernels-*"))) or "nothing"
        result = SeedResult(Seeding.MISMATCH, f"vfd-agent-kernels at {shipped} carries {carried}, this "
                                              f"install needs {name} (another vfd-agent, numba, llvmlite, "
                                              "NumPy or CPython): the kernels compile here")
    else:
        result = _copy_in(shipped / name, target)
    if _seeded is None:
        said = (log.warning if result.seeding in (Seeding.MISMATCH, Seeding.FAILED)
                else log.debug if result.seeding is Seeding.OWN else log.info)  # OWN: every start
        said("Numba cache: %s", result.detail)
    _seeded = result
    return result


def _copy_in(source: Path, target: Path) -> SeedResult:
    """``source``'s files into ``target`` (absent, or empty as importing ``kernels`` leaves it)."""
    staging = target.parent / f".{target.name}.seed-{os.getpid()}"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.pyc"))
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        staging.rename(target)
    except OSError as exc:  # a read-only or full disk, or another process seeded first
        shutil.rmtree(staging, ignore_errors=True)
        if any(target.glob("*.nbi")):
            return SeedResult(Seeding.OWN, f"the cache holds these kernels ({target})")
        return SeedResult(Seeding.FAILED, f"vfd-agent-kernels could not be copied to {target} ({exc}): "
                                            "the kernels compile here")
    return SeedResult(Seeding.SEEDED, f"seeded {target} from vfd-agent-kernels ({source.parent}): "
                                      "the kernels load")


def cache_seeding() -> SeedResult | None:
    """What this process's ``seed_kernel_cache`` found, or None if it has not run."""
    return _seeded


# The agent's modules that call kernels, by the feature that needs them. ``kernels_for``
# reads the kernels each one imports, so the list of kernels is never written twice; a
# test checks that every agent module holding a kernel is named here.
ENERGY_MODULES = ("agent.energy.baseline",)  # every drive, every poll
SENSORLESS_MODULES = ("agent.sensorless",)  # every pump drive, every running poll (its flow estimate)
OPTIMIZER_MODULES = ("agent.optimizer.group", "agent.optimizer.machine", "agent.optimizer.staging",
                     "agent.optimizer.system")  # a config with groups


def kernels_in(module_names: Iterable[str]) -> frozenset[str]:
    """The public kernels these modules import (their Numba dispatchers), by kernel name."""
    from numba.core.dispatcher import Dispatcher

    import kernels

    public = set(kernels.kernel_names())
    found: set[str] = set()
    for name in module_names:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value.py_func.__name__ in public:
                found.add(value.py_func.__name__)
    return frozenset(found)


def _closure(dispatcher: Any) -> dict[str, Any]:
    """Every function compiling this kernel compiles (itself too): ``module.name`` -> dispatcher.

    Read from the names each kernel's code loads that are kernels, private ones included.
    """
    from numba.core.dispatcher import Dispatcher

    found: dict[str, Any] = {}
    todo = [dispatcher]
    while todo:
        dispatcher = todo.pop()
        func = dispatcher.py_func
        key = f"{func.__module__}.{func.__name__}"
        if key in found:
            continue
        found[key] = dispatcher
        todo.extend(value for name in func.__code__.co_names
                    if isinstance(value := func.__globals__.get(name), Dispatcher))
    return found


def callees(kernel: str) -> frozenset[str]:
    """Every function compiling ``kernel`` compiles (itself too), as ``module.name``."""
    import kernels

    return frozenset(_closure(getattr(kernels, kernel)))


def linked_sizes(kernel: str) -> dict[str, int]:
    """Every function compiling ``kernel`` compiles, with the bytecode bytes of its whole module.

    Numba links each function's callees into that function's own module, then optimizes and
    generates code for all of it again, and LLVM keeps it until the process exits. So what
    a function costs a compile grows with the code of everything it calls, directly or not:
    the sum of their bytecode and its own. (A cold warm-up grew ~1.5 KiB per byte of it:
    ``fit_pump_curves_tuned`` 28 kB, +42 MiB; ``flow_from_power`` 8 kB, +13 MiB.)
    """
    import kernels

    return {name: sum(len(d.py_func.__code__.co_code) for d in _closure(dispatcher).values())
            for name, dispatcher in _closure(getattr(kernels, kernel)).items()}


def will_load(kernel: str) -> bool:
    """Whether calling ``kernel`` now loads it from Numba's cache rather than compiling it.

    A kernel loaded from the cache brings its callees' code linked in: only its own index
    is read. See ``_in_index`` for what is checked.
    """
    import kernels

    return _in_index(getattr(kernels, kernel))


def cached_functions(kernel: str) -> frozenset[str]:
    """The functions compiling ``kernel`` compiles (``callees``) that the cache already holds.

    A compile of ``kernel`` loads those instead of compiling them again (an earlier process
    compiled them for another kernel).
    """
    import kernels

    return frozenset(name for name, d in _closure(getattr(kernels, kernel)).items() if _in_index(d))


def _in_index(dispatcher: Any) -> bool:
    """Whether the function's cache index has an entry for its code and this CPU, for any argument types.

    Read before the call, when the argument types are not known: the warm-up calls each
    kernel with the agent's types and nothing else writes the cache, so on a gateway an
    entry is the one the call loads. (Where other types were compiled, the suite's cache,
    it can say "loads" of a call that compiles: the warm-up then compiles one kernel past
    its budget.) Reads Numba's private ``Cache`` (stable 0.49..0.68, as ``install_cache_fallback``).
    """
    cache = getattr(dispatcher, "_cache", None)
    index = getattr(cache, "_cache_file", None)
    if cache is None or index is None:
        return False  # caching off (NullCache): every call compiles
    _, magic, code = cache._index_key(None, dispatcher.targetctx.codegen())
    try:
        entries = index._load_index()
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError):
        return False  # unreadable: Numba compiles
    return any(key[1:] == (magic, code) for key in entries)


def kernels_for(config: AgentConfig) -> frozenset[str]:
    """The kernels a site config makes the agent call: energy always, more with pumps and groups.

    The flow estimate's kernels with pumps, the optimizer's with groups.

    ``vfd-agent warmup --config`` compiles these and the service loads these before its
    first optimizer cycle; any other kernel is neither compiled nor loaded (its memory
    is saved), and one called after all would compile or load on its first call.
    """
    from agent.config import LoadKind

    pumps = any(d.load.kind is LoadKind.PUMP for d in config.drives)
    return kernels_in(ENERGY_MODULES + (SENSORLESS_MODULES if pumps else ())
                      + (OPTIMIZER_MODULES if config.groups else ()))


def load_kernels(config: AgentConfig) -> None:
    """Load (or compile) the kernels ``config`` calls now, not inside a poll or optimizer cycle.

    Then unmap LLVM's code, which only a compile runs: at 200 drives it was a third of the
    agent's RSS (issue 14). A kernel called later with new argument types compiles as before
    and faults the pages it needs back in from the file.
    """
    from kernels import warmup

    warmup(kernels_for(config))
    released = unmap_compiler_code()
    log.debug("kernels loaded; %.1f MiB of LLVM's code unmapped", released / 2**20)


COMPILER_LIBRARY = "libllvmlite.so"  # LLVM, as llvmlite ships it: Numba's compiler, idle once kernels load


@dataclass(frozen=True)
class Mapping:
    """One memory mapping of this process, as /proc/self/smaps describes it."""

    start: int
    end: int
    perms: str  # e.g. "r-xp"
    path: str  # "" for an anonymous mapping
    rss: int  # bytes resident
    anonymous: int  # bytes of it that are private copies (written to), not the file's pages


def read_mappings(smaps: str) -> list[Mapping]:
    """The mappings of an smaps text (a header line per mapping, then ``Field: N kB`` lines)."""
    found: list[Mapping] = []
    head: list[str] | None = None
    fields: dict[str, int] = {}

    def close() -> None:
        if head is not None:
            start, end = (int(x, 16) for x in head[0].split("-"))
            found.append(Mapping(start, end, head[1], head[5] if len(head) > 5 else "",
                                 fields.get("Rss", 0), fields.get("Anonymous", 0)))

    for line in smaps.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0].endswith(":"):
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1]) * 1024
            continue
        close()
        head, fields = parts, {}
    close()
    return found


def compiler_code(mappings: Iterable[Mapping]) -> list[Mapping]:
    """LLVM's mappings that hold only the file's own pages: dropping them loses nothing.

    Read-only or executable and never written: a mapping with private copies (the part of
    the data the loader relocated, then made read-only) would lose those and is left alone.
    """
    return [m for m in mappings
            if Path(m.path).name == COMPILER_LIBRARY and m.perms in ("r-xp", "r--p")
            and m.anonymous == 0 and m.rss > 0]


def unmap_compiler_code(smaps: Path = Path("/proc/self/smaps")) -> int:
    """Drop this process's resident pages of LLVM's code; returns the bytes that were resident.

    ``madvise(MADV_DONTNEED)`` on a clean file mapping only removes the page-table entries:
    the pages stay in the page cache, the first unmapped ones the kernel reclaims, and a
    later compile faults back in what it runs. ``MADV_PAGEOUT`` would also evict them, but
    only for a process that could write the file, which the service user (``vfd-agent``) of
    a root-owned venv cannot: it is a silent no-op there. Linux only; elsewhere returns 0.
    """
    try:
        mine = compiler_code(read_mappings(smaps.read_text(encoding="ascii", errors="replace")))
    except OSError:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for mapping in mine:
        if libc.madvise(mapping.start, mapping.end - mapping.start, mmap.MADV_DONTNEED) == 0:
            released += mapping.rss
        else:
            log.debug("madvise of %s: errno %d", mapping, ctypes.get_errno())
    return released
