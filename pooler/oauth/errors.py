"""Classifying a failed token call: permanent (needs re-auth), transient (retry with backoff), rate-limited.

Only short codes leave this module (the upstream's error code or a status-derived one); bodies are never
echoed, since an auth server may reflect the token it was sent.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Mapping
from enum import StrEnum

from pooler.errors import PoolerError

PERMANENT_CODES = frozenset(
    {"refresh_token_reused", "refresh_token_expired", "refresh_token_invalidated", "invalid_grant"}
)
UNREACHABLE_CODES = frozenset({"timeout", "network_error"})
"""Codes of a token call that never got an answer (connection refused, DNS failure, timeout): the auth server
was not reached, as opposed to reached and refusing."""
_SAFE_CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_RATE_LIMIT_WAIT = 60.0
"""Seconds to wait after a 429 that carries no usable Retry-After."""


class FailureKind(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"


class RefreshFailure(PoolerError):
    """A token call failed. `code` is safe to store and show; `retry_after` is seconds (rate-limited only)."""

    def __init__(
        self, kind: FailureKind, code: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.kind = kind
        self.code = code
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"token refresh failed ({kind}): {code}")


def error_code(body: object) -> str | None:
    """The error code in any of the body shapes seen: `{"error":{"code"}}`, `{"error":"..."}`, `{"code":"..."}`."""
    if not isinstance(body, Mapping):
        return None
    candidates: list[object] = []
    error = body.get("error")
    if isinstance(error, Mapping):
        candidates += [error.get("code"), error.get("type")]
    else:
        candidates.append(error)
    candidates.append(body.get("code"))
    for value in candidates:
        if isinstance(value, str) and _SAFE_CODE_RE.match(value):
            return value
    return None


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Retry-After as delta-seconds or an HTTP date; None when absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def classify_failure(status: int, body: object, retry_after_header: str | None, now: dt.datetime) -> RefreshFailure:
    """Turns a non-2xx token response into a RefreshFailure of the right kind."""
    code = error_code(body)
    if code in PERMANENT_CODES or status == 401:
        return RefreshFailure(FailureKind.PERMANENT, code or "unauthorized", status=status)
    if status == 429:
        wait = parse_retry_after(retry_after_header, now)
        return RefreshFailure(
            FailureKind.RATE_LIMITED,
            code or "rate_limited",
            status=status,
            retry_after=DEFAULT_RATE_LIMIT_WAIT if wait is None else wait,
        )
    if status >= 500 or status == 408:
        return RefreshFailure(FailureKind.TRANSIENT, code or f"http_{status}", status=status)
    # Other 4xx without a known code (400, 403, ...): the request was refused for a reason we cannot fix by
    # retrying at once, but it is not proof the grant is gone either, so retry with backoff.
    return RefreshFailure(FailureKind.TRANSIENT, code or f"http_{status}", status=status)
