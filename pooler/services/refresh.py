"""Single-flight token refresh per account, across threads and processes.

Refresh tokens rotate and are single use, so two concurrent refreshes of one account would burn the account
(the loser's call fails with `refresh_token_reused`). Two guards:

- a DB lease: a conditional UPDATE of `refresh_lease_owner/until` that succeeds only when the lease is free or
  expired and the credential epoch is the one the caller read. Row-level write serialisation (PostgreSQL row
  locks re-check the WHERE after the first writer commits; SQLite has a single writer) makes exactly one caller
  win; everyone else waits for the winner's commit and returns the new token.
- the credential epoch: the winner writes only if the epoch is still the one it read, so a stale caller (say,
  one whose lease expired mid-call) never overwrites newer credentials.

The rotated tokens are sealed and committed, epoch bumped and routing version bumped, before the new access
token is returned to anyone. Sessions are short: no transaction is open during the HTTP call.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from pooler import codex_client, lifecycle
from pooler.audit import SCHEDULER, Actor
from pooler.crypto.secretbox import SecretBox
from pooler.errors import NotFoundError, PoolerError
from pooler.models import UpstreamAccount, utcnow
from pooler.oauth import FailureKind, RefreshFailure, TokenSet, refresh_tokens, token_expiry
from pooler.services.credentials import read_token, store_token
from pooler.services.jobs import LifecycleSettings, load_settings, runner_name
from pooler.states import AccountState, SecretKind
from pooler.versions import bump_routing_version

log = logging.getLogger(__name__)

S = AccountState
DEFAULT_LEASE = dt.timedelta(seconds=60)
"""Longer than the HTTP timeout below by a wide margin, so a live winner never loses its lease mid-call."""
# States a successful refresh returns to active; quota_exhausted and paused keep their state.
_CREDENTIAL_STATES = frozenset({S.REFRESH_DUE, S.REFRESHING, S.REFRESH_FAILED})


class Outcome(StrEnum):
    REFRESHED = "refreshed"
    """This caller made the token call and committed new credentials."""
    JOINED = "joined"
    """Another caller refreshed (before or while we waited); we return its token."""
    BUSY = "busy"
    """Another caller holds the lease and we were asked not to wait."""
    BACKOFF = "backoff"
    """`refresh_not_before` is in the future (an earlier failure or a 429): no token call was made."""
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNAVAILABLE = "unavailable"
    """The account cannot be refreshed in its state (re-auth required, deleted) or has no refresh token."""
    TIMEOUT = "timeout"
    """We waited for another caller's refresh past our deadline."""


@dataclass(frozen=True)
class RefreshResult:
    outcome: Outcome
    epoch: int
    access_token: str | None = field(default=None, repr=False)
    code: str | None = None
    not_before: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.REFRESHED, Outcome.JOINED)


@dataclass(frozen=True)
class RefreshDeps:
    session_factory: sessionmaker[Session]
    box: SecretBox
    http: httpx.Client
    owner: str = field(default_factory=runner_name)
    actor: Actor = SCHEDULER
    lease: dt.timedelta = DEFAULT_LEASE
    wait_timeout: float = 30.0
    poll_interval: float = 0.05


def _transition(
    deps: RefreshDeps,
    session: Session,
    account: UpstreamAccount,
    new_state: AccountState,
    reason: str,
    now: dt.datetime,
) -> None:
    """A lifecycle transition recorded as the refresh's actor (the scheduler, or whoever built `deps`)."""
    lifecycle.transition(session, account, new_state, actor=deps.actor, reason=reason, now=now)


def make_http_client() -> httpx.Client:
    """The gateway's own upstream client: a Codex client's identity and per-account cookies (pooler.codex_client)."""
    return codex_client.make_http_client()


