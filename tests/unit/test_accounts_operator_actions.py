"""Accounts service: rename, assign/unassign and refresh requests (audit events, routing version, errors)."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler.audit import Actor
from pooler.crypto.keyring import new_key_material, parse_keyring
from pooler.crypto.secretbox import SecretBox
from pooler.errors import ConflictError, NotFoundError, PoolerError
from pooler.models import AuditEvent, PoolAssignment, UpstreamAccount, utcnow
from pooler.services import accounts, pools
from pooler.states import ActorType
from pooler.versions import routing_version
from tests.support import jwt

ACTOR = Actor(ActorType.OPERATOR, "olga")
BOX = SecretBox(parse_keyring(f"k1:{new_key_material()}"))


def _setup(factory: sessionmaker[Session]) -> tuple[int, str, str]:
    """An account imported into pool A, and an empty pool B."""
    a, b = f"pool-{secrets.token_hex(4)}", f"pool-{secrets.token_hex(4)}"
    with factory.begin() as s:
        pools.create_pool(s, name=a, actor=ACTOR)
        pools.create_pool(s, name=b, actor=ACTOR)
        data = jwt.auth_json(account_id=f"acct-{secrets.token_hex(4)}")
        result = accounts.import_auth_json(s, BOX, pool=a, data=data, actor=ACTOR)
    return result.account_id, a, b


def _actions(s: Session, account_id: int) -> list[str]:
    query = select(AuditEvent.action).where(
        AuditEvent.target_type == "account", AuditEvent.target_id == str(account_id)
    )
    return list(s.scalars(query.order_by(AuditEvent.id)))


def test_rename(session_factory: sessionmaker[Session]) -> None:
    account_id, _, _ = _setup(session_factory)
    with session_factory.begin() as s:
        before = routing_version(s)
        assert accounts.rename_account(s, account_id, "  Laptop 1 ", actor=ACTOR).label == "Laptop 1"
        accounts.rename_account(s, account_id, "Laptop 1", actor=ACTOR)  # same label: no second event
        assert routing_version(s) == before  # a label does not change routing
        with pytest.raises(PoolerError, match="1-200"):
            accounts.rename_account(s, account_id, "  ", actor=ACTOR)
        with pytest.raises(NotFoundError):
            accounts.rename_account(s, 10**9, "x", actor=ACTOR)
    with session_factory.begin() as s:
        assert _actions(s, account_id).count("account.rename") == 1


def test_assign_and_unassign(session_factory: sessionmaker[Session]) -> None:
    account_id, a, b = _setup(session_factory)
    with session_factory.begin() as s:
        before = routing_version(s)
        assert accounts.assign_account(s, account_id, b, actor=ACTOR, priority=5) is True
        assert routing_version(s) == before + 1
        assert accounts.assign_account(s, account_id, b, actor=ACTOR) is False  # idempotent, no bump
        assert routing_version(s) == before + 1
    with session_factory.begin() as s:
        pool_b = pools.get_pool(s, b)
        row = s.scalar(select(PoolAssignment).where(PoolAssignment.pool_id == pool_b.id))
        assert row is not None and row.priority == 5
        before = routing_version(s)
        accounts.unassign_account(s, account_id, pool_b, actor=ACTOR)
        assert routing_version(s) == before + 1
        account = s.get(UpstreamAccount, account_id)
        assert account is not None and {x.pool_id for x in account.assignments} == {pools.get_pool(s, a).id}
        with pytest.raises(NotFoundError, match="not assigned"):
            accounts.unassign_account(s, account_id, b, actor=ACTOR)
        pools.archive_pool(s, b, actor=ACTOR)
        with pytest.raises(ConflictError, match="archived"):
            accounts.assign_account(s, account_id, b, actor=ACTOR)
    with session_factory.begin() as s:
        actions = _actions(s, account_id)
        assert actions.count("account.assign") == 1 and actions.count("account.unassign") == 1


def test_request_refresh(session_factory: sessionmaker[Session]) -> None:
    account_id, _, _ = _setup(session_factory)
    with session_factory.begin() as s:
        account = s.get(UpstreamAccount, account_id)
        assert account is not None
        account.refresh_not_before = utcnow()  # a failure backoff the operator overrides
    with session_factory.begin() as s:
        accounts.request_refresh(s, account_id, actor=ACTOR)
    with session_factory.begin() as s:
        account = s.get(UpstreamAccount, account_id)
        assert account is not None
        # Due at the scheduler's next tick, but still routable: no 401-style refresh flag.
        assert account.state == "refresh_due" and account.refresh_not_before is None
        assert account.refresh_requested_at is None
        assert "account.refresh_requested" in _actions(s, account_id)
        assert "account.state_change" in _actions(s, account_id)
