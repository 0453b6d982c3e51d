"""Polling the usage API per account, recording quota evidence and deriving `quota_exhausted` from it.

`GET {upstream_base_url}/backend-api/wham/usage` with the account's bearer and `ChatGPT-Account-Id`. Header
evidence the gateway recorded is fresher about live traffic than the usage API, so it wins until it is stale.
A usage-API 429 only delays the next poll (the account stays usable); other failures back off 1, 2, 4, ...
minutes and let the evidence go stale; they never make an account exhausted.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from pooler import lifecycle
from pooler.audit import SCHEDULER, Actor
from pooler.codex_client import for_account
from pooler.crypto.secretbox import SecretBox
from pooler.errors import NotFoundError, PoolerError
from pooler.models import QuotaWindow, UpstreamAccount, utcnow
from pooler.oauth.errors import parse_retry_after
from pooler.quota import DEFAULT_FAMILY, WindowObservation, parse_usage_payload, record_observations
from pooler.services.credentials import read_token
from pooler.services.jobs import LifecycleSettings, load_settings
from pooler.services.refresh import request_refresh
from pooler.states import AccountState, QuotaSource, SecretKind

log = logging.getLogger(__name__)

USAGE_PATH = "/backend-api/wham/usage"
JITTER = 0.1
"""Each account's next poll lands within +-10% of the cadence, so accounts spread out over time."""


