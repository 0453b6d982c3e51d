"""The onboarding flow service: start, continue and finish OAuth link/relink/invite flows.

Functions take a Session and never commit. A flow row holds only metadata in clear; the PKCE verifier, the
state and the device ids are sealed in the secret box. The authorization code, the callback URL and the
tokens exist only in memory: tokens go straight to `pooler.services.accounts.import_auth_json` (which seals
them, bumps the credential epoch, assigns the pool and audits), as the in-memory auth.json document Codex would
have written after the same login.

Contract on failure: an `OnboardingError` may have marked the flow failed/expired in the session; the caller
commits anyway so the outcome is recorded (nothing else was written). Paste mistakes (`invalid_callback_url`,
`invalid_callback_origin`, `duplicate_callback_param`, `missing_state`, `invalid_state`) leave the flow pending so
the operator can paste the right URL.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.authjson import parse_auth_json
from pooler.crypto.hashing import KeyedHasher
from pooler.crypto.secretbox import Sealed, SecretBox
from pooler.errors import AuthJsonError, NotFoundError
from pooler.models import OAuthFlow, OAuthInvite, Pool, UpstreamAccount, utcnow
from pooler.oauth.device import DEVICE_TIMEOUT, poll_device_token, request_user_code, verification_url
from pooler.oauth.errors import RefreshFailure
from pooler.oauth.exchange import BROWSER_REDIRECT_URI, DEVICE_REDIRECT_URI, exchange_code
from pooler.oauth.refresh import TokenSet
from pooler.onboarding.callback import validate_callback_url
from pooler.onboarding.errors import OnboardingError, token_call_error
from pooler.onboarding.pkce import authorization_url, new_pkce, new_state, s256_challenge
from pooler.onboarding.types import (
    BrowserStart,
    DevicePending,
    LinkOutcome,
    Method,
    OAuthConfig,
    OperatorScope,
    Purpose,
    Requester,
)
from pooler.services.accounts import find_by_chatgpt_id, import_auth_json
from pooler.settings import get_setting
from pooler.states import ActorType, FlowStatus, InviteStatus, PoolStatus

FLOW_TTL = DEVICE_TIMEOUT
"""Both methods get the device-code limit of 15 minutes: long enough for a sign-in, short for a leaked URL."""
BINDING_PURPOSE = "oauth-flow-binding"
SECRETS_KIND = "flow_secrets"
# Codes that mean "you pasted the wrong thing": the flow stays pending.
PASTE_CODES = frozenset(
    {"invalid_callback_url", "invalid_callback_origin", "duplicate_callback_param", "missing_state", "invalid_state"}
)


def flow_subject(flow_id: int) -> str:
    return f"oauth_flow:{flow_id}"


def load_oauth_config(session: Session) -> OAuthConfig:
    return OAuthConfig(
        auth_base_url=str(get_setting(session, "auth_base_url")),
        client_id=str(get_setting(session, "oauth_client_id")),
    )


def binding_hash(hasher: KeyedHasher, binding: str) -> str:
    return hasher.hexdigest(BINDING_PURPOSE, binding)


# ---- sealing ------------------------------------------------------------------------------------------------


def _seal(box: SecretBox, flow: OAuthFlow, values: dict[str, str]) -> None:
    sealed = box.seal(flow_subject(flow.id), SECRETS_KIND, json.dumps(values))
    flow.key_id, flow.nonce, flow.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext


def _open(box: SecretBox, flow: OAuthFlow) -> dict[str, str]:
    raw = box.open(flow_subject(flow.id), SECRETS_KIND, Sealed(flow.key_id, flow.nonce, flow.ciphertext))
    values: dict[str, str] = json.loads(raw)
    return values


# ---- targets and authorization ---------------------------------------------------------------------------


def target_pool(session: Session, pool_id: int) -> Pool:
    pool = session.get(Pool, pool_id)
    if pool is None or pool.status == PoolStatus.ARCHIVED:
        raise NotFoundError(f"pool {pool_id} does not exist")
    return pool


def resolve_target(
    session: Session, operator: OperatorScope, purpose: Purpose, pool_id: int | None, account_id: int | None
) -> tuple[Pool, UpstreamAccount | None]:
    """The pool (and for relink the account) a flow will write to, after checking the operator may manage it."""
    if purpose == Purpose.RELINK:
        account = session.get(UpstreamAccount, account_id or 0)
        if account is None or account.deleted_at is not None:
            raise NotFoundError(f"account {account_id} does not exist")
        assigned = [a.pool_id for a in account.assignments]
        candidates = [pool_id] if pool_id is not None else assigned
        manageable = [p for p in candidates if p in assigned and operator.can_manage(p)]
        if not manageable:
            raise OnboardingError("unauthorized_pool")
        return target_pool(session, manageable[0]), account
    if pool_id is None:
        raise NotFoundError("choose a pool")
    pool = target_pool(session, pool_id)
    if not operator.can_manage(pool.id):
        raise OnboardingError("unauthorized_pool")
    return pool, None


def _supersede(session: Session, flow: OAuthFlow, now: dt.datetime) -> None:
    """Older pending flows for the same target (same operator, or same invite) become `stale_flow`."""
    same_owner = (
        OAuthFlow.invite_id == flow.invite_id
        if flow.invite_id is not None
        else OAuthFlow.operator_id == flow.operator_id
    )
    target = OAuthFlow.account_id == flow.account_id if flow.account_id is not None else OAuthFlow.account_id.is_(None)
    session.execute(
        update(OAuthFlow)
        .where(
            OAuthFlow.id != flow.id,
            OAuthFlow.status == FlowStatus.PENDING,
            OAuthFlow.purpose == flow.purpose,
            OAuthFlow.pool_id == flow.pool_id,
            same_owner,
            target,
        )
        .values(status=FlowStatus.FAILED, error_code="stale_flow", finished_at=now)
        .execution_options(synchronize_session=False)
    )


def _new_flow(
    session: Session,
    box: SecretBox,
    hasher: KeyedHasher,
    *,
    purpose: Purpose,
    method: Method,
    pool: Pool,
    account: UpstreamAccount | None,
    operator: OperatorScope | None,
    invite: OAuthInvite | None,
    binding: str,
    values: dict[str, str],
    interval: int,
    now: dt.datetime,
) -> OAuthFlow:
    flow = OAuthFlow(
        operator_id=operator.id if operator else None,
        invite_id=invite.id if invite else None,
        purpose=str(purpose),
        method=str(method),
        pool_id=pool.id,
        account_id=account.id if account else None,
        status=FlowStatus.PENDING,
        binding_hash=binding_hash(hasher, binding),
        poll_interval_seconds=interval,
        next_poll_at=now + dt.timedelta(seconds=interval) if method == Method.DEVICE else None,
        expires_at=now + FLOW_TTL,
        key_id="",
        nonce=b"",
        ciphertext=b"",
        created_at=now,
    )
    session.add(flow)
    session.flush()  # the id is part of the secret box subject
    _seal(box, flow, values)
    _supersede(session, flow, now)
    audit.record(
        session,
        Actor(
            ActorType.OPERATOR if operator else ActorType.SYSTEM,
            operator.username if operator else _invite_label(invite),
        ),
        action="oauth.flow_start",
        target_type="oauth_flow",
        target_id=flow.id,
        details={"purpose": str(purpose), "method": str(method), "pool": pool.name, "account_id": flow.account_id},
    )
    return flow


def _invite_label(invite: OAuthInvite | None) -> str | None:
    return f"invite #{invite.id}" if invite else None


# ---- starting ---------------------------------------------------------------------------------------------


def start_browser_flow(
    session: Session,
    box: SecretBox,
    hasher: KeyedHasher,
    config: OAuthConfig,
    *,
    operator: OperatorScope,
    binding: str,
    purpose: Purpose,
    pool_id: int | None,
    account_id: int | None = None,
    now: dt.datetime | None = None,
) -> BrowserStart:
    """A new PKCE flow and the authorization URL to open. Raises OnboardingError(unauthorized_pool)."""
    now = now or utcnow()
    pool, account = resolve_target(session, operator, purpose, pool_id, account_id)
    pkce, state = new_pkce(), new_state()
    flow = _new_flow(
        session,
        box,
        hasher,
        purpose=purpose,
        method=Method.BROWSER,
        pool=pool,
        account=account,
        operator=operator,
        invite=None,
        binding=binding,
        values={"verifier": pkce.verifier, "state": state},
        interval=0,
        now=now,
    )
    url = authorization_url(config.auth_base_url, config.client_id, pkce.challenge, state)
    return BrowserStart(flow.id, url, flow.expires_at)


def start_device_flow(
    session: Session,
    box: SecretBox,
    hasher: KeyedHasher,
    http: httpx.Client,
    config: OAuthConfig,
    *,
    operator: OperatorScope | None,
    binding: str,
    purpose: Purpose,
    pool_id: int | None,
    account_id: int | None = None,
    invite: OAuthInvite | None = None,
    now: dt.datetime | None = None,
) -> DevicePending:
    """Asks the auth server for a user code and records the pending flow. Invite flows pass `invite`."""
    now = now or utcnow()
    if purpose == Purpose.INVITE:
        if invite is None:
            raise ValueError("invite flows need the invite")
        pool, account = target_pool(session, invite.pool_id), None
    else:
        if operator is None:
            raise ValueError("operator flows need the operator")
        pool, account = resolve_target(session, operator, purpose, pool_id, account_id)
    try:
        device = request_user_code(http, config.auth_base_url, config.client_id)
    except RefreshFailure as exc:
        raise OnboardingError(token_call_error(exc), exc.code) from None
    flow = _new_flow(
        session,
        box,
        hasher,
        purpose=purpose,
        method=Method.DEVICE,
        pool=pool,
        account=account,
        operator=operator,
        invite=invite,
        binding=binding,
        values={"device_auth_id": device.device_auth_id, "user_code": device.user_code},
        interval=device.interval,
        now=now,
    )
    assert flow.next_poll_at is not None
    return DevicePending(
        flow.id,
        device.user_code,
        verification_url(config.auth_base_url),
        device.interval,
        flow.next_poll_at,
        flow.expires_at,
    )


# ---- continuing -------------------------------------------------------------------------------------------


def _fail(session: Session, flow: OAuthFlow, code: str, now: dt.datetime, detail: str | None = None) -> OnboardingError:
    flow.status = FlowStatus.EXPIRED if code == "expired_flow" else FlowStatus.FAILED
    flow.error_code = code
    flow.finished_at = now
    audit.record(
        session,
        Actor(ActorType.SYSTEM, None),
        action="oauth.flow_failed",
        target_type="oauth_flow",
        target_id=flow.id,
        outcome="failure",
        details={"purpose": flow.purpose, "method": flow.method, "code": code, "detail": detail},
    )
    return OnboardingError(code, detail)


def get_owned_flow(
    session: Session, hasher: KeyedHasher, flow_id: int, requester: Requester, method: Method | None = None
) -> OAuthFlow:
    """The flow, if `requester` started it (same operator or invite, same browser session); NotFoundError else."""
    flow = session.get(OAuthFlow, flow_id)
    if flow is None or (method is not None and flow.method != method):
        raise NotFoundError("no such sign-in")
    owner_ok = (
        requester.operator is not None and flow.operator_id == requester.operator.id and flow.invite_id is None
    ) or (requester.operator is None and requester.invite_id is not None and flow.invite_id == requester.invite_id)
    if not owner_ok or not hasher.matches(BINDING_PURPOSE, requester.binding, flow.binding_hash):
        raise NotFoundError("no such sign-in")
    return flow


def _claim(
    session: Session,
    box: SecretBox,
    hasher: KeyedHasher,
    flow_id: int,
    requester: Requester,
    method: Method,
    now: dt.datetime,
) -> tuple[OAuthFlow, dict[str, str]]:
    flow = get_owned_flow(session, hasher, flow_id, requester, method)
    if flow.status == FlowStatus.FAILED and flow.error_code == "stale_flow":
        raise OnboardingError("stale_flow")
    if flow.status == FlowStatus.EXPIRED:
        raise OnboardingError("expired_flow")
    if flow.status != FlowStatus.PENDING:
        raise OnboardingError("flow_not_pending")
    if flow.expires_at <= now:
        raise _fail(session, flow, "expired_flow", now)
    if requester.operator is not None and not requester.operator.can_manage(flow.pool_id):
        raise _fail(session, flow, "unauthorized_pool", now)
    if flow.invite_id is not None:
        invite = session.get(OAuthInvite, flow.invite_id)
        # Expiry first: housekeeping marks a lapsed invite `expired`, and the invitee should hear that, not
        # that the flow is no longer pending.
        if invite is not None and (invite.expires_at <= now or invite.status == InviteStatus.EXPIRED):
            raise _fail(session, flow, "expired_flow", now)
        if invite is None or invite.status != InviteStatus.PENDING:
            raise _fail(session, flow, "flow_not_pending", now)
    return flow, _open(box, flow)


def complete_browser_flow(
    session: Session,
    box: SecretBox,
    hasher: KeyedHasher,
    http: httpx.Client,
    config: OAuthConfig,
    *,
    flow_id: int,
    requester: Requester,
    callback_url: str,
    now: dt.datetime | None = None,
) -> LinkOutcome:
    """Validates the pasted callback URL, exchanges the code and links/relinks the account."""
    now = now or utcnow()
    flow, values = _claim(session, box, hasher, flow_id, requester, Method.BROWSER, now)
    try:
        result = validate_callback_url(callback_url, values["state"])
    except OnboardingError as exc:
        if exc.code in PASTE_CODES:
            raise
        raise _fail(session, flow, exc.code, now) from None
    try:
        tokens = exchange_code(
            http,
            config.auth_base_url,
            config.client_id,
            code=result.code,
            code_verifier=values["verifier"],
            redirect_uri=BROWSER_REDIRECT_URI,
            now=now,
        )
    except RefreshFailure as exc:
        raise _fail(session, flow, token_call_error(exc), now, exc.code) from None
    return _finish(session, box, flow, tokens, requester, now)


def poll_device_flow(
    session: Session,
    box: SecretBox,
    hasher: KeyedHasher,
    http: httpx.Client,
    config: OAuthConfig,
    *,
    flow_id: int,
    requester: Requester,
    now: dt.datetime | None = None,
) -> DevicePending | LinkOutcome:
    """One step of the device flow: no upstream call before `next_poll_at` (the server's interval)."""
    now = now or utcnow()
    flow, values = _claim(session, box, hasher, flow_id, requester, Method.DEVICE, now)
    pending = DevicePending(
        flow.id,
        values["user_code"],
        verification_url(config.auth_base_url),
        flow.poll_interval_seconds,
        flow.next_poll_at or now,
        flow.expires_at,
    )
    if flow.next_poll_at is not None and flow.next_poll_at > now:
        return pending
    try:
        grant = poll_device_token(http, config.auth_base_url, values["device_auth_id"], values["user_code"])
    except RefreshFailure as exc:
        raise _fail(session, flow, token_call_error(exc), now, exc.code) from None
    if grant is None:
        flow.next_poll_at = now + dt.timedelta(seconds=flow.poll_interval_seconds)
        return DevicePending(
            flow.id, pending.user_code, pending.verification_url, pending.interval, flow.next_poll_at, flow.expires_at
        )
    try:
        tokens = exchange_code(
            http,
            config.auth_base_url,
            config.client_id,
            code=grant.authorization_code,
            code_verifier=grant.code_verifier,
            redirect_uri=DEVICE_REDIRECT_URI,
            now=now,
        )
    except RefreshFailure as exc:
        raise _fail(session, flow, token_call_error(exc), now, exc.code) from None
    return _finish(session, box, flow, tokens, requester, now)


# ---- finishing --------------------------------------------------------------------------------------------


def _auth_document(tokens: TokenSet, now: dt.datetime) -> bytes:
    """The auth.json Codex would have written after this login (in memory only, handed to the importer)."""
    doc: dict[str, Any] = {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": tokens.id_token,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
        },
        "last_refresh": now.isoformat().replace("+00:00", "Z"),
    }
    return json.dumps(doc).encode()


