"""Pool API keys: create, list, pause, resume, revoke, rotate, and check a presented key.

Only the public prefix and the keyed hash are stored; the raw key exists only in the `CreatedKey` returned by
create/rotate (shown once). Functions take a Session and never commit; every change is audited and bumps the
routing version so gateways reload their key snapshot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.budgets import Budget, Period, Unit, parse_stored
from pooler.crypto.hashing import KeyedHasher
from pooler.errors import ConflictError, NotFoundError, PoolerError
from pooler.models import KeyBudget, Pool, PoolKey, utcnow
from pooler.poolkeys import generate_key, key_matches, key_prefix
from pooler.services.pools import get_pool
from pooler.states import KeyStatus, PoolStatus
from pooler.versions import bump_routing_version

PREFIX_ATTEMPTS = 5


@dataclass(frozen=True)
class CreatedKey:
    key: PoolKey
    raw: str = field(repr=False)
    """The only copy of the raw key: print it once, never store or log it."""


class KeyCheckStatus(StrEnum):
    ACTIVE = "active"
    UNKNOWN = "unknown"
    """Malformed key or no key with that prefix."""
    WRONG_SECRET = "wrong_secret"
    PAUSED = "paused"
    REVOKED = "revoked"
    EXPIRED = "expired"
    POOL_PAUSED = "pool_paused"


@dataclass(frozen=True)
class KeyCheck:
    status: KeyCheckStatus
    key_id: int | None = None
    pool_id: int | None = None
    prefix: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == KeyCheckStatus.ACTIVE


def _audit(session: Session, actor: Actor, action: str, key: PoolKey, **details: object) -> None:
    audit.record(
        session,
        actor,
        action=action,
        target_type="pool_key",
        target_id=key.id,
        target_label=key.prefix,
        details={"label": key.label, **details},
    )


def _fresh_key(session: Session, hasher: KeyedHasher) -> tuple[str, str, str]:
    """A new (raw, prefix, hash) whose prefix is not taken (8 random chars: collisions are rare but possible)."""
    for _ in range(PREFIX_ATTEMPTS):
        new = generate_key(hasher)
        if session.scalar(select(PoolKey.id).where(PoolKey.prefix == new.prefix)) is None:
            return new.raw, new.prefix, new.key_hash
    raise ConflictError("could not find a free key prefix; try again")


def _validate_limits(requests_per_minute: int | None, tokens_per_day: int | None) -> None:
    if requests_per_minute is not None and requests_per_minute < 1:
        raise PoolerError("requests per minute must be at least 1")
    if tokens_per_day is not None and tokens_per_day < 1:
        raise PoolerError("tokens per day must be at least 1")


def create_key(
    session: Session,
    hasher: KeyedHasher,
    *,
    pool: Pool | str,
    label: str,
    actor: Actor,
    expires_at: dt.datetime | None = None,
    allowed_models: list[str] | None = None,
    requests_per_minute: int | None = None,
    tokens_per_day: int | None = None,
    budgets: list[Budget] | None = None,
    share: KeyShareSpec | None = None,
    now: dt.datetime | None = None,
) -> CreatedKey:
    pool_row = get_pool(session, pool) if isinstance(pool, str) else pool
    label = label.strip()
    if not label or len(label) > 200:
        raise PoolerError("key label must be 1-200 characters")
    now = now or utcnow()
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise PoolerError("key expiry must carry a timezone")
        if expires_at <= now:
            raise PoolerError("key expiry must be in the future")
    _validate_limits(requests_per_minute, tokens_per_day)
    share = _checked_share(share or KeyShareSpec())
    models = sorted({m.strip() for m in allowed_models or [] if m.strip()}) or None
    raw, prefix, key_hash = _fresh_key(session, hasher)
    key = PoolKey(
        pool_id=pool_row.id,
        label=label,
        prefix=prefix,
        key_hash=key_hash,
        status=KeyStatus.ACTIVE,
        expires_at=expires_at,
        allowed_models=models,
        requests_per_minute=requests_per_minute,
        tokens_per_day=tokens_per_day,
        created_at=now,
        share_percent=share.percent,
        share_team=share.team,
        share_pacing=share.pacing,
        budgets=[
            KeyBudget(period=b.period.value, unit=b.unit.value, hard_limit=b.hard, soft_limit=b.soft)
            for b in budgets or []
        ],
    )
    session.add(key)
    session.flush()
    _audit(
        session,
        actor,
        "key.create",
        key,
        pool=pool_row.name,
        expires_at=expires_at.isoformat() if expires_at else None,
        allowed_models=models,
        requests_per_minute=requests_per_minute,
        tokens_per_day=tokens_per_day,
        budgets=[budget_text(b) for b in budgets or []],
        share=share.text(),
    )
    bump_routing_version(session)
    return CreatedKey(key=key, raw=raw)


def list_keys(session: Session, pool: str | None = None) -> list[PoolKey]:
    query = select(PoolKey).join(Pool, Pool.id == PoolKey.pool_id).order_by(Pool.name, PoolKey.created_at, PoolKey.id)
    if pool is not None:
        query = query.where(PoolKey.pool_id == get_pool(session, pool).id)
    return list(session.scalars(query).all())


def get_key(session: Session, prefix: str) -> PoolKey:
    """By public prefix (`cpk_ab12cd34`). A full raw key is accepted too, but only its prefix is used."""
    prefix = key_prefix(prefix) or prefix
    key = session.scalar(select(PoolKey).where(PoolKey.prefix == prefix))
    if key is None:
        raise NotFoundError(f"no Pool key with prefix {prefix[:16]!r}")
    return key


def _change_status(session: Session, prefix: str, status: KeyStatus, action: str, actor: Actor) -> PoolKey:
    key = get_key(session, prefix)
    if key.status == KeyStatus.REVOKED and status != KeyStatus.REVOKED:
        raise ConflictError(f"key {key.prefix} is revoked; create a new key instead")
    if key.status == status:
        return key
    old = key.status
    key.status = status
    if status == KeyStatus.REVOKED:
        key.revoked_at = utcnow()
    _audit(session, actor, action, key, old_status=old, new_status=str(status))
    bump_routing_version(session)
    return key


def pause_key(session: Session, prefix: str, *, actor: Actor) -> PoolKey:
    return _change_status(session, prefix, KeyStatus.PAUSED, "key.pause", actor)


def resume_key(session: Session, prefix: str, *, actor: Actor) -> PoolKey:
    return _change_status(session, prefix, KeyStatus.ACTIVE, "key.resume", actor)


def revoke_key(session: Session, prefix: str, *, actor: Actor) -> PoolKey:
    return _change_status(session, prefix, KeyStatus.REVOKED, "key.revoke", actor)


def rotate_key(session: Session, hasher: KeyedHasher, prefix: str, *, actor: Actor) -> CreatedKey:
    """New secret and new prefix on the same key row (label, limits, status kept); the old key stops working."""
    key = get_key(session, prefix)
    if key.status == KeyStatus.REVOKED:
        raise ConflictError(f"key {key.prefix} is revoked; create a new key instead")
    old_prefix = key.prefix
    raw, new_prefix, key_hash = _fresh_key(session, hasher)
    key.prefix, key.key_hash, key.rotated_at = new_prefix, key_hash, utcnow()
    session.flush()
    _audit(session, actor, "key.rotate", key, old_prefix=old_prefix, new_prefix=new_prefix)
    bump_routing_version(session)
    return CreatedKey(key=key, raw=raw)


def check_key(session: Session, hasher: KeyedHasher, raw: str, now: dt.datetime) -> KeyCheck:
    """What a gateway would decide for a presented key. The secret is verified before any state is revealed."""
    prefix = key_prefix(raw)
    if prefix is None:
        return KeyCheck(KeyCheckStatus.UNKNOWN)
    key = session.scalar(select(PoolKey).where(PoolKey.prefix == prefix))
    if key is None:
        return KeyCheck(KeyCheckStatus.UNKNOWN, prefix=prefix)
    if not key_matches(hasher, raw, key.key_hash):
        return KeyCheck(KeyCheckStatus.WRONG_SECRET, prefix=prefix)
    status = KeyCheckStatus.ACTIVE
    if key.status == KeyStatus.REVOKED:
        status = KeyCheckStatus.REVOKED
    elif key.status == KeyStatus.PAUSED:
        status = KeyCheckStatus.PAUSED
    elif key.expires_at is not None and key.expires_at <= now:
        status = KeyCheckStatus.EXPIRED
    elif key.pool.status != PoolStatus.ACTIVE:
        status = KeyCheckStatus.POOL_PAUSED
    return KeyCheck(status, key_id=key.id, pool_id=key.pool_id, prefix=prefix)


@dataclass(frozen=True)
class KeyShareSpec:
    """A key's quota share (pooler.share): None percent = no share."""

    percent: float | None = None
    team: str | None = None
    pacing: bool = False

    def text(self) -> str | None:
        if self.percent is None:
            return None
        team = f" team={self.team}" if self.team else ""
        return f"{self.percent:g}%{team}{' paced' if self.pacing else ''}"


