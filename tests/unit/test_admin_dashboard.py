"""The dashboard: first-run checklist ticked from real data (hidden once done), chart spans up to 30 days."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from admin_flask.firstrun import SetupFacts, checklist
from pooler.audit import Actor
from pooler.context import CoreContext
from pooler.services import pools
from pooler.services.seed import seed
from pooler.states import ActorType
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth


def test_checklist_order_and_hiding() -> None:
    steps = checklist(SetupFacts(has_pool=True, has_account=False, has_key=False, has_traffic=False))
    assert [(s.name, s.done) for s in steps] == [("pool", True), ("account", False), ("key", False), ("client", False)]
    assert checklist(SetupFacts(True, True, True, True)) == []
    # A step done out of order still shows as done; the list stays until all are.
    assert [s.done for s in checklist(SetupFacts(False, False, True, False))] == [False, False, True, False]


def _steps(client: FlaskClient) -> dict[str, str]:
    page = client.get("/admin/").get_data(as_text=True)
    return dict(re.findall(r'data-step="(\w+)" data-done="(\w+)"', page))


def test_dashboard_ticks_steps_from_data_and_hides_when_done(
    auth: Auth, client: FlaskClient, core_ctx: CoreContext
) -> None:
    auth.bootstrap()
    auth.login()
    page = client.get("/admin/").get_data(as_text=True)
    assert "Get started" in page and "/backend-api/codex" in page and "/v1" in page
    assert _steps(client) == {"pool": "no", "account": "no", "key": "no", "client": "no"}
    with core_ctx.session_factory.begin() as session:
        pools.create_pool(session, name="first", actor=Actor(ActorType.CLI, "t"))
    assert _steps(client) == {"pool": "yes", "account": "no", "key": "no", "client": "no"}
    with core_ctx.session_factory.begin() as session:
        seed(session, core_ctx.box, core_ctx.hasher, requests=3)
    assert _steps(client) == {}
    assert "Get started" not in client.get("/admin/").get_data(as_text=True)


def test_spans_up_to_thirty_days(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    with core_ctx.session_factory.begin() as session:
        seed(session, core_ctx.box, core_ctx.hasher, requests=20)
    auth.bootstrap()
    auth.login()
    for span in ("7d", "14d", "30d"):
        page = client.get(f"/admin/?span={span}").get_data(as_text=True)
        assert f'href="/admin/?span={span}"' in page and page.count('class="hit"') >= 28
    assert client.get("/admin/?span=365d").status_code == 200  # unknown span: the default, not an error
