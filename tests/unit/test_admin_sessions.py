"""Server-side admin sessions: what the cookie holds, revocation (logout, password, role, disable, deletion),
idle and absolute expiry, single-use TOTP codes, the pending TOTP seed kept server-side, and `Secure` cookies."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select, update

from pooler.audit import SYSTEM
from pooler.context import CoreContext
from pooler.models import AdminSession, Operator, utcnow
from pooler.settings import set_setting
from tests.support.admin import *  # noqa: F403
from tests.support.admin import PASSWORD, Auth, csrf_from

COOKIE = "pooler_admin"


def _cookie_value(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE, path="/admin")
    assert cookie is not None, "no admin cookie"
    return cookie.value


def _decoded(app: Flask, client: FlaskClient) -> dict[str, Any]:
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    data: dict[str, Any] = serializer.loads(_cookie_value(client))
    return data


def _signed_in(client: FlaskClient) -> bool:
    return client.get("/admin/").status_code == 200


def _second(app: Flask, core_ctx: CoreContext, username: str = "owner") -> Auth:
    other = Auth(app.test_client(), core_ctx)
    assert other.login(username).status_code == 302
    return other


def test_cookie_holds_only_the_opaque_token(app: Flask, auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    data = _decoded(app, client)
    assert set(data) <= {"sid", "csrf_token", "_flashes"}
    assert isinstance(data["sid"], str) and len(data["sid"]) >= 40
    with auth.ctx.session_factory() as session:
        rows = list(session.scalars(select(AdminSession)))
    assert len(rows) == 1
    # Only the keyed hash is stored, never the token itself.
    assert rows[0].token_hash != data["sid"] and data["sid"] not in rows[0].token_hash


def test_pending_totp_seed_is_server_side_and_sealed(app: Flask, auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    auth.post("/admin/profile/totp/start", page="/admin/profile")
    html = client.get("/admin/profile").get_data(as_text=True)
    seed = html.split('id="totp-seed" class="secret">')[1].split("<")[0]
    assert seed not in json.dumps(_decoded(app, client)) and seed not in _cookie_value(client)
    with auth.ctx.session_factory() as session:
        row = session.scalars(select(AdminSession)).one()
        assert row.pending_totp_ciphertext is not None and seed.encode() not in row.pending_totp_ciphertext
    response = auth.post("/admin/profile/totp/confirm", {"code": pyotp.TOTP(seed).now()}, page="/admin/profile")
    assert response.status_code == 302
    with auth.ctx.session_factory() as session:
        assert session.scalars(select(AdminSession)).one().pending_totp_ciphertext is None


def test_logout_ends_every_session_of_the_operator(app: Flask, auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    stolen = app.test_client()
    stolen.set_cookie(COOKIE, _cookie_value(client), path="/admin")
    other_browser = _second(app, auth.ctx)
    assert _signed_in(stolen) and _signed_in(other_browser.client)
    auth.logout()
    assert not _signed_in(client)
    assert not _signed_in(stolen)  # a copy of the cookie dies with its row
    assert not _signed_in(other_browser.client)
    assert auth.login().status_code == 302 and _signed_in(client)


def test_password_change_keeps_this_browser_with_a_new_token(app: Flask, auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    old_token = _decoded(app, client)["sid"]
    stolen = app.test_client()
    stolen.set_cookie(COOKIE, _cookie_value(client), path="/admin")
    other_browser = _second(app, auth.ctx)
    new_password = "another long password"
    response = auth.post(
        "/admin/profile/password",
        {"current_password": PASSWORD, "password": new_password, "confirm": new_password},
        page="/admin/profile",
    )
    assert response.status_code == 302
    assert _signed_in(client) and _decoded(app, client)["sid"] != old_token
    assert not _signed_in(stolen) and not _signed_in(other_browser.client)


def test_role_change_and_disable_end_sessions(app: Flask, auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    auth.create_operator("viewer1", "viewer")
    viewer = _second(app, auth.ctx, "viewer1")
    with auth.ctx.session_factory() as session:
        viewer_id = session.scalar(select(Operator.id).where(Operator.username == "viewer1"))

    def edit(**fields: Any) -> None:
        page = f"/admin/operators/{viewer_id}"
        response = auth.post(page, {"role": "viewer", **fields}, page=page)
        assert response.status_code == 302, response.get_data(as_text=True)

    edit()  # no role change: the session lives on
    assert _signed_in(viewer.client)
    edit(role="admin")
    assert not _signed_in(viewer.client)
    viewer = _second(app, auth.ctx, "viewer1")
    edit(role="admin", disabled="y")
    assert not _signed_in(viewer.client)


def test_deleted_operator_has_no_session(app: Flask, auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.create_operator("gone", "admin")
    gone = _second(app, auth.ctx, "gone")
    with auth.ctx.session_factory.begin() as session:
        session.execute(delete(Operator).where(Operator.username == "gone"))
    assert not _signed_in(gone.client)
    with auth.ctx.session_factory() as session:
        assert session.scalars(select(AdminSession)).all() == []  # cascaded with the operator


def test_idle_and_absolute_expiry(app: Flask, auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    with auth.ctx.session_factory.begin() as session:
        set_setting(session, "admin_session_idle_minutes", 5, actor=SYSTEM)
        session.execute(update(AdminSession).values(last_seen_at=utcnow() - dt.timedelta(minutes=4)))
    assert _signed_in(client)  # 4 minutes idle: still live, and the request moved last_seen_at
    with auth.ctx.session_factory() as session:
        assert utcnow() - session.scalars(select(AdminSession)).one().last_seen_at < dt.timedelta(minutes=1)
    with auth.ctx.session_factory.begin() as session:
        session.execute(update(AdminSession).values(last_seen_at=utcnow() - dt.timedelta(minutes=6)))
    assert not _signed_in(client)
    auth.login()
    with auth.ctx.session_factory.begin() as session:
        session.execute(update(AdminSession).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert not _signed_in(client)


def test_login_sets_absolute_expiry_from_the_setting(auth: Auth) -> None:
    auth.bootstrap()
    with auth.ctx.session_factory.begin() as session:
        set_setting(session, "admin_session_max_hours", 2, actor=SYSTEM)
    auth.login()
    with auth.ctx.session_factory() as session:
        row = session.scalars(select(AdminSession)).one()
    assert row.expires_at - row.created_at == dt.timedelta(hours=2)


def test_totp_code_is_single_use(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    seed = auth.enable_totp("owner")
    code = pyotp.TOTP(seed).now()
    assert auth.login(code=code).status_code == 302
    auth.logout()
    replay = auth.login(code=code)
    assert replay.status_code == 401 and "Wrong authentication code" in replay.get_data(as_text=True)
    assert not _signed_in(client)
    assert auth.login(code=pyotp.TOTP(seed).at(time.time() + 30)).status_code == 302


def test_profile_lists_sessions_and_signs_out_the_others(app: Flask, auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    other = _second(app, auth.ctx)
    html = client.get("/admin/profile").get_data(as_text=True)
    assert "Signed-in sessions" in html and "this browser" in html
    response = auth.post("/admin/profile/sessions/revoke-others", page="/admin/profile")
    assert response.status_code == 302
    assert _signed_in(client) and not _signed_in(other.client)


def test_secure_cookie_over_tls_or_trusted_proxy_only(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()

    def login_cookie(**kw: Any) -> str:
        page = client.get("/admin/login", **kw).get_data(as_text=True)
        response = client.post(
            "/admin/login",
            data={"csrf_token": csrf_from(page), "username": "owner", "password": PASSWORD},
            **kw,
        )
        assert response.status_code == 302
        cookie: str = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        return cookie

    assert "Secure" not in login_cookie()  # plain http, local development
    assert "Secure" in login_cookie(headers={"X-Forwarded-Proto": "https"})  # Envoy on this host says TLS
    stranger = {"REMOTE_ADDR": "203.0.113.7"}
    # A remote peer cannot claim TLS with the header (the cookie would then be refused over its plain http).
    assert "Secure" not in login_cookie(headers={"X-Forwarded-Proto": "https"}, environ_base=stranger)
    assert "Secure" in login_cookie(base_url="https://localhost", environ_base=stranger)
