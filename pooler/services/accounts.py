"""Upstream accounts: auth.json import (new or re-import), rename, pool assignment, refresh requests, listing and
lookups.

Functions take a Session and never commit. Tokens go from the parsed file straight into the secret box; no
token, email or file content is ever written to an audit event or a log line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler import audit, lifecycle
from pooler.audit import Actor
from pooler.authjson import ParsedAuth, default_label, parse_auth_json
from pooler.crypto.secretbox import SecretBox
from pooler.errors import AuthJsonError, ConflictError, NotFoundError, PoolerError
from pooler.models import AccountModelExclusion, Pool, PoolAssignment, UpstreamAccount, utcnow
from pooler.services.credentials import store_token
from pooler.services.pools import get_pool
from pooler.services.views import AccountRow, account_rows
from pooler.states import AccountState, AssignmentStatus, PoolStatus, SecretKind
from pooler.versions import bump_routing_version

# A re-import means fresh credentials: states that only existed because the old credentials failed are cleared.
CREDENTIAL_STATES = {
    AccountState.REFRESH_DUE,
    AccountState.REFRESHING,
    AccountState.REFRESH_FAILED,
    AccountState.REAUTH_REQUIRED,
    # Relinking is the person acting on what the upstream said (token_invalidated, app_session_terminated, ...).
    AccountState.DEACTIVATED,
    AccountState.DELETED,
}


def msg_already_in_pool(account: UpstreamAccount, pool: Pool) -> str:
    return (
        f"account #{account.id} ({account.label}) is already in pool {pool.name!r}; "
        "import again with replace (--replace) to update its credentials"
    )


@dataclass(frozen=True)
class ImportResult:
    account_id: int
    label: str
    chatgpt_account_id: str
    plan_type: str | None
    pool_name: str
    created: bool
    """False when an existing account's credentials were replaced (credential epoch bumped)."""
    newly_assigned: bool
    credential_epoch: int
    state: str
    access_token_expires_at: dt.datetime | None


def find_by_chatgpt_id(session: Session, chatgpt_account_id: str) -> UpstreamAccount | None:
    return session.scalar(select(UpstreamAccount).where(UpstreamAccount.chatgpt_account_id == chatgpt_account_id))


def get_account(session: Session, ref: str | int) -> UpstreamAccount:
    """By numeric id, ChatGPT account id or label (labels need not be unique: the oldest match wins)."""
    account: UpstreamAccount | None = None
    if isinstance(ref, int) or ref.isdigit():
        account = session.get(UpstreamAccount, int(ref))
    if account is None and isinstance(ref, str):
        account = find_by_chatgpt_id(session, ref) or session.scalar(
            select(UpstreamAccount).where(UpstreamAccount.label == ref).order_by(UpstreamAccount.id).limit(1)
        )
    if account is None or account.deleted_at is not None:
        raise NotFoundError(f"account {str(ref)[:64]!r} does not exist")
    return account


def _initial_state(parsed: ParsedAuth, now: dt.datetime) -> AccountState:
    # An expired access token is fine: the refresh token may still work, so the scheduler refreshes first.
    return AccountState.REFRESH_DUE if parsed.access_token_expired(now) else AccountState.ACTIVE


def _apply_identity(account: UpstreamAccount, parsed: ParsedAuth, now: dt.datetime) -> None:
    account.chatgpt_user_id = parsed.chatgpt_user_id or account.chatgpt_user_id
    account.plan_type = parsed.plan_type or account.plan_type
    account.email = parsed.email or account.email
    account.access_token_expires_at = parsed.access_token_expires_at
    account.last_refresh_at = parsed.last_refresh_at
    account.refresh_requested_at = None
    account.refresh_not_before = None
    account.refresh_failures = 0
    account.updated_at = now


