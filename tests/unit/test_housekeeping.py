"""Housekeeping and job-run bookkeeping on both backends."""

from __future__ import annotations

import datetime as dt
import logging
import secrets

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
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


def test_a_database_outage_inside_a_job_is_one_line_without_traceback(
    session_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = f"test-{secrets.token_hex(3)}"

    def connection_lost(now: dt.datetime) -> dict[str, int]:
        raise OperationalError("DELETE FROM sticky_sessions", {}, ConnectionError("terminating connection"))

    with caplog.at_level(logging.WARNING, logger="pooler.services.jobs"):
        assert jobs.execute(
            session_factory, job_id, jobs.floor_slot(NOW, dt.timedelta(minutes=1)), connection_lost
        ) == ("failed")
    [record] = [r for r in caplog.records if job_id in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "database unavailable (ConnectionError)" in record.getMessage()
    with session_factory() as s:
        [run] = jobs.recent_runs(s, job_id=job_id)
    assert run.outcome == "failed" and run.error_code == "OperationalError"


def test_floor_slot_is_the_same_grid_everywhere() -> None:
    t = dt.datetime(2026, 1, 1, 12, 0, 59, 900000, tzinfo=dt.UTC)
    assert jobs.floor_slot(t, dt.timedelta(seconds=30)) == dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC)
    assert jobs.floor_slot(t, dt.timedelta(minutes=5)) == dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def _pool(factory: Factory) -> int:
    from pooler.models import Pool, PoolSettings

    with factory.begin() as s:
        # With its settings row, as every pool has one (other tests list every pool of the shared database).
        pool = Pool(name=f"hk-{secrets.token_hex(3)}", label="housekeeping", settings=PoolSettings())
        s.add(pool)
        s.flush()
        return pool.id


def _flow(factory: Factory, pool_id: int, status: str, *, age: dt.timedelta, expires_in: dt.timedelta) -> int:
    from pooler.models import OAuthFlow

    created = NOW - age
    with factory.begin() as s:
        flow = OAuthFlow(
            purpose="link",
            method="device",
            pool_id=pool_id,
            status=status,
            binding_hash=secrets.token_hex(32),
            expires_at=created + expires_in,
            key_id="k1",
            nonce=b"n",
            ciphertext=b"c",
            created_at=created,
            finished_at=None if status == "pending" else created + dt.timedelta(minutes=1),
        )
        s.add(flow)
        s.flush()
        return flow.id


def test_finished_and_long_expired_oauth_flows_are_deleted(session_factory: Factory) -> None:
    from pooler.models import OAuthFlow

    pool_id = _pool(session_factory)
    ttl = dt.timedelta(minutes=15)
    old, recent = dt.timedelta(days=2), dt.timedelta(hours=2)
    gone = [_flow(session_factory, pool_id, status, age=old, expires_in=ttl) for status in ("completed", "failed")]
    gone.append(_flow(session_factory, pool_id, "expired", age=old, expires_in=ttl))
    gone.append(_flow(session_factory, pool_id, "pending", age=old, expires_in=ttl))  # expired, never marked
    kept = [_flow(session_factory, pool_id, status, age=recent, expires_in=ttl) for status in ("completed", "failed")]
    kept.append(_flow(session_factory, pool_id, "pending", age=recent, expires_in=ttl))  # expired < a day ago
    kept.append(_flow(session_factory, pool_id, "pending", age=dt.timedelta(minutes=1), expires_in=ttl))
    counts = housekeeping.run(session_factory, NOW)
    assert counts["oauth_flows_deleted"] >= len(gone)
    with session_factory() as s:
        left = set(s.scalars(select(OAuthFlow.id).where(OAuthFlow.id.in_(gone + kept))))
    assert left == set(kept)


def test_expired_pending_invites_are_marked_expired(session_factory: Factory) -> None:
    from pooler.models import AuditEvent, OAuthInvite

    pool_id = _pool(session_factory)
    rows = {
        "pending-past": ("pending", NOW - dt.timedelta(minutes=1)),
        "pending-future": ("pending", NOW + dt.timedelta(days=1)),
        "accepted-past": ("accepted", NOW - dt.timedelta(days=1)),
        "revoked-past": ("revoked", NOW - dt.timedelta(days=1)),
    }
    ids: dict[str, int] = {}
    with session_factory.begin() as s:
        for label, (status, expires_at) in rows.items():
            invite = OAuthInvite(
                pool_id=pool_id,
                token_hash=secrets.token_hex(32),
                label=label,
                status=status,
                expires_at=expires_at,
                created_at=NOW - dt.timedelta(days=2),
            )
            s.add(invite)
            s.flush()
            ids[label] = invite.id
    counts = housekeeping.run(session_factory, NOW)
    assert counts["invites_expired"] >= 1
    with session_factory() as s:
        statuses = {i.label: i.status for i in s.scalars(select(OAuthInvite).where(OAuthInvite.id.in_(ids.values())))}
        events = s.scalars(
            select(AuditEvent.target_id).where(AuditEvent.action == "invite.expire", AuditEvent.target_type == "invite")
        ).all()
    assert statuses == {
        "pending-past": "expired",
        "pending-future": "pending",
        "accepted-past": "accepted",
        "revoked-past": "revoked",
    }
    assert str(ids["pending-past"]) in {str(e) for e in events}
    assert str(ids["pending-future"]) not in {str(e) for e in events}
    # A second run leaves it alone: one audit event per expiry.
    housekeeping.expire_invites(session_factory, NOW)
    with session_factory() as s:
        again = s.scalars(select(AuditEvent.target_id).where(AuditEvent.action == "invite.expire")).all()
    assert [str(e) for e in again].count(str(ids["pending-past"])) == 1


def test_runs_left_running_by_a_dead_runner_are_marked_abandoned(session_factory: Factory) -> None:
    job_id = f"test-{secrets.token_hex(3)}"
    slot = jobs.floor_slot(NOW, dt.timedelta(minutes=1))
    # Two slots claimed and never finished (the runner died), one of them recently: only the old one is dead.
    dead = jobs.claim_run(session_factory, job_id, slot - dt.timedelta(hours=2), "dead:1")
    alive = jobs.claim_run(session_factory, job_id, slot, "alive:2")
    assert dead is not None and alive is not None
    with session_factory.begin() as s:
        row = s.get(JobRun, dead)
        assert row is not None
        row.started_at = NOW - housekeeping.ABANDONED_AFTER - dt.timedelta(minutes=1)
        row = s.get(JobRun, alive)
        assert row is not None
        row.started_at = NOW - dt.timedelta(minutes=5)
    counts = housekeeping.run(session_factory, NOW)
    assert counts["job_runs_abandoned"] >= 1
    with session_factory() as s:
        runs = {r.id: r for r in s.scalars(select(JobRun).where(JobRun.job_id == job_id))}
    assert (runs[dead].outcome, runs[dead].error_code) == ("failed", "abandoned")
    assert runs[dead].finished_at is not None
    assert (runs[alive].outcome, runs[alive].error_code, runs[alive].finished_at) == ("running", None, None)
    # Finished rows are never touched again: a later run keeps the first finish time.
    housekeeping.abandon_stale_runs(session_factory, NOW + dt.timedelta(minutes=10))
    with session_factory() as s:
        again = s.get(JobRun, dead)
        assert again is not None and again.finished_at == runs[dead].finished_at
