"""Debug-only memory probe, off by default: `POOLER_EXTPROC_MEMDEBUG=/path/file` makes SIGUSR1 append to that
file one `stats {json}` line (RSS, glibc `mallinfo2()`, SQLite's own heap, gc object counts, tracemalloc current)
and, while tracing, the top allocation differences (grouped by traceback) since the previous signal plus the most
common object types. Used to find per-request growth (docs/BENCHMARKS.md); never in production, since
tracemalloc roughly doubles allocation cost. `POOLER_EXTPROC_MEMDEBUG_TRACE=0` keeps only the cheap stats line
(no tracemalloc), so RSS is measured without the tracer's own memory and slowdown."""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import json
import os
import signal
import tracemalloc
from types import FrameType
from typing import Any

ENV = "POOLER_EXTPROC_MEMDEBUG"
TRACE_ENV = "POOLER_EXTPROC_MEMDEBUG_TRACE"
_previous: list[tracemalloc.Snapshot] = []


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _mallinfo() -> dict[str, int]:
    """glibc heap, summed over all arenas: `arena` = sbrk+arena bytes, `uordblks` in use, `fordblks` free but
    still held (fragmentation / not returned), `hblkhd` in mmap'd chunks. Empty on a non-glibc libc."""
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _Mallinfo2
    info = fn()
    return {name: int(getattr(info, name)) for name, _ in _Mallinfo2._fields_}


def _sqlite_used() -> int | None:
    """SQLite's own allocator counter (page cache, statements) - tells SQLite growth apart from the rest."""
    name = ctypes.util.find_library("sqlite3")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _pools() -> list[str]:
    """Connection pools of the process (how many SQLite connections, each with its own caches, are kept)."""
    from sqlalchemy import Engine

    return [o.pool.status() for o in gc.get_objects() if isinstance(o, Engine)]


def stats() -> dict[str, Any]:
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
    return {
        "pools": _pools(),
        "rss_kib": _rss_kib(),
        "traced": traced,
        "gc_objects": len(gc.get_objects()),
        "gc_counts": gc.get_count(),
        "sqlite_used": _sqlite_used(),
        "mallinfo2": _mallinfo(),
    }


def _dump(path: str, top: int = 15) -> None:
    with open(path, "a") as out:
        out.write("stats " + json.dumps(stats()) + "\n")
    if not tracemalloc.is_tracing():
        return
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    )
    objects = gc.get_objects()
    counts = collections.Counter(type(o).__name__ for o in objects)
    # Containers held by this project's objects (state maps keyed by request id, caches): name and size.
    sizes = [
        f"{type(o).__name__}.{name}={len(value)}"
        for o in objects
        if str(getattr(type(o), "__module__", "")).startswith(("extproc", "pooler"))
        for name, value in getattr(o, "__dict__", {}).items()
        if isinstance(value, dict | list | set | collections.deque) and len(value) >= 50
    ]
    with open(path, "a") as out:
        current, peak = tracemalloc.get_traced_memory()
        out.write(f"=== traced {current / 2**20:.2f} MiB (peak {peak / 2**20:.2f})\n")
        if _previous:
            for stat in snapshot.compare_to(_previous[0], "traceback")[:top]:
                out.write(f"{stat.size_diff:+10d} B {stat.count_diff:+7d} blocks\n")
                for line in stat.traceback.format()[-12:]:
                    out.write(f"    {line}\n")
        out.write("containers: " + ", ".join(sizes) + "\n")
        out.write("types: " + ", ".join(f"{n}={c}" for n, c in counts.most_common(25)) + "\n")
    _previous[:] = [snapshot]


def install() -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    if os.environ.get(TRACE_ENV, "1") != "0":
        tracemalloc.start(12)

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            _dump(path)
        except Exception as exc:  # a debug aid must never take the gateway down
            with open(path, "a") as out:
                out.write(f"dump failed: {exc!r}\n")

    signal.signal(signal.SIGUSR1, handler)
