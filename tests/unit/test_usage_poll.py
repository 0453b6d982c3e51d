"""Usage polling over httpx.MockTransport: evidence, quota state, 429 and failure backoff."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler.models import QuotaWindow, UpstreamAccount
from pooler.quota import WindowObservation, record_observations
from pooler.services.usage_poll import PollDeps, PollOutcome, poll_account, poll_usage
from pooler.states import QuotaSource
from tests.support.lifecycle_fixtures import create_account, make_box, state_events

Factory = sessionmaker[Session]
BOX = make_box()
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def window(used: float, reset_in: int) -> dict[str, Any]:
    return {"used_percent": used, "limit_window_seconds": 18000, "reset_after_seconds": reset_in}


class FakeUsage:
    def __init__(self) -> None:
        self.response: httpx.Response = httpx.Response(200, json={"rate_limit": {"primary_window": window(10, 3600)}})
        self.seen: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.response

    def deps(self, factory: Factory) -> PollDeps:
        return PollDeps(factory, BOX, httpx.Client(transport=httpx.MockTransport(self.handler)), jitter=lambda: 0.5)


def get(factory: Factory, account_id: int) -> UpstreamAccount:
    with factory() as s:
        row = s.get(UpstreamAccount, account_id)
        assert row is not None
        return row


def windows(factory: Factory, account_id: int) -> list[QuotaWindow]:
    with factory() as s:
        return list(s.scalars(select(QuotaWindow).where(QuotaWindow.account_id == account_id)))


def test_poll_records_evidence_with_bearer_and_account_header(session_factory: Factory) -> None:
    usage = FakeUsage()
    account_id = create_account(session_factory, BOX, access_token="at-1", chatgpt_account_id=f"cg-{NOW.timestamp()}")
    result = poll_account(usage.deps(session_factory), account_id, now=NOW)
    assert result.outcome == PollOutcome.OK and result.windows == 1
    request = usage.seen[0]
    assert request.url.path == "/backend-api/wham/usage"
    assert request.headers["authorization"] == "Bearer at-1"
    assert request.headers["chatgpt-account-id"] == get(session_factory, account_id).chatgpt_account_id
    [row] = windows(session_factory, account_id)
    assert (row.window_minutes, row.used_percent, row.source) == (300, 10, "usage_api")
    assert get(session_factory, account_id).usage_poll_not_before == NOW + dt.timedelta(minutes=5)
    # Not due again before the cadence.
    assert poll_account(usage.deps(session_factory), account_id, now=NOW).outcome == PollOutcome.SKIPPED


def test_full_window_exhausts_and_reset_restores(session_factory: Factory) -> None:
    usage = FakeUsage()
    usage.response = httpx.Response(200, json={"rate_limit": {"primary_window": window(100, 600)}})
    account_id = create_account(session_factory, BOX)
    assert poll_account(usage.deps(session_factory), account_id, now=NOW).state == "quota_exhausted"
    later = NOW + dt.timedelta(seconds=601)
    usage.response = httpx.Response(200, json={"rate_limit": {"primary_window": window(0, 18000)}})
    assert poll_account(usage.deps(session_factory), account_id, now=later, force=True).state == "active"
    assert [e[1:] for e in state_events(session_factory, account_id)] == [
        ("quota_exhausted", "window_full"),
        ("active", "window_reset"),
    ]


def test_passed_reset_restores_without_a_poll(session_factory: Factory) -> None:
    usage = FakeUsage()
    usage.response = httpx.Response(200, json={"rate_limit": {"primary_window": window(100, 600)}})
    account_id = create_account(session_factory, BOX)
    poll_account(usage.deps(session_factory), account_id, now=NOW)
    usage.response = httpx.Response(500)
    with session_factory.begin() as s:  # pretend the next poll is far off
        row = s.get(UpstreamAccount, account_id)
        assert row is not None
        row.usage_poll_not_before = NOW + dt.timedelta(hours=1)
    counts = poll_usage(usage.deps(session_factory), NOW + dt.timedelta(seconds=700))
    assert counts["state_changes"] >= 1
    assert get(session_factory, account_id).state == "active"


def test_no_window_stays_routable(session_factory: Factory) -> None:
    usage = FakeUsage()
    usage.response = httpx.Response(200, json={"rate_limit": {"primary_window": None, "secondary_window": None}})
    account_id = create_account(session_factory, BOX)
    result = poll_account(usage.deps(session_factory), account_id, now=NOW)
    assert result.outcome == PollOutcome.OK and result.windows == 0 and result.state == "active"


def test_429_delays_next_poll_and_leaves_account_usable(session_factory: Factory) -> None:
    usage = FakeUsage()
    usage.response = httpx.Response(429, headers={"Retry-After": "120"})
    account_id = create_account(session_factory, BOX)
    result = poll_account(usage.deps(session_factory), account_id, now=NOW)
    assert result.outcome == PollOutcome.RATE_LIMITED and result.state == "active"
    row = get(session_factory, account_id)
    assert row.usage_poll_not_before == NOW + dt.timedelta(seconds=120) and row.usage_poll_failures == 0


def test_failures_back_off_and_never_exhaust(session_factory: Factory) -> None:
    usage = FakeUsage()
    usage.response = httpx.Response(502)
    account_id = create_account(session_factory, BOX)
    delays = []
    for _ in range(4):
        result = poll_account(usage.deps(session_factory), account_id, now=NOW, force=True)
        assert result.outcome == PollOutcome.FAILED and result.state == "active"
        assert result.next_poll is not None
        delays.append((result.next_poll - NOW).total_seconds() / 60)
    assert delays == [1, 2, 4, 8]


def test_401_asks_for_a_refresh(session_factory: Factory) -> None:
    usage = FakeUsage()
    usage.response = httpx.Response(401)
    account_id = create_account(session_factory, BOX)
    assert poll_account(usage.deps(session_factory), account_id, now=NOW).outcome == PollOutcome.UNAUTHORIZED
    assert get(session_factory, account_id).refresh_requested_at == NOW


def test_fresh_header_evidence_wins_over_the_usage_api(session_factory: Factory) -> None:
    usage = FakeUsage()
    usage.response = httpx.Response(200, json={"rate_limit": {"primary_window": window(10, 3600)}})
    account_id = create_account(session_factory, BOX)
    header_obs = [WindowObservation("codex", 300, 55.0, NOW + dt.timedelta(hours=1))]
    with session_factory.begin() as s:
        record_observations(s, account_id, header_obs, QuotaSource.HEADERS, NOW - dt.timedelta(seconds=10))
    poll_account(usage.deps(session_factory), account_id, now=NOW)
    [row] = windows(session_factory, account_id)
    assert (row.used_percent, row.source) == (55.0, "headers")
    # Once the header evidence is stale, the usage API replaces it.
    later = NOW + dt.timedelta(hours=2)
    poll_account(usage.deps(session_factory), account_id, now=later, force=True)
    [row] = windows(session_factory, account_id)
    assert (row.used_percent, row.source) == (10.0, "usage_api")
