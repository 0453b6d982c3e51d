"""Signed webhook delivery: HMAC-SHA256 over `timestamp + "." + body`, sent as `x-pooler-signature: t=..,v1=..`.

Receivers recompute the HMAC with the shared secret over the exact body bytes and reject stale timestamps,
which stops both forgery and replay. `verify` is the reference implementation (tests use it as the receiver).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import httpx

SIGNATURE_HEADER = "x-pooler-signature"
EVENT_HEADER = "x-pooler-event"
DELIVERY_HEADER = "x-pooler-delivery"
DEFAULT_TOLERANCE_SECONDS = 300
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: int = DEFAULT_TOLERANCE_SECONDS
) -> bool:
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    # Several v1 values let a receiver accept signatures made with an old and a new secret during rotation.
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))


@dataclass(frozen=True)
class SendResult:
    ok: bool
    retry: bool
    status_code: int | None
    error: str | None
    """Safe code: `http_<status>` or the exception class name; never the receiver's response text."""


def send(
    client: httpx.Client, url: str, secret: str, body: bytes, *, event: str, delivery_id: int, timestamp: int
) -> SendResult:
    headers = {
        "content-type": "application/json",
        "user-agent": "codex-pooler-alerts/1",
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        EVENT_HEADER: event,
        DELIVERY_HEADER: str(delivery_id),
    }
    try:
        response = client.post(url, content=body, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return SendResult(False, True, None, type(exc).__name__[:64])
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(True, False, status, None)
    # 408/429 and 5xx are the receiver's temporary trouble; other 4xx will not change by resending.
    retry = status >= 500 or status in (408, 429)
    return SendResult(False, retry, status, f"http_{status}")
