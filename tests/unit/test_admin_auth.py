"""Bootstrap, login, rate limiting, TOTP, CSRF and cookie flags of the admin."""

from __future__ import annotations

import time

import pyotp
from flask.testing import FlaskClient

from tests.support.admin import *  # noqa: F403
from tests.support.admin import PASSWORD, Auth


def test_bootstrap_only_while_no_operator(auth: Auth, client: FlaskClient) -> None:
    assert client.get("/admin/login").status_code == 302  # no operator yet: sent to bootstrap
    response = auth.bootstrap()
    assert response.status_code == 302
    assert client.get("/admin/bootstrap").status_code == 404
    assert auth.client.post("/admin/bootstrap", data={"username": "x"}).status_code in (400, 404)


def test_login_and_protected_pages(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    assert client.get("/admin/").status_code == 302
    assert auth.login(password="wrong password!").status_code == 401
    assert auth.login().status_code == 302
    page = client.get("/admin/")
    assert page.status_code == 200 and b"Dashboard" in page.data


def test_session_cookie_flags(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    response = auth.login()
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie


def test_login_rate_limited_after_five_failures(auth: Auth) -> None:
    auth.bootstrap()
    for _ in range(4):
        assert auth.login(password="nope nope nope").status_code == 401
    assert auth.login(password="nope nope nope").status_code == 429
    # Locked: even the right password is refused until the lock expires.
    assert auth.login().status_code == 429


def test_totp_required_when_enabled(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    seed = auth.enable_totp("owner")
    assert auth.login().status_code == 401  # code missing
    assert auth.login(code="000000" if pyotp.TOTP(seed).now() != "000000" else "111111").status_code == 401
    assert auth.login(code=pyotp.TOTP(seed).now()).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_totp_enrolment_through_profile(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    auth.post("/admin/profile/totp/start", page="/admin/profile")
    html = client.get("/admin/profile").get_data(as_text=True)
    seed = html.split('id="totp-seed" class="secret">')[1].split("<")[0]
    response = auth.post("/admin/profile/totp/confirm", {"code": pyotp.TOTP(seed).now()}, page="/admin/profile")
    assert response.status_code == 302
    assert "Two-factor authentication is on" in client.get("/admin/profile").get_data(as_text=True)
    auth.logout()
    assert auth.login().status_code == 401
    # The code that confirmed the enrolment is spent; the next step's code (inside the drift window) signs in.
    assert auth.login(code=pyotp.TOTP(seed).at(time.time() + 30)).status_code == 302


def test_csrf_less_posts_rejected(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    response = client.post("/admin/pools/new", data={"name": "x", "label": "x"})
    assert response.status_code == 400
    assert b"CSRF" in response.data
    assert client.post("/admin/logout").status_code == 400


def test_open_redirect_refused(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    token = auth.token()
    response = client.post(
        "/admin/login?next=//evil.example/x", data={"csrf_token": token, "username": "owner", "password": PASSWORD}
    )
    assert response.headers["Location"].endswith("/admin/")
