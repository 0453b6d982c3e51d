"""Token refresh over httpx.MockTransport: request shape, partial responses and failure classes."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import httpx
import pytest

from pooler.oauth import FailureKind, RefreshFailure, classify_failure, refresh_tokens, token_expiry
from pooler.oauth.errors import error_code, parse_retry_after

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def jwt(claims: dict[str, Any]) -> str:
    def enc(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'none'})}.{enc(claims)}.sig"


def client(handler: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "refresh_token_reused", "message": "x"}},
        {"error": "refresh_token_expired"},
        {"code": "refresh_token_invalidated"},
        {"error": "invalid_grant", "error_description": "bad"},
    ],
)
def test_permanent_codes_in_every_body_shape(body: dict[str, Any]) -> None:
    failure = classify_failure(400, body, None, NOW)
    assert failure.kind == FailureKind.PERMANENT
    assert failure.code in {
        "refresh_token_reused",
        "refresh_token_expired",
        "refresh_token_invalidated",
        "invalid_grant",
    }


def test_401_is_permanent_whatever_the_body() -> None:
    assert classify_failure(401, None, None, NOW).kind == FailureKind.PERMANENT
    assert classify_failure(401, None, None, NOW).code == "unauthorized"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 400, 403])
def test_other_failures_are_transient(status: int) -> None:
    failure = classify_failure(status, {"error": {"message": "nope"}}, None, NOW)
    assert failure.kind == FailureKind.TRANSIENT
    assert failure.code == f"http_{status}"


def test_429_is_rate_limited_with_retry_after() -> None:
    failure = classify_failure(429, None, "30", NOW)
    assert failure.kind == FailureKind.RATE_LIMITED and failure.retry_after == 30
    http_date = "Fri, 20 Nov 2026 12:01:00 GMT"
    assert classify_failure(429, None, http_date, NOW).retry_after == 60
    assert classify_failure(429, None, None, NOW).retry_after == 60  # default wait


def test_error_code_is_never_an_echoed_secret() -> None:
    assert error_code({"error": "rt_abc def"}) is None  # spaces: not a code
    assert error_code({"error": {"code": "x" * 100}}) is None
    assert parse_retry_after("soon", NOW) is None


def test_refresh_sends_the_documented_request_and_replaces_only_present_fields() -> None:
    seen: list[dict[str, Any]] = []
    access = jwt({"exp": int(NOW.timestamp()) + 864000})

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/oauth/token"
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"access_token": access, "refresh_token": "rt_new"})

    tokens = refresh_tokens(client(handler), "http://auth.test/", "cid", "rt_old", now=NOW)
    assert seen == [
        {"client_id": "cid", "grant_type": "refresh_token", "refresh_token": "rt_old", "scope": "openid profile email"}
    ]
    assert tokens.access_token == access and tokens.refresh_token == "rt_new" and tokens.id_token is None
    assert "rt_new" not in repr(tokens)
    assert token_expiry(access) == NOW + dt.timedelta(days=10)


def test_refresh_raises_classified_failures() -> None:
    def reused(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "refresh_token_reused"}})

    with pytest.raises(RefreshFailure) as info:
        refresh_tokens(client(reused), "http://auth.test", "cid", "rt")
    assert info.value.kind == FailureKind.PERMANENT and info.value.code == "refresh_token_reused"

    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "30"}, text="slow down")

    with pytest.raises(RefreshFailure) as info:
        refresh_tokens(client(limited), "http://auth.test", "cid", "rt")
    assert info.value.kind == FailureKind.RATE_LIMITED and info.value.retry_after == 30

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(RefreshFailure) as info:
        refresh_tokens(client(down), "http://auth.test", "cid", "rt")
    assert info.value.kind == FailureKind.TRANSIENT and info.value.code == "network_error"


def test_token_expiry_of_opaque_tokens_is_unknown() -> None:
    assert token_expiry("opaque") is None
    assert token_expiry(jwt({"sub": "x"})) is None
