"""Housekeeping and job-run bookkeeping on both backends."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler.models import JobRun, RequestLog, UpstreamAccount
from pooler.services import housekeeping, jobs
from tests.support.lifecycle_fixtures import create_account, make_box, state_events

Factory = sessionmaker[Session]
NOW = dt.datetime.now(dt.UTC)


def test_request_logs_older_than_retention_are_deleted(session_factory: Factory) -> None:
    with session_factory.begin() as s:
        for age_days in (40, 31, 29, 1):
            s.add(
                RequestLog(
                    created_at=NOW - dt.timedelta(days=age_days),
                    request_id=secrets.token_hex(8),
                    route_family="responses",
                    method="POST",
                    status_code=200,
                )
            )
    counts = housekeeping.run(session_factory, NOW)
    assert counts["request_logs_deleted"] >= 2
    with session_factory() as s:
        ages = [(NOW - r).days for r in s.scalars(select(RequestLog.created_at))]
    assert ages and max(ages) < 30


def test_stale_lease_is_released_and_refreshing_goes_back_to_due(session_factory: Factory) -> None:
    account_id = create_account(session_factory, make_box(), state="refreshing")
    with session_factory.begin() as s:
        row = s.get(UpstreamAccount, account_id)
        assert row is not None
        row.refresh_lease_owner, row.refresh_lease_until = "dead:1:x", NOW - dt.timedelta(seconds=1)
    assert housekeeping.release_stale_leases(session_factory, NOW) >= 1
    with session_factory() as s:
        row = s.get(UpstreamAccount, account_id)
        assert row is not None and row.refresh_lease_owner is None and row.state == "refresh_due"
    assert state_events(session_factory, account_id)[-1] == ("refreshing", "refresh_due", "stale_lease")


def test_a_slot_runs_once_and_outcomes_are_recorded(session_factory: Factory) -> None:
    job_id = f"test-{secrets.token_hex(3)}"
    slot = jobs.floor_slot(NOW, dt.timedelta(minutes=1))
    assert jobs.execute(session_factory, job_id, slot, lambda now: {"done": 3}) == "success"
    assert jobs.execute(session_factory, job_id, slot, lambda now: {"done": 3}) is None
    assert jobs.execute(session_factory, job_id, slot + dt.timedelta(minutes=1), lambda now: {"failed": 1}) == "partial"

    def boom(now: dt.datetime) -> dict[str, int]:
        raise RuntimeError("secret upstream text")

    assert jobs.execute(session_factory, job_id, slot + dt.timedelta(minutes=2), boom) == "failed"
    with session_factory() as s:
        runs = jobs.recent_runs(s, job_id=job_id)
        rows = s.scalars(select(JobRun).where(JobRun.job_id == job_id)).all()
    assert len(rows) == 3
    assert [r.outcome for r in runs] == ["failed", "partial", "success"]
    assert runs[0].error_code == "RuntimeError" and runs[2].counts == {"done": 3}
    assert all(r.finished_at is not None and r.runner for r in runs)


def test_floor_slot_is_the_same_grid_everywhere() -> None:
    t = dt.datetime(2026, 1, 1, 12, 0, 59, 900000, tzinfo=dt.UTC)
    assert jobs.floor_slot(t, dt.timedelta(seconds=30)) == dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC)
    assert jobs.floor_slot(t, dt.timedelta(minutes=5)) == dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