def import_auth_json(
    session: Session,
    ctx_box: SecretBox,
    *,
    pool: Pool | str,
    data: bytes,
    actor: Actor,
    replace: bool = False,
    label: str | None = None,
    now: dt.datetime | None = None,
) -> ImportResult:
    """Imports (or re-imports) one auth.json into `pool`. Raises AuthJsonError or NotFoundError."""
    parsed = parse_auth_json(data)
    pool_row = get_pool(session, pool) if isinstance(pool, str) else pool
    now = now or utcnow()
    account = find_by_chatgpt_id(session, parsed.chatgpt_account_id)
    created = account is None
    if account is None:
        account = UpstreamAccount(
            label=(label or default_label(parsed))[:200],
            chatgpt_account_id=parsed.chatgpt_account_id,
            state=_initial_state(parsed, now),
            state_changed_at=now,
            credential_epoch=1,
            created_at=now,
        )
        _apply_identity(account, parsed, now)
        session.add(account)
        session.flush()
        old_state = None
    else:
        assignment = session.scalar(
            select(PoolAssignment).where(PoolAssignment.pool_id == pool_row.id, PoolAssignment.account_id == account.id)
        )
        if assignment is not None and account.deleted_at is None and not replace:
            raise AuthJsonError(msg_already_in_pool(account, pool_row))
        old_state = account.state
        _apply_identity(account, parsed, now)
        account.credential_epoch += 1
        if label:
            account.label = label[:200]
        if account.deleted_at is not None or account.state in CREDENTIAL_STATES:
            # Paused and quota-exhausted are operator/quota decisions that new credentials do not undo.
            account.state = _initial_state(parsed, now)
            account.state_reason = None
            account.state_changed_at = now
        account.deleted_at = None

    store_token(session, ctx_box, account, SecretKind.ID_TOKEN, parsed.id_token)
    store_token(session, ctx_box, account, SecretKind.ACCESS_TOKEN, parsed.access_token)
    store_token(session, ctx_box, account, SecretKind.REFRESH_TOKEN, parsed.refresh_token)

    assignment = session.scalar(
        select(PoolAssignment).where(PoolAssignment.pool_id == pool_row.id, PoolAssignment.account_id == account.id)
    )
    newly_assigned = assignment is None
    if assignment is None:
        session.add(PoolAssignment(pool_id=pool_row.id, account_id=account.id, status=AssignmentStatus.ACTIVE))
    session.flush()

    audit.record(
        session,
        actor,
        action="account.import" if created else "account.reimport",
        target_type="account",
        target_id=account.id,
        target_label=account.label,
        details={
            "pool": pool_row.name,
            "created": created,
            "newly_assigned": newly_assigned,
            "credential_epoch": account.credential_epoch,
            "old_state": old_state,
            "state": account.state,
            "plan_type": account.plan_type,
            "access_token_expired": parsed.access_token_expired(now),
        },
    )
    bump_routing_version(session)
    return ImportResult(
        account_id=account.id,
        label=account.label,
        chatgpt_account_id=account.chatgpt_account_id,
        plan_type=account.plan_type,
        pool_name=pool_row.name,
        created=created,
        newly_assigned=newly_assigned,
        credential_epoch=account.credential_epoch,
        state=account.state,
        access_token_expires_at=account.access_token_expires_at,
    )


def list_accounts(session: Session, pool: str | None = None, include_deleted: bool = False) -> list[AccountRow]:
    pool_id = None if pool is None else get_pool(session, pool).id
    return account_rows(session, pool_id=pool_id, include_deleted=include_deleted)


def _by_id(session: Session, account_id: int) -> UpstreamAccount:
    """By id, deleted accounts included (an operator may still rename or unassign them)."""
    account = session.get(UpstreamAccount, account_id)
    if account is None:
        raise NotFoundError(f"account #{account_id} does not exist")
    return account


def _record(session: Session, actor: Actor, action: str, account: UpstreamAccount, **details: object) -> None:
    audit.record(
        session,
        actor,
        action=action,
        target_type="account",
        target_id=account.id,
        target_label=account.label,
        details=details or None,
    )


def rename_account(session: Session, account_id: int, label: str, *, actor: Actor) -> UpstreamAccount:
    """Sets the display label (1-200 characters). Not routing-relevant: no version bump."""
    account = _by_id(session, account_id)
    new = label.strip()
    if not 1 <= len(new) <= 200:
        raise PoolerError("a label of 1-200 characters is required")
    if new == account.label:
        return account
    old, account.label, account.updated_at = account.label, new, utcnow()
    _record(session, actor, "account.rename", account, old=old)
    return account


