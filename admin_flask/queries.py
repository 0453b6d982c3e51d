"""Read models for the admin pages: account cards, usage aggregates and time series (metadata only).

Time bucketing happens in Python over a bounded window so the same code runs on SQLite and PostgreSQL; the
admin reads at most `MAX_SERIES_ROWS` request rows per chart.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from pooler.attention import Badge, pool_badge
from pooler.models import InflightStreams, Pool, PoolAssignment, RequestLog, UpstreamAccount, utcnow
from pooler.readiness import (
    AccountFacts,
    AssignmentFacts,
    Readiness,
    WindowFacts,
    account_readiness,
    pool_summary,
    window_name,
)
from pooler.services import views
from pooler.settings import get_number, get_setting
from pooler.states import SecretKind
from pooler.timefmt import ZONE

MAX_SERIES_ROWS = 200_000
RECENT_TOKENS = dt.timedelta(hours=1)
INFLIGHT_FRESH = dt.timedelta(seconds=30)
"""An ext_proc replica's in-flight report counts while younger than this (it reports every 5 s; an older one is
of a replica that stopped)."""


@dataclass(frozen=True)
class WindowView:
    name: str
    window_minutes: int
    used_percent: float
    resets_at: dt.datetime | None
    observed_at: dt.datetime
    source: str


@dataclass(frozen=True)
class AccountCard:
    account: UpstreamAccount
    pools: list[tuple[Pool, PoolAssignment]]
    windows: list[WindowView]
    readiness: Readiness
    recent_tokens: int
    recent_requests: int
    streams: int = 0
    """Streams in flight now, summed over the ext_proc replicas' latest reports."""


def windows_of(account: UpstreamAccount) -> list[WindowView]:
    ordered = sorted(account.quota_windows, key=lambda w: (w.window_minutes, w.limit_family))
    return [
        WindowView(
            name=window_name(w.window_minutes) + ("" if w.limit_family == "codex" else f" · {w.limit_family}"),
            window_minutes=w.window_minutes,
            used_percent=w.used_percent,
            resets_at=w.resets_at,
            observed_at=w.observed_at,
            source=w.source,
        )
        for w in ordered
    ]


def readiness_of(
    account: UpstreamAccount, pools: dict[int, Pool], now: dt.datetime, stale_after_seconds: float | None = None
) -> Readiness:
    """The selection policy's verdict over the account's assignments within `pools` (pooler.readiness)."""
    assignments = [
        AssignmentFacts(
            pools[a.pool_id].name,
            a.status,
            pools[a.pool_id].status,
            primary_cap_percent=pools[a.pool_id].settings.primary_cap_percent,
            secondary_cap_percent=pools[a.pool_id].settings.secondary_cap_percent,
        )
        for a in sorted(account.assignments, key=lambda a: (a.priority, a.pool_id))
        if a.pool_id in pools
    ]
    kinds = {s.kind for s in account.secrets}
    facts = AccountFacts(
        state=account.state,
        state_reason=account.state_reason,
        assignments=assignments,
        windows=[
            WindowFacts(w.window_minutes, w.used_percent, w.resets_at, w.observed_at) for w in account.quota_windows
        ],
        demoted_until=account.demoted_until,
        access_token_expires_at=account.access_token_expires_at,
        has_refresh_token=SecretKind.REFRESH_TOKEN in kinds,
        # The snapshot also needs the token to open; a stored one is the best the admin can tell without it.
        has_access_token=SecretKind.ACCESS_TOKEN in kinds,
        refresh_requested=account.refresh_requested_at is not None,
    )
    return account_readiness(facts, now, stale_after_seconds)


def stale_after(session: Session) -> float | None:
    """The gateway's quota evidence staleness bound (the same setting its snapshot reads)."""
    value = get_setting(session, "quota_evidence_stale_seconds")
    return float(value) if value else None


def account_query(**filters: Any) -> Select[UpstreamAccount]:
    """The read layer's account query (`pooler.services.views.account_query`, same filters; deleted accounts
    included unless `include_deleted=False`) with the secrets a card's readiness needs."""
    filters.setdefault("include_deleted", True)
    return views.account_query(**filters).options(selectinload(UpstreamAccount.secrets))


def recent_usage(session: Session, account_ids: Iterable[int], since: dt.datetime) -> dict[int, tuple[int, int]]:
    ids = list(account_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(RequestLog.account_id, func.count(), func.coalesce(func.sum(RequestLog.total_tokens), 0))
        .where(RequestLog.account_id.in_(ids), RequestLog.created_at >= since)
        .group_by(RequestLog.account_id)
    ).all()
    return {int(a): (int(n), int(t or 0)) for a, n, t in rows if a is not None}


