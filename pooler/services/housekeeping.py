"""Job `housekeeping`: request-log retention, expired sticky sessions, stale refresh leases, finished OAuth flows,
expired invites and job runs whose runner died."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from pooler import audit, lifecycle
from pooler.audit import Actor
from pooler.models import JobRun, OAuthFlow, OAuthInvite, RequestLog, StickySession, UpstreamAccount
from pooler.services.jobs import LifecycleSettings, load_settings
from pooler.states import AccountState, ActorType, FlowStatus, InviteStatus

BATCH = 5000
"""Rows deleted per transaction, so retention never holds a long write lock (SQLite has one writer)."""

OAUTH_FLOW_RETENTION = dt.timedelta(days=1)
"""Finished flows are kept a day so an operator can still see why a sign-in failed; then they are only clutter
(a pending-but-expired flow also still holds its sealed PKCE verifier/device ids, useless after expiry)."""


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
                    actor=Actor(ActorType.SCHEDULER, "scheduler"),
                    reason="stale_lease",
                    now=now,
                )
            released += 1
    return released


def purge_oauth_flows(factory: sessionmaker[Session], now: dt.datetime) -> int:
    """Deletes flows finished (completed/failed/expired) more than a day ago, and pending flows expired as long."""
    cutoff = now - OAUTH_FLOW_RETENTION
    with factory.begin() as session:
        result = session.execute(
            delete(OAuthFlow)
            .where(
                or_(
                    and_(
                        OAuthFlow.status != FlowStatus.PENDING,
                        func.coalesce(OAuthFlow.finished_at, OAuthFlow.created_at) < cutoff,
                    ),
                    and_(OAuthFlow.status == FlowStatus.PENDING, OAuthFlow.expires_at < cutoff),
                )
            )
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def expire_invites(factory: sessionmaker[Session], now: dt.datetime) -> int:
    """Marks pending invites past their expiry `expired`, so the stored status (lists, exports, queries) agrees
    with the effective one the pages already show. Their links already stopped working at expiry."""
    with factory.begin() as session:
        # Row locks (PostgreSQL): an invitee completing at this moment either commits first (no longer pending,
        # not selected) or waits and then sees `expired` (its completion re-checks the invite).
        expired = session.scalars(
            select(OAuthInvite)
            .where(OAuthInvite.status == InviteStatus.PENDING, OAuthInvite.expires_at <= now)
            .with_for_update()
        ).all()
        for invite in expired:
            invite.status = InviteStatus.EXPIRED
            audit.record(
                session,
                Actor(ActorType.SCHEDULER, "scheduler"),
                action="invite.expire",
                target_type="invite",
                target_id=invite.id,
                target_label=invite.label,
            )
        return len(expired)


ABANDONED_AFTER = dt.timedelta(hours=1)
"""A job run still `running` after this is taken as dead (its runner crashed or lost the database before
finish_run). Generous: every job here finishes in seconds to minutes; a live slow run that still finishes later
overwrites this with its real outcome (finish_run updates by id)."""


def abandon_stale_runs(factory: sessionmaker[Session], now: dt.datetime) -> int:
    """Marks `running` job runs older than ABANDONED_AFTER as `failed` / `abandoned`, so `pooler jobs`, the metrics
    and the `job_failing` alert see the failure instead of a run that looks in progress forever."""
    with factory.begin() as session:
        result = session.execute(
            update(JobRun)
            .where(JobRun.outcome == "running", JobRun.started_at < now - ABANDONED_AFTER)
            .values(outcome="failed", error_code="abandoned", finished_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def run(factory: sessionmaker[Session], now: dt.datetime, settings: LifecycleSettings | None = None) -> dict[str, int]:
    if settings is None:
        with factory() as session:
            settings = load_settings(session)
    return {
        "request_logs_deleted": purge_request_logs(factory, now - settings.request_log_retention),
        "sticky_sessions_deleted": purge_sticky_sessions(factory, now),
        "leases_released": release_stale_leases(factory, now),
        "oauth_flows_deleted": purge_oauth_flows(factory, now),
        "invites_expired": expire_invites(factory, now),
        "job_runs_abandoned": abandon_stale_runs(factory, now),
    }
