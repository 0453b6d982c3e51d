"""Login throttling per client address: Envoy's derived address (only from a loopback peer), counted in the
database across workers, checked before the password so it cannot extend an operator's lock."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from pooler.context import CoreContext
from pooler.gateway_contract import CLIENT_IP_HEADER
from pooler.models import AuditEvent, Operator
from tests.support.admin import *  # noqa: F403
from tests.support.admin import PASSWORD, Auth, csrf_from

STRANGER = "198.51.100.7"
OPERATOR_IP = "203.0.113.20"


def _login(client: FlaskClient, username: str, password: str, **kw: Any) -> int:
    token = csrf_from(client.get("/admin/login", **kw).get_data(as_text=True))
    data = {"csrf_token": token, "username": username, "password": password, "code": ""}
    return client.post("/admin/login", data=data, **kw).status_code


def _via_envoy(address: str) -> dict[str, Any]:
    """What the admin sees behind Envoy: a loopback peer and Envoy's derived client address."""
    return {"headers": {CLIENT_IP_HEADER: address}, "environ_base": {"REMOTE_ADDR": "127.0.0.1"}}


def test_stranger_is_throttled_before_the_operator_lock(app: Flask, auth: Auth, core_ctx: CoreContext) -> None:
    app.config["LOGIN_IP_MAX_FAILURES"] = 3
    auth.bootstrap()
    stranger, operator = app.test_client(), app.test_client()
    # Unknown usernames and wrong passwords count alike.
    assert _login(stranger, "ghost", "nope nope nope", **_via_envoy(STRANGER)) == 401
    assert _login(stranger, "owner", "nope nope nope", **_via_envoy(STRANGER)) == 401
    assert _login(stranger, "owner", "nope nope nope", **_via_envoy(STRANGER)) == 401
    for _ in range(5):
        assert _login(stranger, "owner", "nope nope nope", **_via_envoy(STRANGER)) == 429
    # Only 2 failures reached the operator's counter (the lock needs 5): the owner still signs in.
    with core_ctx.session_factory() as session:
        owner = session.scalar(select(Operator).where(Operator.username == "owner"))
        assert owner is not None and owner.failed_logins == 2 and owner.locked_until is None
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "operator.login_failed")).all()
        assert {e.target_id for e in events} == {STRANGER} and len(events) == 3
    assert _login(operator, "owner", PASSWORD, **_via_envoy(OPERATOR_IP)) == 302
    # Right password from the throttled address: still refused while the window lasts.
    assert _login(app.test_client(), "owner", PASSWORD, **_via_envoy(STRANGER)) == 429


def test_client_header_is_ignored_from_a_non_loopback_peer(app: Flask, auth: Auth) -> None:
    app.config["LOGIN_IP_MAX_FAILURES"] = 2
    auth.bootstrap()
    client = app.test_client()
    direct = "192.0.2.50"
    for spoof in ("10.0.0.1", "10.0.0.2"):
        kw = {"headers": {CLIENT_IP_HEADER: spoof}, "environ_base": {"REMOTE_ADDR": direct}}
        assert _login(client, "ghost", "nope nope nope", **kw) == 401
    # Both failures were counted against the real peer, whatever the header said.
    kw = {"headers": {CLIENT_IP_HEADER: "10.0.0.3"}, "environ_base": {"REMOTE_ADDR": direct}}
    assert _login(client, "owner", PASSWORD, **kw) == 429


def test_window_expiry_frees_the_address(app: Flask, auth: Auth) -> None:
    app.config.update(LOGIN_IP_MAX_FAILURES=1, LOGIN_IP_WINDOW_SECONDS=0)
    auth.bootstrap()
    client = app.test_client()
    assert _login(client, "ghost", "nope nope nope", **_via_envoy(STRANGER)) == 401
    # A zero-length window counts nothing older than now.
    assert _login(client, "owner", PASSWORD, **_via_envoy(STRANGER)) == 302
