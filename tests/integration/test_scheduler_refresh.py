"""Token refresh and usage polling against the simulator's OAuth and usage endpoints, on real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler.audit import SYSTEM
from pooler.crypto.keyring import parse_keyring
from pooler.crypto.secretbox import SecretBox
from pooler.db import make_engine, make_session_factory
from pooler.migrate import upgrade
from pooler.models import AuditEvent, UpstreamAccount
from pooler.services.refresh import Outcome, RefreshDeps, refresh_account, refresh_due_tokens, request_refresh
from pooler.services.usage_poll import PollDeps, PollOutcome, poll_account
from pooler.settings import set_setting
from tests.support.databases import psycopg_url, throwaway_postgres_database
from tests.support.lifecycle_fixtures import create_account
from tests.support.processes import REPO_ROOT, VENV_BIN
from tests.support.refresh_burst import burst, fingerprint
from tests.support.scheduler_process import keyring_env
from tests.support.simulator import RunningSimulator

pytestmark = pytest.mark.integration
Factory = sessionmaker[Session]
ENV = keyring_env()
BOX = SecretBox(parse_keyring(ENV["POOLER_SECRET_KEYS"]))


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with throwaway_postgres_database("pooler_refresh") as url:
        upgrade(url)
        yield url


@pytest.fixture
def factory(pg_url: str, shared_simulator: RunningSimulator) -> Iterator[Factory]:
    engine = make_engine(psycopg_url(pg_url), pool_size=30, max_overflow=10)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        set_setting(session, "auth_base_url", shared_simulator.base_url, actor=SYSTEM)
        set_setting(session, "upstream_base_url", shared_simulator.base_url, actor=SYSTEM)
    yield factory
    engine.dispose()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def sim_account(sim: RunningSimulator, factory: Factory, **fields: object) -> tuple[int, str, dict[str, str]]:
    """A simulator account and its pooler twin holding the simulator's tokens: (id, chatgpt id, tokens)."""
    name = f"acct-{secrets.token_hex(4)}"
    tokens = sim.client.make_auth(name, plan="plus", **fields)["tokens"]
    account_id = create_account(
        factory,
        BOX,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        chatgpt_account_id=name,
    )
    return account_id, name, tokens


def token_calls(sim: RunningSimulator) -> list[dict[str, object]]:
    return sim.client.journal(route="oauth_token")


def get(factory: Factory, account_id: int) -> UpstreamAccount:
    with factory() as session:
        row = session.get(UpstreamAccount, account_id)
        assert row is not None
        return row


