"""Pool invites: a single-use link an operator hands to someone who then connects their own ChatGPT account
through the device-code flow. Only a keyed hash of the token is stored (KeyedHasher purpose `invite`)."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.crypto.hashing import KeyedHasher
from pooler.errors import NotFoundError
from pooler.models import OAuthFlow, OAuthInvite, utcnow
from pooler.onboarding.errors import OnboardingError
from pooler.onboarding.flows import target_pool
from pooler.onboarding.types import OperatorScope
from pooler.states import FlowStatus, InviteStatus

INVITE_PURPOSE = "invite"
DEFAULT_INVITE_TTL = dt.timedelta(days=7)
MAX_INVITE_TTL = dt.timedelta(days=30)


def token_hash(hasher: KeyedHasher, token: str) -> str:
    return hasher.hexdigest(INVITE_PURPOSE, token)


def effective_status(invite: OAuthInvite, now: dt.datetime) -> str:
    """A pending invite past its expiry is expired, whether or not anyone has looked at it since."""
    if invite.status == InviteStatus.PENDING and invite.expires_at <= now:
        return str(InviteStatus.EXPIRED)
    return invite.status


def create_invite(
    session: Session,
    hasher: KeyedHasher,
    *,
    operator: OperatorScope,
    pool_id: int,
    label: str,
    actor: Actor,
    ttl: dt.timedelta = DEFAULT_INVITE_TTL,
    now: dt.datetime | None = None,
) -> tuple[OAuthInvite, str]:
    """The new invite and its raw token (shown once; only its hash is stored)."""
    now = now or utcnow()
    pool = target_pool(session, pool_id)
    if not operator.can_manage(pool.id):
        raise OnboardingError("unauthorized_pool")
    ttl = min(max(ttl, dt.timedelta(minutes=15)), MAX_INVITE_TTL)
    token = secrets.token_urlsafe(32)
    invite = OAuthInvite(
        pool_id=pool.id,
        token_hash=token_hash(hasher, token),
        label=label.strip()[:200] or "invite",
        status=InviteStatus.PENDING,
        created_by=operator.username,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invite)
    session.flush()
    audit.record(
        session,
        actor,
        action="invite.create",
        target_type="invite",
        target_id=invite.id,
        target_label=invite.label,
        details={"pool": pool.name, "expires_at": invite.expires_at.isoformat()},
    )
    return invite, token


def find_usable_invite(
    session: Session, hasher: KeyedHasher, token: str, now: dt.datetime | None = None
) -> OAuthInvite | None:
    """The pending, unexpired invite for `token`, else None (callers show one generic page for every miss)."""
    now = now or utcnow()
    if not token or len(token) > 200:
        return None
    invite = session.scalar(select(OAuthInvite).where(OAuthInvite.token_hash == token_hash(hasher, token)))
    if invite is None or effective_status(invite, now) != InviteStatus.PENDING:
        return None
    return invite


def _scoped_invite(session: Session, operator: OperatorScope, invite_id: int) -> OAuthInvite:
    invite = session.get(OAuthInvite, invite_id)
    if invite is None or not operator.can_manage(invite.pool_id):
        raise NotFoundError(f"invite {invite_id} does not exist")
    return invite


def revoke_invite(
    session: Session, operator: OperatorScope, invite_id: int, *, actor: Actor, now: dt.datetime | None = None
) -> OAuthInvite:
    """Revokes a pending invite and stops any sign-in the invitee has open. Accepted invites stay accepted."""
    now = now or utcnow()
    invite = _scoped_invite(session, operator, invite_id)
    if invite.status != InviteStatus.PENDING:
        return invite
    invite.status, invite.revoked_at = InviteStatus.REVOKED, now
    session.execute(
        update(OAuthFlow)
        .where(OAuthFlow.invite_id == invite.id, OAuthFlow.status == FlowStatus.PENDING)
        .values(status=FlowStatus.FAILED, error_code="flow_not_pending", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        session,
        actor,
        action="invite.revoke",
        target_type="invite",
        target_id=invite.id,
        target_label=invite.label,
    )
    return invite


def list_invites(session: Session, operator: OperatorScope, limit: int = 200) -> list[OAuthInvite]:
    query = select(OAuthInvite).order_by(OAuthInvite.created_at.desc(), OAuthInvite.id.desc()).limit(limit)
    return [i for i in session.scalars(query) if operator.can_manage(i.pool_id) or operator.role == "viewer"]
