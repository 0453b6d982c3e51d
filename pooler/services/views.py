"""The read layer for account and pool views: the admin pages, the MCP tools and the CLI ask here, so a question
(which accounts match a filter, what a pool holds, how many keys it has) is one query however it is shown.

Rows are frozen dataclasses of plain values; `account_query` hands out the ORM query itself for the admin
pages, which show more of an account than a row carries (readiness, secrets present, in-flight streams).
Nothing here returns a secret, a key hash or request content. Functions take a Session and never write.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, selectinload

from pooler.models import Pool, PoolAssignment, PoolKey, UpstreamAccount
from pooler.states import AccountState, AssignmentStatus, KeyStatus

SEARCH_MAX = 100
"""Characters of a search text that count (longer input is cut, not refused)."""


@dataclass(frozen=True)
class QuotaWindowRow:
    window_minutes: int
    limit_family: str
    used_percent: float
    resets_at: dt.datetime | None
    observed_at: dt.datetime
    source: str


@dataclass(frozen=True)
class AccountRow:
    """One upstream account as the lists show it: identity, lifecycle, token times, pools and quota windows."""

    id: int
    label: str
    chatgpt_account_id: str
    plan_type: str | None
    state: str
    state_reason: str | None
    state_changed_at: dt.datetime | None
    credential_epoch: int
    access_token_expires_at: dt.datetime | None
    last_refresh_at: dt.datetime | None
    demoted_until: dt.datetime | None
    pools: tuple[str, ...]
    """Names of the pools it is assigned to, sorted."""
    windows: tuple[QuotaWindowRow, ...]
    """By limit family, then window length."""


@dataclass(frozen=True)
class AssignmentRow:
    """One account's place in a pool."""

    account_id: int
    label: str
    chatgpt_account_id: str
    plan_type: str | None
    state: str
    assignment_status: str
    priority: int
    deleted: bool

    @property
    def ready(self) -> bool:
        return self.state == AccountState.ACTIVE and self.assignment_status == AssignmentStatus.ACTIVE


@dataclass(frozen=True)
class PoolRow:
    """One pool as the lists show it: identity, status, strategy and what it holds."""

    id: int
    name: str
    label: str
    status: str
    strategy: str | None
    """None only for a pool without a settings row (never written by the services)."""
    accounts: int
    """Assigned accounts that are not deleted."""
    ready_accounts: int
    """Of those, the ones active in an active assignment (a stored-state count, not the selection's verdict)."""
    active_keys: int
    keys: int
    """Keys of every status."""


def account_query(
    *,
    pool_id: int | None = None,
    state: str | None = None,
    include_deleted: bool = False,
    search: str | None = None,
    within: Select[int] | Collection[int] | None = None,
) -> Select[UpstreamAccount]:
    """Accounts matching the filters, by label then id, with their assignments (and pools) and quota windows.

    `search` matches label, email, ChatGPT account id, workspace and plan (case-insensitive, a substring);
    `within` limits to these account ids (a subquery or a collection: an admin's scope)."""
    query = (
        select(UpstreamAccount)
        .options(
            selectinload(UpstreamAccount.assignments).selectinload(PoolAssignment.pool),
            selectinload(UpstreamAccount.quota_windows),
        )
        .order_by(UpstreamAccount.label, UpstreamAccount.id)
    )
    if within is not None:
        query = query.where(UpstreamAccount.id.in_(within))
    if pool_id is not None:
        query = query.where(UpstreamAccount.assignments.any(pool_id=pool_id))
    if state is not None:
        query = query.where(UpstreamAccount.state == state)
    if not include_deleted:
        query = query.where(UpstreamAccount.deleted_at.is_(None))
    if search:
        like = f"%{search[:SEARCH_MAX]}%"
        query = query.where(
            or_(
                UpstreamAccount.label.ilike(like),
                UpstreamAccount.email.ilike(like),
                UpstreamAccount.chatgpt_account_id.ilike(like),
                UpstreamAccount.workspace_name.ilike(like),
                UpstreamAccount.plan_type.ilike(like),
            )
        )
    return query


def account_row(account: UpstreamAccount) -> AccountRow:
    return AccountRow(
        id=account.id,
        label=account.label,
        chatgpt_account_id=account.chatgpt_account_id,
        plan_type=account.plan_type,
        state=account.state,
        state_reason=account.state_reason,
        state_changed_at=account.state_changed_at,
        credential_epoch=account.credential_epoch,
        access_token_expires_at=account.access_token_expires_at,
        last_refresh_at=account.last_refresh_at,
        demoted_until=account.demoted_until,
        pools=tuple(sorted(a.pool.name for a in account.assignments)),
        windows=tuple(
            QuotaWindowRow(w.window_minutes, w.limit_family, w.used_percent, w.resets_at, w.observed_at, w.source)
            for w in sorted(account.quota_windows, key=lambda w: (w.limit_family, w.window_minutes))
        ),
    )


