"""Job `housekeeping`: request-log retention, expired sticky sessions and stale refresh leases."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from pooler import lifecycle
from pooler.models import RequestLog, StickySession, UpstreamAccount
from pooler.services.jobs import LifecycleSettings, load_settings
from pooler.states import AccountState, ActorType

BATCH = 5000
"""Rows deleted per transaction, so retention never holds a long write lock (SQLite has one writer)."""


def purge_request_logs(factory: sessionmaker[Session], before: dt.datetime) -> int:
    total = 0
    while True:
        with factory.begin() as session:
            ids = list(session.scalars(select(RequestLog.id).where(RequestLog.created_at < before).limit(BATCH)))
            if not ids:
                return total
            # Attempts go with their log row (ON DELETE CASCADE; the ORM cascade is bypassed by bulk delete).
            session.execute(delete(RequestLog).where(RequestLog.id.in_(ids)))
            total += len(ids)


def purge_sticky_sessions(factory: sessionmaker[Session], now: dt.datetime) -> int:
    with factory.begin() as session:
        result = session.execute(delete(StickySession).where(StickySession.expires_at < now))
        return int(getattr(result, "rowcount", 0) or 0)


def release_stale_leases(factory: sessionmaker[Session], now: dt.datetime) -> int:
    """Frees refresh leases whose holder died; a `refreshing` account goes back to `refresh_due`."""
    released = 0
    with factory.begin() as session:
        stale = session.scalars(
            select(UpstreamAccount).where(
                UpstreamAccount.refresh_lease_owner.is_not(None), UpstreamAccount.refresh_lease_until < now
            )
        )
        for account in stale:
            account.refresh_lease_owner, account.refresh_lease_until = None, None
            if account.state == AccountState.REFRESHING:
                lifecycle.transition(
                    session,
                    account,
                    AccountState.REFRESH_DUE,
                    actor_type=ActorType.SCHEDULER,
                    actor_label="scheduler",
                    reason="stale_lease",
                    now=now,
                )
            released += 1
    return released


def run(factory: sessionmaker[Session], now: dt.datetime, settings: LifecycleSettings | None = None) -> dict[str, int]:
    if settings is None:
        with factory() as session:
            settings = load_settings(session)
    return {
        "request_logs_deleted": purge_request_logs(factory, now - settings.request_log_retention),
        "sticky_sessions_deleted": purge_sticky_sessions(factory, now),
        "leases_released": release_stale_leases(factory, now),
    }
