"""`pooler up` with several ext_proc decision workers and two access-log receivers, on PostgreSQL: under
steady streaming load a worker SIGTERMed, a worker SIGKILLed and a SIGHUP rolling restart (every worker and
receiver replaced one at a time, then Envoy hot-restarted) cost no client a failed request, and every completed
request has its row."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pooler.simulator.client import SimulatorClient
from tests.support.pooler_up import (
    Load,
    PoolerUp,
    assert_every_completed_request_logged,
    latest_pid,
    pooler_up_with_workers,
    rolling_restart,
    without_stream_cap,
)
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

WORKERS = 2


@pytest.fixture
def up(tmp_path: Path) -> Iterator[PoolerUp]:
    with pooler_up_with_workers(tmp_path, WORKERS) as running:
        yield running


def test_worker_stops_crashes_and_rolling_restart_cost_no_request_and_no_row(up: PoolerUp) -> None:
    assert f"ext_proc: {WORKERS} decision worker(s)" in up.log()
    since = dt.datetime.now(dt.UTC)
    with Load(up) as load:
        load.wait_more(25, "traffic flowing")

        os.kill(latest_pid(up, "extproc-1"), signal.SIGTERM)  # drains: health check takes it out first
        wait_until(lambda: "extproc-1 is ready again after restart" in up.log(), timeout=60, what="worker 1 back")
        load.wait_more(25, "traffic after the SIGTERM")

        os.kill(latest_pid(up, "extproc-2"), signal.SIGKILL)  # no drain at all
        wait_until(lambda: "extproc-2 is ready again after restart" in up.log(), timeout=60, what="worker 2 back")
        load.wait_more(25, "traffic after the SIGKILL")

        rolling_restart(up, load)

    replaced = re.findall(r"(\S+) now runs as pid", up.log())
    assert sorted(replaced) == ["accesslog-1", "accesslog-2", "envoy", "extproc-1", "extproc-2"], replaced
    assert_every_completed_request_logged(up, load, since)


def test_a_single_worker_restarts_on_sighup_without_refusing_a_request(tmp_path: Path) -> None:
    """One worker: its replacement starts in the free slot and takes traffic before the old one drains."""
    with pooler_up_with_workers(tmp_path, 1) as up:
        assert "ext_proc: 1 decision worker(s)" in up.log()
        # No stream cap for this test: one worker enforces it on counts that include streams ended within the
        # last second (docs/ARCHITECTURE.md), which back-to-back short simulator turns at c=8 exceed.
        without_stream_cap(up)
        old = latest_pid(up, "extproc-1")
        since = dt.datetime.now(dt.UTC)
        with Load(up) as load:
            load.wait_more(25, "traffic flowing")
            rolling_restart(up, load)
        assert re.search(rf"extproc-1 now runs as pid (?!{old}\b)\d+", up.log()), up.log()[-2000:]
        assert_every_completed_request_logged(up, load, since)


def test_a_worker_killed_while_holding_turns_for_their_first_event_fails_none(up: PoolerUp) -> None:
    """The responses route's ext_proc fails open (behind the decision guard): turns a worker was holding for their
    first event when it was SIGKILLed go on as they are. Failing closed, Envoy answered them 503
    gateway_unavailable (it does not retry an upstream filter's local reply)."""
    simulator = SimulatorClient(up.simulator_url)
    simulator.clear_faults()
    # Every turn pauses 1 s after response.created/in_progress: held that long (the hold deadline is 1.5 s).
    simulator.add_fault("slow_start", seconds=1.0, count=None)
    since = dt.datetime.now(dt.UTC)
    with Load(up) as load:
        load.wait_more(8, "held turns completing")
        assert sum(simulator.streams()["open"].values()) > 0, "turns in flight (held) at the kill"
        os.kill(latest_pid(up, "extproc-1"), signal.SIGKILL)
        wait_until(lambda: "extproc-1 is ready again after restart" in up.log(), timeout=60, what="worker 1 back")
        load.wait_more(16, "traffic after the SIGKILL")
    assert_every_completed_request_logged(up, load, since)
