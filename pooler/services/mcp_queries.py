"""Read-only queries behind the MCP tools. Each returns plain JSON-able data and never secrets.

What is left out on purpose: tokens and sealed secrets, Pool key hashes, account emails and ChatGPT
account/user ids (operators identify accounts by label and numeric id), request bodies (never stored),
and audit `details` (raw change data stays in the admin). Timestamps are ISO 8601 UTC strings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pooler.alerts.rules import Thresholds
from pooler.alerts.snapshot import pool_states
from pooler.errors import NotFoundError
from pooler.models import (
    AlertIncident,
    AuditEvent,
    JobRun,
    Pool,
    PoolKey,
    RequestLog,
    utcnow,
)
from pooler.readiness import window_name
from pooler.services import views
from pooler.settings import get_setting
from pooler.versions import routing_version

MAX_ROWS = 200
Json = dict[str, Any]


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _limit(limit: int) -> int:
    return max(1, min(MAX_ROWS, int(limit)))


def _pool(session: Session, ref: str | int) -> Pool:
    text = str(ref)
    pool = session.get(Pool, int(text)) if text.isdigit() else None
    pool = pool or session.scalar(select(Pool).where(Pool.name == text))
    if pool is None:
        raise NotFoundError(f"no pool {text!r}")
    return pool


def list_pools(session: Session, now: dt.datetime | None = None) -> list[Json]:
    # Account counts as the alerts judge them (routable = the selection policy's verdict), keys of every status.
    states = {s.pool_id: s for s in pool_states(session, Thresholds(), now or utcnow())[0]}
    out = []
    for row in views.pool_rows(session):
        state = states.get(row.id)
        out.append(
            {
                "id": row.id,
                "name": row.name,
                "label": row.label,
                "status": row.status,
                "strategy": row.strategy,
                "accounts": state.accounts if state else 0,
                "routable_accounts": state.routable if state else 0,
                "not_routable_by_category": dict(state.by_category) if state else {},
                "keys": row.keys,
            }
        )
    return out


def get_pool(session: Session, ref: str | int, now: dt.datetime | None = None) -> Json:
    pool = _pool(session, ref)
    summary = next(p for p in list_pools(session, now) if p["id"] == pool.id)
    s = pool.settings
    summary["settings"] = (
        {
            "strategy": s.strategy,
            "sticky_ttl_seconds": s.sticky_ttl_seconds,
            "max_attempts": s.max_attempts,
            "primary_cap_percent": s.primary_cap_percent,
            "secondary_cap_percent": s.secondary_cap_percent,
            "allowed_models": s.allowed_models,
            "max_concurrency_per_account": s.max_concurrency_per_account,
        }
        if s
        else None
    )
    summary["assignments"] = [
        {
            "account_id": a.account_id,
            "label": a.label,
            "state": a.state,
            "priority": a.priority,
            "status": a.assignment_status,
        }
        for a in views.assignment_rows(session, pool.id, include_deleted=True)
    ]
    summary["key_prefixes"] = views.key_prefixes(session, pool.id)
    return summary


def _account(a: views.AccountRow) -> Json:
    return {
        "id": a.id,
        "label": a.label,
        "plan_type": a.plan_type,
        "state": a.state,
        "state_reason": a.state_reason,
        "state_changed_at": _iso(a.state_changed_at),
        "access_token_expires_at": _iso(a.access_token_expires_at),
        "last_refresh_at": _iso(a.last_refresh_at),
        "demoted_until": _iso(a.demoted_until),
        "pools": list(a.pools),
        "quota_windows": [
            {
                "window": window_name(w.window_minutes),
                "window_minutes": w.window_minutes,
                "limit_family": w.limit_family,
                "used_percent": w.used_percent,
                "resets_at": _iso(w.resets_at),
                "observed_at": _iso(w.observed_at),
                "source": w.source,
            }
            for w in a.windows
        ],
    }


def list_accounts(session: Session, pool: str | None = None, state: str | None = None) -> list[Json]:
    pool_id = None if pool is None else _pool(session, pool).id
    return [_account(a) for a in views.account_rows(session, pool_id=pool_id, state=state)]


def get_account(session: Session, account_id: int) -> Json:
    row = views.find_account_row(session, int(account_id))
    if row is None:
        raise NotFoundError(f"no account #{account_id}")
    return _account(row)


def list_keys(session: Session, pool: str | None = None) -> list[Json]:
    query = select(PoolKey, Pool.name).join(Pool, Pool.id == PoolKey.pool_id).order_by(PoolKey.prefix)
    if pool is not None:
        query = query.where(PoolKey.pool_id == _pool(session, pool).id)
    return [
        {
            "prefix": k.prefix,
            "label": k.label,
            "pool": pool_name,
            "status": k.status,
            "expires_at": _iso(k.expires_at),
            "requests_per_minute": k.requests_per_minute,
            "tokens_per_day": k.tokens_per_day,
            "allowed_models": k.allowed_models,
            "created_at": _iso(k.created_at),
            "rotated_at": _iso(k.rotated_at),
            "revoked_at": _iso(k.revoked_at),
            "last_used_at": _iso(k.last_used_at),
        }
        for k, pool_name in session.execute(query)
    ]


def list_request_logs(
    session: Session,
    *,
    pool: str | None = None,
    key_prefix: str | None = None,
    status_class: int | None = None,
    limit: int = 50,
) -> list[Json]:
    """Newest first. `status_class` 2, 4 or 5 selects 2xx, 4xx or 5xx."""
    names = views.pool_names(session)
    labels = views.account_labels(session)
    query = select(RequestLog).order_by(RequestLog.created_at.desc(), RequestLog.id.desc()).limit(_limit(limit))
    if pool is not None:
        query = query.where(RequestLog.pool_id == _pool(session, pool).id)
    if key_prefix is not None:
        query = query.where(RequestLog.key_prefix == key_prefix)
    if status_class is not None:
        base = int(status_class) * 100
        query = query.where(RequestLog.status_code >= base, RequestLog.status_code < base + 100)
    return [
        {
            "id": r.id,
            "created_at": _iso(r.created_at),
            "pool": names.get(r.pool_id) if r.pool_id else None,
            "key_prefix": r.key_prefix,
            "account": labels.get(r.account_id) if r.account_id else None,
            "route_family": r.route_family,
            "method": r.method,
            "model": r.model,
            "status_code": r.status_code,
            "attempt_count": r.attempt_count,
            "error_code": r.error_code,
            "ttfb_ms": r.ttfb_ms,
            "duration_ms": r.duration_ms,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "total_tokens": r.total_tokens,
        }
        for r in session.scalars(query)
    ]


def list_audit_events(session: Session, *, action: str | None = None, limit: int = 50) -> list[Json]:
    query = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(_limit(limit))
    if action is not None:
        query = query.where(AuditEvent.action.startswith(action))
    return [
        {
            "id": e.id,
            "created_at": _iso(e.created_at),
            "actor_type": e.actor_type,
            "actor": e.actor_label,
            "action": e.action,
            "target_type": e.target_type,
            "target": e.target_label,
            "outcome": e.outcome,
        }
        for e in session.scalars(query)
    ]


def service_status(session: Session, now: dt.datetime | None = None) -> Json:
    now = now or utcnow()
    accounts = views.account_state_counts(session)
    keys = views.key_status_counts(session)
    jobs: dict[str, Json] = {}
    latest = (
        select(JobRun.job_id, func.max(JobRun.slot).label("slot"))
        .where(JobRun.outcome != "running")
        .group_by(JobRun.job_id)
        .subquery()
    )
    for run in session.scalars(
        select(JobRun).join(latest, (JobRun.job_id == latest.c.job_id) & (JobRun.slot == latest.c.slot))
    ):
        jobs[run.job_id] = {"outcome": run.outcome, "finished_at": _iso(run.finished_at), "error_code": run.error_code}
    incidents = [
        {"id": i.id, "rule": i.rule, "severity": i.severity, "title": i.title, "opened_at": _iso(i.opened_at)}
        for i in session.scalars(
            select(AlertIncident).where(AlertIncident.status == "open").order_by(AlertIncident.opened_at)
        )
    ]
    pools = list_pools(session, now)
    return {
        "time": _iso(now),
        "database": session.get_bind().dialect.name,
        "routing_version": routing_version(session),
        "pools": {
            "total": len(pools),
            "active": sum(1 for p in pools if p["status"] == "active"),
            "without_routable_account": [
                p["name"] for p in pools if p["status"] == "active" and not p["routable_accounts"]
            ],
        },
        "accounts_by_state": dict(sorted(accounts.items())),
        "keys_by_status": dict(sorted(keys.items())),
        "last_job_runs": dict(sorted(jobs.items())),
        "open_incidents": incidents,
        "mcp_enabled": bool(get_setting(session, "mcp_enabled")),
    }