def assign_account(session: Session, account_id: int, pool: Pool | str, *, actor: Actor, priority: int = 100) -> bool:
    """Adds the account to `pool` (active assignment); True when it was not assigned before. Idempotent."""
    account = _by_id(session, account_id)
    pool_row = get_pool(session, pool) if isinstance(pool, str) else pool
    if pool_row.status == PoolStatus.ARCHIVED:
        raise ConflictError(f"pool {pool_row.name!r} is archived")
    if account.deleted_at is not None:
        raise ConflictError(f"account #{account.id} is deleted; import its auth.json again to restore it")
    if not 0 <= priority <= 10000:
        raise PoolerError("priority must be between 0 and 10000")
    existing = session.scalar(
        select(PoolAssignment).where(PoolAssignment.pool_id == pool_row.id, PoolAssignment.account_id == account.id)
    )
    if existing is not None:
        return False
    session.add(
        PoolAssignment(
            pool_id=pool_row.id,
            account_id=account.id,
            priority=priority,
            status=AssignmentStatus.ACTIVE,
            created_at=utcnow(),
        )
    )
    session.flush()
    _record(session, actor, "account.assign", account, pool=pool_row.name, priority=priority)
    bump_routing_version(session)
    return True


def unassign_account(session: Session, account_id: int, pool: Pool | str, *, actor: Actor) -> None:
    """Removes the account from `pool`; NotFoundError when it is not assigned there."""
    account = _by_id(session, account_id)
    pool_row = get_pool(session, pool) if isinstance(pool, str) else pool
    row = session.scalar(
        select(PoolAssignment).where(PoolAssignment.pool_id == pool_row.id, PoolAssignment.account_id == account.id)
    )
    if row is None:
        raise NotFoundError(f"account #{account.id} is not assigned to pool {pool_row.name!r}")
    session.delete(row)
    session.flush()
    session.expire(account, ["assignments"])
    _record(session, actor, "account.unassign", account, pool=pool_row.name)
    bump_routing_version(session)


def request_refresh(session: Session, account_id: int, *, actor: Actor, now: dt.datetime | None = None) -> None:
    """Asks the scheduler to refresh the token at its next tick, also past a failure backoff.

    The account moves to `refresh_due`, which stays routable while its token is valid: an operator's request
    must not take a working account out of rotation. (The gateway's 401 path is different: it sets
    `refresh_requested_at`, and the account is skipped until refreshed, since its token was refused.)"""
    account = _by_id(session, account_id)
    if account.deleted_at is not None:
        raise ConflictError(f"account #{account.id} is deleted")
    if account.state not in (AccountState.ACTIVE, AccountState.REFRESH_DUE, AccountState.REFRESH_FAILED):
        raise ConflictError(f"account #{account.id} is {account.state}: a refresh cannot be requested now")
    account.refresh_not_before = None
    if account.state != AccountState.REFRESH_DUE:
        lifecycle.transition(
            session,
            account,
            AccountState.REFRESH_DUE,
            actor=actor,
            reason="operator_request",
            now=now,
        )
    session.flush()
    _record(session, actor, "account.refresh_requested", account)


def model_exclusions(session: Session, account_id: int) -> list[AccountModelExclusion]:
    """The models the upstream told this account it cannot serve (live ones: permanent or not yet reset)."""
    now = utcnow()
    rows = session.scalars(
        select(AccountModelExclusion)
        .where(AccountModelExclusion.account_id == account_id)
        .order_by(AccountModelExclusion.model)
    )
    return [r for r in rows if r.until is None or r.until > now]


def clear_model_exclusion(session: Session, account_id: int, model: str, *, actor: Actor) -> None:
    """An operator says the account serves `model` again (its plan changed): selection may pick it for it."""
    account = _by_id(session, account_id)
    row = session.scalar(
        select(AccountModelExclusion).where(
            AccountModelExclusion.account_id == account_id, AccountModelExclusion.model == model
        )
    )
    if row is None:
        raise NotFoundError(f"account #{account_id} has no exclusion for that model")
    session.delete(row)
    session.flush()
    _record(session, actor, "account.model_exclusion_cleared", account, model=model[:200])
    bump_routing_version(session)
