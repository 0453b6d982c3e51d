"""Pool API keys: `cpk_<8 char public id>_<43 char secret>`.

Only the public prefix (`cpk_<id>`) and HMAC-SHA256(pepper, raw key) are stored. Lookup is by prefix, the
comparison constant-time. The raw key exists only in the return value of `generate_key`.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from pooler.crypto.hashing import KeyedHasher

KEY_PURPOSE = "pool-key"
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
KEY_RE = re.compile(r"^(cpk_[a-z0-9]{8})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class NewKey:
    raw: str
    prefix: str
    key_hash: str


def generate_key(hasher: KeyedHasher) -> NewKey:
    public_id = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(8))
    prefix = f"cpk_{public_id}"
    raw = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(raw=raw, prefix=prefix, key_hash=hasher.hexdigest(KEY_PURPOSE, raw))


def key_prefix(raw: str) -> str | None:
    """The public prefix of a well-formed key, else None (nothing about a malformed key is echoed)."""
    match = KEY_RE.match(raw)
    return match.group(1) if match else None


def key_matches(hasher: KeyedHasher, raw: str, stored_hash: str) -> bool:
    return hasher.matches(KEY_PURPOSE, raw, stored_hash)
