"""Prompt-cache health from the request log: the cached share of input tokens (cached_tokens / input_tokens) per
pool over time, per account, key and session, and the conversation switches by cause (pooler.gateway.switch_causes).

Queries over request_logs, no aggregate table: every question is one pool over a bounded time range, which the
existing (pool_id, created_at) index serves, and rows are pruned by the log retention anyway. An aggregate
table would need its own writer and retention to answer the same few reads a minute.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from pooler.alerts.rules import CacheShare
from pooler.gateway.switch_causes import MOVES, SWITCH_CAUSES
from pooler.models import Pool, RequestLog

RECENT = dt.timedelta(hours=1)
"""The alert's recent window."""
BASELINE = dt.timedelta(hours=24)
"""The alert's baseline: the 24 h before the recent window."""


def share(cached: int, input_tokens: int) -> float | None:
    """Cached share of input tokens in percent; None without input."""
    return round(100.0 * cached / input_tokens, 1) if input_tokens > 0 else None


@dataclass(frozen=True)
class Bucket:
    start: dt.datetime
    input_tokens: int
    cached_tokens: int
    requests: int
    moves: int

    @property
    def share(self) -> float | None:
        return share(self.cached_tokens, self.input_tokens)


@dataclass(frozen=True)
class SessionSwitches:
    session: str
    """A short prefix of the session's keyed hash (never the raw id)."""
    requests: int
    accounts: int
    moves: int
    input_tokens: int
    cached_tokens: int
    last_seen: dt.datetime

    @property
    def share(self) -> float | None:
        return share(self.cached_tokens, self.input_tokens)


@dataclass(frozen=True)
class CacheHealth:
    pool_id: int
    since: dt.datetime
    buckets: list[Bucket]
    causes: dict[str, int]
    """Requests by switch cause over the range, every cause listed (zero when none)."""
    sessions: list[SessionSwitches]
    by_account: list[tuple[int | None, int, int]] = field(default_factory=list)
    """(account id, input tokens, cached tokens) of the range."""
    by_key: list[tuple[str | None, int, int]] = field(default_factory=list)
    """(key prefix, input tokens, cached tokens) of the range."""

    @property
    def input_tokens(self) -> int:
        return sum(b.input_tokens for b in self.buckets)

    @property
    def cached_tokens(self) -> int:
        return sum(b.cached_tokens for b in self.buckets)

    @property
    def share(self) -> float | None:
        return share(self.cached_tokens, self.input_tokens)


def _moves_column() -> ColumnElement[int]:
    return func.sum(case((RequestLog.switch_cause.in_(sorted(MOVES)), 1), else_=0))


def _floor(when: dt.datetime, step: dt.timedelta) -> dt.datetime:
    seconds = int(step.total_seconds())
    epoch = int(when.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % seconds, dt.UTC)


