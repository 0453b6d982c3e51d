"""Pools: create, list, show (assignments + readiness counts), pause and resume.

Functions take a Session and never commit. Every change writes an audit event and bumps the routing version.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from pooler.errors import ConflictError, NotFoundError, PoolerError
from pooler.models import Pool, PoolAssignment, PoolKey, PoolSettings, UpstreamAccount, utcnow
from pooler.services import audit
from pooler.services.actors import Actor
from pooler.services.versions import bump_routing_version
from pooler.settings import get_setting
from pooler.states import AccountState, AssignmentStatus, KeyStatus, PoolStatus, Strategy

POOL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class AssignmentView:
    account_id: int
    label: str
    chatgpt_account_id: str
    plan_type: str | None
    state: str
    assignment_status: str
    priority: int

    @property
    def ready(self) -> bool:
        return self.state == AccountState.ACTIVE and self.assignment_status == AssignmentStatus.ACTIVE


@dataclass(frozen=True)
class PoolSummary:
    id: int
    name: str
    label: str
    status: str
    strategy: str
    accounts: int
    ready_accounts: int
    active_keys: int


@dataclass(frozen=True)
class PoolDetail:
    pool: Pool
    settings: PoolSettings
    assignments: list[AssignmentView]
    state_counts: dict[str, int] = field(default_factory=dict)
    """Assigned (not deleted) accounts by lifecycle state."""
    keys_by_status: dict[str, int] = field(default_factory=dict)

    @property
    def ready_accounts(self) -> int:
        return sum(1 for a in self.assignments if a.ready)


def validate_pool_name(name: str) -> str:
    if not POOL_NAME_RE.match(name):
        raise PoolerError(
            "pool name must be 1-64 characters of lowercase letters, digits, '-' or '_', starting with a letter "
            "or digit"
        )
    return name


def get_pool(session: Session, name: str) -> Pool:
    pool = session.scalar(select(Pool).where(Pool.name == name))
    if pool is None:
        raise NotFoundError(f"pool {name!r} does not exist")
    return pool


def create_pool(
    session: Session,
    *,
    name: str,
    actor: Actor,
    label: str | None = None,
    strategy: Strategy | str = Strategy.LEAST_USED,
    sticky_ttl_seconds: int | None = None,
    max_attempts: int = 3,
    allowed_models: list[str] | None = None,
) -> Pool:
    """Creates a pool with its settings row. `sticky_ttl_seconds` defaults to the `sticky_ttl_default_seconds`
    setting."""
    validate_pool_name(name)
    try:
        strategy = Strategy(strategy)
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise PoolerError(f"unknown strategy {strategy!r}; choose one of {choices}") from None
    if not 1 <= max_attempts <= 10:
        raise PoolerError("max attempts must be between 1 and 10")
    if session.scalar(select(Pool.id).where(Pool.name == name)) is not None:
        raise ConflictError(f"pool {name!r} already exists")
    if sticky_ttl_seconds is None:
        sticky_ttl_seconds = int(get_setting(session, "sticky_ttl_default_seconds") or 0)
    ttl = sticky_ttl_seconds
    if ttl < 0:
        raise PoolerError("sticky TTL must not be negative")
    now = utcnow()
    pool = Pool(name=name, label=(label or name)[:200], status=PoolStatus.ACTIVE, created_at=now, updated_at=now)
    pool.settings = PoolSettings(
        strategy=strategy,
        sticky_ttl_seconds=ttl,
        max_attempts=max_attempts,
        allowed_models=allowed_models or None,
        updated_at=now,
    )
    session.add(pool)
    session.flush()
    audit.record(
        session,
        actor_type=actor.type,
        actor_label=actor.label,
        action="pool.create",
        target_type="pool",
        target_id=pool.id,
        target_label=pool.name,
        details={"strategy": str(strategy), "sticky_ttl_seconds": ttl, "max_attempts": max_attempts},
    )
    bump_routing_version(session)
    return pool


def list_pools(session: Session) -> list[PoolSummary]:
    pools = session.scalars(select(Pool).order_by(Pool.name)).unique().all()
    account_rows = session.execute(
        select(PoolAssignment.pool_id, PoolAssignment.status, UpstreamAccount.state)
        .join(UpstreamAccount, UpstreamAccount.id == PoolAssignment.account_id)
        .where(UpstreamAccount.deleted_at.is_(None))
    ).all()
    total: Counter[int] = Counter()
    ready: Counter[int] = Counter()
    for pool_id, status, state in account_rows:
        total[pool_id] += 1
        if status == AssignmentStatus.ACTIVE and state == AccountState.ACTIVE:
            ready[pool_id] += 1
    # (Result objects have .keys(), so dict(result) would misread them as mappings: build the dict explicitly.)
    keys = {
        pool_id: n
        for pool_id, n in session.execute(
            select(PoolKey.pool_id, func.count()).where(PoolKey.status == KeyStatus.ACTIVE).group_by(PoolKey.pool_id)
        )
    }
    return [
        PoolSummary(
            id=p.id,
            name=p.name,
            label=p.label,
            status=p.status,
            strategy=p.settings.strategy,
            accounts=total[p.id],
            ready_accounts=ready[p.id],
            active_keys=int(keys.get(p.id, 0)),
        )
        for p in pools
    ]


def show_pool(session: Session, name: str) -> PoolDetail:
    pool = get_pool(session, name)
    assignments = session.scalars(
        select(PoolAssignment)
        .where(PoolAssignment.pool_id == pool.id)
        .options(selectinload(PoolAssignment.account))
        .order_by(PoolAssignment.priority, PoolAssignment.id)
    ).all()
    views = [
        AssignmentView(
            account_id=a.account.id,
            label=a.account.label,
            chatgpt_account_id=a.account.chatgpt_account_id,
            plan_type=a.account.plan_type,
            state=a.account.state,
            assignment_status=a.status,
            priority=a.priority,
        )
        for a in assignments
        if a.account.deleted_at is None
    ]
    keys = {
        status: n
        for status, n in session.execute(
            select(PoolKey.status, func.count()).where(PoolKey.pool_id == pool.id).group_by(PoolKey.status)
        )
    }
    return PoolDetail(
        pool=pool,
        settings=pool.settings,
        assignments=views,
        state_counts=dict(Counter(v.state for v in views)),
        keys_by_status={str(k): int(v) for k, v in keys.items()},
    )


def _set_status(session: Session, name: str, status: PoolStatus, action: str, actor: Actor) -> Pool:
    pool = get_pool(session, name)
    if pool.status == PoolStatus.ARCHIVED:
        raise ConflictError(f"pool {name!r} is archived")
    old = pool.status
    if old == status:
        return pool  # idempotent: nothing changed, nothing to audit
    pool.status = status
    pool.updated_at = utcnow()
    audit.record(
        session,
        actor_type=actor.type,
        actor_label=actor.label,
        action=action,
        target_type="pool",
        target_id=pool.id,
        target_label=pool.name,
        details={"old_status": old, "new_status": str(status)},
    )
    bump_routing_version(session)
    return pool


def pause_pool(session: Session, name: str, *, actor: Actor) -> Pool:
    return _set_status(session, name, PoolStatus.PAUSED, "pool.pause", actor)


def resume_pool(session: Session, name: str, *, actor: Actor) -> Pool:
    return _set_status(session, name, PoolStatus.ACTIVE, "pool.resume", actor)
