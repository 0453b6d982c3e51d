"""Reads the database into the plain-data `AlertSnapshot` the rules judge (queries only, no writes)."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from pooler.alerts.rules import AlertSnapshot, CacheShare, JobHealth, KeyBudgetUse, KeyErrors, PoolState, Thresholds
from pooler.gateway.budgets import load_budget_book
from pooler.models import AccountSecret, JobRun, Pool, PoolAssignment, PoolKey, RequestLog, UpstreamAccount
from pooler.readiness import AccountFacts, AssignmentFacts, WindowFacts, account_readiness, window_name
from pooler.services.cache_health import cache_shares
from pooler.states import AccountState, AssignmentStatus, SecretKind

JOB_HISTORY = 50
"""Finished runs read per job; a streak longer than this is reported as this long."""


def pool_states(session: Session, th: Thresholds, now: dt.datetime) -> tuple[list[PoolState], int]:
    pools = list(session.scalars(select(Pool).order_by(Pool.id)))
    accounts = {
        a.id: a
        for a in session.scalars(
            select(UpstreamAccount)
            .where(UpstreamAccount.deleted_at.is_(None), UpstreamAccount.state != AccountState.DELETED)
            .options(selectinload(UpstreamAccount.quota_windows))
        )
    }
    with_refresh = set(
        session.scalars(select(AccountSecret.account_id).where(AccountSecret.kind == SecretKind.REFRESH_TOKEN))
    )
    by_pool: dict[int, list[PoolAssignment]] = defaultdict(list)
    assigned: set[int] = set()
    for assignment in session.scalars(select(PoolAssignment)):
        if assignment.account_id in accounts:
            by_pool[assignment.pool_id].append(assignment)
            assigned.add(assignment.account_id)
    states = []
    for pool in pools:
        settings = pool.settings
        primary_cap = settings.primary_cap_percent if settings else 100.0
        secondary_cap = settings.secondary_cap_percent if settings else 100.0
        routable = 0
        categories: Counter[str] = Counter()
        by_state: Counter[str] = Counter()
        over: Counter[str] = Counter()
        for assignment in by_pool.get(pool.id, []):
            account = accounts[assignment.account_id]
            windows = [
                WindowFacts(w.window_minutes, w.used_percent, w.resets_at, w.observed_at) for w in account.quota_windows
            ]
            facts = AccountFacts(
                state=account.state,
                state_reason=account.state_reason,
                # Only this pool's assignment: routability is judged per pool.
                assignments=(AssignmentFacts(pool.name, assignment.status, pool.status),),
                windows=windows,
                demoted_until=account.demoted_until,
                access_token_expires_at=account.access_token_expires_at,
                has_refresh_token=account.id in with_refresh,
                primary_cap_percent=primary_cap,
                secondary_cap_percent=secondary_cap,
            )
            readiness = account_readiness(facts, now)
            by_state[account.state] += 1
            if readiness.routable:
                routable += 1
            else:
                categories[readiness.category] += 1
            if assignment.status != AssignmentStatus.ACTIVE:
                continue
            names = {
                window_name(w.window_minutes)
                for w in windows
                if w.used_percent >= th.quota_percent and (w.resets_at is None or w.resets_at > now)
            }
            over.update(names)
        states.append(
            PoolState(
                pool_id=pool.id,
                label=pool.label,
                status=pool.status,
                accounts=len(by_pool.get(pool.id, [])),
                routable=routable,
                by_category=dict(categories),
                by_state=dict(by_state),
                windows_over=dict(over),
            )
        )
    unassigned_reauth = sum(
        1 for a in accounts.values() if a.id not in assigned and a.state == AccountState.REAUTH_REQUIRED
    )
    return states, unassigned_reauth


def _key_errors(session: Session, th: Thresholds, now: dt.datetime) -> list[KeyErrors]:
    since = now - th.key_error_window
    rows = session.execute(
        select(RequestLog.key_prefix, RequestLog.status_code, func.count())
        .where(RequestLog.created_at >= since, RequestLog.status_code.in_((401, 403)))
        .group_by(RequestLog.key_prefix, RequestLog.status_code)
    ).all()
    counts: dict[str | None, Counter[int]] = defaultdict(Counter)
    for prefix, status, count in rows:
        counts[prefix][int(status)] += int(count)
    prefixes = [p for p in counts if p is not None]
    labels: dict[str, str] = {}
    if prefixes:
        labels = {
            prefix: label
            for prefix, label in session.execute(
                select(PoolKey.prefix, Pool.label)
                .join(Pool, Pool.id == PoolKey.pool_id)
                .where(PoolKey.prefix.in_(prefixes))
            )
        }
    return [
        KeyErrors(prefix, labels.get(prefix) if prefix else None, c[401], c[403])
        for prefix, c in sorted(counts.items(), key=lambda kv: kv[0] or "")
    ]


def _jobs(session: Session) -> list[JobHealth]:
    out = []
    for job_id in session.scalars(select(JobRun.job_id).distinct().order_by(JobRun.job_id)):
        runs = session.scalars(
            select(JobRun)
            .where(JobRun.job_id == job_id, JobRun.outcome != "running")
            .order_by(JobRun.slot.desc())
            .limit(JOB_HISTORY)
        ).all()
        streak = 0
        for run in runs:
            if run.outcome != "failed":
                break
            streak += 1
        last = runs[0] if streak else None
        out.append(JobHealth(job_id, streak, last.error_code if last else None, last.finished_at if last else None))
    return out


def _budgets(session: Session, now: dt.datetime) -> list[KeyBudgetUse]:
    """Budgets whose soft or hard limit is reached now (the request logs, as the gateway reconciles them)."""
    book = load_budget_book(session, now)
    labels = dict(session.execute(select(PoolKey.prefix, Pool.label).join(Pool, Pool.id == PoolKey.pool_id)).all())
    out = []
    for prefix, key_states in book.key_states(now.timestamp()).items():
        for state in key_states:
            if state.exceeded or state.soft_reached:
                b = state.budget
                out.append(
                    KeyBudgetUse(
                        prefix,
                        labels.get(prefix),
                        b.period.value,
                        b.unit.value,
                        state.used,
                        b.soft,
                        b.hard,
                        dt.datetime.fromtimestamp(state.resets_at, dt.UTC),
                    )
                )
    return out


def load_alert_snapshot(
    session: Session, th: Thresholds, now: dt.datetime, cache: Sequence[CacheShare] | None = None
) -> AlertSnapshot:
    """`cache`: the pools' cache facts when the caller already has them (a day of request logs is aggregated for
    them: the admin reuses one result for a minute instead of paying it on every page load)."""
    pools, unassigned_reauth = pool_states(session, th, now)
    return AlertSnapshot(
        now=now,
        pools=pools,
        unassigned_reauth=unassigned_reauth,
        key_errors=_key_errors(session, th, now),
        jobs=_jobs(session),
        cache=cache_shares(session, now) if cache is None else cache,
        budgets=_budgets(session, now),
    )
