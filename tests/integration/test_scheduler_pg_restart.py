"""The scheduler survives a PostgreSQL restart: it stops running jobs while the server is down, re-takes the
advisory lock when it is back, and jobs continue. Uses a cluster of the test's own, so it can be restarted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import text

from pooler.db import make_engine
from pooler.migrate import upgrade
from tests.support.databases import psycopg_url
from tests.support.postgres_cluster import postgres_cluster
from tests.support.processes import wait_until
from tests.support.scheduler_process import duplicate_slots, keyring_env, leads, runner_of, start_scheduler

pytestmark = pytest.mark.integration


def test_scheduler_continues_after_postgres_restart(tmp_path: Path) -> None:
    with postgres_cluster() as cluster:
        url = cluster.url
        upgrade(url)
        engine = make_engine(psycopg_url(url), pool_pre_ping=True)

        def runs_since(since: dt.datetime) -> int:
            with engine.connect() as conn:
                query = text("SELECT count(*) FROM job_runs WHERE started_at > :t AND outcome <> 'running'")
                return int(conn.execute(query, {"t": since}).scalar_one())

        sched = start_scheduler("sched-restart", url, tmp_path, keyring_env())
        try:
            wait_until(lambda: leads(sched), timeout=10, what="leader")
            wait_until(lambda: runs_since(dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) >= 2, timeout=15, what="jobs")
            engine.dispose()
            cluster.stop()
            wait_until(lambda: not leads(sched), timeout=10, what="leadership dropped with the connection")
            cluster.start()
            restarted = dt.datetime.now(dt.UTC)
            wait_until(lambda: leads(sched), timeout=15, what="leadership re-acquired")
            wait_until(lambda: runs_since(restarted) >= 3, timeout=20, what="jobs after the restart")
            assert sched.alive()
            assert duplicate_slots(engine) == []
            with engine.connect() as conn:
                runners = {r[0] for r in conn.execute(text("SELECT DISTINCT runner FROM job_runs"))}
            assert runners == {runner_of(sched)}
        finally:
            sched.stop()
            engine.dispose()
        assert "Traceback" not in sched.log_text(), sched.log_text()
