"""The gateway's batched writes: request logs + attempts, quota evidence, account demotion/refresh flags,
sticky sessions and key last-use, in one transaction per batch.

Idempotent, so a batch that failed (database outage) is simply written again later: request rows are keyed
by Envoy's request id (unique), quota evidence never overwrites newer evidence, the rest are upserts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from pooler.audit import GATEWAY
from pooler.gateway.evidence import AccountEffect, RequestRecord
from pooler.lifecycle import can_transition, transition
from pooler.models import (
    AccountModelExclusion,
    InflightStreams,
    PoolKey,
    RequestAttempt,
    RequestLog,
    StickySession,
    UpstreamAccount,
)
from pooler.quota import record_observations
from pooler.services.refresh import request_refresh
from pooler.states import AccountState, QuotaSource
from pooler.versions import bump_routing_version, notify_requests_written

MAX_MODEL_LENGTH = 64
EXISTING_IDS_PER_QUERY = 5000
INFLIGHT_FORGET_SECONDS = 3600.0
"""Rows of a replica that stopped reporting this long ago are deleted by whichever replica reports next."""


@dataclass(frozen=True, slots=True)
class InflightReport:
    """One replica's streams in flight per account at `at` (unix seconds); replaces its earlier report."""

    replica: str
    streams: dict[int, int]
    at: float


@dataclass(slots=True)
class Batch:
    requests: list[RequestRecord] = field(default_factory=list)
    effects: list[tuple[AccountEffect, float]] = field(default_factory=list)
    """(effect, observed_at unix seconds)."""
    sticky: dict[tuple[int, str], tuple[int, float]] = field(default_factory=dict)
    """(pool_id, session_hash) -> (account_id, expires_at)."""
    key_used: dict[int, float] = field(default_factory=dict)
    inflight: InflightReport | None = None
    """Set every few seconds by the writer (the admin's display of the concurrency cap)."""

    def __len__(self) -> int:
        report = 0 if self.inflight is None else 1
        return len(self.requests) + len(self.effects) + len(self.sticky) + len(self.key_used) + report

    def merge(self, other: Batch) -> None:
        self.requests.extend(other.requests)
        self.effects.extend(other.effects)
        self.sticky.update(other.sticky)
        for key_id, at in other.key_used.items():
            self.key_used[key_id] = max(at, self.key_used.get(key_id, 0.0))
        if other.inflight is not None and (self.inflight is None or other.inflight.at >= self.inflight.at):
            self.inflight = other.inflight


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def write_batch(session: Session, batch: Batch) -> None:
    _write_requests(session, batch.requests)
    if batch.requests:
        notify_requests_written(session)
    state_changed = False
    for effect, observed_at in batch.effects:
        record_observations(
            session, effect.account_id, list(effect.observations), QuotaSource.HEADERS, _utc(observed_at)
        )
        if effect.limit_window is not None:
            record_observations(
                session, effect.account_id, [effect.limit_window], QuotaSource.LIMIT_ERROR, _utc(observed_at)
            )
        if effect.limit_window is not None or effect.limited_until is not None:
            # A limit reached takes the account out of selection: every other process (the decision workers,
            # which have no access log of their own, and other replicas) must reload now, not at its next poll.
            state_changed = True
        if effect.demoted_until is not None:
            state_changed = True
            session.execute(
                update(UpstreamAccount)
                .where(UpstreamAccount.id == effect.account_id)
                .values(demoted_until=_utc(effect.demoted_until))
            )
        if effect.refresh_requested:
            # The scheduler's contract for an upstream 401 (docs/SCHEDULER.md): idempotent, keeps the first flag
            # time of a burst, picked up by the next refresh_due_tokens run.
            state_changed = True
            request_refresh(session, effect.account_id, _utc(observed_at))
        if effect.deactivated is not None:
            state_changed |= _deactivate(session, effect.account_id, effect.deactivated, _utc(observed_at))
        if effect.excluded_model is not None:
            state_changed = True
            _exclude_model(session, effect)
    for (pool_id, session_hash), (account_id, expires_at) in batch.sticky.items():
        row = session.get(StickySession, (pool_id, session_hash))
        if row is None:
            session.add(
                StickySession(
                    pool_id=pool_id, session_hash=session_hash, account_id=account_id, expires_at=_utc(expires_at)
                )
            )
        else:
            row.account_id, row.expires_at, row.updated_at = account_id, _utc(expires_at), dt.datetime.now(dt.UTC)
    for key_id, at in batch.key_used.items():
        session.execute(update(PoolKey).where(PoolKey.id == key_id).values(last_used_at=_utc(at)))
    if batch.inflight is not None:
        _write_inflight(session, batch.inflight)
    if state_changed:
        # Other gateways (and the scheduler's view of refresh requests) reload on the version bump.
        bump_routing_version(session)


