"""Single-flight refresh against a fake OAuth server, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from pooler.models import UpstreamAccount
from pooler.oauth import token_expiry
from pooler.services.credentials import read_token
from pooler.services.refresh import Outcome, RefreshDeps, refresh_account, refresh_due_tokens, request_refresh
from pooler.states import SecretKind
from pooler.versions import routing_version
from tests.support.lifecycle_fixtures import FakeOAuth, create_account, fake_jwt, make_box, state_events

Factory = sessionmaker[Session]


def deps_for(factory: Factory, oauth: FakeOAuth, **kw: object) -> RefreshDeps:
    return RefreshDeps(factory, BOX, oauth.client(), **kw)  # type: ignore[arg-type]


BOX = make_box()


def account(factory: Factory, account_id: int) -> UpstreamAccount:
    with factory() as session:
        row = session.get(UpstreamAccount, account_id)
        assert row is not None
        return row


def test_refresh_commits_rotated_tokens_and_bumps_epoch(session_factory: Factory) -> None:
    oauth = FakeOAuth()
    account_id = create_account(session_factory, BOX)
    with session_factory() as s:
        version = routing_version(s)
    result = refresh_account(deps_for(session_factory, oauth), account_id)
    assert result.outcome == Outcome.REFRESHED and result.epoch == 2
    row = account(session_factory, account_id)
    assert row.credential_epoch == 2 and row.state == "active" and row.refresh_lease_owner is None
    with session_factory() as s:
        assert read_token(s, BOX, account_id, SecretKind.REFRESH_TOKEN) == oauth.valid
        assert read_token(s, BOX, account_id, SecretKind.ACCESS_TOKEN) == result.access_token
        assert routing_version(s) > version
    assert result.access_token is not None
    assert row.access_token_expires_at == token_expiry(result.access_token)
    assert [e[1] for e in state_events(session_factory, account_id)] == ["refreshing", "active"]


def test_concurrent_callers_make_one_token_call(session_factory: Factory) -> None:
    oauth = FakeOAuth()
    oauth.gate = threading.Event()
    account_id = create_account(session_factory, BOX)
    deps = deps_for(session_factory, oauth)
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(refresh_account, deps, account_id, seen_epoch=1) for _ in range(12)]
        oauth.gate.set()
        results = [f.result(timeout=30) for f in futures]
    assert oauth.calls == 1
    assert sorted(r.outcome for r in results).count(Outcome.REFRESHED) == 1
    assert {r.access_token for r in results} == {results[0].access_token}
    assert all(r.ok for r in results)
    # A late caller holding the old epoch joins without a call.
    late = refresh_account(deps, account_id, seen_epoch=1)
    assert late.outcome == Outcome.JOINED and oauth.calls == 1


@pytest.mark.parametrize("code", ["refresh_token_reused", "refresh_token_expired", "refresh_token_invalidated"])
def test_permanent_failure_requires_reauth(session_factory: Factory, code: str) -> None:
    oauth = FakeOAuth()
    oauth.next_response = httpx.Response(401, json={"error": {"code": code}})
    account_id = create_account(session_factory, BOX)
    result = refresh_account(deps_for(session_factory, oauth), account_id)
    assert result.outcome == Outcome.PERMANENT and result.code == code
    row = account(session_factory, account_id)
    assert row.state == "reauth_required" and row.state_reason == code and row.credential_epoch == 1
    assert state_events(session_factory, account_id)[-1] == ("refreshing", "reauth_required", code)
    # No more token calls for it.
    again = refresh_account(deps_for(session_factory, oauth), account_id)
    assert again.outcome == Outcome.UNAVAILABLE and oauth.calls == 1


def test_transient_failure_backs_off_exponentially(session_factory: Factory) -> None:
    oauth = FakeOAuth()
    oauth.next_response = httpx.Response(503, json={"error": "server_is_overloaded"})
    account_id = create_account(session_factory, BOX)
    deps = deps_for(session_factory, oauth)
    now = dt.datetime.now(dt.UTC)
    first = refresh_account(deps, account_id, now=now)
    assert first.outcome == Outcome.TRANSIENT and first.not_before == now + dt.timedelta(minutes=1)
    assert account(session_factory, account_id).state == "refresh_failed"
    assert refresh_account(deps, account_id, now=now + dt.timedelta(seconds=30)).outcome == Outcome.BACKOFF
    second = refresh_account(deps, account_id, now=now + dt.timedelta(minutes=1))
    assert second.not_before == now + dt.timedelta(minutes=3)
    assert oauth.calls == 2
    oauth.next_response = None
    assert refresh_account(deps, account_id, now=now + dt.timedelta(minutes=3)).outcome == Outcome.REFRESHED
    row = account(session_factory, account_id)
    assert row.state == "active" and row.refresh_failures == 0 and row.refresh_not_before is None


def test_rate_limited_no_call_until_retry_after(session_factory: Factory) -> None:
    oauth = FakeOAuth()
    oauth.next_response = httpx.Response(429, headers={"Retry-After": "30"})
    account_id = create_account(session_factory, BOX)
    deps = deps_for(session_factory, oauth)
    now = dt.datetime.now(dt.UTC)
    assert refresh_account(deps, account_id, now=now).outcome == Outcome.RATE_LIMITED
    row = account(session_factory, account_id)
    assert row.state == "refresh_due" and row.refresh_failures == 0
    oauth.next_response = None
    for seconds in (1, 15, 29.9):
        assert refresh_account(deps, account_id, now=now + dt.timedelta(seconds=seconds)).outcome == Outcome.BACKOFF
    assert oauth.calls == 1
    assert refresh_account(deps, account_id, now=now + dt.timedelta(seconds=30)).outcome == Outcome.REFRESHED
    assert oauth.calls == 2


def test_stale_writer_never_overwrites_newer_credentials(session_factory: Factory) -> None:
    """A caller whose lease expired mid-call finds a newer epoch and drops its tokens."""
    oauth = FakeOAuth()
    account_id = create_account(session_factory, BOX)
    deps = deps_for(session_factory, oauth, lease=dt.timedelta(seconds=-1))  # lease is born expired
    oauth.gate = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(refresh_account, deps, account_id)
        # While the first caller waits in its token call, another one takes the (expired) lease and commits.
        assert oauth.entered.wait(10)
        with session_factory.begin() as s:
            row = s.get(UpstreamAccount, account_id)
            assert row is not None
            row.credential_epoch = 5  # as if a newer refresh committed
        oauth.gate.set()
        result = slow.result(timeout=30)
    assert oauth.calls == 1
    assert result.outcome == Outcome.JOINED and result.epoch == 5
    with session_factory() as s:
        assert read_token(s, BOX, account_id, SecretKind.REFRESH_TOKEN) == "rt_initial"


def test_job_refreshes_due_and_flagged_accounts_only(session_factory: Factory) -> None:
    oauth = FakeOAuth()
    now = dt.datetime.now(dt.UTC)
    fresh = create_account(session_factory, BOX, refresh_token="rt_fresh")
    # A refresh token of its own: the job walks every due account of the (shared) database, and another test's
    # account holding the fake's only valid token must not consume it first.
    expiring_token = f"rt_expiring_{secrets.token_hex(4)}"
    expiring = create_account(
        session_factory, BOX, expires_at=now + dt.timedelta(hours=2), refresh_token=expiring_token
    )
    with session_factory.begin() as s:
        request_refresh(s, fresh, now)
    oauth.valid = expiring_token
    counts = refresh_due_tokens(deps_for(session_factory, oauth), now)
    # The flagged one fails (its token is unknown to the fake: reused -> reauth), the expiring one refreshes.
    assert counts["refreshed"] >= 1 and counts["reauth_required"] >= 1
    assert account(session_factory, expiring).credential_epoch == 2
    assert account(session_factory, fresh).state == "reauth_required"


def test_missing_refresh_token_requires_reauth(session_factory: Factory) -> None:
    oauth = FakeOAuth()
    account_id = create_account(
        session_factory, BOX, refresh_token=None, access_token=fake_jwt(dt.datetime.now(dt.UTC))
    )
    result = refresh_account(deps_for(session_factory, oauth), account_id)
    assert result.outcome == Outcome.PERMANENT and oauth.calls == 0
    assert account(session_factory, account_id).state_reason == "no_refresh_token"
