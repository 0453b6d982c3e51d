"""Admin: key budgets on create and edit (shown with their usage), the pool's time zone."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select

from pooler.budgets import Budget, Period, Unit
from pooler.context import CoreContext
from pooler.models import AuditEvent, PoolKey, PoolSettings
from pooler.services import keys as key_service
from pooler.services.seed import seed
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth


def test_budgets_are_set_on_create_edited_and_shown(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    with core_ctx.session_factory.begin() as session:
        data = seed(session, core_ctx.box, core_ctx.hasher, requests=20)
    auth.bootstrap()
    auth.login()
    pool_id = data.pools["team-a"]
    created = auth.post(
        "/admin/keys/new",
        {"pool_id": pool_id, "label": "budgeted", "budgets": "day:tokens:1000\nmonth:usd:50:40"},
        page="/admin/keys/",
    )
    assert created.status_code == 200, created.get_data(as_text=True)[:500]
    with core_ctx.session_factory() as session:
        key = session.scalars(select(PoolKey).where(PoolKey.label == "budgeted")).one()
        assert key_service.key_budgets(key) == [
            Budget(Period.DAY, Unit.TOKENS, 1000, None),
            Budget(Period.MONTH, Unit.USD, 50, 40),
        ]
        key_id, prefix = key.id, key.prefix
    listing = client.get(f"/admin/keys/?pool={pool_id}").get_data(as_text=True)
    assert 'data-budget="day-tokens"' in listing and "month:usd:50:40" in listing

    bad = auth.post(f"/admin/keys/{key_id}/budgets", {"budgets": "year:tokens:5"}, page="/admin/keys/")
    assert bad.status_code == 302
    saved = auth.post(f"/admin/keys/{key_id}/budgets", {"budgets": "week:usd::20"}, page="/admin/keys/")
    assert saved.status_code == 302
    with core_ctx.session_factory() as session:
        key = session.scalars(select(PoolKey).where(PoolKey.id == key_id)).one()
        assert key_service.key_budgets(key) == [Budget(Period.WEEK, Unit.USD, None, 20)]
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "key.budgets", AuditEvent.target_label == prefix)
        ).all()
        assert len(events) == 1 and events[0].details["new"] == ["week usd hard=None soft=20.0"]


def test_pool_time_zone_is_edited_and_validated(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    with core_ctx.session_factory.begin() as session:
        data = seed(session, core_ctx.box, core_ctx.hasher, requests=0)
    auth.bootstrap()
    auth.login()
    pool_id = data.pools["team-a"]
    page = f"/admin/pools/{pool_id}/edit"
    form = client.get(page).get_data(as_text=True)
    assert 'name="time_zone"' in form
    fields = {
        "label": "Team A",
        "strategy": "least-used",
        "sticky_ttl_seconds": 3600,
        "max_attempts": 3,
        "primary_cap_percent": 100,
        "secondary_cap_percent": 100,
        "allowed_models": "",
    }
    auth.post(page, {**fields, "time_zone": "Mars/Olympus"}, page=page)
    with core_ctx.session_factory() as session:
        refused = session.get(PoolSettings, pool_id)
        assert refused is not None and refused.time_zone == "UTC"
    auth.post(page, {**fields, "time_zone": "Europe/Berlin"}, page=page)
    with core_ctx.session_factory() as session:
        row = session.get(PoolSettings, pool_id)
        assert row is not None and row.time_zone == "Europe/Berlin"


def test_share_is_set_and_shown_with_the_pools_projection(
    auth: Auth, client: FlaskClient, core_ctx: CoreContext
) -> None:
    import datetime as dt

    from pooler.models import PoolAssignment, QuotaWindow, RequestLog, UpstreamAccount
    from pooler.selection.scoring import plan_weight

    with core_ctx.session_factory.begin() as session:
        data = seed(session, core_ctx.box, core_ctx.hasher, requests=0)
    auth.bootstrap()
    auth.login()
    pool_id = data.pools["team-a"]
    auth.post(
        "/admin/keys/new",
        {"pool_id": pool_id, "label": "shared", "share_percent": "30", "share_team": "ml", "share_pacing": "y"},
        page="/admin/keys/",
    )
    now = dt.datetime.now(dt.UTC)
    with core_ctx.session_factory.begin() as session:
        key = session.scalars(select(PoolKey).where(PoolKey.label == "shared")).one()
        assert key_service.key_share(key) == key_service.KeyShareSpec(30, "ml", True)
        account_ids = list(session.scalars(select(PoolAssignment.account_id).where(PoolAssignment.pool_id == pool_id)))
        session.execute(QuotaWindow.__table__.delete().where(QuotaWindow.account_id.in_(account_ids)))
        for account_id in account_ids:  # every weekly window two days in, at 40%: runs out in 3 more days
            session.add(
                QuotaWindow(
                    account_id=account_id,
                    window_minutes=10080,
                    used_percent=40.0,
                    resets_at=now + dt.timedelta(days=5),
                    source="headers",
                    observed_at=now,
                )
            )
        session.add(
            RequestLog(
                created_at=now,
                request_id="share-1",
                pool_id=pool_id,
                key_prefix=key.prefix,
                account_id=account_ids[0],
                route_family="responses",
                method="POST",
                status_code=200,
                input_tokens=100,
                output_tokens=10,
            )
        )
        prefix = key.prefix
        plans = {
            a.id: a.plan_type
            for a in session.scalars(select(UpstreamAccount).where(UpstreamAccount.id.in_(account_ids)))
        }
    weights = {a: plan_weight(p) for a, p in plans.items()}
    page = client.get(f"/admin/pools/{pool_id}").get_data(as_text=True)
    assert "40.0% used · runs out" in page
    listing = client.get(f"/admin/keys/?pool={pool_id}").get_data(as_text=True)
    row = listing[listing.index(f'data-key="{prefix}"') :]
    share = row[row.index('data-share="weekly"') :]
    expected = 40.0 * weights[account_ids[0]] / sum(weights.values())  # all of one account's 40%, plan-weighted
    assert f"share weekly: {expected:.1f}%" in share and "(paced)" in share
