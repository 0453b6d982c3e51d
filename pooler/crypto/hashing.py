"""Keyed hashes (HMAC-SHA256 with the server pepper) for values we must recognise but never store."""

from __future__ import annotations

import hashlib
import hmac


class KeyedHasher:
    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper

    def hexdigest(self, purpose: str, value: str) -> str:
        """Domain-separated: the same value hashed for two purposes gives unrelated digests."""
        return hmac.new(self._pepper, purpose.encode() + b"\x00" + value.encode(), hashlib.sha256).hexdigest()

    def matches(self, purpose: str, value: str, expected_hex: str) -> bool:
        return hmac.compare_digest(self.hexdigest(purpose, value), expected_hex)