def cache_health(
    session: Session,
    pool_id: int,
    now: dt.datetime,
    span: dt.timedelta = dt.timedelta(hours=24),
    step: dt.timedelta = dt.timedelta(hours=1),
    top: int = 10,
) -> CacheHealth:
    """One pool's cache health over the last `span`, in buckets of `step` (oldest first)."""
    since = now - span
    in_range = (RequestLog.pool_id == pool_id, RequestLog.created_at >= since)
    rows = session.execute(
        select(
            RequestLog.created_at,
            RequestLog.input_tokens,
            RequestLog.cached_tokens,
            RequestLog.switch_cause,
        ).where(*in_range)
    ).all()
    # Bucketed in Python: date truncation differs between PostgreSQL and SQLite, and a day of one pool's rows
    # is read once per page view (the rows are four narrow columns).
    buckets: dict[dt.datetime, list[int]] = {}
    start = _floor(since, step)
    while start <= now:
        buckets[start] = [0, 0, 0, 0]
        start += step
    for created, input_tokens, cached, cause in rows:
        created = created if created.tzinfo else created.replace(tzinfo=dt.UTC)
        slot = buckets.setdefault(_floor(created, step), [0, 0, 0, 0])
        slot[0] += input_tokens or 0
        slot[1] += cached or 0
        slot[2] += 1
        slot[3] += 1 if cause in MOVES else 0
    causes = dict.fromkeys(SWITCH_CAUSES, 0)
    for cause, count in session.execute(
        select(RequestLog.switch_cause, func.count())
        .where(*in_range, RequestLog.switch_cause.is_not(None))
        .group_by(RequestLog.switch_cause)
    ):
        causes[str(cause)] = causes.get(str(cause), 0) + int(count)
    moves = _moves_column()
    sessions = [
        SessionSwitches(
            session=str(hashed)[:12],
            requests=int(requests),
            accounts=int(accounts),
            moves=int(moved or 0),
            input_tokens=int(inp or 0),
            cached_tokens=int(cached or 0),
            last_seen=last,
        )
        for hashed, requests, accounts, moved, inp, cached, last in session.execute(
            select(
                RequestLog.session_hash,
                func.count(),
                func.count(RequestLog.account_id.distinct()),
                moves,
                func.sum(RequestLog.input_tokens),
                func.sum(RequestLog.cached_tokens),
                func.max(RequestLog.created_at),
            )
            .where(*in_range, RequestLog.session_hash.is_not(None))
            .group_by(RequestLog.session_hash)
            .having(moves > 0)
            .order_by(moves.desc(), func.count().desc())
            .limit(top)
        )
    ]

    def split(column: Any) -> list[tuple[Any, int, int]]:
        return [
            (value, int(inp or 0), int(cached or 0))
            for value, inp, cached in session.execute(
                select(column, func.sum(RequestLog.input_tokens), func.sum(RequestLog.cached_tokens))
                .where(*in_range, RequestLog.input_tokens.is_not(None))
                .group_by(column)
                .order_by(column)
            )
        ]

    return CacheHealth(
        pool_id=pool_id,
        since=since,
        buckets=[Bucket(start, *values) for start, values in sorted(buckets.items())],
        causes=causes,
        sessions=sessions,
        by_account=split(RequestLog.account_id),
        by_key=split(RequestLog.key_prefix),
    )


def cache_shares(session: Session, now: dt.datetime, pool_ids: Sequence[int] | None = None) -> list[CacheShare]:
    """Per active pool: input and cached tokens of the last hour and of the 24 h before it, and the switch causes
    of the last hour (the `cache_share_drop` alert's facts)."""
    recent_from, baseline_from = now - RECENT, now - RECENT - BASELINE
    is_recent = RequestLog.created_at >= recent_from
    query = (
        select(
            RequestLog.pool_id,
            func.sum(case((is_recent, RequestLog.input_tokens), else_=0)),
            func.sum(case((is_recent, RequestLog.cached_tokens), else_=0)),
            func.sum(case((is_recent, 0), else_=RequestLog.input_tokens)),
            func.sum(case((is_recent, 0), else_=RequestLog.cached_tokens)),
        )
        .where(RequestLog.created_at >= baseline_from, RequestLog.pool_id.is_not(None))
        .group_by(RequestLog.pool_id)
    )
    if pool_ids is not None:
        query = query.where(RequestLog.pool_id.in_(pool_ids))
    totals = {int(row[0] or 0): [int(v or 0) for v in row[1:]] for row in session.execute(query)}
    if not totals:
        return []
    causes: dict[int, dict[str, int]] = {}
    for pool_id, cause, count in session.execute(
        select(RequestLog.pool_id, RequestLog.switch_cause, func.count())
        .where(is_recent, RequestLog.pool_id.in_(list(totals)), RequestLog.switch_cause.in_(sorted(MOVES)))
        .group_by(RequestLog.pool_id, RequestLog.switch_cause)
    ):
        causes.setdefault(int(pool_id or 0), {})[str(cause)] = int(count)
    pools = session.execute(select(Pool.id, Pool.label, Pool.status).where(Pool.id.in_(list(totals)))).all()
    return [
        CacheShare(
            pool_id=pid,
            label=label,
            status=str(status),
            recent_input=totals[pid][0],
            recent_cached=totals[pid][1],
            baseline_input=totals[pid][2],
            baseline_cached=totals[pid][3],
            switches=causes.get(pid, {}),
        )
        for pid, label, status in sorted(pools)
    ]