def _finish(
    session: Session, box: SecretBox, flow: OAuthFlow, tokens: TokenSet, requester: Requester, now: dt.datetime
) -> LinkOutcome:
    if not (tokens.id_token and tokens.access_token and tokens.refresh_token):
        raise _fail(session, flow, "token_exchange_failed", now, "incomplete_tokens")
    data = _auth_document(tokens, now)
    try:
        parsed = parse_auth_json(data)
    except AuthJsonError:
        raise _fail(session, flow, "token_exchange_failed", now, "unreadable_tokens") from None
    purpose = Purpose(flow.purpose)
    if purpose == Purpose.RELINK:
        target = session.get(UpstreamAccount, flow.account_id or 0)
        if (
            target is None
            or target.chatgpt_account_id != parsed.chatgpt_account_id
            or (target.chatgpt_user_id and parsed.chatgpt_user_id and target.chatgpt_user_id != parsed.chatgpt_user_id)
        ):
            raise _fail(session, flow, "identity_mismatch", now)
    else:
        existing = find_by_chatgpt_id(session, parsed.chatgpt_account_id)
        if existing is not None and existing.deleted_at is None:
            raise _fail(session, flow, "identity_conflict", now, f"account:{existing.id}")
    if requester.operator is not None:
        actor = Actor(ActorType.OPERATOR, requester.operator.username)
    else:
        actor = Actor(ActorType.SYSTEM, f"invite #{flow.invite_id}")
    pool = target_pool(session, flow.pool_id)
    # replace=True: a relink replaces the credentials of an account already in the pool, and a link may revive a
    # deleted account (fresh credentials, epoch bumped). Live duplicates were refused above.
    result = import_auth_json(session, box, pool=pool, data=data, actor=actor, replace=True, now=now)
    account = session.get(UpstreamAccount, result.account_id)
    assert account is not None
    # Priming: the scheduler polls quota for this account at its next tick (the admin also primes at once).
    account.usage_poll_not_before = None
    flow.status, flow.account_id, flow.finished_at = FlowStatus.COMPLETED, account.id, now
    _seal(box, flow, {})  # the verifier and device ids are spent: keep nothing
    action = {Purpose.LINK: "account.oauth_link", Purpose.RELINK: "account.oauth_relink"}.get(purpose, "invite.accept")
    audit.record(
        session,
        actor,
        action=action,
        target_type="account",
        target_id=account.id,
        target_label=account.label,
        details={
            "pool": pool.name,
            "method": flow.method,
            "flow_id": flow.id,
            "created": result.created,
            "credential_epoch": result.credential_epoch,
            "invite_id": flow.invite_id,
        },
    )
    if flow.invite_id is not None:
        _accept_invite(session, flow, account, now)
    return LinkOutcome(flow.id, str(purpose), account.id, account.label, pool.name, result.created, account.state)


