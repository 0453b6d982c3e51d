"""Debug-only memory probe, off by default: `POOLER_EXTPROC_MEMDEBUG=/path/file` starts `tracemalloc` and makes
SIGUSR1 append to that file the top allocation differences (grouped by traceback) since the previous signal,
plus the most common object types. Used to find per-request growth (docs/BENCHMARKS.md); never in production,
since tracemalloc roughly doubles allocation cost."""

from __future__ import annotations

import collections
import gc
import os
import signal
import tracemalloc
from types import FrameType

ENV = "POOLER_EXTPROC_MEMDEBUG"
_previous: list[tracemalloc.Snapshot] = []


def _dump(path: str, top: int = 15) -> None:
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
    tracemalloc.start(12)

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            _dump(path)
        except Exception as exc:  # a debug aid must never take the gateway down
            with open(path, "a") as out:
                out.write(f"dump failed: {exc!r}\n")

    signal.signal(signal.SIGUSR1, handler)
