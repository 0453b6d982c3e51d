"""Pools service: settings edit and archive (audit event, routing version bump, validation, idempotence)."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler.audit import Actor
from pooler.errors import ConflictError, PoolerError
from pooler.models import AuditEvent
from pooler.services import pools
from pooler.states import ActorType, PoolStatus, Strategy
from pooler.versions import routing_version

ACTOR = Actor(ActorType.OPERATOR, "olga")


def _pool(factory: sessionmaker[Session]) -> str:
    name = f"pool-{secrets.token_hex(4)}"
    with factory.begin() as s:
        pools.create_pool(s, name=name, actor=ACTOR)
    return name


def _events(s: Session, name: str, action: str) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.target_label == name, AuditEvent.action == action)
    return list(s.scalars(query))


def test_update_settings_audits_and_bumps(session_factory: sessionmaker[Session]) -> None:
    name = _pool(session_factory)
    with session_factory.begin() as s:
        before = routing_version(s)
        changes = pools.update_pool_settings(
            s,
            name,
            actor=ACTOR,
            label="Team A",
            strategy="round-robin",
            primary_cap_percent=80.0,
            max_concurrency_per_account=4,
            allowed_models=["gpt-5", ""],
        )
        assert set(changes) == {
            "label",
            "strategy",
            "primary_cap_percent",
            "max_concurrency_per_account",
            "allowed_models",
        }
        assert routing_version(s) == before + 1
    with session_factory.begin() as s:
        pool = pools.get_pool(s, name)
        assert (pool.label, pool.settings.strategy) == ("Team A", Strategy.ROUND_ROBIN)
        assert pool.settings.allowed_models == ["gpt-5"]
        assert pool.settings.max_attempts == 3  # not passed: unchanged
        (event,) = _events(s, name, "pool.update")
        assert event.actor_label == "olga"
        assert event.details is not None and event.details["primary_cap_percent"] == {"old": 100.0, "new": 80.0}


def test_update_settings_without_change_is_silent(session_factory: sessionmaker[Session]) -> None:
    name = _pool(session_factory)
    with session_factory.begin() as s:
        before = routing_version(s)
        assert pools.update_pool_settings(s, name, actor=ACTOR, max_attempts=3, allowed_models=[]) == {}
        assert routing_version(s) == before
        assert _events(s, name, "pool.update") == []
        # None clears: the concurrency cap and the allow-list accept "unset".
        pools.update_pool_settings(s, name, actor=ACTOR, max_concurrency_per_account=2)
        pools.update_pool_settings(s, name, actor=ACTOR, max_concurrency_per_account=None)
        assert pools.get_pool(s, name).settings.max_concurrency_per_account is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("strategy", "fastest", "unknown strategy"),
        ("max_attempts", 11, "max attempts"),
        ("primary_cap_percent", 0.5, "primary cap percent"),
        ("sticky_ttl_seconds", -1, "sticky TTL"),
        ("max_concurrency_per_account", 0, "max concurrency"),
    ],
)
def test_update_settings_validates(
    session_factory: sessionmaker[Session], field: str, value: object, message: str
) -> None:
    name = _pool(session_factory)
    with session_factory() as s, pytest.raises(PoolerError, match=message):
        pools.update_pool_settings(s, name, actor=ACTOR, **{field: value})  # type: ignore[arg-type]


def test_archive_is_final_and_idempotent(session_factory: sessionmaker[Session]) -> None:
    name = _pool(session_factory)
    with session_factory.begin() as s:
        before = routing_version(s)
        assert pools.archive_pool(s, name, actor=ACTOR).status == PoolStatus.ARCHIVED
        assert routing_version(s) == before + 1
        pools.archive_pool(s, name, actor=ACTOR)
        assert routing_version(s) == before + 1
        assert len(_events(s, name, "pool.archive")) == 1
    with session_factory.begin() as s:
        with pytest.raises(ConflictError, match="archived"):
            pools.update_pool_settings(s, name, actor=ACTOR, max_attempts=2)
        with pytest.raises(ConflictError, match="archived"):
            pools.pause_pool(s, name, actor=ACTOR)


def test_time_zone_is_set_on_create_and_validated(session_factory: sessionmaker[Session]) -> None:
    actor = Actor(ActorType.CLI, "tester")
    name = f"tz-{secrets.token_hex(3)}"
    with session_factory.begin() as session:
        pool = pools.create_pool(session, name=name, actor=actor, time_zone="Asia/Tokyo")
        assert pool.settings.time_zone == "Asia/Tokyo"
        with pytest.raises(PoolerError):
            pools.create_pool(session, name=f"{name}-x", actor=actor, time_zone="Nowhere/Land")
        changes = pools.update_pool_settings(session, name, actor=actor, time_zone="Europe/Berlin")
        assert changes == {"time_zone": {"old": "Asia/Tokyo", "new": "Europe/Berlin"}}
