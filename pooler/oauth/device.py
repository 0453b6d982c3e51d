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

from pooler.oauth.errors import FailureKind, RefreshFailure, classify_failure

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


def _post(http: httpx.Client, url: str, payload: dict[str, str]) -> httpx.Response:
    try:
        return http.post(url, json=payload, headers={"Accept": "application/json"})
    except httpx.TimeoutException as exc:
        raise RefreshFailure(FailureKind.TRANSIENT, "timeout") from exc
    except httpx.HTTPError as exc:
        raise RefreshFailure(FailureKind.TRANSIENT, "network_error") from exc


def _json(response: httpx.Response) -> object:
    try:
        body: object = response.json()
    except ValueError:
        return None
    return body


def request_user_code(http: httpx.Client, auth_base_url: str, client_id: str) -> DeviceCode:
    response = _post(http, auth_base_url.rstrip("/") + "/api/accounts/deviceauth/usercode", {"client_id": client_id})
    body = _json(response)
    if response.status_code >= 300:
        raise classify_failure(response.status_code, body, response.headers.get("retry-after"), dt.datetime.now(dt.UTC))
    if not isinstance(body, dict):
        raise RefreshFailure(FailureKind.TRANSIENT, "malformed_response", status=response.status_code)
    device_auth_id, user_code = body.get("device_auth_id"), body.get("user_code")
    if not isinstance(device_auth_id, str) or not device_auth_id or not isinstance(user_code, str) or not user_code:
        raise RefreshFailure(FailureKind.TRANSIENT, "malformed_response", status=response.status_code)
    return DeviceCode(device_auth_id, user_code[:32], _interval(body.get("interval")))


def poll_device_token(
    http: httpx.Client, auth_base_url: str, device_auth_id: str, user_code: str
) -> DeviceGrant | None:
    """One poll: the grant once approved, None while pending (403/404). Raises RefreshFailure otherwise."""
    url = auth_base_url.rstrip("/") + "/api/accounts/deviceauth/token"
    response = _post(http, url, {"device_auth_id": device_auth_id, "user_code": user_code})
    if response.status_code in PENDING_STATUSES:
        return None
    body = _json(response)
    if response.status_code >= 300:
        raise classify_failure(response.status_code, body, response.headers.get("retry-after"), dt.datetime.now(dt.UTC))
    if not isinstance(body, dict):
        raise RefreshFailure(FailureKind.TRANSIENT, "malformed_response", status=response.status_code)
    code, verifier = body.get("authorization_code"), body.get("code_verifier")
    if not isinstance(code, str) or not code or not isinstance(verifier, str) or not verifier:
        raise RefreshFailure(FailureKind.TRANSIENT, "malformed_response", status=response.status_code)
    return DeviceGrant(code, verifier)
