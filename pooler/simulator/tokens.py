"""JWTs and refresh tokens the simulator issues and honours.

Access and id tokens are HS256 JWTs signed with the simulator secret, so they verify statelessly and
`pooler simulator make-auth` can mint them offline. Refresh tokens are `rt_<payload>.<mac>`: also verifiable
without state (so offline-minted files work), while single use is enforced by the server remembering spent ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

DEFAULT_SECRET = "codex-pooler-simulator-dev-secret"
SECRET_ENV = "POOLER_SIM_SECRET"
CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"
ISSUER = "https://auth.openai.com"
ACCESS_TTL_SECONDS = 10 * 24 * 3600
ID_TTL_SECONDS = 3600
# A private claim tells an access token from an id token, so an id token is never accepted as a bearer.
KIND_CLAIM = "sim_kind"


class TokenError(Exception):
    """A token did not verify; the message is safe to return to a client (it never echoes the token)."""


def default_secret() -> str:
    return os.environ.get(SECRET_ENV) or DEFAULT_SECRET


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def encode_jwt(claims: dict[str, Any], secret: str) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{_b64(_mac(secret, signing_input))}"


def decode_jwt(token: str, secret: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed token")
    try:
        signature = _unb64(parts[2])
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, json.JSONDecodeError) as exc:
        raise TokenError("malformed token") from exc
    if not hmac.compare_digest(signature, _mac(secret, f"{parts[0]}.{parts[1]}".encode())):
        raise TokenError("bad signature")
    if not isinstance(claims, dict):
        raise TokenError("malformed token")
    return claims


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a credential, safe to show in journals and logs."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Identity:
    account_id: str
    plan: str = "plus"
    email: str = ""
    user_id: str = ""

    def filled(self) -> Identity:
        email = self.email or f"{self.account_id}@simulator.invalid"
        user_id = self.user_id or "user-" + hashlib.sha256(self.account_id.encode()).hexdigest()[:16]
        return Identity(self.account_id, self.plan, email, user_id)

    def auth_claim(self) -> dict[str, str]:
        return {
            "chatgpt_account_id": self.account_id,
            "chatgpt_plan_type": self.plan,
            "chatgpt_user_id": self.user_id,
            "user_id": self.user_id,
        }


@dataclass(frozen=True)
class TokenBundle:
    id_token: str
    access_token: str
    refresh_token: str

    def as_dict(self) -> dict[str, str]:
        return {"id_token": self.id_token, "access_token": self.access_token, "refresh_token": self.refresh_token}


def access_token(ident: Identity, secret: str, now: float, ttl: float = ACCESS_TTL_SECONDS) -> str:
    ident = ident.filled()
    claims = {
        "iss": ISSUER,
        "aud": ["https://api.openai.com/v1"],
        "sub": ident.user_id,
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now + ttl),
        "jti": secrets.token_hex(8),
        "scp": ["openid", "profile", "email", "offline_access"],
        "client_id": CLIENT_ID,
        AUTH_CLAIM: ident.auth_claim(),
        PROFILE_CLAIM: {"email": ident.email, "email_verified": True},
        KIND_CLAIM: "access",
    }
    return encode_jwt(claims, secret)


def id_token(ident: Identity, secret: str, now: float) -> str:
    ident = ident.filled()
    claims = {
        "iss": ISSUER,
        "aud": [CLIENT_ID],
        "sub": ident.user_id,
        "email": ident.email,
        "email_verified": True,
        "iat": int(now),
        "exp": int(now + ID_TTL_SECONDS),
        "auth_time": int(now),
        AUTH_CLAIM: ident.auth_claim(),
        KIND_CLAIM: "id",
    }
    return encode_jwt(claims, secret)


def refresh_token(ident: Identity, secret: str, now: float) -> str:
    ident = ident.filled()
    payload = {"a": ident.account_id, "p": ident.plan, "e": ident.email, "u": ident.user_id, "i": int(now)}
    payload["n"] = secrets.token_hex(8)  # makes every rotated token distinct
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"rt_{body}.{_b64(_mac(secret, body.encode())[:18])}"


def verify_refresh_token(token: str, secret: str) -> Identity:
    if not token.startswith("rt_") or "." not in token:
        raise TokenError("malformed refresh token")
    body, _, mac = token[3:].partition(".")
    try:
        ok = hmac.compare_digest(_unb64(mac), _mac(secret, body.encode())[:18])
        payload = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError) as exc:
        raise TokenError("malformed refresh token") from exc
    if not ok:
        raise TokenError("bad refresh token signature")
    return Identity(payload["a"], payload["p"], payload["e"], payload["u"])


def issue_bundle(ident: Identity, secret: str, now: float, access_ttl: float = ACCESS_TTL_SECONDS) -> TokenBundle:
    return TokenBundle(
        id_token=id_token(ident, secret, now),
        access_token=access_token(ident, secret, now, access_ttl),
        refresh_token=refresh_token(ident, secret, now),
    )


def identity_from_access_claims(claims: dict[str, Any]) -> Identity:
    auth = claims.get(AUTH_CLAIM) or {}
    profile = claims.get(PROFILE_CLAIM) or {}
    account_id = auth.get("chatgpt_account_id")
    if not account_id:
        raise TokenError("token names no account")
    return Identity(
        account_id=str(account_id),
        plan=str(auth.get("chatgpt_plan_type") or "plus"),
        email=str(profile.get("email") or ""),
        user_id=str(auth.get("chatgpt_user_id") or ""),
    )
