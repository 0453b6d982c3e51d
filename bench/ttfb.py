"""Time to first byte of a streamed (SSE) reply: a keep-alive connection, N sequential requests."""

from __future__ import annotations

import http.client
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class TtfbResult:
    count: int
    errors: int
    p50_ms: float
    p99_ms: float
    total_p50_ms: float


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def measure_ttfb(host: str, port: int, path: str, body: bytes, token: str, count: int) -> TtfbResult:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Authorization": f"Bearer {token}",
        "session-id": "bench-ttfb",
    }
    conn = http.client.HTTPConnection(host, port, timeout=30)
    firsts: list[float] = []
    totals: list[float] = []
    errors = 0
    try:
        for _ in range(count):
            start = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            first = resp.read1(65536)  # the first chunk of the event stream
            got_first = time.perf_counter()
            rest = resp.read()
            done = time.perf_counter()
            if resp.status != 200 or not (first or rest):
                errors += 1
                continue
            firsts.append((got_first - start) * 1000)
            totals.append((done - start) * 1000)
    finally:
        conn.close()
    return TtfbResult(
        count=len(firsts),
        errors=errors,
        p50_ms=statistics.median(firsts) if firsts else float("nan"),
        p99_ms=percentile(firsts, 99),
        total_p50_ms=statistics.median(totals) if totals else float("nan"),
    )
