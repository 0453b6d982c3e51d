"""Admin views over the pool and account services: edit, archive, rename, assign, unassign, refresh."""

from __future__ import annotations

import datetime as dt

from flask.testing import FlaskClient
from sqlalchemy import select

from pooler.context import CoreContext
from pooler.models import (
    AccountModelExclusion,
    AuditEvent,
    InflightStreams,
    Pool,
    PoolAssignment,
    UpstreamAccount,
    utcnow,
)
from pooler.services.seed import SeedResult, seed
from pooler.states import AccountState, PoolStatus
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth

POOL_FORM = {
    "name": "ignored",
    "label": "Team A (edited)",
    "strategy": "round-robin",
    "sticky_ttl_seconds": "600",
    "max_attempts": "2",
    "primary_cap_percent": "85",
    "secondary_cap_percent": "100",
    "max_concurrency_per_account": "",
    "allowed_models": "gpt-5\ngpt-5-codex",
}


def _seed(ctx: CoreContext) -> SeedResult:
    with ctx.session_factory.begin() as session:
        return seed(session, ctx.box, ctx.hasher, requests=10)


def _actions(ctx: CoreContext) -> list[str]:
    with ctx.session_factory() as session:
        return list(session.scalars(select(AuditEvent.action).where(AuditEvent.actor_label == "owner")))


def test_pool_edit_and_archive(auth: Auth, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    team_a = data.pools["team-a"]
    page = f"/admin/pools/{team_a}/edit"
    assert auth.post(page, POOL_FORM, page=page).status_code == 302
    with core_ctx.session_factory() as session:
        pool = session.get(Pool, team_a)
        assert pool is not None and pool.name == "team-a"  # the slug is fixed
        assert (pool.label, pool.settings.primary_cap_percent) == ("Team A (edited)", 85.0)
        assert pool.settings.allowed_models == ["gpt-5", "gpt-5-codex"]
    assert auth.post(f"/admin/pools/{team_a}/archive").status_code == 302
    with core_ctx.session_factory() as session:
        pool = session.get(Pool, team_a)
        assert pool is not None and pool.status == PoolStatus.ARCHIVED
    assert auth.post(page, POOL_FORM, page="/admin/").status_code == 302  # refused with a flash
    assert _actions(core_ctx).count("pool.update") == 1
    assert "pool.archive" in _actions(core_ctx)


def test_account_rename_assign_unassign_refresh(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    alice, team_b = data.accounts["alice"], data.pools["team-b"]
    assert auth.post(f"/admin/accounts/{alice}/rename", {"label": "alice-2"}).status_code == 302
    assert auth.post(f"/admin/accounts/{alice}/assign", {"pool_id": team_b, "priority": "7"}).status_code == 302
    with core_ctx.session_factory() as session:
        row = session.scalar(
            select(PoolAssignment).where(PoolAssignment.account_id == alice, PoolAssignment.pool_id == team_b)
        )
        assert row is not None and row.priority == 7
    assert auth.post(f"/admin/accounts/{alice}/unassign/{team_b}").status_code == 302
    assert auth.post(f"/admin/accounts/{alice}/unassign/{team_b}").status_code == 404
    assert auth.post(f"/admin/accounts/{alice}/refresh").status_code == 302
    with core_ctx.session_factory() as session:
        account = session.get(UpstreamAccount, alice)
        assert account is not None and account.label == "alice-2" and account.state == "refresh_due"
    actions = _actions(core_ctx)
    for action in ("account.rename", "account.assign", "account.unassign", "account.refresh_requested"):
        assert actions.count(action) == 1, action
    assert "alice-2" in client.get(f"/admin/accounts/{alice}").get_data(as_text=True)


def test_streams_in_flight_against_the_cap_on_pool_and_account_pages(auth: Auth, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    team_a = data.pools["team-a"]
    now = utcnow()
    with core_ctx.session_factory.begin() as session:
        pool = session.get(Pool, team_a)
        assert pool is not None
        pool.settings.max_concurrency_per_account = 8
        member = session.scalars(select(PoolAssignment.account_id).where(PoolAssignment.pool_id == team_a)).first()
        assert member is not None
        session.add_all(
            [
                # Two live replicas' reports add up; a replica silent for a minute has stopped and does not count.
                InflightStreams(replica="h:1", account_id=member, streams=5, reported_at=now),
                InflightStreams(replica="h:2", account_id=member, streams=3, reported_at=now - dt.timedelta(seconds=3)),
                InflightStreams(replica="h:3", account_id=member, streams=4, reported_at=now - dt.timedelta(minutes=1)),
            ]
        )
    page = auth.client.get(f"/admin/pools/{team_a}").get_data(as_text=True)
    assert 'data-streams="8" class="s-warn">8 / 8<' in page  # at its cap: highlighted
    assert "0 / 8" in page  # the pool's other accounts
    account = auth.client.get(f"/admin/accounts/{member}").get_data(as_text=True)
    assert 'data-streams="8">8 · team-a cap 8' in account


def test_account_page_shows_model_exclusions_and_clears_one(
    auth: Auth, client: FlaskClient, core_ctx: CoreContext
) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    alice = data.accounts["alice"]
    with core_ctx.session_factory.begin() as session:
        session.add(AccountModelExclusion(account_id=alice, model="gpt-5.1-codex-max", reason="usage_not_included"))
        account = session.get(UpstreamAccount, alice)
        assert account is not None
        account.state, account.state_reason = AccountState.DEACTIVATED, "account_deactivated"
    page = client.get(f"/admin/accounts/{alice}").get_data(as_text=True)
    assert "data-model-exclusions" in page and "gpt-5.1-codex-max" in page and "usage_not_included" in page
    assert "deactivated" in page and "Reactivate" in page
    assert auth.post(f"/admin/accounts/{alice}/exclusions/clear", {"model": "gpt-5.1-codex-max"}).status_code == 302
    assert auth.post(f"/admin/accounts/{alice}/exclusions/clear", {"model": "gpt-5.1-codex-max"}).status_code == 302
    assert auth.post(f"/admin/accounts/{alice}/reactivate").status_code == 302
    with core_ctx.session_factory() as session:
        assert session.scalars(select(AccountModelExclusion)).all() == []
        account = session.get(UpstreamAccount, alice)
        assert account is not None and account.state == AccountState.ACTIVE
    assert _actions(core_ctx).count("account.model_exclusion_cleared") == 1
