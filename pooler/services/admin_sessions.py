"""Server-side admin sessions: a signed-in browser holds a random opaque token, the database its keyed hash.

Every admin request resolves the token to a live row, so a session can be ended at once for every worker and
replica: logout revokes its row; a password change, a role change, disabling or deleting an operator revokes all
of theirs. A row ends when revoked, when idle longer than `admin_session_idle_minutes`, or at its absolute
`expires_at` (`admin_session_max_hours` after sign-in, fixed then). The pure `end_reason` holds that policy.

A TOTP seed being enrolled waits in the session row, sealed in the secret box, never in the cookie.
Nothing here commits; the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from pooler.crypto.hashing import KeyedHasher
from pooler.crypto.secretbox import Sealed, SecretBox
from pooler.errors import SecretBoxError
from pooler.models import AdminSession, utcnow
from pooler.settings import get_number

PURPOSE = "admin-session"
PENDING_TOTP_KIND = "totp-pending"
TOKEN_BYTES = 32
# last_seen_at is written at most this often: idle limits are minutes, a write per request buys nothing.
TOUCH_EVERY = dt.timedelta(seconds=30)
USER_AGENT_CHARS = 120


class EndReason(StrEnum):
    REVOKED = "revoked"
    EXPIRED = "expired"
    IDLE = "idle"


@dataclass(frozen=True)
class Limits:
    idle: dt.timedelta
    absolute: dt.timedelta


@dataclass(frozen=True)
class Opened:
    token: str
    """Goes into the cookie; only its keyed hash is stored."""
    row: AdminSession


def end_reason(
    *,
    revoked_at: dt.datetime | None,
    expires_at: dt.datetime,
    last_seen_at: dt.datetime,
    now: dt.datetime,
    idle: dt.timedelta,
) -> EndReason | None:
    """Why a session is over, or None while it is live."""
    if revoked_at is not None:
        return EndReason.REVOKED
    if now >= expires_at:
        return EndReason.EXPIRED
    if now - last_seen_at >= idle:
        return EndReason.IDLE
    return None


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def summarize_user_agent(user_agent: str | None) -> str | None:
    """ "Firefox on Linux": enough for an operator to recognise a browser, not a fingerprint to keep."""
    if not user_agent:
        return None
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser is None:
        # A script or tool: its leading product token ("curl/8.5.0" -> "curl"), printable characters only.
        match = re.match(r"[A-Za-z][A-Za-z0-9._-]{0,40}", user_agent)
        browser = match.group(0) if match else "unknown"
    summary = f"{browser} on {system}" if system else browser
    return summary[:USER_AGENT_CHARS]


def limits(session: Session) -> Limits:
    return Limits(
        idle=dt.timedelta(minutes=float(get_number(session, "admin_session_idle_minutes"))),
        absolute=dt.timedelta(hours=float(get_number(session, "admin_session_max_hours"))),
    )


def token_hash(hasher: KeyedHasher, token: str) -> str:
    return hasher.hexdigest(PURPOSE, token)


def open_session(
    session: Session,
    hasher: KeyedHasher,
    *,
    operator_id: int,
    user_agent: str | None,
    now: dt.datetime | None = None,
) -> Opened:
    """A new session for a sign-in. The operator's ended rows are deleted here, so the table stays small
    without a cleanup job."""
    now = now or utcnow()
    limit = limits(session)
    _delete_ended(session, operator_id, now, limit.idle)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = AdminSession(
        token_hash=token_hash(hasher, token),
        operator_id=operator_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + limit.absolute,
        user_agent=summarize_user_agent(user_agent),
    )
    session.add(row)
    session.flush()
    return Opened(token, row)


def _delete_ended(session: Session, operator_id: int, now: dt.datetime, idle: dt.timedelta) -> None:
    ended = or_(
        AdminSession.revoked_at.is_not(None),
        AdminSession.expires_at <= now,
        AdminSession.last_seen_at <= now - idle,
    )
    session.execute(delete(AdminSession).where(AdminSession.operator_id == operator_id, ended))


def resolve(session: Session, hasher: KeyedHasher, token: str, now: dt.datetime | None = None) -> AdminSession | None:
    """The live session of a cookie's token (its last_seen_at moved forward), else None."""
    if not token:
        return None
    now = now or utcnow()
    row = session.scalar(select(AdminSession).where(AdminSession.token_hash == token_hash(hasher, token)))
    if row is None:
        return None
    reason = end_reason(
        revoked_at=row.revoked_at,
        expires_at=row.expires_at,
        last_seen_at=row.last_seen_at,
        now=now,
        idle=limits(session).idle,
    )
    if reason is not None:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return row


def revoke_operator(
    session: Session, operator_id: int, *, keep: int | None = None, now: dt.datetime | None = None
) -> int:
    """Ends every live session of an operator (but `keep`, a session id); returns how many."""
    query = update(AdminSession).where(AdminSession.operator_id == operator_id, AdminSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(AdminSession.id != keep)
    values = {
        "revoked_at": now or utcnow(),
        "pending_totp_key_id": None,
        "pending_totp_nonce": None,
        "pending_totp_ciphertext": None,
    }
    result = session.execute(query.values(**values).execution_options(synchronize_session="fetch"))
    return int(getattr(result, "rowcount", 0) or 0)


def live_sessions(session: Session, operator_id: int, now: dt.datetime | None = None) -> list[AdminSession]:
    """An operator's sessions that are still live, newest first (for their profile page)."""
    now = now or utcnow()
    idle = limits(session).idle
    rows = session.scalars(
        select(AdminSession)
        .where(AdminSession.operator_id == operator_id, AdminSession.revoked_at.is_(None))
        .order_by(AdminSession.last_seen_at.desc())
    )
    return [
        row
        for row in rows
        if end_reason(revoked_at=None, expires_at=row.expires_at, last_seen_at=row.last_seen_at, now=now, idle=idle)
        is None
    ]


def _pending_subject(row: AdminSession) -> str:
    return f"admin-session:{row.id}"


def set_pending_totp(box: SecretBox, row: AdminSession, seed: str) -> None:
    sealed = box.seal(_pending_subject(row), PENDING_TOTP_KIND, seed)
    row.pending_totp_key_id, row.pending_totp_nonce, row.pending_totp_ciphertext = (
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext,
    )


def pending_totp(box: SecretBox, row: AdminSession) -> str | None:
    if row.pending_totp_key_id is None or row.pending_totp_nonce is None or row.pending_totp_ciphertext is None:
        return None
    sealed = Sealed(row.pending_totp_key_id, row.pending_totp_nonce, row.pending_totp_ciphertext)
    try:
        return box.open(_pending_subject(row), PENDING_TOTP_KIND, sealed)
    except SecretBoxError:
        # Sealed with a key since removed from the keyring: the enrolment simply starts over.
        return None


def clear_pending_totp(row: AdminSession) -> None:
    row.pending_totp_key_id = row.pending_totp_nonce = row.pending_totp_ciphertext = None
