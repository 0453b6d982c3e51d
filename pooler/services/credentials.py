"""Sealing and opening an account's tokens. Plaintext tokens exist only in memory, never in rows or logs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler.crypto.secretbox import Sealed, SecretBox, account_subject
from pooler.models import AccountSecret, UpstreamAccount, utcnow
from pooler.states import SecretKind


def store_token(session: Session, box: SecretBox, account: UpstreamAccount, kind: SecretKind, token: str) -> None:
    """Upserts one sealed token; the account must have an id (flush first)."""
    if account.id is None:
        session.flush()
    sealed = box.seal(account_subject(account.id), kind, token)
    row = session.scalar(
        select(AccountSecret).where(AccountSecret.account_id == account.id, AccountSecret.kind == kind)
    )
    if row is None:
        row = AccountSecret(account_id=account.id, kind=str(kind))
        session.add(row)
    row.key_id, row.nonce, row.ciphertext, row.updated_at = sealed.key_id, sealed.nonce, sealed.ciphertext, utcnow()


def open_secret(box: SecretBox, row: AccountSecret) -> str:
    return box.open(account_subject(row.account_id), row.kind, Sealed(row.key_id, row.nonce, row.ciphertext))


def read_token(session: Session, box: SecretBox, account_id: int, kind: SecretKind) -> str | None:
    row = session.scalar(
        select(AccountSecret).where(AccountSecret.account_id == account_id, AccountSecret.kind == kind)
    )
    return None if row is None else open_secret(box, row)
