"""The gateway's in-memory routing snapshot, built from the database in one read.

Everything a per-attempt decision needs - keys, pools and their policies, accounts with decrypted access
tokens, quota windows, sticky sessions - as immutable-ish plain data, so the ext_proc never touches the
database on the request path. A new snapshot is built when the routing version changes and swapped in by
reference. Evidence the gateway observed itself (429 limits, demotions, 401s, fresh quota headers) lives in
`Overlay`s applied on top, so it survives a reload that happens before the batched writes reach the DB.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pooler.crypto.secretbox import SecretBox
from pooler.errors import SecretBoxError
from pooler.gateway.budgets import BudgetBook, load_budget_book
from pooler.gateway.features import GatewayFeatures, load_features
from pooler.models import (
    AccountModelExclusion,
    AccountSecret,
    Pool,
    PoolAssignment,
    PoolKey,
    PoolSettings,
    QuotaWindow,
    RequestLog,
    StickySession,
    UpstreamAccount,
)
from pooler.selection import AccountCandidate, PoolIndex, PoolPolicy, StrategyState, WindowView
from pooler.services.credentials import open_secret
from pooler.settings import get_number, get_setting
from pooler.states import AccountState, SecretKind, Strategy
from pooler.versions import routing_version

log = logging.getLogger(__name__)


def _ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key_id: int
    pool_id: int
    prefix: str
    key_hash: str
    status: str
    expires_at: float | None
    allowed_models: frozenset[str] | None
    requests_per_minute: int | None
    tokens_per_day: int | None


@dataclass(frozen=True, slots=True)
class AccountEntry:
    account_id: int
    label: str
    chatgpt_account_id: str
    credential_epoch: int
    access_token: str | None = field(repr=False)
    """Decrypted; lives only in memory and in the `authorization` header sent upstream."""
    deactivated: bool = False
    """In state `deactivated` in the database (the gateway's own overlay is then no longer needed)."""
    excluded_models: frozenset[str] = frozenset()
    """Models the database excludes for this account (account_model_exclusions)."""


@dataclass(slots=True)
class PoolEntry:
    pool_id: int
    name: str
    policy: PoolPolicy
    max_attempts: int
    base_candidates: tuple[AccountCandidate, ...]
    """As read from the database; `candidates` = these with the overlays applied."""
    candidates: tuple[AccountCandidate, ...]
    index: PoolIndex
    strategy: StrategyState


@dataclass(slots=True)
class Overlay:
    """What the gateway learnt about one account from its own traffic, ahead of (or instead of) the DB."""

    limited_until: float | None = None
    demoted_until: float | None = None
    refresh_epoch: int | None = None
    """A 401 was seen while the account had this credential epoch: skip it until the epoch changes."""
    windows: dict[int, WindowView] = field(default_factory=dict)
    """window_minutes -> the newest window seen in response headers."""
    deactivated_epoch: int | None = None
    """The upstream said the account is dead while it had this credential epoch: out of rotation until the
    database says `deactivated` (then the state does it) or the account is relinked."""
    excluded_models: dict[str, float | None] = field(default_factory=dict)
    """model -> until (None: until an operator clears it), ahead of the database."""


@dataclass(slots=True)
class Sticky:
    account_id: int
    expires_at: float


EXPIRED_STICKY_MEMORY_SECONDS = 3600.0
"""How long the live snapshot keeps a sticky session after it expired (it no longer holds the conversation:
every reader checks `expires_at`), so that the conversation's return is recorded as `sticky_expired`, not as a
first turn (pooler.gateway.switch_causes)."""


@dataclass(slots=True)
class Snapshot:
    version: int
    loaded_at: float
    keys: dict[str, KeyEntry]
    pools: dict[int, PoolEntry]
    accounts: dict[int, AccountEntry]
    sticky: dict[tuple[int, str], Sticky]
    """Live sticky sessions as the database holds them; the ext_proc adopts them into its own session table
    (`GatewayState.sessions`, which outlives snapshots) when it installs the snapshot."""
    tokens_today: dict[str, int]
    """key prefix -> total tokens today (UTC) from request logs at load time."""
    demotion_seconds: float
    stale_after_seconds: float | None
    features: GatewayFeatures = field(default_factory=GatewayFeatures)
    """Gateway-surface settings (file pins TTL, admission, ingress per key, image gate, pooled view)."""
    budgets: BudgetBook = field(default_factory=BudgetBook)
    """Key budgets, prices and the budgeted keys' usage at load time (pooler.gateway.budgets)."""

    def pools_of(self, account_id: int) -> Iterable[PoolEntry]:
        return (p for p in self.pools.values() if any(c.account_id == account_id for c in p.base_candidates))


def apply_overlay(candidate: AccountCandidate, overlay: Overlay | None, epoch: int) -> AccountCandidate:
    if overlay is None:
        return candidate
    windows = {w.window_minutes: w for w in candidate.windows}
    for minutes, seen in overlay.windows.items():
        have = windows.get(minutes)
        if have is None or have.observed_at <= seen.observed_at:
            windows[minutes] = seen
    demoted = max(candidate.demoted_until or 0.0, overlay.demoted_until or 0.0) or None
    excluded = candidate.excluded_models
    if overlay.excluded_models:
        merged = dict(excluded)
        merged.update(overlay.excluded_models)
        excluded = tuple(sorted(merged.items()))
    return replace(
        candidate,
        state=str(AccountState.DEACTIVATED) if overlay.deactivated_epoch == epoch else candidate.state,
        limited_until=overlay.limited_until,
        demoted_until=demoted,
        refresh_requested=candidate.refresh_requested or overlay.refresh_epoch == epoch,
        windows=tuple(sorted(windows.values(), key=lambda w: w.window_minutes)),
        excluded_models=excluded,
    )


def rebuild_pool(snapshot: Snapshot, pool: PoolEntry, overlays: dict[int, Overlay]) -> None:
    """Re-applies overlays to one pool's candidates and re-indexes it (selection state is kept)."""
    pool.candidates = tuple(
        apply_overlay(c, overlays.get(c.account_id), snapshot.accounts[c.account_id].credential_epoch)
        for c in pool.base_candidates
    )
    pool.index = PoolIndex(pool.policy, pool.candidates)


def read_tokens_today(session: Session, now: dt.datetime, prefixes: Iterable[str] | None = None) -> dict[str, int]:
    """Tokens each key prefix used since midnight (UTC), from the request logs; only `prefixes` when given."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    query = select(RequestLog.key_prefix, func.sum(RequestLog.total_tokens)).where(
        RequestLog.created_at >= midnight, RequestLog.key_prefix.is_not(None)
    )
    if prefixes is not None:
        query = query.where(RequestLog.key_prefix.in_(list(prefixes)))
    return {str(prefix): int(total or 0) for prefix, total in session.execute(query.group_by(RequestLog.key_prefix))}


def load_snapshot(
    session: Session,
    box: SecretBox,
    now: dt.datetime,
    overlays: dict[int, Overlay] | None = None,
    previous: Snapshot | None = None,
) -> Snapshot:
    """Reads everything routing needs in one transaction. Accounts whose token cannot be opened are kept
    without a token (selection skips them) rather than failing the whole snapshot."""
    overlays = overlays or {}
    version = routing_version(session)
    stale = get_setting(session, "quota_evidence_stale_seconds")
    demotion = get_number(session, "demotion_seconds")

    accounts: dict[int, AccountEntry] = {}
    rows = session.scalars(select(UpstreamAccount).where(UpstreamAccount.deleted_at.is_(None))).all()
    secrets = {
        s.account_id: s
        for s in session.scalars(select(AccountSecret).where(AccountSecret.kind == str(SecretKind.ACCESS_TOKEN)))
    }
    windows: dict[int, list[WindowView]] = {}
    for w in session.scalars(select(QuotaWindow)):
        windows.setdefault(w.account_id, []).append(
            WindowView(w.window_minutes, w.used_percent, _ts(w.resets_at), w.observed_at.timestamp())
        )
    exclusions: dict[int, tuple[tuple[str, float | None], ...]] = {}
    for ex in session.scalars(select(AccountModelExclusion).order_by(AccountModelExclusion.model)):
        if ex.until is None or ex.until > now:
            exclusions[ex.account_id] = (*exclusions.get(ex.account_id, ()), (ex.model, _ts(ex.until)))
    by_id: dict[int, UpstreamAccount] = {}
    for row in rows:
        token: str | None = None
        secret = secrets.get(row.id)
        if secret is not None:
            try:
                token = open_secret(box, secret)
            except SecretBoxError:
                log.warning("account %s: access token cannot be opened; not routable", row.id)
        accounts[row.id] = AccountEntry(
            row.id,
            row.label,
            row.chatgpt_account_id,
            row.credential_epoch,
            token,
            deactivated=row.state == AccountState.DEACTIVATED,
            excluded_models=frozenset(m for m, _ in exclusions.get(row.id, ())),
        )
        by_id[row.id] = row

    pools: dict[int, PoolEntry] = {}
    old_states = {p.pool_id: p.strategy for p in previous.pools.values()} if previous else {}
    settings = {s.pool_id: s for s in session.scalars(select(PoolSettings))}
    assignments: dict[int, list[PoolAssignment]] = {}
    for a in session.scalars(select(PoolAssignment)):
        assignments.setdefault(a.pool_id, []).append(a)
    for pool in session.scalars(select(Pool)):
        ps = settings.get(pool.id) or PoolSettings(pool_id=pool.id)
        policy = PoolPolicy(
            pool_status=pool.status,
            strategy=ps.strategy or Strategy.LEAST_USED,
            primary_cap_percent=ps.primary_cap_percent if ps.primary_cap_percent is not None else 100.0,
            secondary_cap_percent=ps.secondary_cap_percent if ps.secondary_cap_percent is not None else 100.0,
            allowed_models=frozenset(ps.allowed_models) if ps.allowed_models else None,
            max_concurrency_per_account=ps.max_concurrency_per_account,
            sticky_ttl_seconds=ps.sticky_ttl_seconds if ps.sticky_ttl_seconds is not None else 3600,
            stale_after_seconds=float(stale) if stale else None,
        )
        base = tuple(
            AccountCandidate(
                account_id=a.account_id,
                label=by_id[a.account_id].label,
                plan_type=by_id[a.account_id].plan_type,
                state=by_id[a.account_id].state,
                assignment_status=a.status,
                priority=a.priority,
                access_token_expires_at=_ts(by_id[a.account_id].access_token_expires_at),
                demoted_until=_ts(by_id[a.account_id].demoted_until),
                limited_until=None,
                refresh_requested=by_id[a.account_id].refresh_requested_at is not None,
                has_token=accounts[a.account_id].access_token is not None,
                windows=tuple(windows.get(a.account_id, ())),
                excluded_models=exclusions.get(a.account_id, ()),
            )
            for a in sorted(assignments.get(pool.id, []), key=lambda a: (a.priority, a.account_id))
            if a.account_id in by_id
        )
        entry = PoolEntry(
            pool_id=pool.id,
            name=pool.name,
            policy=policy,
            max_attempts=max(1, ps.max_attempts or 1),
            base_candidates=base,
            candidates=base,
            index=PoolIndex(policy, base),
            strategy=old_states.get(pool.id) or StrategyState(),
        )
        pools[pool.id] = entry

    keys = {
        k.prefix: KeyEntry(
            key_id=k.id,
            pool_id=k.pool_id,
            prefix=k.prefix,
            key_hash=k.key_hash,
            status=k.status,
            expires_at=_ts(k.expires_at),
            allowed_models=frozenset(k.allowed_models) if k.allowed_models else None,
            requests_per_minute=k.requests_per_minute,
            tokens_per_day=k.tokens_per_day,
        )
        for k in session.scalars(select(PoolKey))
    }
    now_ts = now.timestamp()
    sticky = {
        (s.pool_id, s.session_hash): Sticky(s.account_id, s.expires_at.timestamp())
        for s in session.scalars(select(StickySession).where(StickySession.expires_at > now))
    }
    tokens_today = read_tokens_today(session, now)
    snapshot = Snapshot(
        version=version,
        loaded_at=now_ts,
        keys=keys,
        pools=pools,
        accounts=accounts,
        sticky=sticky,
        tokens_today=tokens_today,
        demotion_seconds=float(demotion),
        stale_after_seconds=float(stale) if stale else None,
        features=load_features(session),
        budgets=load_budget_book(session, now),
    )
    for entry in pools.values():
        rebuild_pool(snapshot, entry, overlays)
    return snapshot
