"""The optional bearer token of `/metrics`: only its keyed hash is stored (setting `metrics_token_hash`).

Unset = `/metrics` is open (it is reachable only through the Envoy listener, and carries no secrets: labels are
pool names, key prefixes and account labels).
"""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from pooler.audit import Actor
from pooler.crypto.hashing import KeyedHasher
from pooler.settings import get_setting, reset_setting, set_setting

PURPOSE = "metrics-token"
SETTING = "metrics_token_hash"
TOKEN_PREFIX = "pmt_"


def create_token(session: Session, hasher: KeyedHasher, *, actor: Actor) -> str:
    """A fresh token (returned once) replaces any previous one."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    set_setting(session, SETTING, hasher.hexdigest(PURPOSE, raw), actor=actor)
    return raw


def clear_token(session: Session, *, actor: Actor) -> None:
    reset_setting(session, SETTING, actor=actor)


def stored_hash(session: Session) -> str | None:
    value = get_setting(session, SETTING)
    return value if isinstance(value, str) and value else None


def allowed(hasher: KeyedHasher, expected_hash: str | None, authorization: str | None) -> bool:
    """Open when no token is configured; otherwise `Bearer <token>` must match (constant-time compare)."""
    if expected_hash is None:
        return True
    if not authorization or authorization[:7].lower() != "bearer ":
        return False
    return hasher.matches(PURPOSE, authorization[7:].strip(), expected_hash)