def request_refresh(session: Session, account_id: int, now: dt.datetime | None = None) -> None:
    """What the gateway calls on an upstream 401: flag the account for an on-demand refresh by the scheduler.

    Idempotent and cheap; a burst of 401s keeps the first flag time. No routing bump: nothing routable changed.
    """
    session.execute(
        update(UpstreamAccount)
        .where(UpstreamAccount.id == account_id, UpstreamAccount.refresh_requested_at.is_(None))
        .values(refresh_requested_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )


def _current_token(deps: RefreshDeps, account_id: int) -> str | None:
    with deps.session_factory() as session:
        return read_token(session, deps.box, account_id, SecretKind.ACCESS_TOKEN)


def refresh_account(
    deps: RefreshDeps,
    account_id: int,
    *,
    now: dt.datetime | None = None,
    seen_epoch: int | None = None,
    wait: bool = True,
    settings: LifecycleSettings | None = None,
) -> RefreshResult:
    """Refreshes `account_id` once, however many callers ask at the same time.

    `seen_epoch`: the epoch of the credentials the caller found wanting (e.g. a 401). If the account has moved
    past it, someone already refreshed and the current token is returned without a token call.
    `wait`: when another caller holds the lease, wait for its result (True) or return BUSY (False).
    """
    now = now or utcnow()
    owner = f"{deps.owner}:{uuid.uuid4().hex[:8]}"[:200]
    deadline = time.monotonic() + deps.wait_timeout
    while True:
        with deps.session_factory() as session:
            account = session.get(UpstreamAccount, account_id)
            if account is None:
                raise NotFoundError(f"account {account_id} does not exist")
            settings = settings or load_settings(session)
            epoch = account.credential_epoch
            state = S(account.state)
            not_before = account.refresh_not_before
            lease_held = account.refresh_lease_owner is not None and (
                account.refresh_lease_until is None or account.refresh_lease_until >= now
            )
        if seen_epoch is not None and epoch > seen_epoch:
            return RefreshResult(Outcome.JOINED, epoch, _current_token(deps, account_id))
        if state not in lifecycle.REFRESHABLE_STATES:
            return RefreshResult(Outcome.UNAVAILABLE, epoch, code=str(state))
        if not_before is not None and not_before > now:
            return RefreshResult(Outcome.BACKOFF, epoch, code="backoff", not_before=not_before)
        if not lease_held:
            refresh_token = _acquire_lease(deps, account_id, epoch, owner, now)
            if refresh_token is not None:
                return _refresh_as_leader(deps, account_id, epoch, owner, refresh_token, now, settings)
        if not wait:
            return RefreshResult(Outcome.BUSY, epoch)
        result = _wait_for_leader(deps, account_id, epoch, now, deadline)
        if result is not None:
            return result
        # The lease came free without a new epoch (the holder died or gave up): try to take it ourselves.
        seen_epoch = epoch if seen_epoch is None else seen_epoch


def _acquire_lease(deps: RefreshDeps, account_id: int, epoch: int, owner: str, now: dt.datetime) -> str | None:
    """Takes the lease and returns the refresh token to use; None when someone else holds it (or it is gone)."""
    A = UpstreamAccount
    with deps.session_factory.begin() as session:
        result = session.execute(
            update(A)
            .where(
                A.id == account_id,
                A.credential_epoch == epoch,
                or_(A.refresh_lease_owner.is_(None), A.refresh_lease_until.is_(None), A.refresh_lease_until < now),
                or_(A.refresh_not_before.is_(None), A.refresh_not_before <= now),
                A.state.in_([str(s) for s in lifecycle.REFRESHABLE_STATES]),
            )
            .values(refresh_lease_owner=owner, refresh_lease_until=now + deps.lease)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return None
        account = session.get(UpstreamAccount, account_id)
        assert account is not None
        session.refresh(account)
        refresh_token = read_token(session, deps.box, account_id, SecretKind.REFRESH_TOKEN)
        if refresh_token is None:
            # Nothing to refresh with: the account needs a new auth.json. Give the lease back in this commit.
            account.refresh_lease_owner, account.refresh_lease_until = None, None
            _transition(deps, session, account, S.REAUTH_REQUIRED, "no_refresh_token", now)
            return None
        if S(account.state) in (S.ACTIVE, S.REFRESH_DUE, S.REFRESH_FAILED):
            _transition(deps, session, account, S.REFRESHING, "refresh_started", now)
        return refresh_token


def _refresh_as_leader(
    deps: RefreshDeps,
    account_id: int,
    epoch: int,
    owner: str,
    refresh_token: str,
    now: dt.datetime,
    settings: LifecycleSettings,
) -> RefreshResult:
    try:
        tokens = refresh_tokens(
            deps.http, settings.auth_base_url, settings.oauth_client_id, refresh_token, now=now, account_id=account_id
        )
    except RefreshFailure as failure:
        return _record_failure(deps, account_id, epoch, owner, failure, now)
    return _commit_tokens(deps, account_id, epoch, tokens, now)


def _commit_tokens(deps: RefreshDeps, account_id: int, epoch: int, tokens: TokenSet, now: dt.datetime) -> RefreshResult:
    A = UpstreamAccount
    with deps.session_factory.begin() as session:
        # Conditional on the epoch we read, not on still holding the lease: if nobody committed newer
        # credentials, ours are the newest the auth server issued, and dropping them would burn the account.
        bumped = session.execute(
            update(A)
            .where(A.id == account_id, A.credential_epoch == epoch)
            .values(credential_epoch=epoch + 1)
            .execution_options(synchronize_session=False)
        )
        if getattr(bumped, "rowcount", 0) != 1:
            log.warning("account %s: newer credentials were committed during our refresh; ours are dropped", account_id)
            current = session.get(A, account_id)
            new_epoch = current.credential_epoch if current else epoch
            token = read_token(session, deps.box, account_id, SecretKind.ACCESS_TOKEN)
            return RefreshResult(Outcome.JOINED, new_epoch, token)
        account = session.get(A, account_id)
        assert account is not None
        session.refresh(account)
        for kind, value in (
            (SecretKind.ACCESS_TOKEN, tokens.access_token),
            (SecretKind.REFRESH_TOKEN, tokens.refresh_token),
            (SecretKind.ID_TOKEN, tokens.id_token),
        ):
            if value is not None:  # replace only what the server returned
                store_token(session, deps.box, account, kind, value)
        if tokens.access_token is not None:
            account.access_token_expires_at = token_expiry(tokens.access_token)
        account.last_refresh_at = now
        account.refresh_requested_at = None
        account.refresh_failures = 0
        account.refresh_not_before = None
        account.refresh_lease_owner, account.refresh_lease_until = None, None
        if S(account.state) in _CREDENTIAL_STATES:
            _transition(deps, session, account, S.ACTIVE, "refreshed", now)
        bump_routing_version(session)  # new bearer for the gateway's snapshot
        access = tokens.access_token or read_token(session, deps.box, account_id, SecretKind.ACCESS_TOKEN)
    log.info("account %s: tokens refreshed (epoch %s)", account_id, epoch + 1)
    return RefreshResult(Outcome.REFRESHED, epoch + 1, access)


def _record_failure(
    deps: RefreshDeps, account_id: int, epoch: int, owner: str, failure: RefreshFailure, now: dt.datetime
) -> RefreshResult:
    log.warning("account %s: token refresh failed: %s (%s)", account_id, failure.kind, failure.code)
    with deps.session_factory.begin() as session:
        account = session.get(UpstreamAccount, account_id)
        if account is None:
            raise NotFoundError(f"account {account_id} does not exist")
        if account.credential_epoch != epoch:
            # Someone else committed fresh credentials meanwhile; our failure is about an old token.
            return RefreshResult(
                Outcome.JOINED,
                account.credential_epoch,
                read_token(session, deps.box, account_id, SecretKind.ACCESS_TOKEN),
            )
        if account.refresh_lease_owner == owner:
            account.refresh_lease_owner, account.refresh_lease_until = None, None
        state = S(account.state)
        not_before: dt.datetime | None
        if failure.kind == FailureKind.PERMANENT:
            target: AccountState | None = S.REAUTH_REQUIRED
            not_before = None
            outcome = Outcome.PERMANENT
        elif failure.kind == FailureKind.RATE_LIMITED:
            # A 429 is not the account's fault: no failure counted, just no token call until Retry-After.
            not_before = now + dt.timedelta(seconds=failure.retry_after or 0)
            target = S.REFRESH_DUE if state == S.REFRESHING else None
            outcome = Outcome.RATE_LIMITED
        else:
            account.refresh_failures += 1
            not_before = now + lifecycle.refresh_backoff(account.refresh_failures)
            target = S.REFRESH_FAILED if state in (S.REFRESHING, S.ACTIVE, S.REFRESH_DUE) else None
            outcome = Outcome.TRANSIENT
        account.refresh_not_before = not_before
        if target is not None:
            _transition(deps, session, account, target, failure.code, now)
        return RefreshResult(outcome, epoch, code=failure.code, not_before=not_before)


def _wait_for_leader(
    deps: RefreshDeps, account_id: int, epoch: int, now: dt.datetime, deadline: float
) -> RefreshResult | None:
    """Polls until the lease holder commits; None when the lease came free without new credentials."""
    A = UpstreamAccount
    started = time.monotonic()
    while time.monotonic() < deadline:
        # `now` may be a test's clock: advance it by the real time spent waiting, so an expired lease shows.
        current = now + dt.timedelta(seconds=time.monotonic() - started)
        with deps.session_factory() as session:
            row = session.execute(
                select(
                    A.credential_epoch,
                    A.refresh_lease_owner,
                    A.refresh_lease_until,
                    A.state,
                    A.state_reason,
                    A.refresh_not_before,
                ).where(A.id == account_id)
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"account {account_id} does not exist")
            new_epoch, lease_owner, lease_until, state, reason, not_before = row
            if new_epoch > epoch:
                token = read_token(session, deps.box, account_id, SecretKind.ACCESS_TOKEN)
                return RefreshResult(Outcome.JOINED, new_epoch, token)
        lease_free = lease_owner is None or (lease_until is not None and lease_until < current)
        if lease_free:
            if S(state) == S.REAUTH_REQUIRED:
                return RefreshResult(Outcome.PERMANENT, new_epoch, code=reason)
            if not_before is not None and not_before > current:
                return RefreshResult(Outcome.BACKOFF, new_epoch, code=reason, not_before=not_before)
            return None
        time.sleep(deps.poll_interval)  # polling the winner's commit; bounded by the deadline
    return RefreshResult(Outcome.TIMEOUT, epoch, code="wait_timeout")


# ---- the scheduler job ----------------------------------------------------------------------------------------


def refresh_due_tokens(
    deps: RefreshDeps, now: dt.datetime, settings: LifecycleSettings | None = None
) -> dict[str, int]:
    """Job `refresh_due_tokens`: proactive (expiring within the horizon, or refreshed > 8 days ago) and on-demand
    (flagged by the gateway) refreshes. Idempotent: accounts in backoff or leased elsewhere are skipped."""
    A = UpstreamAccount
    with deps.session_factory() as session:
        settings = settings or load_settings(session)
        candidates = session.execute(
            select(A.id, A.access_token_expires_at, A.last_refresh_at, A.refresh_requested_at, A.state).where(
                A.state.in_([str(s) for s in lifecycle.REFRESHABLE_STATES]),
                A.deleted_at.is_(None),
                or_(A.refresh_not_before.is_(None), A.refresh_not_before <= now),
                or_(A.refresh_lease_owner.is_(None), A.refresh_lease_until < now),
            )
        ).all()
    counts = {"checked": len(candidates), "refreshed": 0, "skipped": 0, "failed": 0, "reauth_required": 0}
    for account_id, expires_at, last_refresh_at, requested_at, state in candidates:
        reason = lifecycle.refresh_due_reason(
            now=now,
            access_token_expires_at=expires_at,
            last_refresh_at=last_refresh_at,
            refresh_requested_at=requested_at,
            horizon=settings.refresh_horizon,
            state=state,
        )
        if reason is None:
            continue
        try:
            result = refresh_account(deps, account_id, now=now, wait=False, settings=settings)
        except PoolerError as exc:  # e.g. a secret that no longer opens: one account must not stop the job
            log.warning("account %s: refresh skipped: %s", account_id, type(exc).__name__)
            counts["failed"] += 1
            continue
        if result.outcome == Outcome.REFRESHED:
            counts["refreshed"] += 1
        elif result.outcome == Outcome.PERMANENT:
            counts["reauth_required"] += 1
        elif result.outcome in (Outcome.TRANSIENT, Outcome.RATE_LIMITED, Outcome.TIMEOUT):
            counts["failed"] += 1
        else:
            counts["skipped"] += 1
    return counts
