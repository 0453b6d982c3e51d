"""auth.json parsing: the happy paths, every rejection with its exact message, and random input never escapes
as anything but AuthJsonError."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pooler.authjson import (
    MAX_AUTH_JSON_BYTES,
    MSG_API_KEY_MODE,
    MSG_NO_ACCOUNT_ID,
    MSG_NOT_JSON,
    MSG_NOT_OBJECT,
    MSG_TOO_LARGE,
    default_label,
    parse_auth_json,
)
from pooler.errors import AuthJsonError
from tests.support import jwt


def _doc(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data)
    return doc


def _reject(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    with pytest.raises(AuthJsonError) as info:
        parse_auth_json(raw)
    return str(info.value)


def test_parses_codex_auth_json() -> None:
    expires = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    parsed = parse_auth_json(jwt.auth_json(account_id="acct-42", email="carol@example.com", expires_at=expires))
    assert parsed.chatgpt_account_id == "acct-42"
    assert parsed.chatgpt_user_id == "user-test-1"
    assert parsed.plan_type == "plus"
    assert parsed.email == "carol@example.com"
    assert parsed.access_token_expires_at == expires
    assert parsed.last_refresh_at == dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
    assert parsed.refresh_token == "rt_test_refresh"
    assert default_label(parsed) == "carol"
    assert not parsed.access_token_expired(dt.datetime(2029, 1, 1, tzinfo=dt.UTC))
    assert parsed.access_token_expired(expires)


def test_tokens_are_not_in_repr() -> None:
    parsed = parse_auth_json(jwt.auth_json(canary="CANARYREPR"))
    assert "CANARYREPR" not in repr(parsed)
    assert "rt_test" not in repr(parsed)


def test_auth_mode_may_be_missing_and_hs256_tokens_work() -> None:
    doc = _doc(jwt.auth_json(auth_mode=None))
    doc["tokens"]["id_token"] = jwt.encode(
        {jwt.AUTH_CLAIM: {"chatgpt_account_id": "acct-x"}, jwt.PROFILE_CLAIM: {"email": "dave@example.com"}},
        secret="not-verified",
    )
    del doc["tokens"]["account_id"]
    parsed = parse_auth_json(json.dumps(doc).encode())
    assert parsed.chatgpt_account_id == "acct-x"
    assert parsed.email == "dave@example.com"


def test_label_falls_back_to_account_id() -> None:
    parsed = parse_auth_json(jwt.auth_json(account_id="acct-nomail", email=None))
    assert parsed.email is None
    assert default_label(parsed) == "acct-nomail"


def test_not_json() -> None:
    assert _reject(b"{not json") == MSG_NOT_JSON == "auth.json is not valid JSON"
    assert _reject(b"\xff\xfe\x00garbage") == MSG_NOT_JSON
    assert _reject(b"[" * 50_000) == MSG_NOT_JSON  # nesting deep enough to hit the recursion limit


def test_not_an_object() -> None:
    assert _reject(b"[1, 2]") == MSG_NOT_OBJECT


def test_too_large() -> None:
    big = b'{"pad": "' + b"x" * MAX_AUTH_JSON_BYTES + b'"}'
    assert _reject(big) == MSG_TOO_LARGE == "auth.json is larger than 64 KiB; this is not a Codex auth.json"


def test_api_key_mode() -> None:
    assert _reject({"OPENAI_API_KEY": "sk-SECRETVALUE"}) == MSG_API_KEY_MODE
    assert _reject({"auth_mode": "apikey", "OPENAI_API_KEY": None, "tokens": None}) == MSG_API_KEY_MODE
    assert "sk-SECRETVALUE" not in MSG_API_KEY_MODE


def test_missing_tokens_names_them() -> None:
    assert _reject({"auth_mode": "chatgpt"}) == (
        "auth.json is missing tokens: tokens.id_token, tokens.access_token, tokens.refresh_token"
    )
    doc = _doc(jwt.auth_json())
    del doc["tokens"]["refresh_token"]
    assert _reject(doc) == "auth.json is missing tokens: tokens.refresh_token"
    doc = _doc(jwt.auth_json())
    doc["tokens"]["access_token"] = ""
    assert _reject(doc) == "auth.json is missing tokens: tokens.access_token"


@pytest.mark.parametrize("name", ["id_token", "access_token"])
@pytest.mark.parametrize(
    "bad",
    [
        "SECRET-not-a-jwt",
        "a.b",
        "a..c",
        "eyJhbGciOiJub25lIn0.%%%SECRET%%%.sig",
        "x." + base64.urlsafe_b64encode(b"[1,2]").decode() + ".y",
        "x." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".y",
    ],
)
def test_undecodable_jwt(name: str, bad: str) -> None:
    doc = _doc(jwt.auth_json())
    doc["tokens"][name] = bad
    message = _reject(doc)
    assert message == f"auth.json tokens.{name} is not a decodable JWT"
    assert "SECRET" not in message


def test_no_account_id() -> None:
    doc = _doc(jwt.auth_json())
    del doc["tokens"]["account_id"]
    doc["tokens"]["id_token"] = jwt.encode({"email": "x@example.com"})
    doc["tokens"]["access_token"] = jwt.encode({"exp": 2_000_000_000})
    assert _reject(doc) == MSG_NO_ACCOUNT_ID


def test_expiry_and_last_refresh_are_optional() -> None:
    doc = _doc(jwt.auth_json())
    doc["tokens"]["access_token"] = jwt.encode({"exp": "soon"})
    doc["last_refresh"] = "yesterday"
    parsed = parse_auth_json(json.dumps(doc).encode())
    assert parsed.access_token_expires_at is None
    assert parsed.last_refresh_at is None


# --- property tests: whatever comes in, only AuthJsonError (or a ParsedAuth) comes out -------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _jwt_like(payload: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{body}."


token_values = json_values | st.text(max_size=40) | json_values.map(_jwt_like)
claims = st.fixed_dictionaries(
    {},
    optional={
        "exp": st.integers() | st.floats() | st.text(max_size=5) | st.none(),
        "email": st.text(max_size=30) | st.integers(),
        jwt.AUTH_CLAIM: st.dictionaries(
            st.sampled_from(["chatgpt_account_id", "chatgpt_plan_type", "chatgpt_user_id"]), json_values
        )
        | json_values,
        jwt.PROFILE_CLAIM: json_values,
    },
)
auth_docs = st.fixed_dictionaries(
    {},
    optional={
        "auth_mode": st.sampled_from(["chatgpt", "apikey", "API_KEY", ""]) | json_values,
        "OPENAI_API_KEY": st.none() | st.text(max_size=10) | json_values,
        "last_refresh": st.text(max_size=30) | json_values,
        "tokens": st.fixed_dictionaries(
            {},
            optional={
                "id_token": claims.map(_jwt_like) | token_values,
                "access_token": claims.map(_jwt_like) | token_values,
                "refresh_token": token_values,
                "account_id": st.text(max_size=250) | json_values,
            },
        )
        | json_values,
    },
)


def _only_auth_json_error(data: bytes) -> None:
    try:
        parsed = parse_auth_json(data)
    except AuthJsonError:
        return
    assert parsed.chatgpt_account_id
    assert len(parsed.chatgpt_account_id) <= 200


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_auth_json_error(data: bytes) -> None:
    _only_auth_json_error(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json_only_raises_auth_json_error(value: object) -> None:
    _only_auth_json_error(json.dumps(value).encode())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(auth_docs)
def test_random_auth_shaped_documents_only_raise_auth_json_error(doc: dict[str, Any]) -> None:
    _only_auth_json_error(json.dumps(doc).encode())
