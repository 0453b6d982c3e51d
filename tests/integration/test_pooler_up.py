"""`pooler up --demo` as an operator runs it: one command, a ready line, a working key, self-healing, clean stop.

SQLite on purpose (the default a fresh machine gets); a temp POOLER_DATA_DIR and free ports keep it private.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pooler_up import PoolerUp, pooler_up_demo
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration


def group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in process group `pgid`: children lead their own groups."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.fixture
def pooler_up(tmp_path: Path) -> Iterator[PoolerUp]:
    with pooler_up_demo(tmp_path) as up:
        yield up


def test_up_demo_serves_recovers_and_stops_cleanly(pooler_up: PoolerUp) -> None:
    up = pooler_up
    assert "development keyring" in up.log()

    first = up.respond()
    assert first.status_code == 200, first.text
    assert "response.completed" in first.text

    # SQLite: one decision worker (several share state through PostgreSQL) and the access-log receivers.
    assert "ext_proc: 1 decision worker(s), 2 access-log receivers" in up.log()
    # Kill the decision worker: the supervisor reports it, restarts it, and traffic recovers.
    (extproc_pid,) = up.pids("extproc-1")
    os.kill(extproc_pid, signal.SIGKILL)
    wait_until(lambda: "extproc-1 is ready again after restart" in up.log(), timeout=60, what="extproc restart")
    assert re.search(r"extproc-1 exited with code -9", up.log())
    wait_until(lambda: up.respond().status_code == 200, timeout=30, what="traffic after the ext_proc restart")

    # SIGTERM the supervisor only (its children lead their own process groups): all of them must go.
    children = up.pids()
    assert up.process.proc is not None
    up.process.proc.send_signal(signal.SIGTERM)
    up.process.proc.wait(30)
    assert up.process.proc.returncode == 0, up.log()
    assert "all processes stopped" in up.log()
    survivors = [pid for pid in children if group_alive(pid)]
    assert not survivors, f"children still running: {survivors}"
