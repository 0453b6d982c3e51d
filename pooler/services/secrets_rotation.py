"""Secret rotation: re-encrypt every stored secret to the current key of the keyring, in one transaction.

Covers account tokens, secret settings and operator TOTP seeds. Every secret is opened first (with whatever key
sealed it); if any one fails the caller's transaction rolls back and nothing changes. After a successful
rotation the previous keys can be removed from POOLER_SECRET_KEYS.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.crypto.secretbox import Sealed, SecretBox, account_subject
from pooler.models import AccountSecret, Operator, Setting, utcnow
from pooler.services.operators import TOTP_KIND, totp_subject
from pooler.settings import CATALOGUE, reseal_setting


@dataclass(frozen=True)
class RotationReport:
    current_key_id: str
    account_secrets: int
    settings: int
    operator_totp: int
    already_current: int
    """Secrets already sealed with the current key (left untouched unless `force`)."""

    @property
    def rotated(self) -> int:
        return self.account_secrets + self.settings + self.operator_totp


def rotate_secrets(session: Session, box: SecretBox, *, actor: Actor, force: bool = False) -> RotationReport:
    """Re-seals every secret not sealed with the current key (every secret when `force`)."""
    counts = {"account": 0, "setting": 0, "totp": 0, "current": 0}

    def due(key_id: str) -> bool:
        if force or key_id != box.current_key_id:
            return True
        counts["current"] += 1
        return False

    # FOR UPDATE (PostgreSQL): a concurrent token refresh waits instead of being overwritten with stale tokens.
    for row in session.scalars(select(AccountSecret).order_by(AccountSecret.id).with_for_update()).all():
        if not due(row.key_id):
            continue
        subject = account_subject(row.account_id)
        plaintext = box.open(subject, row.kind, Sealed(row.key_id, row.nonce, row.ciphertext))
        sealed = box.seal(subject, row.kind, plaintext)
        row.key_id, row.nonce, row.ciphertext, row.updated_at = sealed.key_id, sealed.nonce, sealed.ciphertext, utcnow()
        counts["account"] += 1

    secret_names = [name for name, d in CATALOGUE.items() if d.secret]
    if secret_names:
        for setting in session.scalars(select(Setting).where(Setting.name.in_(secret_names)).with_for_update()).all():
            if not due(str(setting.value.get("key_id", ""))):
                continue
            setting.value = reseal_setting(box, setting.name, setting.value)
            counts["setting"] += 1

    operators = select(Operator).where(Operator.totp_ciphertext.is_not(None)).order_by(Operator.id).with_for_update()
    for op in session.scalars(operators).all():
        if op.totp_key_id is None or op.totp_nonce is None or op.totp_ciphertext is None or not due(op.totp_key_id):
            continue
        subject = totp_subject(op.id)
        seed = box.open(subject, TOTP_KIND, Sealed(op.totp_key_id, op.totp_nonce, op.totp_ciphertext))
        sealed = box.seal(subject, TOTP_KIND, seed)
        op.totp_key_id, op.totp_nonce, op.totp_ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        counts["totp"] += 1

    report = RotationReport(
        current_key_id=box.current_key_id,
        account_secrets=counts["account"],
        settings=counts["setting"],
        operator_totp=counts["totp"],
        already_current=counts["current"],
    )
    audit.record(
        session,
        actor,
        action="secrets.rotate",
        target_type="keyring",
        target_id=box.current_key_id,
        details={
            "account_secrets": report.account_secrets,
            "settings": report.settings,
            "operator_totp": report.operator_totp,
            "already_current": report.already_current,
            "force": force,
        },
    )
    return report
