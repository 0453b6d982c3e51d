"""auth.json import service: new accounts, re-import bumps the credential epoch, pool conflicts, expired tokens."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pooler.audit import Actor
from pooler.crypto.keyring import new_key_material, parse_keyring
from pooler.crypto.secretbox import SecretBox
from pooler.errors import AuthJsonError, NotFoundError
from pooler.models import AccountSecret, AuditEvent, PoolAssignment, UpstreamAccount
from pooler.services import accounts, pools
from pooler.services.credentials import read_token
from pooler.states import AccountState, ActorType, SecretKind
from pooler.versions import routing_version
from tests.support import jwt

ACTOR = Actor(ActorType.CLI, "tester")


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(parse_keyring(f"k1:{new_key_material()}"))


def _pool(factory: sessionmaker[Session]) -> str:
    name = f"acc-{secrets.token_hex(4)}"
    with factory.begin() as s:
        pools.create_pool(s, name=name, actor=ACTOR)
    return name


def _acct() -> str:
    return f"acct-{secrets.token_hex(6)}"


def test_import_stores_sealed_tokens_and_metadata(session_factory: sessionmaker[Session], box: SecretBox) -> None:
    pool, acct = _pool(session_factory), _acct()
    data = jwt.auth_json(account_id=acct, email="erin@example.com", refresh_token="rt_first")
    with session_factory.begin() as s:
        before = routing_version(s)
        result = accounts.import_auth_json(s, box, pool=pool, data=data, actor=ACTOR)
        assert routing_version(s) == before + 1
    assert result.created and result.newly_assigned
    assert (result.label, result.state, result.credential_epoch) == ("erin", AccountState.ACTIVE, 1)
    with session_factory.begin() as s:
        account = s.get(UpstreamAccount, result.account_id)
        assert account is not None
        assert (account.plan_type, account.email, account.chatgpt_user_id) == (
            "plus",
            "erin@example.com",
            "user-test-1",
        )
        assert read_token(s, box, account.id, SecretKind.REFRESH_TOKEN) == "rt_first"
        kinds = s.scalars(select(AccountSecret.kind).where(AccountSecret.account_id == account.id)).all()
        assert sorted(kinds) == ["access_token", "id_token", "refresh_token"]
        for row in s.scalars(select(AccountSecret).where(AccountSecret.account_id == account.id)):
            assert b"rt_first" not in row.ciphertext and row.key_id == "k1"
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "account.import", AuditEvent.target_id == str(account.id))
        ).one()
        assert "erin@example.com" not in repr(event.details) and "rt_first" not in repr(event.details)
        summary = next(a for a in accounts.list_accounts(s, pool) if a.id == account.id)
        assert summary.pools == (pool,)


def test_reimport_updates_credentials_instead_of_duplicating(
    session_factory: sessionmaker[Session], box: SecretBox
) -> None:
    pool, acct = _pool(session_factory), _acct()
    with session_factory.begin() as s:
        first = accounts.import_auth_json(s, box, pool=pool, data=jwt.auth_json(account_id=acct), actor=ACTOR)
    with session_factory.begin() as s:
        with pytest.raises(AuthJsonError) as info:
            accounts.import_auth_json(s, box, pool=pool, data=jwt.auth_json(account_id=acct), actor=ACTOR)
        assert str(info.value) == (
            f"account #{first.account_id} (alice) is already in pool {pool!r}; "
            "import again with replace (--replace) to update its credentials"
        )
    with session_factory.begin() as s:
        second = accounts.import_auth_json(
            s,
            box,
            pool=pool,
            data=jwt.auth_json(account_id=acct, refresh_token="rt_second"),
            actor=ACTOR,
            replace=True,
        )
    assert not second.created and second.account_id == first.account_id and second.credential_epoch == 2
    with session_factory.begin() as s:
        assert s.scalar(select(func.count()).where(UpstreamAccount.chatgpt_account_id == acct)) == 1
        assert read_token(s, box, first.account_id, SecretKind.REFRESH_TOKEN) == "rt_second"
        assert s.scalar(select(func.count()).where(PoolAssignment.account_id == first.account_id)) == 1


def test_same_account_into_second_pool_updates_and_assigns(
    session_factory: sessionmaker[Session], box: SecretBox
) -> None:
    pool_a, pool_b, acct = _pool(session_factory), _pool(session_factory), _acct()
    with session_factory.begin() as s:
        accounts.import_auth_json(s, box, pool=pool_a, data=jwt.auth_json(account_id=acct), actor=ACTOR)
    with session_factory.begin() as s:
        result = accounts.import_auth_json(s, box, pool=pool_b, data=jwt.auth_json(account_id=acct), actor=ACTOR)
    assert not result.created and result.newly_assigned and result.credential_epoch == 2
    with session_factory.begin() as s:
        summary = next(a for a in accounts.list_accounts(s) if a.id == result.account_id)
        assert summary.pools == tuple(sorted([pool_a, pool_b]))


def test_expired_access_token_starts_refresh_due_and_reimport_recovers(
    session_factory: sessionmaker[Session], box: SecretBox
) -> None:
    pool, acct = _pool(session_factory), _acct()
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    with session_factory.begin() as s:
        result = accounts.import_auth_json(
            s, box, pool=pool, data=jwt.auth_json(account_id=acct, expires_at=past), actor=ACTOR
        )
    assert result.state == AccountState.REFRESH_DUE
    with session_factory.begin() as s:
        account = s.get(UpstreamAccount, result.account_id)
        assert account is not None
        account.state = AccountState.REAUTH_REQUIRED
        account.state_reason = "refresh_token_reused"
    with session_factory.begin() as s:
        again = accounts.import_auth_json(
            s, box, pool=pool, data=jwt.auth_json(account_id=acct), actor=ACTOR, replace=True
        )
    assert again.state == AccountState.ACTIVE
    with session_factory.begin() as s:
        account = accounts.get_account(s, again.account_id)
        assert account.state_reason is None and account.refresh_failures == 0


def test_rejections_write_nothing(session_factory: sessionmaker[Session], box: SecretBox) -> None:
    pool = _pool(session_factory)
    with session_factory.begin() as s:
        count = s.scalar(select(func.count()).select_from(UpstreamAccount))
    with session_factory.begin() as s, pytest.raises(NotFoundError):
        accounts.import_auth_json(s, box, pool="no-such-pool", data=jwt.auth_json(account_id=_acct()), actor=ACTOR)
    with session_factory.begin() as s, pytest.raises(AuthJsonError, match="not valid JSON"):
        accounts.import_auth_json(s, box, pool=pool, data=b"nope", actor=ACTOR)
    with session_factory.begin() as s:
        assert s.scalar(select(func.count()).select_from(UpstreamAccount)) == count
