"""Reading JWT claims without verifying the signature (the upstream is the only one that needs to verify)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, or None when `token` is not a JWT (tokens may be opaque)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        # ValueError covers bad padding, non-UTF-8 bytes and malformed JSON; RecursionError pathological nesting.
        return None
    return claims if isinstance(claims, dict) else None


def claim_time(value: object) -> dt.datetime | None:
    """A numeric-date claim (`exp`, `iat`, ...) as an aware UTC datetime, or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def token_expiry(token: str) -> dt.datetime | None:
    """`exp` of a JWT as an aware UTC datetime, or None."""
    claims = unverified_claims(token)
    return None if claims is None else claim_time(claims.get("exp"))
