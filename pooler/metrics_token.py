"""The bearer token of `/metrics`: only its keyed hash is stored (setting `metrics_token_hash`).

Through the gateway port (the Envoy listener clients use) the token is required: the text names every pool,
key prefix and account label, which a holder of a Pool key has no business reading; with no token configured
that route answers 401 to everyone. A direct scrape of the ext_proc (its unix socket, or
`POOLER_METRICS_LISTEN`, both the operator's own network) is open until a token is set, then needs it too.
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


def allowed(
    hasher: KeyedHasher, expected_hash: str | None, authorization: str | None, *, token_required: bool = False
) -> bool:
    """`Bearer <token>` must match the configured token (constant-time compare); with no token configured the
    scrape is open unless `token_required` (it came through the gateway port)."""
    if expected_hash is None:
        return not token_required
    if not authorization or authorization[:7].lower() != "bearer ":
        return False
    return hasher.matches(PURPOSE, authorization[7:].strip(), expected_hash)