def test_fifty_concurrent_refreshes_in_two_processes_make_one_token_call(
    factory: Factory, shared_simulator: RunningSimulator, http: httpx.Client, pg_url: str, tmp_path: Path
) -> None:
    sim = shared_simulator
    account_id, _, tokens = sim_account(sim, factory)
    old_access_fp = fingerprint(tokens["access_token"])
    start_at = time.time() + 2.0
    other = subprocess.Popen(
        [
            str(VENV_BIN / "python"),
            "-m",
            "tests.support.refresh_burst",
            pg_url,
            str(account_id),
            "25",
            str(start_at),
            "1",
        ],
        cwd=REPO_ROOT,
        env={"PATH": str(VENV_BIN), **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        local = burst(RefreshDeps(factory, BOX, http), account_id, 25, start_at, seen_epoch=1)
        out, err = other.communicate(timeout=60)
    finally:
        if other.poll() is None:
            other.kill()
    assert other.returncode == 0, err
    remote = json.loads(out)
    results = [{"outcome": r.outcome, "epoch": r.epoch, "token_fp": fingerprint(r.access_token)} for r in local]
    results += remote
    assert len(results) == 50
    assert [c["status"] for c in token_calls(sim)] == [200], "exactly one token call"
    assert sum(r["outcome"] == Outcome.REFRESHED for r in results) == 1
    assert {r["outcome"] for r in results} <= {Outcome.REFRESHED, Outcome.JOINED}
    fps = {r["token_fp"] for r in results}
    assert len(fps) == 1 and old_access_fp not in fps, "every caller ends with the one new token"
    assert {r["epoch"] for r in results} == {2}
    # The stored refresh token is the rotated one: the next refresh succeeds (the old one would be `reused`).
    again = refresh_account(RefreshDeps(factory, BOX, http), account_id)
    assert again.outcome == Outcome.REFRESHED
    assert [c["status"] for c in token_calls(sim)] == [200, 200]


@pytest.mark.parametrize("code", ["refresh_token_reused", "refresh_token_expired", "refresh_token_invalidated"])
def test_permanent_refresh_errors_require_reauth_with_an_audit_row(
    factory: Factory, shared_simulator: RunningSimulator, http: httpx.Client, code: str
) -> None:
    sim = shared_simulator
    account_id, name, tokens = sim_account(sim, factory)
    if code == "refresh_token_reused":  # someone else used our copy of the refresh token
        spent = http.post(
            f"{sim.base_url}/oauth/token",
            json={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "x"},
        )
        assert spent.status_code == 200
    elif code == "refresh_token_invalidated":
        sim.client.upsert_account(name, revoked=True)
    else:
        body = {"error": {"code": code, "message": "Your refresh token has expired."}}
        sim.client.add_fault("status", route="oauth_token", status=401, body=body)
    with factory.begin() as session:
        request_refresh(session, account_id)  # as the gateway does on a 401
    counts = refresh_due_tokens(RefreshDeps(factory, BOX, http), dt.datetime.now(dt.UTC))
    assert counts["reauth_required"] == 1
    row = get(factory, account_id)
    assert (row.state, row.state_reason) == ("reauth_required", code)
    with factory() as session:
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.target_id == str(account_id), AuditEvent.action == "account.state_change"
            )
        ).all()
    last = events[-1]
    assert last.actor_type == "scheduler" and last.details == {
        "from": "refreshing",
        "to": "reauth_required",
        "reason": code,
    }
    # Never retried: the next run makes no token call for it.
    before = len(token_calls(sim))
    refresh_due_tokens(RefreshDeps(factory, BOX, http), dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    assert len([c for c in token_calls(sim)[before:] if c.get("status") == 401]) == 0


def test_429_retry_after_means_no_token_call_until_it_passes(
    factory: Factory, shared_simulator: RunningSimulator, http: httpx.Client
) -> None:
    sim = shared_simulator
    account_id, _, _ = sim_account(sim, factory)
    sim.client.add_fault(
        "status", route="oauth_token", status=429, headers={"Retry-After": "30"}, body={"error": "rate_limited"}
    )
    with factory.begin() as session:
        request_refresh(session, account_id)
    deps = RefreshDeps(factory, BOX, http)
    t0 = dt.datetime.now(dt.UTC)
    refresh_due_tokens(deps, t0)
    assert [c["status"] for c in token_calls(sim)] == [429]
    assert get(factory, account_id).state == "refresh_due"
    for seconds in (1, 10, 29):  # the job keeps firing; the account is left alone
        refresh_due_tokens(deps, t0 + dt.timedelta(seconds=seconds))
        assert refresh_account(deps, account_id, now=t0 + dt.timedelta(seconds=seconds)).outcome == Outcome.BACKOFF
    assert [c["status"] for c in token_calls(sim)] == [429]
    counts = refresh_due_tokens(deps, t0 + dt.timedelta(seconds=30))
    assert counts["refreshed"] == 1
    assert [c["status"] for c in token_calls(sim)] == [429, 200]
    assert get(factory, account_id).state == "active"


def test_usage_poll_turns_a_full_window_into_quota_exhausted_and_back_after_reset(
    factory: Factory, shared_simulator: RunningSimulator, http: httpx.Client
) -> None:
    sim = shared_simulator
    account_id, name, _ = sim_account(sim, factory)
    deps = PollDeps(factory, BOX, http)

    def sim_now() -> dt.datetime:
        return dt.datetime.fromtimestamp(sim.client.now(), dt.UTC)

    assert poll_account(deps, account_id, now=sim_now(), force=True).state == "active"
    sim.client.upsert_account(name, primary_used_percent=100)
    result = poll_account(deps, account_id, now=sim_now(), force=True)
    assert result.outcome == PollOutcome.OK and result.state == "quota_exhausted"
    sim.client.advance_clock(5 * 3600 + 60)  # past the 5-hour window's reset
    result = poll_account(deps, account_id, now=sim_now(), force=True)
    assert result.state == "active"
    usage_calls = sim.client.journal(route="usage")
    assert usage_calls and all(c["account"] == name for c in usage_calls)


def test_usage_api_429_leaves_the_account_usable(
    factory: Factory, shared_simulator: RunningSimulator, http: httpx.Client
) -> None:
    sim = shared_simulator
    account_id, name, _ = sim_account(sim, factory)
    sim.client.add_fault("status", route="usage", status=429, headers={"Retry-After": "90"}, account=name)
    now = dt.datetime.now(dt.UTC)
    result = poll_account(PollDeps(factory, BOX, http), account_id, now=now)
    assert result.outcome == PollOutcome.RATE_LIMITED and result.state == "active"
    assert result.next_poll == now + dt.timedelta(seconds=90)
