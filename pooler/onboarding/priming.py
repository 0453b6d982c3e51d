"""Right after a link: prime quota evidence (and, if the new token is refused, a refresh) through the
scheduler's own services, so the account's state tells the truth before any request is routed to it."""

from __future__ import annotations

import logging

import httpx
from sqlalchemy.orm import Session, sessionmaker

from pooler.audit import Actor
from pooler.crypto.secretbox import SecretBox
from pooler.errors import PoolerError
from pooler.services.refresh import RefreshDeps, refresh_account
from pooler.services.usage_poll import PollDeps, PollOutcome, poll_account
from pooler.states import ActorType

log = logging.getLogger(__name__)


def prime_account(
    session_factory: sessionmaker[Session],
    box: SecretBox,
    http: httpx.Client,
    account_id: int,
    *,
    actor_label: str | None,
) -> str:
    """Polls usage now; on a refused bearer refreshes once (which marks refresh_failed / reauth_required on
    failure) and polls again. Returns a short outcome code for the operator; never raises for upstream trouble."""
    poll = PollDeps(session_factory, box, http, actor=Actor(ActorType.OPERATOR, actor_label))
    try:
        result = poll_account(poll, account_id, force=True)
        if result.outcome in (PollOutcome.UNAUTHORIZED, PollOutcome.NO_TOKEN):
            refresh = RefreshDeps(
                session_factory, box, http, actor=Actor(ActorType.OPERATOR, actor_label), wait_timeout=10
            )
            refreshed = refresh_account(refresh, account_id, wait=False)
            if not refreshed.ok:
                return f"refresh_{refreshed.outcome}"
            result = poll_account(poll, account_id, force=True)
    except PoolerError as exc:
        log.warning("account %s: priming failed: %s", account_id, type(exc).__name__)
        return "failed"
    return str(result.outcome)
