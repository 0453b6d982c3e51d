"""State that ext_proc replicas share through the database (POOLER_EXTPROC_SHARED=1; docs/OPERATIONS.md
"Horizontal scaling"). Functions take a Session and never commit (the caller owns the transaction).

- Sticky sessions: a replica that does not know a session reads it through (`read_sticky`); a new pin is
  claimed at once with insert-if-absent (`claim_sticky`), so the next turn finds it whichever replica it hits,
  and two replicas racing on a brand-new session agree on the first writer.
- Requests/min: a sliding 60 s window per key in `key_rate_hits`, serialised by a row lock on the key
  (`admit_request`): exact across replicas.
"""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pooler.models import KeyRateHit, PoolKey, StickySession

WINDOW_SECONDS = 60.0


def read_sticky(session: Session, pool_id: int, session_hash: str, now: float) -> tuple[int, float] | None:
    row = session.get(StickySession, (pool_id, session_hash))
    if row is None or row.expires_at.timestamp() <= now:
        return None
    return row.account_id, row.expires_at.timestamp()


def claim_sticky(session: Session, pool_id: int, session_hash: str, account_id: int, expires_at: float) -> int:
    """Pins the session to `account_id` unless a live pin exists; returns the account the session is on."""
    now = dt.datetime.now(dt.UTC)
    row = session.get(StickySession, (pool_id, session_hash), with_for_update=True)
    if row is not None and row.expires_at > now:
        return row.account_id
    expires = dt.datetime.fromtimestamp(expires_at, dt.UTC)
    if row is None:
        session.add(
            StickySession(pool_id=pool_id, session_hash=session_hash, account_id=account_id, expires_at=expires)
        )
    else:
        row.account_id, row.expires_at, row.updated_at = account_id, expires, now
    session.flush()
    return account_id


def admit_request(session: Session, key_id: int, limit: int, now: float) -> int | None:
    """None if admitted (and counted); else seconds until the oldest hit leaves the window."""
    # The key row lock serialises concurrent admissions of one key across replicas (SQLite: the write lock).
    session.execute(select(PoolKey.id).where(PoolKey.id == key_id).with_for_update())
    cutoff = now - WINDOW_SECONDS
    session.execute(delete(KeyRateHit).where(KeyRateHit.key_id == key_id, KeyRateHit.at <= cutoff))
    count, oldest = session.execute(
        select(func.count(), func.min(KeyRateHit.at)).where(KeyRateHit.key_id == key_id)
    ).one()
    if int(count) >= limit:
        return max(1, math.ceil(float(oldest) + WINDOW_SECONDS - now))
    session.add(KeyRateHit(key_id=key_id, at=now))
    return None
