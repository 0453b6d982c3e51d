"""Pools: create, list, show (assignments + readiness counts), edit settings, pause, resume and archive.

Functions take a Session and never commit. Every change writes an audit event and bumps the routing version.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.budgets import DEFAULT_ZONE, valid_zone
from pooler.errors import ConflictError, NotFoundError, PoolerError
from pooler.models import Pool, PoolSettings, utcnow
from pooler.selection import named_strategy
from pooler.services.views import AssignmentRow, PoolRow, assignment_rows, key_status_counts, pool_rows
from pooler.settings import get_number
from pooler.states import PoolStatus, Strategy
from pooler.versions import bump_routing_version

POOL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class _Unchanged:
    """Marks a keyword of `update_pool_settings` the caller did not pass (None is a real value: no cap)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()


@dataclass(frozen=True)
class PoolDetail:
    pool: Pool
    settings: PoolSettings
    assignments: list[AssignmentRow]
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
    time_zone: str = DEFAULT_ZONE,
) -> Pool:
    """Creates a pool with its settings row. `sticky_ttl_seconds` defaults to the `sticky_ttl_default_seconds`
    setting."""
    validate_pool_name(name)
    checked = _check_settings({"strategy": strategy, "max_attempts": max_attempts, "time_zone": time_zone})
    strategy, zone_name = checked["strategy"], checked["time_zone"]
    if session.scalar(select(Pool.id).where(Pool.name == name)) is not None:
        raise ConflictError(f"pool {name!r} already exists")
    if sticky_ttl_seconds is None:
        sticky_ttl_seconds = int(get_number(session, "sticky_ttl_default_seconds"))
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
        time_zone=zone_name,
        updated_at=now,
    )
    session.add(pool)
    session.flush()
    audit.record(
        session,
        actor,
        action="pool.create",
        target_type="pool",
        target_id=pool.id,
        target_label=pool.name,
        details={
            "strategy": str(strategy),
            "sticky_ttl_seconds": ttl,
            "max_attempts": max_attempts,
            "time_zone": zone_name,
        },
    )
    bump_routing_version(session)
    return pool


def list_pools(session: Session) -> list[PoolRow]:
    return pool_rows(session)


def show_pool(session: Session, name: str) -> PoolDetail:
    pool = get_pool(session, name)
    views = assignment_rows(session, pool.id)
    return PoolDetail(
        pool=pool,
        settings=pool.settings,
        assignments=views,
        state_counts=dict(Counter(v.state for v in views)),
        keys_by_status=key_status_counts(session, pool.id),
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
        actor,
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


def _check_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Validates the settings an edit passes; the same bounds as the admin form, so the CLI and MCP cannot
    store what the form would refuse."""
    checked = dict(values)
    if "strategy" in checked:
        try:
            checked["strategy"] = named_strategy(checked["strategy"])
        except ValueError as exc:
            raise PoolerError(str(exc)) from None
    if "sticky_ttl_seconds" in checked and not 0 <= int(checked["sticky_ttl_seconds"]) <= 604800:
        raise PoolerError("sticky TTL must be between 0 and 604800 seconds")
    if "max_attempts" in checked and not 1 <= int(checked["max_attempts"]) <= 10:
        raise PoolerError("max attempts must be between 1 and 10")
    for cap in ("primary_cap_percent", "secondary_cap_percent"):
        if cap in checked and not 1 <= float(checked[cap]) <= 100:
            raise PoolerError(f"{cap.replace('_', ' ')} must be between 1 and 100")
    concurrency = checked.get("max_concurrency_per_account")
    if concurrency is not None and not 1 <= int(concurrency) <= 1000:
        raise PoolerError("max concurrency per account must be between 1 and 1000 (or unset)")
    if "time_zone" in checked:
        checked["time_zone"] = str(checked["time_zone"]).strip() or DEFAULT_ZONE
        if not valid_zone(checked["time_zone"]):
            raise PoolerError("time zone must be an IANA zone name such as UTC or Europe/Berlin")
    if "allowed_models" in checked:
        # An empty list and None both mean "every model"; store None so the snapshot sees one spelling.
        checked["allowed_models"] = [m for m in checked["allowed_models"] or [] if m] or None
    return checked


def update_pool_settings(
    session: Session,
    name: str,
    *,
    actor: Actor,
    label: str | _Unchanged = UNCHANGED,
    strategy: Strategy | str | _Unchanged = UNCHANGED,
    sticky_ttl_seconds: int | _Unchanged = UNCHANGED,
    max_attempts: int | _Unchanged = UNCHANGED,
    primary_cap_percent: float | _Unchanged = UNCHANGED,
    secondary_cap_percent: float | _Unchanged = UNCHANGED,
    max_concurrency_per_account: int | _Unchanged | None = UNCHANGED,
    allowed_models: list[str] | _Unchanged | None = UNCHANGED,
    time_zone: str | _Unchanged = UNCHANGED,
) -> dict[str, dict[str, Any]]:
    """Applies the passed settings to pool `name`; returns the changed fields as {field: {old, new}}.

    Only keywords that were passed are considered; a change writes one `pool.update` audit event and bumps the
    routing version (strategy, caps and the allow-list shape every pick). No change, no event, no bump."""
    pool = get_pool(session, name)
    if pool.status == PoolStatus.ARCHIVED:
        raise ConflictError(f"pool {name!r} is archived; archived pools cannot be edited")
    passed = {
        "strategy": strategy,
        "sticky_ttl_seconds": sticky_ttl_seconds,
        "max_attempts": max_attempts,
        "primary_cap_percent": primary_cap_percent,
        "secondary_cap_percent": secondary_cap_percent,
        "max_concurrency_per_account": max_concurrency_per_account,
        "allowed_models": allowed_models,
        "time_zone": time_zone,
    }
    wanted = _check_settings({k: v for k, v in passed.items() if not isinstance(v, _Unchanged)})
    changes: dict[str, dict[str, Any]] = {}
    for field_name, value in wanted.items():
        old = getattr(pool.settings, field_name)
        if old != value:
            changes[field_name] = {"old": old, "new": value}
            setattr(pool.settings, field_name, value)
    if not isinstance(label, _Unchanged):
        new_label = label.strip()[:200]
        if new_label and new_label != pool.label:
            changes["label"] = {"old": pool.label, "new": new_label}
            pool.label = new_label
    if not changes:
        return changes
    pool.settings.updated_at = pool.updated_at = utcnow()
    audit.record(
        session,
        actor,
        action="pool.update",
        target_type="pool",
        target_id=pool.id,
        target_label=pool.name,
        details={k: {"old": _plain(v["old"]), "new": _plain(v["new"])} for k, v in changes.items()},
    )
    bump_routing_version(session)
    return changes


def _plain(value: Any) -> Any:
    """Enum members as their value, so audit details are plain JSON."""
    return value.value if isinstance(value, Strategy) else value


def archive_pool(session: Session, name: str, *, actor: Actor) -> Pool:
    """Stops routing for good. Revokes nothing: the gateway refuses keys of an archived pool, and the keys stay
    visible for the record. Idempotent (archiving an archived pool changes and audits nothing)."""
    pool = get_pool(session, name)
    if pool.status == PoolStatus.ARCHIVED:
        return pool
    old = pool.status
    pool.status, pool.updated_at = PoolStatus.ARCHIVED, utcnow()
    audit.record(
        session,
        actor,
        action="pool.archive",
        target_type="pool",
        target_id=pool.id,
        target_label=pool.name,
        details={"old_status": old, "new_status": str(PoolStatus.ARCHIVED)},
    )
    bump_routing_version(session)
    return pool