def account_rows(
    session: Session, *, pool_id: int | None = None, state: str | None = None, include_deleted: bool = False
) -> list[AccountRow]:
    query = account_query(pool_id=pool_id, state=state, include_deleted=include_deleted)
    return [account_row(a) for a in session.scalars(query)]


def find_account_row(session: Session, account_id: int) -> AccountRow | None:
    """The account with this id, unless there is none or it was deleted."""
    account = session.scalar(account_query().where(UpstreamAccount.id == account_id))
    return None if account is None else account_row(account)


def key_counts(session: Session, status: KeyStatus | None = None) -> dict[int, int]:
    """pool id -> its keys (of `status`, or every status); pools without one are absent."""
    query = select(PoolKey.pool_id, func.count()).group_by(PoolKey.pool_id)
    if status is not None:
        query = query.where(PoolKey.status == status)
    # (Result objects have .keys(), so dict(result) would misread them as mappings: build the dict explicitly.)
    return {int(pool_id): int(n) for pool_id, n in session.execute(query)}


def pool_rows(session: Session) -> list[PoolRow]:
    """Every pool, by name."""
    pools = session.scalars(select(Pool).order_by(Pool.name)).unique().all()
    members = session.execute(
        select(PoolAssignment.pool_id, PoolAssignment.status, UpstreamAccount.state)
        .join(UpstreamAccount, UpstreamAccount.id == PoolAssignment.account_id)
        .where(UpstreamAccount.deleted_at.is_(None))
    ).all()
    total: Counter[int] = Counter()
    ready: Counter[int] = Counter()
    for pool_id, status, state in members:
        total[pool_id] += 1
        if status == AssignmentStatus.ACTIVE and state == AccountState.ACTIVE:
            ready[pool_id] += 1
    active = key_counts(session, KeyStatus.ACTIVE)
    every = key_counts(session)
    return [
        PoolRow(
            id=p.id,
            name=p.name,
            label=p.label,
            status=p.status,
            strategy=p.settings.strategy if p.settings else None,
            accounts=total[p.id],
            ready_accounts=ready[p.id],
            active_keys=active.get(p.id, 0),
            keys=every.get(p.id, 0),
        )
        for p in pools
    ]


def assignment_rows(session: Session, pool_id: int, *, include_deleted: bool = False) -> list[AssignmentRow]:
    """The pool's accounts by assignment priority, then label (the order failover takes in primary-first)."""
    query = (
        select(PoolAssignment, UpstreamAccount)
        .join(UpstreamAccount, UpstreamAccount.id == PoolAssignment.account_id)
        .where(PoolAssignment.pool_id == pool_id)
        .order_by(PoolAssignment.priority, UpstreamAccount.label, UpstreamAccount.id)
    )
    if not include_deleted:
        query = query.where(UpstreamAccount.deleted_at.is_(None))
    return [
        AssignmentRow(
            account_id=a.id,
            label=a.label,
            chatgpt_account_id=a.chatgpt_account_id,
            plan_type=a.plan_type,
            state=a.state,
            assignment_status=pa.status,
            priority=pa.priority,
            deleted=a.deleted_at is not None,
        )
        for pa, a in session.execute(query)
    ]


def key_prefixes(session: Session, pool_id: int) -> list[str]:
    return list(session.scalars(select(PoolKey.prefix).where(PoolKey.pool_id == pool_id).order_by(PoolKey.prefix)))


def pool_names(session: Session) -> dict[int, str]:
    """pool id -> name, for lists that name a row's pool."""
    return {int(i): str(name) for i, name in session.execute(select(Pool.id, Pool.name))}


def account_labels(session: Session) -> dict[int, str]:
    """account id -> label (deleted accounts too: old log rows still name them)."""
    return {int(i): str(label) for i, label in session.execute(select(UpstreamAccount.id, UpstreamAccount.label))}


def account_state_counts(
    session: Session, *, include_deleted: bool = False, within: Select[int] | Collection[int] | None = None
) -> dict[str, int]:
    """Lifecycle state -> accounts in it (`within`: only these account ids)."""
    query = select(UpstreamAccount.state, func.count()).group_by(UpstreamAccount.state)
    if not include_deleted:
        query = query.where(UpstreamAccount.deleted_at.is_(None))
    if within is not None:
        query = query.where(UpstreamAccount.id.in_(within))
    return {str(state): int(n) for state, n in session.execute(query)}


def key_status_counts(session: Session, pool_id: int | None = None) -> dict[str, int]:
    """Key status -> keys in it, of one pool or of every pool."""
    query = select(PoolKey.status, func.count()).group_by(PoolKey.status)
    if pool_id is not None:
        query = query.where(PoolKey.pool_id == pool_id)
    return {str(status): int(n) for status, n in session.execute(query)}


def pool_status_counts(session: Session) -> dict[str, int]:
    """Pool status -> pools in it."""
    return {str(s): int(n) for s, n in session.execute(select(Pool.status, func.count()).group_by(Pool.status))}
