"""The first meaningful event of an SSE answer: does the turn start, or fail before any output?

Pure, over the bytes the upstream sent so far. The upstream-filter ext_proc holds a 200 `text/event-stream`
answer's headers until this says `STARTED` or `FAILED` (extproc/first_event.py): a turn that fails before its
first output can then go to another account without the client seeing a byte of it. `response.created` and
`response.in_progress` come first on every turn and say nothing about its outcome, so they are skipped; the
next event decides. Bounded: past HOLD_LIMIT_BYTES without a deciding event the answer is let through
(`STARTED`), so a successful stream is never held whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

SKIPPED_EVENTS = frozenset({"response.created", "response.in_progress"})
FAILURE_EVENTS = frozenset({"response.failed", "error"})
HOLD_LIMIT_BYTES = 256 * 1024
"""`response.created` echoes the request's instructions and tools (tens of KB for Codex); more than this before
a deciding event is not a turn that failed at once."""
_SAFE_MAX = 64


class Verdict(Enum):
    PENDING = "pending"
    """No deciding event yet: keep holding."""
    STARTED = "started"
    """The turn started (or the bytes are not SSE the scanner understands): let everything through."""
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FirstEvent:
    verdict: Verdict
    code: str | None = None
    """FAILED: the failure's `error.code` (else its type, else `stream_failed`), a safe token."""
    type: str | None = None


PENDING = FirstEvent(Verdict.PENDING)
STARTED = FirstEvent(Verdict.STARTED)
UNNAMED_FAILURE = "stream_failed"


def scan(buffer: bytes) -> FirstEvent:
    """The verdict on the SSE bytes received so far (all of them, from the first)."""
    text = buffer.replace(b"\r\n", b"\n")
    start = 0
    while True:
        end = text.find(b"\n\n", start)
        if end < 0:
            return STARTED if len(buffer) > HOLD_LIMIT_BYTES else PENDING
        verdict = _event(text[start:end])
        if verdict is not None:
            return verdict
        start = end + 2


def _event(block: bytes) -> FirstEvent | None:
    """The verdict of one complete event block; None for an event that decides nothing (skipped, a comment)."""
    name: bytes | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip()
        elif line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
    if not data:
        return None  # a comment or keep-alive: no event
    kind = name.decode("ascii", "replace") if name else None
    # Codex names every event on its `event:` line, so skipped and ordinary events are decided without
    # parsing their (possibly large) JSON; only a failure, or an unnamed event, is parsed.
    if kind in SKIPPED_EVENTS:
        return None
    if kind is not None and kind not in FAILURE_EVENTS:
        return STARTED
    try:
        event = json.loads(b"\n".join(data))
    except ValueError:
        return STARTED  # not JSON: not ours to judge; the client sees it as before
    if not isinstance(event, dict):
        return STARTED
    kind = kind or safe_token(event.get("type"))
    if kind in SKIPPED_EVENTS:
        return None
    if kind not in FAILURE_EVENTS:
        return STARTED
    return _failure(event, kind)


def _failure(event: dict[str, object], kind: str) -> FirstEvent:
    error: object = event.get("error")
    if kind == "response.failed":
        response = event.get("response")
        error = response.get("error") if isinstance(response, dict) else None
    code = type_ = None
    if isinstance(error, dict):
        code, type_ = safe_token(error.get("code")), safe_token(error.get("type"))
    if kind == "error":
        code = code or safe_token(event.get("code"))
    return FirstEvent(Verdict.FAILED, code or type_ or UNNAMED_FAILURE, type_)


def safe_token(value: object) -> str | None:
    """A safe token (letters, digits, _ . -; at most 64), else None: never free text from an answer."""
    if not isinstance(value, str) or not value or len(value) > _SAFE_MAX:
        return None
    return value if all(c.isascii() and (c.isalnum() or c in "_.-") for c in value) else None
