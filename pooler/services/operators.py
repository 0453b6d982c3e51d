"""Admin operators: argon2 passwords, login throttling, TOTP seeds in the secret box, roles and pool scope.

Pure helpers (`can_write`, `pool_visible`, `lockout_after_failure`) hold the policy; the session-taking
functions apply it. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass
from enum import StrEnum

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pooler.crypto.secretbox import Sealed, SecretBox
from pooler.errors import ConflictError, PoolerError
from pooler.models import Operator, OperatorPool, utcnow
from pooler.states import OperatorRole

MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10
TOTP_KIND = "totp"

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-used-for-timing")


class LoginOutcome(StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"
    DISABLED = "disabled"
    TOTP_REQUIRED = "totp_required"
    BAD_TOTP = "bad_totp"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    operator: Operator | None = None
    locked_until: dt.datetime | None = None


class OperatorError(PoolerError):
    """An operator command was refused; the message is safe to show."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorError(f"Password must be at least {MIN_PASSWORD_LENGTH} characters")


def can_write(role: str) -> bool:
    return role in (OperatorRole.OWNER, OperatorRole.ADMIN)


def is_owner(role: str) -> bool:
    return role == OperatorRole.OWNER


def pool_visible(role: str, assigned_pool_ids: frozenset[int], pool_id: int | None) -> bool:
    """Owners and viewers see every pool; an admin only its assigned pools (and nothing pool-less)."""
    if role in (OperatorRole.OWNER, OperatorRole.VIEWER):
        return True
    return pool_id is not None and pool_id in assigned_pool_ids


def lockout_after_failure(failed_logins: int, now: dt.datetime) -> dt.datetime | None:
    """Lock the account for LOCKOUT once MAX_FAILED_LOGINS consecutive failures are reached."""
    return now + LOCKOUT if failed_logins >= MAX_FAILED_LOGINS else None


def operator_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Operator)) or 0)


def assigned_pool_ids(session: Session, operator_id: int) -> frozenset[int]:
    rows = session.scalars(select(OperatorPool.pool_id).where(OperatorPool.operator_id == operator_id))
    return frozenset(int(r) for r in rows)


def set_pool_assignments(session: Session, operator: Operator, pool_ids: list[int]) -> None:
    session.execute(delete(OperatorPool).where(OperatorPool.operator_id == operator.id))
    for pool_id in sorted(set(pool_ids)):
        session.add(OperatorPool(operator_id=operator.id, pool_id=pool_id))


def create_operator(
    session: Session,
    *,
    username: str,
    password: str,
    role: OperatorRole | str,
    display_name: str | None = None,
    pool_ids: list[int] | None = None,
) -> Operator:
    username = username.strip().lower()
    if not username:
        raise OperatorError("Username is required")
    if role not in set(OperatorRole):
        raise OperatorError(f"Unknown role {role!r}")
    check_password_policy(password)
    if session.scalar(select(Operator.id).where(Operator.username == username)) is not None:
        raise ConflictError(f"An operator named {username!r} already exists")
    operator = Operator(
        username=username,
        display_name=display_name or None,
        password_hash=hash_password(password),
        role=str(role),
        created_at=utcnow(),
    )
    session.add(operator)
    session.flush()
    if pool_ids:
        set_pool_assignments(session, operator, pool_ids)
    return operator


def totp_subject(operator_id: int) -> str:
    return f"operator:{operator_id}"


def new_totp_seed() -> str:
    return pyotp.random_base32()


def set_totp_seed(box: SecretBox, operator: Operator, seed: str) -> None:
    sealed = box.seal(totp_subject(operator.id), TOTP_KIND, seed)
    operator.totp_key_id, operator.totp_nonce, operator.totp_ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext


def clear_totp(operator: Operator) -> None:
    operator.totp_key_id = operator.totp_nonce = operator.totp_ciphertext = None
    # The used step belongs to the old seed; a new seed's first code must not be refused for the old one's sake.
    operator.totp_last_step = None


def has_totp(operator: Operator) -> bool:
    return operator.totp_ciphertext is not None


def totp_seed(box: SecretBox, operator: Operator) -> str | None:
    if operator.totp_key_id is None or operator.totp_nonce is None or operator.totp_ciphertext is None:
        return None
    sealed = Sealed(operator.totp_key_id, operator.totp_nonce, operator.totp_ciphertext)
    return box.open(totp_subject(operator.id), TOTP_KIND, sealed)


def totp_step(seed: str, code: str, now: dt.datetime, after: int | None = None) -> int | None:
    """The 30 s time step a code belongs to (one step of clock drift either way), else None.

    Steps at or before `after` (the last step this operator used) never match: a code is single-use, and so is
    every older one still inside the drift window.
    """
    code = code.strip().replace(" ", "")
    if not code.isdigit():
        return None
    totp = pyotp.TOTP(seed)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if (after is None or step > after) and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def accept_totp(operator: Operator, seed: str, code: str, now: dt.datetime | None = None) -> bool:
    """Checks a code against `seed` and, when it matches, records its step so it cannot be used again."""
    step = totp_step(seed, code, now or utcnow(), after=operator.totp_last_step)
    if step is None:
        return False
    operator.totp_last_step = step
    return True


def authenticate(
    session: Session,
    box: SecretBox,
    *,
    username: str,
    password: str,
    totp_code: str | None,
    now: dt.datetime | None = None,
) -> LoginResult:
    """Checks a login attempt and updates the failure counter; the caller commits either way."""
    now = now or utcnow()
    operator = session.scalar(select(Operator).where(Operator.username == username.strip().lower()))
    if operator is None:
        verify_password(_DUMMY_HASH, password)
        return LoginResult(LoginOutcome.BAD_CREDENTIALS)
    if operator.locked_until is not None and operator.locked_until > now:
        return LoginResult(LoginOutcome.LOCKED, locked_until=operator.locked_until)
    if not verify_password(operator.password_hash, password):
        return _failed(operator, now, LoginOutcome.BAD_CREDENTIALS)
    if operator.disabled:
        return LoginResult(LoginOutcome.DISABLED)
    seed = totp_seed(box, operator)
    if seed is not None:
        if not totp_code:
            return LoginResult(LoginOutcome.TOTP_REQUIRED)
        if not accept_totp(operator, seed, totp_code, now):
            return _failed(operator, now, LoginOutcome.BAD_TOTP)
    operator.failed_logins = 0
    operator.locked_until = None
    operator.last_login_at = now
    return LoginResult(LoginOutcome.OK, operator=operator)


def _failed(operator: Operator, now: dt.datetime, outcome: LoginOutcome) -> LoginResult:
    operator.failed_logins = (operator.failed_logins or 0) + 1
    locked = lockout_after_failure(operator.failed_logins, now)
    if locked is not None:
        operator.locked_until = locked
        operator.failed_logins = 0
        return LoginResult(LoginOutcome.LOCKED, locked_until=locked)
    return LoginResult(outcome)
