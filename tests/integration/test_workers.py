"""`pooler up` with several ext_proc decision workers and two access-log receivers, on PostgreSQL: under
steady streaming load a worker SIGTERMed, a worker SIGKILLed and a SIGHUP rolling restart (every worker and the
receiver replaced one at a time) cost no client a failed request, and every completed request has its row."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from pooler.audit import SYSTEM
from pooler.demo import DEMO_ACCOUNTS, DEMO_POOL
from pooler.migrate import upgrade
from pooler.models import RequestLog
from pooler.services.pools import update_pool_settings
from pooler.settings import set_setting
from pooler.simulator.client import SimulatorClient
from tests.support.databases import psycopg_url, throwaway_postgres_database
from tests.support.pooler_up import SMALL_BODY, PoolerUp, pooler_up_demo
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

CONCURRENCY = 8
WORKERS = 2


@contextmanager
def pooler_up_with_workers(tmp_path: Path, workers: int) -> Iterator[PoolerUp]:
    # A database of its own: the demo seed rewrites the upstream URL setting, which other modules' gateways read.
    with throwaway_postgres_database("pooler_workers") as url:
        upgrade(url)
        engine = create_engine(psycopg_url(url))
        with Session(engine) as session, session.begin():
            # A fixed count whatever the machine's core count (the default is one per core).
            set_setting(session, "extproc_workers", workers, actor=SYSTEM)
        engine.dispose()
        with pooler_up_demo(tmp_path, database_url=url) as running:
            # Thousands of turns: no simulated quota window may fill meanwhile (a 429 is not what is tested).
            simulator = SimulatorClient(running.simulator_url)
            for account in DEMO_ACCOUNTS:
                simulator.upsert_account(account, primary_budget=10**15, secondary_budget=10**15)
            # Streaming turns that take a while, as Codex's do (the simulator answers at once otherwise: a flood of
            # ~300 turns/s, where a receiver's drain races Envoy's 64 KiB buffer flushes, docs/OPERATIONS.md).
            simulator.add_fault("delay", seconds=0.2, count=None)
            yield running


@pytest.fixture
def up(tmp_path: Path) -> Iterator[PoolerUp]:
    with pooler_up_with_workers(tmp_path, WORKERS) as running:
        yield running


class Load:
    """CONCURRENCY clients streaming /responses back to back until stopped; every outcome kept."""

    def __init__(self, up: PoolerUp) -> None:
        self.up = up
        self.completed = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CONCURRENCY)]

    def _client(self) -> None:
        headers = {"Authorization": f"Bearer {self.up.key}", "Accept": "text/event-stream"}
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    with client.stream(
                        "POST", f"{self.up.codex_base_url}/responses", json=SMALL_BODY, headers=headers
                    ) as resp:
                        body = "".join(resp.iter_text())
                    ok = resp.status_code == 200 and "response.completed" in body
                    outcome = None if ok else f"{resp.status_code} {body[:200]}"
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if outcome is None:
                        self.completed += 1
                    else:
                        self.failures.append(outcome)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def wait_more(self, count: int, what: str) -> None:
        target = self.completed + count
        wait_until(lambda: self.completed >= target or self.failures, timeout=60, what=what)
        assert not self.failures, self.failures[:5]


def _pid(up: PoolerUp, name: str) -> int:
    return up.pids(name)[-1]  # the latest start of that child


def _rows(up: PoolerUp, since: dt.datetime) -> int:
    """Request-log rows of the requests started since `since` (the load's: nothing else runs meanwhile)."""
    engine = create_engine(psycopg_url(up.database_url))
    query = select(func.count()).select_from(RequestLog)
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(query.where(RequestLog.route_family == "responses", RequestLog.created_at >= since)) or 0
            )
    finally:
        engine.dispose()


def _rolling_restart(up: PoolerUp, load: Load) -> None:
    """SIGHUP to `pooler up`, until it reports the rolling restart done, and traffic flowing after it."""
    assert up.process.proc is not None
    up.process.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "rolling restart done" in up.log(), timeout=90, what="rolling restart")
    load.wait_more(25, "traffic after the rolling restart")


def _assert_every_completed_request_logged(up: PoolerUp, load: Load, since: dt.datetime) -> None:
    assert not load.failures, load.failures[:5]
    wait_until(lambda: _rows(up, since) >= load.completed, timeout=20, what="request-log rows")
    assert _rows(up, since) == load.completed


def _without_stream_cap(up: PoolerUp) -> None:
    engine = create_engine(psycopg_url(up.database_url))
    try:
        with Session(engine) as session, session.begin():
            update_pool_settings(session, DEMO_POOL, actor=SYSTEM, max_concurrency_per_account=None)
    finally:
        engine.dispose()
    # The settings change bumps the routing version: wait until the worker serves with it.
    wait_until(lambda: up.respond().status_code == 200, timeout=30, what="traffic after the pool change")


def test_worker_stops_crashes_and_rolling_restart_cost_no_request_and_no_row(up: PoolerUp) -> None:
    assert f"ext_proc: {WORKERS} decision worker(s)" in up.log()
    since = dt.datetime.now(dt.UTC)
    with Load(up) as load:
        load.wait_more(25, "traffic flowing")

        os.kill(_pid(up, "extproc-1"), signal.SIGTERM)  # drains: health check takes it out first
        wait_until(lambda: "extproc-1 is ready again after restart" in up.log(), timeout=60, what="worker 1 back")
        load.wait_more(25, "traffic after the SIGTERM")

        os.kill(_pid(up, "extproc-2"), signal.SIGKILL)  # no drain at all
        wait_until(lambda: "extproc-2 is ready again after restart" in up.log(), timeout=60, what="worker 2 back")
        load.wait_more(25, "traffic after the SIGKILL")

        _rolling_restart(up, load)

    replaced = re.findall(r"(\S+) now runs as pid", up.log())
    assert sorted(replaced) == ["accesslog-1", "accesslog-2", "extproc-1", "extproc-2"], replaced
    _assert_every_completed_request_logged(up, load, since)


def test_a_single_worker_restarts_on_sighup_without_refusing_a_request(tmp_path: Path) -> None:
    """One worker: its replacement starts in the free slot and takes traffic before the old one drains."""
    with pooler_up_with_workers(tmp_path, 1) as up:
        assert "ext_proc: 1 decision worker(s)" in up.log()
        # No stream cap for this test: one worker enforces it on counts that include streams ended within the
        # last second (docs/ARCHITECTURE.md), which back-to-back short simulator turns at c=8 exceed.
        _without_stream_cap(up)
        old = _pid(up, "extproc-1")
        since = dt.datetime.now(dt.UTC)
        with Load(up) as load:
            load.wait_more(25, "traffic flowing")
            _rolling_restart(up, load)
        assert re.search(rf"extproc-1 now runs as pid (?!{old}\b)\d+", up.log()), up.log()[-2000:]
        _assert_every_completed_request_logged(up, load, since)
