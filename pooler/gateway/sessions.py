"""Session keys for stickiness: which client value names a conversation, and its keyed hash.

The raw session id never leaves this module's caller: only `session_hash` (HMAC with the server pepper,
domain-separated per pool) is kept in memory, metadata and the sticky_sessions table.
"""

from __future__ import annotations

from collections.abc import Mapping

from pooler.crypto.hashing import KeyedHasher
from pooler.gateway_contract import SESSION_HEADERS

SESSION_PURPOSE = "session"


def session_key(headers: Mapping[str, str], prompt_cache_key: str | None) -> str | None:
    """The first non-empty session header in priority order, else the body's prompt_cache_key."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return prompt_cache_key or None


def session_hash(hasher: KeyedHasher, pool_id: int, key: str) -> str:
    return hasher.hexdigest(SESSION_PURPOSE, f"{pool_id}\x00{key}")
