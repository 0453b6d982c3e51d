"""Canary scan: no rendered page contains a stored token or a raw Pool key (after its one-time display)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from pooler.context import CoreContext
from pooler.services.seed import seed
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth

HREF = re.compile(r'href="(/admin/[^"#]*)"')


def test_no_page_contains_secrets(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    with core_ctx.session_factory.begin() as session:
        data = seed(session, core_ctx.box, core_ctx.hasher, requests=80)
    auth.bootstrap()
    auth.login()
    canaries = data.tokens + data.raw_keys
    seen: set[str] = set()
    queue = ["/admin/"] + [f"/admin/accounts/{i}" for i in data.accounts.values()]
    while queue and len(seen) < 150:
        path = queue.pop(0).replace("&amp;", "&")
        if path in seen or "/logout" in path or "/static/" in path:
            continue
        seen.add(path)
        response = client.get(path)
        assert response.status_code in (200, 302), path
        html = response.get_data(as_text=True)
        for canary in canaries:
            assert canary not in html, f"secret rendered on {path}"
        queue.extend(HREF.findall(html))
    assert len(seen) > 20
