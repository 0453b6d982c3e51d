"""Admin views are private by default: one app-wide guard, an explicit public list, and a blueprint added without
any guard of its own is still behind the login."""

from __future__ import annotations

import re

from flask import Blueprint, Flask
from flask.testing import FlaskClient

from admin_flask import security
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth


def _concrete(rule: str) -> str:
    return re.sub(r"<(?:int:)?\w+>", "1", rule)


def test_every_view_but_the_public_list_sends_visitors_to_login(app: Flask, client: FlaskClient) -> None:
    app.config["WTF_CSRF_ENABLED"] = False  # a visitor's POST must meet the login guard, not the CSRF check
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in security.PUBLIC_ENDPOINTS or rule.endpoint.split(".")[0] in security.PUBLIC_BLUEPRINTS:
            continue
        method = "GET" if "GET" in (rule.methods or ()) else "POST"
        response = client.open(_concrete(rule.rule), method=method)
        assert response.status_code in (302, 303), (rule.rule, response.status_code)
        assert "/admin/login" in response.headers["Location"], rule.rule
        checked += 1
    assert checked > 40  # the whole admin, not a handful


def test_public_endpoints_answer_visitors(client: FlaskClient) -> None:
    assert client.get("/admin/bootstrap").status_code == 200  # an empty install: the first owner is created here
    invite = client.get("/admin/invite/not-a-token")
    assert invite.status_code != 302 or "/admin/login" not in invite.headers.get("Location", "")


def test_a_new_blueprint_is_private_without_asking(app: Flask, auth: Auth) -> None:
    extra = Blueprint("late_addition", __name__)

    @extra.route("/secret")
    def secret() -> str:
        return "operators only"

    app.register_blueprint(extra, url_prefix="/admin/late")
    client = app.test_client()
    assert client.get("/admin/late/secret").status_code == 302
    auth.bootstrap()
    auth.login("owner")
    assert auth.client.get("/admin/late/secret").get_data(as_text=True) == "operators only"


def test_viewers_write_only_their_own_profile(auth: Auth) -> None:
    auth.bootstrap()
    auth.create_operator("vic", "viewer", [])
    auth.login("vic")
    assert auth.post("/admin/pools/new", {"name": "nope"}).status_code == 403
    # The profile's forms are the viewer's own: the guard lets the write through.
    assert auth.post("/admin/profile/sessions/revoke-others", page="/admin/profile").status_code == 302
