"""`make bench`'s CPU per request: per path and concurrency, each process's CPU ms per request, leaving out the
processes that only idled during those runs (the other paths' Envoys answering health checks)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any, cast

from bench.run import cpu_per_request
from bench.stack import cpu_seconds


def test_cpu_ms_per_request_of_the_processes_that_worked() -> None:
    runner = SimpleNamespace(
        cpu={"workers_nginx": {16: {"envoy": 2.0, "extproc-w0": 3.0, "extproc-w1": 3.0, "idle": 0.01}}},
        cpu_requests={"workers_nginx": {16: 4000}},
    )
    assert cpu_per_request(cast(Any, runner)) == {
        "workers_nginx": {16: {"envoy": 0.5, "extproc-w0": 0.75, "extproc-w1": 0.75}}
    }


def test_cpu_seconds_counts_a_process_group_that_burnt_cpu() -> None:
    # A child leading its own process group spins ~0.2 s of CPU: read while it is still alive.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass\n"
            "print('done', flush=True)\nsys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"done"
        assert cpu_seconds(child.pid) >= 0.2
    finally:
        child.kill()
        child.wait()
    assert cpu_seconds(None) == 0.0  # a child that never started