def _write_inflight(session: Session, report: InflightReport) -> None:
    """The replica's rows become this report (accounts with streams only); long-silent replicas' rows go."""
    at = _utc(report.at)
    session.execute(
        delete(InflightStreams).where(
            (InflightStreams.replica == report.replica)
            | (InflightStreams.reported_at < _utc(report.at - INFLIGHT_FORGET_SECONDS))
        )
    )
    busy = {aid: n for aid, n in report.streams.items() if n > 0}
    if not busy:
        return
    # An account deleted since its pick must not fail the batch (the foreign key): only existing ones.
    existing = session.scalars(select(UpstreamAccount.id).where(UpstreamAccount.id.in_(busy))).all()
    if existing:
        session.execute(
            insert(InflightStreams),
            [
                {"replica": report.replica, "account_id": aid, "streams": busy[aid], "reported_at": at}
                for aid in existing
            ],
        )


def _deactivate(session: Session, account_id: int, code: str, at: dt.datetime) -> bool:
    """The upstream said the account is dead: state `deactivated` (audited, as every state change), unless it is
    already out of service in a way a person must handle anyway (deleted, reauth_required) or already there."""
    account = session.get(UpstreamAccount, account_id)
    if account is None or not can_transition(account.state, AccountState.DEACTIVATED):
        return False
    return transition(session, account, AccountState.DEACTIVATED, actor=GATEWAY, reason=code, now=at)


def _exclude_model(session: Session, effect: AccountEffect) -> None:
    """Upsert: a newer exclusion of the same model replaces the older (a permanent one is never shortened)."""
    assert effect.excluded_model is not None
    model = effect.excluded_model[:200]
    until = None if effect.excluded_until is None else _utc(effect.excluded_until)
    reason = "usage_not_included" if until is None else "usage_limit_reached"
    row = session.scalar(
        select(AccountModelExclusion).where(
            AccountModelExclusion.account_id == effect.account_id, AccountModelExclusion.model == model
        )
    )
    if row is None:
        session.add(AccountModelExclusion(account_id=effect.account_id, model=model, reason=reason, until=until))
    elif row.until is not None and (until is None or until > row.until):
        row.until, row.reason = until, reason


def _write_requests(session: Session, records: list[RequestRecord]) -> None:
    """Bulk INSERT ... RETURNING (one statement per table and batch) rather than ORM objects: the unit of work
    cost ~25% of the ext_proc's CPU under load, on the thread that shares the GIL with the request path."""
    if not records:
        return
    ids = [r.request_id for r in records]
    # In slices: a batch kept through an outage holds up to 200k rows, and one IN list that long exceeds
    # PostgreSQL's 65,535 bind parameters - a batch that could never be written again.
    existing: set[str | None] = set()
    for start in range(0, len(ids), EXISTING_IDS_PER_QUERY):
        chunk = ids[start : start + EXISTING_IDS_PER_QUERY]
        existing.update(session.scalars(select(RequestLog.request_id).where(RequestLog.request_id.in_(chunk))))
    fresh: list[RequestRecord] = []
    for record in records:
        if record.request_id not in existing:
            existing.add(record.request_id)
            fresh.append(record)
    if not fresh:
        return
    log_ids = session.scalars(
        insert(RequestLog).returning(RequestLog.id, sort_by_parameter_order=True),
        [_request_row(record) for record in fresh],
    ).all()
    attempts = [
        {
            "request_log_id": log_id,
            "attempt_number": n,
            "account_id": account,
            "status_code": status,
            "outcome": outcome,
            "error_code": code,
        }
        for log_id, record in zip(log_ids, fresh, strict=True)
        for n, (account, status, outcome, code) in enumerate(record.attempts, start=1)
    ]
    if attempts:
        session.execute(insert(RequestAttempt), attempts)


def _request_row(record: RequestRecord) -> dict[str, object]:
    return {
        "created_at": record.created_at,
        "request_id": record.request_id,
        "pool_id": record.pool_id,
        "key_prefix": record.key_prefix,
        "account_id": record.account_id,
        "route_family": record.route_family,
        "method": record.method[:8],
        "model": (record.model or None) and record.model[:MAX_MODEL_LENGTH],
        "status_code": record.status_code,
        "attempt_count": max(1, len(record.attempts)),
        "error_code": record.error_code,
        "ttfb_ms": record.ttfb_ms,
        "duration_ms": record.duration_ms,
        "input_tokens": record.tokens.get("input_tokens"),
        "cached_tokens": record.tokens.get("cached_tokens"),
        "output_tokens": record.tokens.get("output_tokens"),
        "reasoning_tokens": record.tokens.get("reasoning_tokens"),
        "total_tokens": record.tokens.get("total_tokens"),
        "session_hash": record.session_hash,
        "switch_cause": record.switch_cause,
    }
