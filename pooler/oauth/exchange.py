"""Authorization-code exchange: `POST {auth_base_url}/oauth/token` (form) with grant_type=authorization_code.

Used by both onboarding paths: the browser PKCE flow (redirect `http://localhost:1455/auth/callback`, our own
verifier) and the device-code flow (redirect `https://auth.openai.com/deviceauth/callback`, the verifier the
device endpoint returned). Failures are classified like refresh failures; bodies are never echoed.
"""

from __future__ import annotations

import datetime as dt

import httpx

from pooler.oauth.refresh import TokenSet
from pooler.oauth.transport import json_object, post, str_field

BROWSER_REDIRECT_URI = "http://localhost:1455/auth/callback"
DEVICE_REDIRECT_URI = "https://auth.openai.com/deviceauth/callback"


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
    body = json_object(post(http, url, data=form), now)
    return TokenSet(
        access_token=str_field(body, "access_token"),
        refresh_token=str_field(body, "refresh_token"),
        id_token=str_field(body, "id_token"),
    )