def _accept_invite(session: Session, flow: OAuthFlow, account: UpstreamAccount, now: dt.datetime) -> None:
    invite = session.get(OAuthInvite, flow.invite_id)
    assert invite is not None
    invite.status, invite.accepted_at, invite.account_id = InviteStatus.ACCEPTED, now, account.id
    # Single use: any other sign-in the invitee left open can no longer complete.
    session.execute(
        update(OAuthFlow)
        .where(OAuthFlow.invite_id == invite.id, OAuthFlow.id != flow.id, OAuthFlow.status == FlowStatus.PENDING)
        .values(status=FlowStatus.FAILED, error_code="stale_flow", finished_at=now)
        .execution_options(synchronize_session=False)
    )


def pending_flows(session: Session, operator_id: int) -> list[OAuthFlow]:
    return list(
        session.scalars(
            select(OAuthFlow)
            .where(OAuthFlow.operator_id == operator_id, OAuthFlow.status == FlowStatus.PENDING)
            .order_by(OAuthFlow.id.desc())
        )
    )


@dataclass(frozen=True)
class FlowView:
    """What the page that owns a flow may show: metadata, and while pending the one-time URL or user code."""

    id: int
    purpose: str
    method: str
    status: str
    """Effective status: a pending flow past its expiry reads `expired`."""
    error_code: str | None
    pool_id: int
    account_id: int | None
    expires_at: dt.datetime
    interval: int
    authorize_url: str | None = field(default=None, repr=False)
    user_code: str | None = None
    verification_url: str | None = None


