"""Roles and scope: admins see only their pools (404 elsewhere), viewers change nothing (403)."""

from __future__ import annotations

from flask.testing import FlaskClient

from pooler.context import CoreContext
from pooler.services.seed import SeedResult, seed
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth


def _seed(ctx: CoreContext) -> SeedResult:
    with ctx.session_factory.begin() as session:
        return seed(session, ctx.box, ctx.hasher, requests=120)


def _key_ids(ctx: CoreContext, pool_id: int) -> list[int]:
    from sqlalchemy import select

    from pooler.models import PoolKey

    with ctx.session_factory() as session:
        return list(session.scalars(select(PoolKey.id).where(PoolKey.pool_id == pool_id)))


def test_admin_sees_only_assigned_pools(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    team_a, team_b = data.pools["team-a"], data.pools["team-b"]
    auth.create_operator("anna", "admin", [team_a])
    auth.login("anna")
    assert client.get(f"/admin/pools/{team_a}").status_code == 200
    assert client.get(f"/admin/pools/{team_b}").status_code == 404
    assert client.get(f"/admin/pools/{team_b}/activity").status_code == 404
    # erin is only in team-b; alice only in team-a.
    assert client.get(f"/admin/accounts/{data.accounts['erin']}").status_code == 404
    assert client.get(f"/admin/accounts/{data.accounts['alice']}").status_code == 200
    listing = client.get("/admin/accounts/").get_data(as_text=True)
    assert "alice" in listing and "erin" not in listing
    assert client.get(f"/admin/logs/?pool={team_b}").status_code == 404
    assert client.get(f"/admin/logs/?account={data.accounts['erin']}").status_code == 404
    keys = client.get("/admin/keys/").get_data(as_text=True)
    assert "agents" not in keys and "laptops" in keys
    other_key = _key_ids(core_ctx, team_b)[0]
    assert auth.post(f"/admin/keys/{other_key}/revoke").status_code == 404
    assert auth.post(f"/admin/accounts/{data.accounts['erin']}/pause").status_code == 404
    assert auth.post(f"/admin/pools/{team_b}/pause").status_code == 404
    assert client.get("/admin/operators/").status_code == 403
    assert client.get("/admin/pools/new").status_code == 403
    # Allowed inside its pool.
    assert auth.post(f"/admin/accounts/{data.accounts['alice']}/pause").status_code == 302


def test_viewer_cannot_change_anything(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.create_operator("vera", "viewer")
    auth.login("vera")
    team_a = data.pools["team-a"]
    for path in (
        "/admin/",
        "/admin/pools/",
        f"/admin/pools/{team_a}",
        "/admin/accounts/",
        "/admin/keys/",
        "/admin/logs/",
    ):
        assert client.get(path).status_code == 200, path
    posts = [
        f"/admin/pools/{team_a}/pause",
        f"/admin/pools/{team_a}/edit",
        f"/admin/accounts/{data.accounts['alice']}/pause",
        f"/admin/accounts/{data.accounts['alice']}/delete",
        f"/admin/keys/{_key_ids(core_ctx, team_a)[0]}/revoke",
        "/admin/keys/new",
        "/admin/accounts/import",
        "/admin/settings/group/routing",
        "/admin/operators/new",
    ]
    for path in posts:
        assert auth.post(path, {"label": "x", "value": "1"}).status_code == 403, path
    page = client.get(f"/admin/accounts/{data.accounts['alice']}").get_data(as_text=True)
    assert "Replace auth.json" not in page


def test_owner_actions_write_audit_events(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    alice = data.accounts["alice"]
    assert auth.post(f"/admin/accounts/{alice}/pause").status_code == 302
    assert "The account is paused." in client.get(f"/admin/accounts/{alice}").get_data(as_text=True)
    assert auth.post(f"/admin/accounts/{alice}/reactivate").status_code == 302
    assert auth.post(f"/admin/accounts/{alice}/refresh").status_code == 302
    assert auth.post(f"/admin/accounts/{alice}/rename", {"label": "alice-2"}).status_code == 302
    audit = client.get("/admin/audit/?actor=operator").get_data(as_text=True)
    for action in ("account.state_change", "account.refresh_requested", "account.rename"):
        assert action in audit
    assert "owner" in audit
