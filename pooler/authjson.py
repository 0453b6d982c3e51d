"""Parsing a Codex CLI / Codex Desktop `auth.json` (see docs on the Codex protocol).

Pure: bytes in, `ParsedAuth` out, or `AuthJsonError` with a message that is safe to show an operator. JWT
payloads are decoded without verifying signatures (we are not the audience; the upstream verifies them).
Messages never echo file contents, and the tokens are kept out of `repr` so they cannot end up in a log line.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from pooler.errors import AuthJsonError
from pooler.oauth.jwt import claim_time, unverified_claims

MAX_AUTH_JSON_BYTES = 64 * 1024
AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"
TOKEN_FIELDS = ("id_token", "access_token", "refresh_token")
API_KEY_MODES = {"apikey", "api_key", "api-key"}
# Column sizes of upstream_accounts: longer values cannot be real and would fail the insert on PostgreSQL.
MAX_ID_CHARS = 200
MAX_PLAN_CHARS = 64

MSG_TOO_LARGE = "auth.json is larger than 64 KiB; this is not a Codex auth.json"
MSG_NOT_JSON = "auth.json is not valid JSON"
MSG_NOT_OBJECT = "auth.json must be a JSON object (the file Codex writes to ~/.codex/auth.json)"
MSG_API_KEY_MODE = (
    "auth.json is in API-key mode (OPENAI_API_KEY without ChatGPT tokens); only ChatGPT subscription accounts "
    "can be pooled: run `codex login` with ChatGPT and import that auth.json"
)
MSG_NO_ACCOUNT_ID = "auth.json has no ChatGPT account id (tokens.account_id or the id_token chatgpt_account_id claim)"


def msg_missing_tokens(missing: list[str]) -> str:
    return "auth.json is missing tokens: " + ", ".join(f"tokens.{name}" for name in missing)


def msg_bad_jwt(name: str) -> str:
    return f"auth.json tokens.{name} is not a decodable JWT"


@dataclass(frozen=True)
class ParsedAuth:
    chatgpt_account_id: str
    chatgpt_user_id: str | None
    plan_type: str | None
    email: str | None
    access_token_expires_at: dt.datetime | None
    """From the access token's `exp`; None when it has none (the scheduler then decides when to refresh)."""
    last_refresh_at: dt.datetime | None
    id_token: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)

    def access_token_expired(self, now: dt.datetime) -> bool:
        return self.access_token_expires_at is not None and self.access_token_expires_at <= now


def decode_jwt_payload(token: str, name: str) -> dict[str, Any]:
    """The claims of a JWT, unverified. `name` only labels the error message."""
    claims = unverified_claims(token)
    if claims is None:
        raise AuthJsonError(msg_bad_jwt(name))
    return claims


def _clean_str(value: object, max_chars: int) -> str | None:
    """A display/identity string we are willing to store: non-empty, bounded, no control characters."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > max_chars or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return None
    return value


def _sub(claims: dict[str, Any], key: str) -> dict[str, Any]:
    value = claims.get(key)
    return value if isinstance(value, dict) else {}


def _iso_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset pushes year 1 or 9999 out of range
        return None


def _load_document(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_AUTH_JSON_BYTES:
        raise AuthJsonError(MSG_TOO_LARGE)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        # ValueError: malformed JSON or undecodable bytes; RecursionError: pathological nesting.
        raise AuthJsonError(MSG_NOT_JSON) from None
    if not isinstance(doc, dict):
        raise AuthJsonError(MSG_NOT_OBJECT)
    return doc


def _tokens(doc: dict[str, Any]) -> dict[str, str]:
    raw_tokens = doc.get("tokens")
    tokens = raw_tokens if isinstance(raw_tokens, dict) else {}
    present = {name: tokens[name] for name in TOKEN_FIELDS if isinstance(tokens.get(name), str) and tokens[name]}
    api_key = doc.get("OPENAI_API_KEY")
    mode = doc.get("auth_mode")
    api_key_mode = isinstance(mode, str) and mode.lower() in API_KEY_MODES
    if (api_key is not None and not present) or (api_key_mode and not present):
        raise AuthJsonError(MSG_API_KEY_MODE)
    missing = [name for name in TOKEN_FIELDS if name not in present]
    if missing:
        raise AuthJsonError(msg_missing_tokens(missing))
    account_id = tokens.get("account_id")
    if isinstance(account_id, str):
        present["account_id"] = account_id
    return present


def parse_auth_json(data: bytes) -> ParsedAuth:
    """Validates and decodes an auth.json; raises only AuthJsonError."""
    doc = _load_document(data)
    tokens = _tokens(doc)
    id_claims = decode_jwt_payload(tokens["id_token"], "id_token")
    access_claims = decode_jwt_payload(tokens["access_token"], "access_token")
    id_auth, access_auth = _sub(id_claims, AUTH_CLAIM), _sub(access_claims, AUTH_CLAIM)

    account_id = (
        _clean_str(tokens.get("account_id"), MAX_ID_CHARS)
        or _clean_str(id_auth.get("chatgpt_account_id"), MAX_ID_CHARS)
        or _clean_str(access_auth.get("chatgpt_account_id"), MAX_ID_CHARS)
    )
    if account_id is None:
        raise AuthJsonError(MSG_NO_ACCOUNT_ID)
    email = _clean_str(id_claims.get("email"), MAX_ID_CHARS) or _clean_str(
        _sub(id_claims, PROFILE_CLAIM).get("email"), MAX_ID_CHARS
    )
    return ParsedAuth(
        chatgpt_account_id=account_id,
        chatgpt_user_id=_clean_str(id_auth.get("chatgpt_user_id"), MAX_ID_CHARS)
        or _clean_str(access_auth.get("chatgpt_user_id"), MAX_ID_CHARS),
        plan_type=_clean_str(id_auth.get("chatgpt_plan_type"), MAX_PLAN_CHARS)
        or _clean_str(access_auth.get("chatgpt_plan_type"), MAX_PLAN_CHARS),
        email=email,
        access_token_expires_at=claim_time(access_claims.get("exp")),
        last_refresh_at=_iso_time(doc.get("last_refresh")),
        id_token=tokens["id_token"],
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


def default_label(parsed: ParsedAuth) -> str:
    """Email local part when known, else the ChatGPT account id (both already bounded to 200 chars)."""
    if parsed.email and "@" in parsed.email:
        local = parsed.email.split("@", 1)[0]
        if local:
            return local
    return parsed.chatgpt_account_id