def describe_flow(
    session: Session,
    box: SecretBox,
    hasher: KeyedHasher,
    config: OAuthConfig,
    *,
    flow_id: int,
    requester: Requester,
    now: dt.datetime | None = None,
) -> FlowView:
    """Read-only view of an owned flow (NotFoundError otherwise). The authorization URL is rebuilt from the
    sealed verifier and state, so it is never stored anywhere."""
    now = now or utcnow()
    flow = get_owned_flow(session, hasher, flow_id, requester)
    status = flow.status
    if status == FlowStatus.PENDING and flow.expires_at <= now:
        status = FlowStatus.EXPIRED
    view = FlowView(
        flow.id,
        flow.purpose,
        flow.method,
        str(status),
        "expired_flow" if status == FlowStatus.EXPIRED and not flow.error_code else flow.error_code,
        flow.pool_id,
        flow.account_id,
        flow.expires_at,
        flow.poll_interval_seconds,
    )
    if status != FlowStatus.PENDING:
        return view
    values = _open(box, flow)
    if flow.method == Method.BROWSER:
        url = authorization_url(
            config.auth_base_url, config.client_id, s256_challenge(values["verifier"]), values["state"]
        )
        return replace(view, authorize_url=url)
    return replace(view, user_code=values["user_code"], verification_url=verification_url(config.auth_base_url))
