"""Runs the ext_proc (`python -m extproc`) with its wall clock moved by the seconds written in a file, so tests
can cross a calendar period (a key budget's reset) without waiting. Test support only: the product has no
clock control. `time.time` is replaced before the ext_proc is imported (every caller reads `time.time()`
through the module); the monotonic clock, which timeouts use, is left alone.

Usage: python -m tests.support.shifted_clock OFFSET_FILE
"""

from __future__ import annotations

import contextlib
import runpy
import sys
import time
from pathlib import Path

_REFRESH_SECONDS = 0.05


class _Shift:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0
        self.read_at = -1.0

    def now(self) -> float:
        tick = time.monotonic()
        if tick - self.read_at >= _REFRESH_SECONDS:
            self.read_at = tick
            with contextlib.suppress(OSError, ValueError):  # absent or half-written: keep the last offset
                self.offset = float(self.path.read_text().strip() or 0)
        return _real_time() + self.offset


_real_time = time.time


def main() -> None:
    shift = _Shift(Path(sys.argv[1]))
    time.time = shift.now
    sys.argv = ["extproc"]
    runpy.run_module("extproc", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