class PollOutcome(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not due (backoff or cadence) or not pollable in its state."""
    NO_TOKEN = "no_token"


@dataclass(frozen=True)
class PollResult:
    outcome: PollOutcome
    windows: int = 0
    state: str | None = None
    code: str | None = None
    next_poll: dt.datetime | None = None


@dataclass(frozen=True)
class PollDeps:
    session_factory: sessionmaker[Session]
    box: SecretBox
    http: httpx.Client
    actor: Actor = SCHEDULER
    jitter: Callable[[], float] = field(default=random.random)
    """Returns [0, 1); tests pin it."""


def _evidence(session: Session, account_id: int) -> list[QuotaWindow]:
    return list(
        session.scalars(
            select(QuotaWindow).where(QuotaWindow.account_id == account_id, QuotaWindow.limit_family == DEFAULT_FAMILY)
        )
    )


def apply_quota_state(
    session: Session,
    account: UpstreamAccount,
    now: dt.datetime,
    stale_after: dt.timedelta,
    *,
    actor: Actor = SCHEDULER,
) -> bool:
    """Derives active <-> quota_exhausted from the account's `codex` windows. Returns True when it changed.

    Other limit families (per-model limits) do not make the whole account exhausted.
    """
    windows = [
        lifecycle.WindowEvidence(w.used_percent, w.resets_at, w.observed_at) for w in _evidence(session, account.id)
    ]
    until = lifecycle.exhausted_until(windows, now, stale_after)
    target = lifecycle.quota_state_change(account.state, until is not None)
    if target is None:
        return False
    reason = "window_full" if target == AccountState.QUOTA_EXHAUSTED else "window_reset"
    return lifecycle.transition(session, account, target, actor=actor, reason=reason, now=now)


def _drop_shadowed(
    session: Session, account_id: int, observations: list[WindowObservation], now: dt.datetime, stale: dt.timedelta
) -> list[WindowObservation]:
    """Removes usage-API windows for which fresh gateway header evidence exists (headers win until stale)."""
    fresh_headers = {
        (w.limit_family, w.window_minutes)
        for w in session.scalars(select(QuotaWindow).where(QuotaWindow.account_id == account_id))
        if w.source != QuotaSource.USAGE_API and not lifecycle.is_stale(w.observed_at, now, stale)
    }
    return [o for o in observations if (o.limit_family, o.window_minutes) not in fresh_headers]


def _fetch(
    deps: PollDeps, base_url: str, token: str, account_id: int, chatgpt_account_id: str
) -> tuple[int, object, str | None] | str:
    """(status, json body or None, Retry-After) or a safe network error code. The call carries the account's
    own cookies (pooler.codex_client)."""
    try:
        response = deps.http.get(
            base_url.rstrip("/") + USAGE_PATH,
            headers={
                "Authorization": f"Bearer {token}",
                "ChatGPT-Account-Id": chatgpt_account_id,
                "Accept": "application/json",
            },
            extensions=for_account(account_id),
        )
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError:
        return "network_error"
    try:
        body: object = response.json()
    except ValueError:
        body = None
    return response.status_code, body, response.headers.get("retry-after")


def poll_account(
    deps: PollDeps,
    account_id: int,
    *,
    now: dt.datetime | None = None,
    force: bool = False,
    settings: LifecycleSettings | None = None,
) -> PollResult:
    """Polls one account's usage and updates its evidence and quota state. `force` ignores the poll schedule."""
    now = now or utcnow()
    with deps.session_factory() as session:
        account = session.get(UpstreamAccount, account_id)
        if account is None:
            raise NotFoundError(f"account {account_id} does not exist")
        settings = settings or load_settings(session)
        if AccountState(account.state) not in lifecycle.POLLABLE_STATES:
            return PollResult(PollOutcome.SKIPPED, state=account.state, code=account.state)
        if not force and account.usage_poll_not_before is not None and account.usage_poll_not_before > now:
            return PollResult(PollOutcome.SKIPPED, state=account.state, code="not_due")
        token = read_token(session, deps.box, account_id, SecretKind.ACCESS_TOKEN)
        chatgpt_account_id = account.chatgpt_account_id
    if token is None:
        return PollResult(PollOutcome.NO_TOKEN, code="no_access_token")
    fetched = _fetch(deps, settings.upstream_base_url, token, account_id, chatgpt_account_id)
    with deps.session_factory.begin() as session:
        account = session.get(UpstreamAccount, account_id)
        if account is None:
            raise NotFoundError(f"account {account_id} does not exist")
        written, outcome, code = 0, PollOutcome.OK, None
        status = None if isinstance(fetched, str) else fetched[0]
        if status is not None and 200 <= status < 300:
            assert not isinstance(fetched, str)
            observations = _drop_shadowed(
                session, account_id, parse_usage_payload(fetched[1], now), now, settings.quota_evidence_stale
            )
            written = record_observations(session, account_id, observations, QuotaSource.USAGE_API, now)
            account.usage_poll_failures = 0
            spread = 1 + JITTER * (2 * deps.jitter() - 1)
            account.usage_poll_not_before = now + settings.usage_poll_interval * spread
        elif status == 429:
            assert not isinstance(fetched, str)
            wait = parse_retry_after(fetched[2], now)
            delay = settings.usage_poll_interval if wait is None else dt.timedelta(seconds=wait)
            account.usage_poll_not_before = now + delay
            outcome, code = PollOutcome.RATE_LIMITED, "rate_limited"
        else:
            account.usage_poll_failures += 1
            account.usage_poll_not_before = now + lifecycle.poll_backoff(account.usage_poll_failures)
            code = fetched if isinstance(fetched, str) else f"http_{status}"
            outcome = PollOutcome.FAILED
            if status == 401:
                # The bearer was refused: ask the refresher, exactly as the gateway does on a 401.
                request_refresh(session, account_id, now)
                outcome = PollOutcome.UNAUTHORIZED
        apply_quota_state(
            session,
            account,
            now,
            settings.quota_evidence_stale,
            actor=deps.actor,
        )
        result = PollResult(outcome, written, account.state, code, account.usage_poll_not_before)
    if outcome != PollOutcome.OK:
        log.info("account %s: usage poll %s (%s)", account_id, outcome, code)
    return result


def poll_usage(deps: PollDeps, now: dt.datetime, settings: LifecycleSettings | None = None) -> dict[str, int]:
    """Job `poll_usage`: polls every pollable account whose next poll is due, then re-derives the quota state of
    the rest (so gateway header evidence and passed resets change states without waiting for a poll)."""
    A = UpstreamAccount
    with deps.session_factory() as session:
        settings = settings or load_settings(session)
        pollable = [str(s) for s in lifecycle.POLLABLE_STATES]
        due = list(
            session.scalars(
                select(A.id).where(
                    A.state.in_(pollable),
                    A.deleted_at.is_(None),
                    or_(A.usage_poll_not_before.is_(None), A.usage_poll_not_before <= now),
                )
            )
        )
        others = list(session.scalars(select(A.id).where(A.state.in_(pollable), A.id.not_in(due or [-1]))))
    counts = {"polled": 0, "rate_limited": 0, "failed": 0, "state_changes": 0}
    for account_id in due:
        try:
            result = poll_account(deps, account_id, now=now, settings=settings)
        except PoolerError as exc:  # e.g. a secret sealed with a retired key: one account must not stop the job
            log.warning("account %s: usage poll skipped: %s", account_id, type(exc).__name__)
            counts["failed"] += 1
            continue
        if result.outcome == PollOutcome.OK:
            counts["polled"] += 1
        elif result.outcome == PollOutcome.RATE_LIMITED:
            counts["rate_limited"] += 1
        elif result.outcome in (PollOutcome.FAILED, PollOutcome.UNAUTHORIZED):
            counts["failed"] += 1
    for account_id in others:
        with deps.session_factory.begin() as session:
            account = session.get(A, account_id)
            if account is not None and apply_quota_state(
                session,
                account,
                now,
                settings.quota_evidence_stale,
                actor=deps.actor,
            ):
                counts["state_changes"] += 1
    return counts