def _checked_share(share: KeyShareSpec) -> KeyShareSpec:
    team = (share.team or "").strip() or None
    if team is not None and (len(team) > 64 or not team.isprintable()):
        raise PoolerError("share team must be 1-64 printable characters")
    if share.percent is not None and not 0 < share.percent <= 100:
        raise PoolerError("quota share must be a percent above 0 and at most 100")
    return KeyShareSpec(share.percent, team, share.pacing and share.percent is not None)


def set_share(session: Session, prefix: str, share: KeyShareSpec, *, actor: Actor) -> PoolKey:
    """Sets the key's quota share (percent None: none); audited, bumps the routing version."""
    key = get_key(session, prefix)
    share = _checked_share(share)
    before = key_share(key).text()
    if before == share.text():
        return key
    key.share_percent, key.share_team, key.share_pacing = share.percent, share.team, share.pacing
    _audit(session, actor, "key.share", key, old=before, new=share.text())
    bump_routing_version(session)
    return key


def key_share(key: PoolKey) -> KeyShareSpec:
    return KeyShareSpec(key.share_percent, key.share_team, key.share_pacing)


def key_budgets(key: PoolKey) -> list[Budget]:
    """The key's budgets as policy values (rows that no longer parse are skipped, never fatal)."""
    parsed = (parse_stored(r.period, r.unit, r.hard_limit, r.soft_limit) for r in key.budgets)
    return [b for b in parsed if b is not None]


