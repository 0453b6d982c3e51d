"""Secret box: tampering with ciphertext, nonce, AAD or key id fails; rotation re-encrypts everything so the old
key can be removed from the keyring."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler import settings
from pooler.audit import Actor
from pooler.crypto.keyring import Keyring, new_key_material, parse_keyring
from pooler.crypto.secretbox import NONCE_BYTES, Sealed, SecretBox
from pooler.db import make_engine, make_session_factory
from pooler.errors import SecretBoxError
from pooler.migrate import upgrade
from pooler.models import AccountSecret, Operator
from pooler.services import accounts, operators, pools
from pooler.services.credentials import read_token
from pooler.services.secrets_rotation import rotate_secrets
from pooler.states import ActorType, SecretKind
from tests.support import jwt
from tests.support.databases import psycopg_url, throwaway_postgres_database

ACTOR = Actor(ActorType.CLI, "tester")
K1, K2 = new_key_material(), new_key_material()


def _box(spec: str) -> SecretBox:
    return SecretBox(parse_keyring(spec))


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def test_round_trip_and_fresh_nonce() -> None:
    box = _box(f"k1:{K1}")
    a, b = box.seal("account:1", "refresh_token", "rt_x"), box.seal("account:1", "refresh_token", "rt_x")
    assert a.key_id == "k1" and len(a.nonce) == NONCE_BYTES
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext
    assert b"rt_x" not in a.ciphertext
    assert box.open("account:1", "refresh_token", a) == "rt_x"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda s: dataclasses.replace(s, ciphertext=_flip(s.ciphertext)), id="ciphertext"),
        pytest.param(lambda s: dataclasses.replace(s, ciphertext=_flip(s.ciphertext, -1)), id="tag"),
        pytest.param(lambda s: dataclasses.replace(s, nonce=_flip(s.nonce)), id="nonce"),
        pytest.param(lambda s: dataclasses.replace(s, nonce=s.nonce[:8]), id="short-nonce"),
        pytest.param(lambda s: dataclasses.replace(s, key_id="k2"), id="key-id-swapped"),
        pytest.param(lambda s: dataclasses.replace(s, key_id="gone"), id="key-id-unknown"),
    ],
)
def test_tampered_sealed_secret_fails(tamper) -> None:  # type: ignore[no-untyped-def]
    box = _box(f"k1:{K1},k2:{K2}")
    sealed = box.seal("account:7", "access_token", "at_secret")
    with pytest.raises(SecretBoxError):
        box.open("account:7", "access_token", tamper(sealed))


@pytest.mark.parametrize(("subject", "kind"), [("account:8", "access_token"), ("account:7", "refresh_token")])
def test_aad_binds_subject_and_kind(subject: str, kind: str) -> None:
    box = _box(f"k1:{K1}")
    sealed = box.seal("account:7", "access_token", "at_secret")
    with pytest.raises(SecretBoxError) as info:
        box.open(subject, kind, sealed)
    assert "at_secret" not in str(info.value)


def test_key_id_is_bound_even_when_both_keys_are_equal() -> None:
    # Same key material under two ids: relabelling the key id still fails, because the id is in the AAD.
    box = SecretBox(Keyring(keys={"a": bytes(32), "b": bytes(32)}, current_id="a"))
    sealed = box.seal("s", "k", "v")
    with pytest.raises(SecretBoxError):
        box.open("s", "k", Sealed("b", sealed.nonce, sealed.ciphertext))


def test_old_keys_decrypt_new_key_encrypts() -> None:
    old = _box(f"k1:{K1}").seal("s", "k", "v")
    box = _box(f"k2:{K2},k1:{K1}")
    assert box.open("s", "k", old) == "v"
    assert box.needs_rotation(old)
    assert box.seal("s", "k", "v").key_id == "k2"
    with pytest.raises(SecretBoxError, match="not in the keyring"):
        _box(f"k2:{K2}").open("s", "k", old)


@pytest.fixture(params=["sqlite", "postgres"])
def private_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A database of its own: rotation touches every secret, so secrets of other tests (sealed with other keys)
    must not be in it."""

    def factory_for(url: str) -> Iterator[sessionmaker[Session]]:
        upgrade(url)
        engine = make_engine(psycopg_url(url) if url.startswith("postgresql") else url)
        try:
            yield make_session_factory(engine)
        finally:
            engine.dispose()

    if request.param == "sqlite":
        yield from factory_for(f"sqlite:///{tmp_path / 'rotation.db'}")
    else:
        with throwaway_postgres_database("pooler_rot") as url:
            yield from factory_for(url)


