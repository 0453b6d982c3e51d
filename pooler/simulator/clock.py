"""Simulated time: the wall clock plus an offset the control API can move, so quota windows and token expiry
can be crossed in tests without waiting."""

from __future__ import annotations

import time


class SimClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        self.offset += seconds
        return self.now()

    def set_now(self, unix: float) -> float:
        self.offset = unix - time.time()
        return self.now()

    def snapshot(self) -> dict[str, float]:
        return {"now": self.now(), "offset": self.offset}
