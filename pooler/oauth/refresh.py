"""`POST {auth_base_url}/oauth/token` with grant_type=refresh_token.

Refresh tokens rotate and are single use: the caller must persist the returned set before anything uses it
(pooler.services.refresh does, under a lease).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import httpx

from pooler.oauth.errors import FailureKind, RefreshFailure
from pooler.oauth.transport import json_object, post, str_field

DEFAULT_AUTH_BASE_URL = "https://auth.openai.com"
DEFAULT_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
REFRESH_SCOPE = "openid profile email"


@dataclass(frozen=True)
class TokenSet:
    """Tokens the server returned; a field it did not return is None and keeps its stored value."""

    access_token: str | None = None
    refresh_token: str | None = None
    id_token: str | None = None

    def __repr__(self) -> str:  # never print tokens, even in a traceback
        present = [name for name in ("access_token", "refresh_token", "id_token") if getattr(self, name)]
        return f"TokenSet(present={present})"


def refresh_tokens(
    http: httpx.Client,
    auth_base_url: str,
    client_id: str,
    refresh_token: str,
    *,
    now: dt.datetime | None = None,
    account_id: int | None = None,
) -> TokenSet:
    """Exchanges a refresh token. Raises RefreshFailure (permanent, transient or rate-limited). `account_id`:
    the account whose cookies the call carries and keeps (pooler.codex_client)."""
    url = auth_base_url.rstrip("/") + "/oauth/token"
    payload = {
        "client_id": client_id,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "scope": REFRESH_SCOPE,
    }
    response = post(http, url, json=payload, account_id=account_id)
    body = json_object(response, now)
    tokens = TokenSet(
        access_token=str_field(body, "access_token"),
        refresh_token=str_field(body, "refresh_token"),
        id_token=str_field(body, "id_token"),
    )
    if tokens.access_token is None and tokens.refresh_token is None and tokens.id_token is None:
        raise RefreshFailure(FailureKind.TRANSIENT, "empty_response", status=response.status_code)
    return tokens
