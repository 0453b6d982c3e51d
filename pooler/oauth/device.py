"""Device-code authorization: ask for a user code, then poll until the person approves it.

`POST /api/accounts/deviceauth/usercode {"client_id"}` -> `{device_auth_id, user_code, interval}`; the person
opens `/codex/device`; `POST /api/accounts/deviceauth/token {device_auth_id, user_code}` answers 403/404 while
pending and `{authorization_code, code_verifier, ...}` once approved. The caller keeps the 15-minute limit and
the interval; these functions make exactly one call each.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import httpx

from pooler.oauth.errors import FailureKind, RefreshFailure
from pooler.oauth.transport import json_object, post

DEVICE_TIMEOUT = dt.timedelta(minutes=15)
DEFAULT_INTERVAL = 5
MIN_INTERVAL, MAX_INTERVAL = 1, 60
PENDING_STATUSES = frozenset({403, 404})


@dataclass(frozen=True)
class DeviceCode:
    device_auth_id: str = field(repr=False)
    user_code: str
    interval: int
    """Seconds between polls, clamped to [1, 60] (the service sends it as a string)."""


@dataclass(frozen=True)
class DeviceGrant:
    authorization_code: str = field(repr=False)
    code_verifier: str = field(repr=False)


def verification_url(auth_base_url: str) -> str:
    return auth_base_url.rstrip("/") + "/codex/device"


def _interval(value: object) -> int:
    try:
        seconds = int(float(str(value)))
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL
    return max(MIN_INTERVAL, min(MAX_INTERVAL, seconds))


def request_user_code(http: httpx.Client, auth_base_url: str, client_id: str) -> DeviceCode:
    url = auth_base_url.rstrip("/") + "/api/accounts/deviceauth/usercode"
    response = post(http, url, json={"client_id": client_id})
    body = json_object(response)
    device_auth_id, user_code = body.get("device_auth_id"), body.get("user_code")
    if not isinstance(device_auth_id, str) or not device_auth_id or not isinstance(user_code, str) or not user_code:
        raise RefreshFailure(FailureKind.TRANSIENT, "malformed_response", status=response.status_code)
    return DeviceCode(device_auth_id, user_code[:32], _interval(body.get("interval")))


def poll_device_token(
    http: httpx.Client, auth_base_url: str, device_auth_id: str, user_code: str
) -> DeviceGrant | None:
    """One poll: the grant once approved, None while pending (403/404). Raises RefreshFailure otherwise."""
    url = auth_base_url.rstrip("/") + "/api/accounts/deviceauth/token"
    response = post(http, url, json={"device_auth_id": device_auth_id, "user_code": user_code})
    if response.status_code in PENDING_STATUSES:
        return None
    body = json_object(response)
    code, verifier = body.get("authorization_code"), body.get("code_verifier")
    if not isinstance(code, str) or not code or not isinstance(verifier, str) or not verifier:
        raise RefreshFailure(FailureKind.TRANSIENT, "malformed_response", status=response.status_code)
    return DeviceGrant(code, verifier)
