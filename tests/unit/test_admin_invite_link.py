"""The invite token is in the link's path, and request lines log paths: it must appear in one request only.
The link redirects to a token-free URL and every later step (page, start, poll) works from the session."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from pooler.audit import cli_actor
from pooler.context import CoreContext
from pooler.models import OAuthInvite
from pooler.onboarding import invites
from pooler.onboarding.types import OperatorScope
from pooler.services.pools import create_pool
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth


def _invite(core_ctx: CoreContext) -> tuple[int, str]:
    with core_ctx.session_factory.begin() as s:
        pool = create_pool(s, name="invited", actor=cli_actor())
        owner = OperatorScope(id=1, username="owner", role="owner")
        invite, token = invites.create_invite(
            s, core_ctx.hasher, operator=owner, pool_id=pool.id, label="Dana", actor=cli_actor()
        )
        return invite.id, token


def test_the_token_url_redirects_to_a_token_free_page(app: Flask, auth: Auth, core_ctx: CoreContext) -> None:
    auth.bootstrap()
    invite_id, token = _invite(core_ctx)
    invitee = app.test_client()
    first = invitee.get(f"/admin/invite/{token}")
    assert first.status_code == 302
    location = first.headers["Location"]
    assert location.endswith("/admin/invite/continue") and token not in location
    second = invitee.get(location)
    assert second.status_code == 200
    html = second.get_data(as_text=True)
    assert "Connect your ChatGPT account" in html and "Sign out" not in html
    assert token not in html and 'action="/admin/invite/continue/start"' in html

    # Without the session (another browser), the token-free URL is the same "not found" as a bad link.
    assert app.test_client().get("/admin/invite/continue").status_code == 404
    assert app.test_client().get("/admin/invite/not-a-token").status_code == 404

    # Revoked: the link and the session's page are both dead.
    with core_ctx.session_factory.begin() as s:
        invite = s.scalar(select(OAuthInvite).where(OAuthInvite.id == invite_id))
        assert invite is not None
        invite.status = "revoked"
    assert invitee.get("/admin/invite/continue").status_code == 404
    assert invitee.get(f"/admin/invite/{token}").status_code == 404
