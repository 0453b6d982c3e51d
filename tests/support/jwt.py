"""Tiny JWT builder for tests: unsigned (alg none) or HS256, base64url without padding.

The importer never verifies signatures, so tests only need well-formed tokens with chosen claims.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode(claims: dict[str, Any], secret: str | None = None, signature: str | None = None) -> str:
    """`secret` -> HS256; otherwise alg none with `signature` (any text, e.g. a canary) as the third part."""
    header = {"alg": "HS256" if secret else "none", "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if secret:
        sig = b64url(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())
    else:
        sig = signature or ""
    return f"{signing_input}.{sig}"


def id_token(
    *,
    account_id: str = "acct-test-1",
    user_id: str = "user-test-1",
    plan: str = "plus",
    email: str | None = "alice@example.com",
    extra: dict[str, Any] | None = None,
    signature: str | None = None,
) -> str:
    claims: dict[str, Any] = {
        AUTH_CLAIM: {"chatgpt_account_id": account_id, "chatgpt_plan_type": plan, "chatgpt_user_id": user_id},
        **(extra or {}),
    }
    if email is not None:
        claims["email"] = email
    return encode(claims, signature=signature)


def access_token(
    *,
    account_id: str = "acct-test-1",
    expires_at: dt.datetime | None = None,
    extra: dict[str, Any] | None = None,
    signature: str | None = None,
) -> str:
    exp = expires_at or dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    claims: dict[str, Any] = {
        "exp": int(exp.timestamp()),
        AUTH_CLAIM: {"chatgpt_account_id": account_id},
        **(extra or {}),
    }
    return encode(claims, signature=signature)


def auth_json(
    *,
    account_id: str = "acct-test-1",
    email: str | None = "alice@example.com",
    plan: str = "plus",
    expires_at: dt.datetime | None = None,
    refresh_token: str = "rt_test_refresh",
    canary: str | None = None,
    auth_mode: str | None = "chatgpt",
) -> bytes:
    """A Codex auth.json; `canary` is planted in every token (signature parts, a custom claim, the refresh token)."""
    extra = {"canary_claim": canary} if canary else None
    tokens = {
        "id_token": id_token(account_id=account_id, email=email, plan=plan, extra=extra, signature=canary),
        "access_token": access_token(account_id=account_id, expires_at=expires_at, extra=extra, signature=canary),
        "refresh_token": f"{refresh_token}_{canary}" if canary else refresh_token,
        "account_id": account_id,
    }
    doc: dict[str, Any] = {"OPENAI_API_KEY": None, "tokens": tokens, "last_refresh": "2026-11-20T12:00:00Z"}
    if auth_mode is not None:
        doc["auth_mode"] = auth_mode
    return json.dumps(doc).encode()
