"""Two scheduler processes: exactly one leads; kill it and the other leads within seconds; no slot runs twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pooler.db import make_engine
from pooler.migrate import upgrade
from tests.support.databases import psycopg_url, throwaway_postgres_database
from tests.support.processes import ManagedProcess, wait_until
from tests.support.scheduler_process import (
    duplicate_slots,
    keyring_env,
    leads,
    runner_of,
    runs_by,
    start_scheduler,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgres", "sqlite"])
def scheduler_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A private, migrated database: the schedulers' jobs must see no other test's rows."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pooler.db'}"
        upgrade(url)
        yield url
        return
    with throwaway_postgres_database("pooler_sched") as url:
        upgrade(url)
        yield url


def test_one_leader_and_fast_failover(scheduler_db: str, tmp_path: Path) -> None:
    engine: Engine = make_engine(psycopg_url(scheduler_db) if scheduler_db.startswith("postgresql") else scheduler_db)
    env = keyring_env()
    procs: list[ManagedProcess] = []
    try:
        procs = [start_scheduler(f"sched-{i}", scheduler_db, tmp_path, env) for i in range(2)]
        wait_until(lambda: sum(leads(p) for p in procs) == 1, timeout=10, what="one leader")
        leader = next(p for p in procs if leads(p))
        standby = next(p for p in procs if p is not leader)
        wait_until(lambda: runs_by(engine, runner_of(leader)) >= 4, timeout=15, what="leader runs jobs")
        assert runs_by(engine, runner_of(standby)) == 0, "the standby ran a job while the leader lived"

        leader.kill()  # SIGKILL: no clean release, the lock must go with the process
        killed_at = time.monotonic()
        wait_until(lambda: runs_by(engine, runner_of(standby)) >= 1, timeout=10, what="standby takes over")
        assert time.monotonic() - killed_at < 10
        assert leads(standby)
        wait_until(lambda: runs_by(engine, runner_of(standby)) >= 3, timeout=10, what="jobs continue")
        assert duplicate_slots(engine) == []
    finally:
        for p in procs:
            p.stop()
        engine.dispose()
    for p in procs:
        assert "Traceback" not in p.log_text(), p.log_text()
