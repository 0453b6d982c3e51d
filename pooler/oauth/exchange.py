"""Authorization-code exchange: `POST {auth_base_url}/oauth/token` (form) with grant_type=authorization_code.

Used by both onboarding paths: the browser PKCE flow (redirect `http://localhost:1455/auth/callback`, our own
verifier) and the device-code flow (redirect `https://auth.openai.com/deviceauth/callback`, the verifier the
device endpoint returned). Failures are classified like refresh failures; bodies are never echoed.
"""

from __future__ import annotations

import datetime as dt

import httpx

from pooler.oauth.errors import FailureKind, RefreshFailure, classify_failure
from pooler.oauth.refresh import TokenSet

BROWSER_REDIRECT_URI = "http://localhost:1455/auth/callback"
DEVICE_REDIRECT_URI = "https://auth.openai.com/deviceauth/callback"


def _field(body: dict[str, object], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value else None


def exchange_code(
    http: httpx.Client,
    auth_base_url: str,
    client_id: str,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    now: dt.datetime | None = None,
) -> TokenSet:
    """Exchanges an authorization code for tokens. Raises RefreshFailure (the code is single use: no retry)."""
    url = auth_base_url.rstrip("/") + "/oauth/token"
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": code_verifier,
    }
    try:
        response = http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.TimeoutException as exc:
        raise RefreshFailure(FailureKind.TRANSIENT, "timeout") from exc
    except httpx.HTTPError as exc:
        raise RefreshFailure(FailureKind.TRANSIENT, "network_error") from exc
    try:
        body: object = response.json()
    except ValueError:
        body = None
    if response.status_code >= 300:
        raise classify_failure(
            response.status_code, body, response.headers.get("retry-after"), now or dt.datetime.now(dt.UTC)
        )
    if not isinstance(body, dict):
        raise RefreshFailure(FailureKind.TRANSIENT, "malformed_response", status=response.status_code)
    return TokenSet(
        access_token=_field(body, "access_token"),
        refresh_token=_field(body, "refresh_token"),
        id_token=_field(body, "id_token"),
    )
