"""Pool keys: raw key never stored, wrong secret rejected, every state reported, rotation and limits."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pooler.audit import Actor
from pooler.crypto.hashing import KeyedHasher
from pooler.errors import ConflictError, NotFoundError, PoolerError
from pooler.models import AuditEvent
from pooler.services import keys, pools
from pooler.services.keys import KeyCheckStatus
from pooler.states import ActorType
from pooler.versions import routing_version
from tests.support.dbscan import dump_all_tables

ACTOR = Actor(ActorType.CLI, "tester")
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def hasher() -> KeyedHasher:
    return KeyedHasher(secrets.token_bytes(32))


@pytest.fixture
def pool_name(session_factory: sessionmaker[Session]) -> str:
    name = f"keys-{secrets.token_hex(4)}"
    with session_factory.begin() as s:
        pools.create_pool(s, name=name, actor=ACTOR)
    return name


def _create(factory: sessionmaker[Session], hasher: KeyedHasher, pool: str, **kw: object) -> tuple[str, str]:
    with factory.begin() as s:
        created = keys.create_key(s, hasher, pool=pool, label="ci", actor=ACTOR, **kw)  # type: ignore[arg-type]
        return created.raw, created.key.prefix


def _check(factory: sessionmaker[Session], hasher: KeyedHasher, raw: str, now: dt.datetime = NOW) -> KeyCheckStatus:
    with factory.begin() as s:
        return keys.check_key(s, hasher, raw, now).status


def test_raw_key_is_never_stored(
    engine: Engine, session_factory: sessionmaker[Session], hasher: KeyedHasher, pool_name: str
) -> None:
    raw, prefix = _create(session_factory, hasher, pool_name, allowed_models=["gpt-5"], requests_per_minute=5)
    with session_factory.begin() as s:
        rotated = keys.rotate_key(s, hasher, prefix, actor=ACTOR)
    blob = dump_all_tables(engine)
    # cpk_<public id>_<secret>: the secret is token_urlsafe, which may itself contain "_".
    for value in (raw, raw.split("_", 2)[2], rotated.raw, rotated.raw.split("_", 2)[2]):
        assert len(value) >= 43 and value.encode() not in blob
    assert prefix.encode() in blob  # the public prefix is stored (sanity check of the scan itself)


def test_active_key_checks_and_wrong_secret_is_rejected(
    session_factory: sessionmaker[Session], hasher: KeyedHasher, pool_name: str
) -> None:
    raw, prefix = _create(session_factory, hasher, pool_name)
    assert _check(session_factory, hasher, raw) == KeyCheckStatus.ACTIVE
    forged = f"{prefix}_{secrets.token_urlsafe(32)}"
    assert _check(session_factory, hasher, forged) == KeyCheckStatus.WRONG_SECRET
    # Same key checked against another server's pepper: not ours.
    assert _check(session_factory, KeyedHasher(secrets.token_bytes(32)), raw) == KeyCheckStatus.WRONG_SECRET
    assert _check(session_factory, hasher, "cpk_zzzzzzzz_" + "a" * 43) == KeyCheckStatus.UNKNOWN
    assert _check(session_factory, hasher, "not a key") == KeyCheckStatus.UNKNOWN
    assert _check(session_factory, hasher, raw + "x") == KeyCheckStatus.UNKNOWN


def test_paused_revoked_and_expired_report_their_state(
    session_factory: sessionmaker[Session], hasher: KeyedHasher, pool_name: str
) -> None:
    raw, prefix = _create(session_factory, hasher, pool_name)
    with session_factory.begin() as s:
        keys.pause_key(s, prefix, actor=ACTOR)
    assert _check(session_factory, hasher, raw) == KeyCheckStatus.PAUSED
    # A wrong secret must not learn the state.
    assert _check(session_factory, hasher, f"{prefix}_{'b' * 43}") == KeyCheckStatus.WRONG_SECRET
    with session_factory.begin() as s:
        keys.resume_key(s, prefix, actor=ACTOR)
    assert _check(session_factory, hasher, raw) == KeyCheckStatus.ACTIVE
    with session_factory.begin() as s:
        keys.revoke_key(s, prefix, actor=ACTOR)
    assert _check(session_factory, hasher, raw) == KeyCheckStatus.REVOKED
    with session_factory.begin() as s, pytest.raises(ConflictError):
        keys.resume_key(s, prefix, actor=ACTOR)
    with session_factory.begin() as s, pytest.raises(ConflictError):
        keys.rotate_key(s, hasher, prefix, actor=ACTOR)

    expiring, _ = _create(session_factory, hasher, pool_name, expires_at=NOW + dt.timedelta(hours=1), now=NOW)
    assert _check(session_factory, hasher, expiring, NOW) == KeyCheckStatus.ACTIVE
    assert _check(session_factory, hasher, expiring, NOW + dt.timedelta(hours=2)) == KeyCheckStatus.EXPIRED


def test_paused_pool_is_reported(session_factory: sessionmaker[Session], hasher: KeyedHasher, pool_name: str) -> None:
    raw, _ = _create(session_factory, hasher, pool_name)
    with session_factory.begin() as s:
        pools.pause_pool(s, pool_name, actor=ACTOR)
    assert _check(session_factory, hasher, raw) == KeyCheckStatus.POOL_PAUSED


def test_rotate_replaces_secret_and_prefix(
    session_factory: sessionmaker[Session], hasher: KeyedHasher, pool_name: str
) -> None:
    raw, prefix = _create(session_factory, hasher, pool_name, tokens_per_day=1000)
    with session_factory.begin() as s:
        before = routing_version(s)
        rotated = keys.rotate_key(s, hasher, prefix, actor=ACTOR)
        new_prefix = rotated.key.prefix
    assert new_prefix != prefix and rotated.raw.startswith(new_prefix + "_")
    assert _check(session_factory, hasher, raw) == KeyCheckStatus.UNKNOWN
    assert _check(session_factory, hasher, rotated.raw) == KeyCheckStatus.ACTIVE
    with session_factory.begin() as s:
        key = keys.get_key(s, new_prefix)
        assert key.tokens_per_day == 1000 and key.rotated_at is not None
        assert routing_version(s) > before
        with pytest.raises(NotFoundError):
            keys.get_key(s, prefix)


def test_create_validates_and_audits(
    session_factory: sessionmaker[Session], hasher: KeyedHasher, pool_name: str
) -> None:
    with session_factory.begin() as s:
        with pytest.raises(NotFoundError, match="pool 'missing' does not exist"):
            keys.create_key(s, hasher, pool="missing", label="x", actor=ACTOR)
        with pytest.raises(PoolerError, match="in the future"):
            keys.create_key(s, hasher, pool=pool_name, label="x", actor=ACTOR, expires_at=NOW - dt.timedelta(1))
        with pytest.raises(PoolerError, match="requests per minute"):
            keys.create_key(s, hasher, pool=pool_name, label="x", actor=ACTOR, requests_per_minute=0)
    raw, prefix = _create(session_factory, hasher, pool_name, allowed_models=["b", "a", "a"])
    with session_factory.begin() as s:
        key = keys.get_key(s, prefix)
        assert key.allowed_models == ["a", "b"]
        assert [k.prefix for k in keys.list_keys(s, pool_name)] == [prefix]
        events = s.query(AuditEvent).filter(AuditEvent.target_label == prefix).all()
        assert [e.action for e in events] == ["key.create"]
        assert raw not in repr(events[0].details)