def inflight_streams(session: Session, account_ids: Iterable[int], now: dt.datetime) -> dict[int, int]:
    """account id -> streams in flight, over the replicas that reported within INFLIGHT_FRESH."""
    ids = list(account_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(InflightStreams.account_id, func.sum(InflightStreams.streams))
        .where(InflightStreams.account_id.in_(ids), InflightStreams.reported_at >= now - INFLIGHT_FRESH)
        .group_by(InflightStreams.account_id)
    ).all()
    return {int(a): int(n or 0) for a, n in rows}


def cards(session: Session, accounts: list[UpstreamAccount], now: dt.datetime | None = None) -> list[AccountCard]:
    now = now or utcnow()
    pools = {p.id: p for p in session.scalars(select(Pool)).unique()}
    usage = recent_usage(session, (a.id for a in accounts), now - RECENT_TOKENS)
    streams = inflight_streams(session, (a.id for a in accounts), now)
    stale = stale_after(session)
    result = []
    for account in accounts:
        pairs = [(pools[a.pool_id], a) for a in account.assignments if a.pool_id in pools]
        requests, tokens = usage.get(account.id, (0, 0))
        result.append(
            AccountCard(
                account,
                pairs,
                windows_of(account),
                readiness_of(account, pools, now, stale),
                tokens,
                requests,
                streams.get(account.id, 0),
            )
        )
    return result


def readiness_by_pool(session: Session, pools: list[Pool]) -> dict[int, tuple[str, int, int]]:
    """pool id -> (summary line, routable, total) over its non-deleted accounts, each judged in that pool only."""
    now = utcnow()
    accounts = list(session.scalars(account_query(include_deleted=False)).unique())
    all_pools = {p.id: p for p in session.scalars(select(Pool)).unique()}
    stale = stale_after(session)
    result: dict[int, tuple[str, int, int]] = {}
    for pool in pools:
        members = [a for a in accounts if any(x.pool_id == pool.id for x in a.assignments)]
        only = {pool.id: all_pools[pool.id]}
        readiness = [readiness_of(a, only, now, stale) for a in members]
        routable = sum(1 for r in readiness if r.routable)
        result[pool.id] = (pool_summary(readiness, now), routable, len(members))
    return result


def pool_badges(session: Session, pools: list[Pool], ready: dict[int, tuple[str, int, int]]) -> dict[int, Badge]:
    """pool id -> its badge: the status as what can route now (`active · 0 routable` in the outage colour)."""
    least = min_routable(session)
    return {p.id: pool_badge(p.status, ready[p.id][1], ready[p.id][2], least) for p in pools}


def min_routable(session: Session) -> int:
    """The `pool_low_routable` alert's threshold, so a badge and the alert beside it agree."""
    return int(get_number(session, "alert_min_routable_accounts"))


@dataclass(frozen=True)
class Buckets:
    labels: list[str]
    starts: list[dt.datetime]
    size: dt.timedelta

    def index(self, moment: dt.datetime) -> int | None:
        i = int((moment - self.starts[0]) / self.size)
        return i if 0 <= i < len(self.starts) else None


def buckets(now: dt.datetime, span: dt.timedelta, count: int) -> Buckets:
    size = span / count
    start = now - span
    starts = [start + size * i for i in range(count)]
    # Hours for a day or two; dates for longer spans, with the hour too while a bucket is shorter than a day.
    fmt = "%H:%M" if span <= dt.timedelta(days=2) else ("%b %d %H:%M" if size < dt.timedelta(days=1) else "%b %d")
    labels = [(s + size).strftime(fmt) for s in starts]
    labels[-1] = f"{labels[-1]} {ZONE}"  # the axis says once which zone its times are in
    return Buckets(labels, starts, size)


def series_by(
    session: Session,
    *,
    group: str,
    since: dt.datetime,
    grid: Buckets,
    pool_ids: set[int] | None,
    extra: list[object] | None = None,
) -> tuple[dict[object, list[float]], dict[object, list[float]]]:
    """Requests and tokens per bucket, grouped by `pool_id` or `account_id`."""
    column = getattr(RequestLog, group)
    query = select(column, RequestLog.created_at, RequestLog.total_tokens).where(RequestLog.created_at >= since)
    if pool_ids is not None:
        query = query.where(RequestLog.pool_id.in_(pool_ids or {-1}))
    for condition in extra or []:
        query = query.where(condition)  # type: ignore[arg-type]
    requests: dict[object, list[float]] = defaultdict(lambda: [0.0] * len(grid.starts))
    tokens: dict[object, list[float]] = defaultdict(lambda: [0.0] * len(grid.starts))
    for key, created, total in session.execute(query.limit(MAX_SERIES_ROWS)):
        i = grid.index(created)
        if i is None:
            continue
        requests[key][i] += 1
        tokens[key][i] += total or 0
    return requests, tokens


def pairs(session: Session, query: Select[Any, Any]) -> dict[Any, Any]:
    """A two-column query as a dict (Result objects have `.keys()`, so `dict(result)` would misread them)."""
    return {row[0]: row[1] for row in session.execute(query)}
