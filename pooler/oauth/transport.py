"""One call to the auth server, as refresh, code exchange and the device flow all make it.

A network failure or timeout is transient; a status of 300 or more is classified (`classify_failure`); a
success whose body is not a JSON object is a transient `malformed_response`. Bodies are never echoed.
"""

from __future__ import annotations

import datetime as dt

import httpx

from pooler.codex_client import for_account
from pooler.oauth.errors import FailureKind, RefreshFailure, classify_failure


def post(
    http: httpx.Client,
    url: str,
    *,
    json: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    account_id: int | None = None,
) -> httpx.Response:
    """POSTs a JSON (`json`) or form (`data`) payload; network errors and timeouts raise a transient failure.
    `account_id`: the account whose cookies go with the call (pooler.codex_client; None: no cookies)."""
    extensions = for_account(account_id) if account_id is not None else None
    try:
        return http.post(url, json=json, data=data, headers={"Accept": "application/json"}, extensions=extensions)
    except httpx.TimeoutException as exc:
        raise RefreshFailure(FailureKind.TRANSIENT, "timeout") from exc
    except httpx.HTTPError as exc:
        raise RefreshFailure(FailureKind.TRANSIENT, "network_error") from exc


def json_object(response: httpx.Response, now: dt.datetime | None = None) -> dict[str, object]:
    """The body of a successful answer as a JSON object; raises RefreshFailure for an error status or another
    body. `now` (default: the current time) dates an HTTP-date Retry-After."""
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
    return body


def str_field(body: dict[str, object], name: str) -> str | None:
    """A non-empty string field, else None."""
    value = body.get(name)
    return value if isinstance(value, str) and value else None