def set_budgets(session: Session, prefix: str, budgets: list[Budget], *, actor: Actor) -> PoolKey:
    """Replaces the key's budgets (at most one per period and unit); audited with the limits, bumps routing."""
    key = get_key(session, prefix)
    seen = {(b.period, b.unit) for b in budgets}
    if len(seen) != len(budgets):
        raise PoolerError("one budget per period and unit")
    before = [budget_text(b) for b in key_budgets(key)]
    after = [budget_text(b) for b in budgets]
    if before == after:
        return key
    key.budgets = [
        KeyBudget(period=b.period.value, unit=b.unit.value, hard_limit=b.hard, soft_limit=b.soft) for b in budgets
    ]
    session.flush()
    _audit(session, actor, "key.budgets", key, old=before, new=after)
    bump_routing_version(session)
    return key


def budget_text(budget: Budget) -> str:
    return f"{budget.period.value} {budget.unit.value} hard={budget.hard} soft={budget.soft}"


def budget_spec(budget: Budget) -> str:
    """The `PERIOD:UNIT:HARD[:SOFT]` text `parse_budget` reads (the admin's edit form shows it)."""

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:g}" if value != int(value) else str(int(value))

    soft = f":{number(budget.soft)}" if budget.soft is not None else ""
    return f"{budget.period.value}:{budget.unit.value}:{number(budget.hard)}{soft}"


def parse_budget(text: str) -> Budget:
    """`PERIOD:UNIT:HARD[:SOFT]` (`day:tokens:100000`, `month:usd:50:40`, `week:usd::20` for a soft-only one)."""
    parts = text.strip().split(":")
    if len(parts) not in (3, 4):
        raise PoolerError("a budget is PERIOD:UNIT:HARD[:SOFT], e.g. day:tokens:100000 or month:usd:50:40")
    try:
        period, unit = Period(parts[0].strip().lower()), Unit(parts[1].strip().lower())
    except ValueError:
        raise PoolerError("budget period is day, week or month; unit is tokens or usd") from None
    try:
        hard = float(parts[2]) if parts[2].strip() else None
        soft = float(parts[3]) if len(parts) == 4 and parts[3].strip() else None
        return Budget(period, unit, hard, soft)
    except ValueError:
        raise PoolerError("budget limits must be positive numbers, at least one of hard and soft") from None
