"""An in-memory request journal for test assertions, served only by the control API.

Entries hold method, path, status, selected headers, the account the bearer named and a fingerprint of the
bearer. The raw Authorization value is kept too, because tests must assert that the upstream saw an account
token and never a Pool key; it lives only in memory and is never written to the process output. `received`
holds every header the request arrived with (names lower-case; the bearer is in `authorization` only), so tests
can assert what an upstream must never see (proxy and gateway headers). `challenge_cookie_of` names the account
the Cloudflare-like cookie the request sent back was set for (None: none sent, or one never handed out).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

SELECTED_HEADERS = (
    "chatgpt-account-id",
    "openai-beta",
    "originator",
    "user-agent",
    "version",
    "session-id",
    "session_id",
    "thread-id",
    "conversation_id",
    "x-client-request-id",
    "x-codex-window-id",
    "x-codex-turn-metadata",
    "x-codex-turn-state",
    "x-codex-beta-features",
    "x-openai-subagent",
    "upgrade",
    "content-encoding",
    "content-type",
    "accept",
    "if-none-match",
)
MAX_ENTRIES = 20_000
CHALLENGE_COOKIE = "__cf_bm"
"""Like Cloudflare's bot-management cookie: set on usage and token answers, expected back from the same client."""


def received_headers(headers: Any) -> dict[str, str]:
    """Every header of a request (repeated ones joined), lower-case names, without the bearer."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key == "authorization":
            continue
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


@dataclass
class Entry:
    seq: int
    time: float
    method: str
    path: str
    route: str
    transport: str = "http"
    status: int | None = None
    account: str | None = None
    bearer_fingerprint: str | None = None
    authorization: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    usage: dict[str, Any] | None = None
    fault: str | None = None
    note: str | None = None
    turn_state_issuer: str | None = None
    """The account that issued the echoed `x-codex-turn-state` ("unknown" when the simulator never issued it)."""
    received: dict[str, str] = field(default_factory=dict)
    challenge_cookie_of: str | None = None
    challenge_cookie_sent: bool = False
    body_installations: list[str] = field(default_factory=list)
    """Installation ids the JSON body's `client_metadata` named (`x-codex-installation-id`, and `installation_id`
    inside its `x-codex-turn-metadata` string), as Codex CLI 0.171.0 sends them."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Journal:
    def __init__(self) -> None:
        self._entries: deque[Entry] = deque(maxlen=MAX_ENTRIES)
        self._seq = itertools.count(1)

    def record(self, **fields: Any) -> Entry:
        entry = Entry(seq=next(self._seq), **fields)
        self._entries.append(entry)
        return entry

    def entries(self, since: int = 0) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self._entries if e.seq > since]

    def clear(self) -> None:
        self._entries.clear()


def body_installations(body: dict[str, Any]) -> list[str]:
    """The installation ids a request body's `client_metadata` names (see `Entry.body_installations`)."""
    metadata = body.get("client_metadata")
    if not isinstance(metadata, dict):
        return []
    found = [metadata.get("x-codex-installation-id")]
    try:
        turn = json.loads(metadata.get("x-codex-turn-metadata") or "null")
    except (TypeError, ValueError):
        turn = None
    if isinstance(turn, dict):
        found.append(turn.get("installation_id"))
    return [value for value in found if isinstance(value, str)]
