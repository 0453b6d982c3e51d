"""`pooler up` with several ext_proc decision workers and two access-log receivers, on PostgreSQL: under
steady streaming load a worker SIGTERMed, a worker SIGKILLed and a SIGHUP rolling restart (every worker and the
receiver replaced one at a time) cost no client a failed request, and every completed request has its row."""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from pooler.audit import SYSTEM
from pooler.migrate import upgrade
from pooler.models import RequestLog
from pooler.settings import set_setting
from tests.support.databases import psycopg_url, throwaway_postgres_database
from tests.support.pooler_up import SMALL_BODY, PoolerUp, pooler_up_demo
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

CONCURRENCY = 8
WORKERS = 2


@pytest.fixture
def up(tmp_path: Path) -> Iterator[PoolerUp]:
    # A database of its own: the demo seed rewrites the upstream URL setting, which other modules' gateways read.
    with throwaway_postgres_database("pooler_workers") as url:
        upgrade(url)
        engine = create_engine(psycopg_url(url))
        with Session(engine) as session, session.begin():
            # Two workers whatever the machine's core count (the default is one per core).
            set_setting(session, "extproc_workers", WORKERS, actor=SYSTEM)
        engine.dispose()
        with pooler_up_demo(tmp_path, database_url=url) as running:
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


def _rows(up: PoolerUp) -> int:
    engine = create_engine(psycopg_url(up.database_url))
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(select(func.count()).select_from(RequestLog).where(RequestLog.route_family == "responses"))
                or 0
            )
    finally:
        engine.dispose()


def test_worker_stops_crashes_and_rolling_restart_cost_no_request_and_no_row(up: PoolerUp) -> None:
    assert f"ext_proc: {WORKERS} decision worker(s)" in up.log()
    before = _rows(up)
    with Load(up) as load:
        load.wait_more(25, "traffic flowing")

        os.kill(_pid(up, "extproc-1"), signal.SIGTERM)  # drains: health check takes it out first
        wait_until(lambda: "extproc-1 is ready again after restart" in up.log(), timeout=60, what="worker 1 back")
        load.wait_more(25, "traffic after the SIGTERM")

        os.kill(_pid(up, "extproc-2"), signal.SIGKILL)  # no drain at all
        wait_until(lambda: "extproc-2 is ready again after restart" in up.log(), timeout=60, what="worker 2 back")
        load.wait_more(25, "traffic after the SIGKILL")

        assert up.process.proc is not None
        up.process.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "rolling restart done" in up.log(), timeout=90, what="rolling restart")
        load.wait_more(25, "traffic after the rolling restart")

    assert not load.failures, load.failures[:5]
    replaced = re.findall(r"(\S+) now runs as pid", up.log())
    assert sorted(replaced) == ["accesslog-1", "accesslog-2", "extproc-1", "extproc-2"], replaced
    expected = before + load.completed
    wait_until(lambda: _rows(up) >= expected, timeout=20, what="request-log rows")
    assert _rows(up) == expected
