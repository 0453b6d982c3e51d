"""PKCE (RFC 7636, S256), the state value, and the authorization URL Codex CLI itself opens."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from pooler.codex_client import ORIGINATOR
from pooler.oauth.exchange import BROWSER_REDIRECT_URI

SCOPE = "openid profile email offline_access"


@dataclass(frozen=True)
class PkcePair:
    verifier: str = field(repr=False)
    challenge: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256_challenge(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode()).digest())


def new_pkce() -> PkcePair:
    # 64 random bytes -> 86 characters, inside the 43..128 the RFC allows.
    verifier = _b64url(secrets.token_bytes(64))
    return PkcePair(verifier, s256_challenge(verifier))


def new_state() -> str:
    return _b64url(secrets.token_bytes(32))


def authorization_url(auth_base_url: str, client_id: str, challenge: str, state: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": BROWSER_REDIRECT_URI,
        "scope": SCOPE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
        "state": state,
        "originator": ORIGINATOR,
    }
    return auth_base_url.rstrip("/") + "/oauth/authorize?" + urlencode(params, quote_via=quote)
