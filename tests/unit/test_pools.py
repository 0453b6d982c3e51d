"""Pools service: create (with settings), list, show with readiness counts, pause/resume, audit and versions."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler.audit import Actor
from pooler.crypto.keyring import new_key_material, parse_keyring
from pooler.crypto.secretbox import SecretBox
from pooler.errors import ConflictError, NotFoundError, PoolerError
from pooler.models import AuditEvent
from pooler.services import accounts, pools
from pooler.states import AccountState, ActorType, PoolStatus, Strategy
from pooler.versions import routing_version
from tests.support import jwt

ACTOR = Actor(ActorType.CLI, "tester")
PAST = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def _name() -> str:
    return f"pool-{secrets.token_hex(4)}"


def test_create_list_show(session_factory: sessionmaker[Session]) -> None:
    name = _name()
    box = SecretBox(parse_keyring(f"k1:{new_key_material()}"))
    with session_factory.begin() as s:
        before = routing_version(s)
        pool = pools.create_pool(s, name=name, label="Team", strategy="round-robin", actor=ACTOR)
        assert pool.settings.strategy == Strategy.ROUND_ROBIN
        assert pool.settings.sticky_ttl_seconds == 3600  # from the sticky_ttl_default_seconds setting
        assert routing_version(s) == before + 1
        acct = f"acct-{secrets.token_hex(4)}"
        accounts.import_auth_json(s, box, pool=name, data=jwt.auth_json(account_id=acct), actor=ACTOR)
        accounts.import_auth_json(
            s, box, pool=name, data=jwt.auth_json(account_id=acct + "-b", expires_at=PAST), actor=ACTOR
        )
    with session_factory.begin() as s:
        summary = next(p for p in pools.list_pools(s) if p.name == name)
        assert (summary.accounts, summary.ready_accounts, summary.label) == (2, 1, "Team")
        detail = pools.show_pool(s, name)
        assert detail.state_counts == {AccountState.ACTIVE: 1, AccountState.REFRESH_DUE: 1}
        assert detail.ready_accounts == 1
        audit = s.scalars(select(AuditEvent).where(AuditEvent.target_label == name)).all()
        assert [e.action for e in audit] == ["pool.create"]


def test_duplicate_invalid_and_missing(session_factory: sessionmaker[Session]) -> None:
    name = _name()
    with session_factory.begin() as s:
        pools.create_pool(s, name=name, actor=ACTOR)
    with session_factory.begin() as s:
        with pytest.raises(ConflictError, match="already exists"):
            pools.create_pool(s, name=name, actor=ACTOR)
        with pytest.raises(PoolerError, match="pool name"):
            pools.create_pool(s, name="Bad Name", actor=ACTOR)
        with pytest.raises(PoolerError, match="unknown strategy"):
            pools.create_pool(s, name=_name(), strategy="fastest", actor=ACTOR)
        with pytest.raises(NotFoundError, match="does not exist"):
            pools.show_pool(s, "no-such-pool")


def test_pause_resume_audited_once(session_factory: sessionmaker[Session]) -> None:
    name = _name()
    with session_factory.begin() as s:
        pools.create_pool(s, name=name, actor=ACTOR)
    with session_factory.begin() as s:
        assert pools.pause_pool(s, name, actor=ACTOR).status == PoolStatus.PAUSED
        pools.pause_pool(s, name, actor=ACTOR)  # idempotent
        assert pools.resume_pool(s, name, actor=ACTOR).status == PoolStatus.ACTIVE
    with session_factory.begin() as s:
        actions = s.scalars(
            select(AuditEvent.action).where(AuditEvent.target_label == name).order_by(AuditEvent.id)
        ).all()
        assert actions == ["pool.create", "pool.pause", "pool.resume"]