@pytest.fixture
def secret_setting(monkeypatch: pytest.MonkeyPatch) -> str:
    name = "test_rotation_secret"
    monkeypatch.setitem(settings.CATALOGUE, name, settings._s(name, str, None, "test only", secret=True))
    return name


def test_rotation_reencrypts_everything_then_old_key_can_go(
    private_factory: sessionmaker[Session], secret_setting: str
) -> None:
    session_factory = private_factory
    old_box, rotating_box, new_only = _box(f"k1:{K1}"), _box(f"k2:{K2},k1:{K1}"), _box(f"k2:{K2}")
    pool = f"rot-{secrets.token_hex(4)}"
    with session_factory.begin() as s:
        pools.create_pool(s, name=pool, actor=ACTOR)
        result = accounts.import_auth_json(
            s, old_box, pool=pool, data=jwt.auth_json(account_id=f"acct-{pool}", refresh_token="rt_rot"), actor=ACTOR
        )
        settings.set_setting(s, secret_setting, "setting-secret", actor=ACTOR, box=old_box)
        op = operators.create_operator(s, username=f"op-{pool}", password="a-Long-passw0rd!x", role="owner")
        operators.set_totp_seed(old_box, op, "JBSWY3DPEHPK3PXP")
        op_id = op.id

    with session_factory.begin() as s:
        report = rotate_secrets(s, rotating_box, actor=ACTOR)
    assert report.current_key_id == "k2"
    assert report.account_secrets >= 3 and report.settings == 1 and report.operator_totp >= 1

    with session_factory.begin() as s:
        assert set(s.scalars(select(AccountSecret.key_id))) == {"k2"}
        # The old key is gone from the keyring: everything still opens.
        assert read_token(s, new_only, result.account_id, SecretKind.REFRESH_TOKEN) == "rt_rot"
        assert settings.get_setting(s, secret_setting, new_only) == "setting-secret"
        operator = s.get(Operator, op_id)
        assert operator is not None and operators.totp_seed(new_only, operator) == "JBSWY3DPEHPK3PXP"
        settings.reset_setting(s, secret_setting, actor=ACTOR)
    with session_factory.begin() as s:
        again = rotate_secrets(s, rotating_box, actor=ACTOR)
        assert again.rotated == 0 and again.already_current >= 3


def test_rotation_is_all_or_nothing(private_factory: sessionmaker[Session]) -> None:
    session_factory = private_factory
    old_box = _box(f"k1:{K1}")
    pool = f"rot-{secrets.token_hex(4)}"
    with session_factory.begin() as s:
        pools.create_pool(s, name=pool, actor=ACTOR)
        result = accounts.import_auth_json(
            s, old_box, pool=pool, data=jwt.auth_json(account_id=f"acct-{pool}"), actor=ACTOR
        )
        row = s.scalars(select(AccountSecret).where(AccountSecret.account_id == result.account_id)).first()
        assert row is not None
        row.ciphertext = _flip(row.ciphertext)
        row_id = row.id
    with pytest.raises(SecretBoxError), session_factory.begin() as s:
        rotate_secrets(s, _box(f"k2:{K2},k1:{K1}"), actor=ACTOR)
    with session_factory.begin() as s:
        keys_after = set(s.scalars(select(AccountSecret.key_id).where(AccountSecret.account_id == result.account_id)))
        assert keys_after == {"k1"}  # rolled back: nothing half-rotated
        s.delete(s.get(AccountSecret, row_id))
