"""Request logs in the admin: cost column, the detail page with its failover chain, pool scope, CSV export."""

from __future__ import annotations

import csv
import io

from flask.testing import FlaskClient
from sqlalchemy import func, select

from admin_flask.views.logs import EXPORT_COLUMNS
from pooler.context import CoreContext
from pooler.models import RequestLog
from pooler.services.seed import SeedResult, seed
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth


def _seed(ctx: CoreContext) -> SeedResult:
    with ctx.session_factory.begin() as session:
        return seed(session, ctx.box, ctx.hasher, requests=120)


def _failover(ctx: CoreContext) -> RequestLog:
    with ctx.session_factory() as session:
        row = session.scalar(select(RequestLog).where(RequestLog.attempt_count == 2).limit(1))
        assert row is not None
        session.expunge(row)
        return row


def test_list_has_cost_and_links_to_the_detail_with_attempts(
    auth: Auth, client: FlaskClient, core_ctx: CoreContext
) -> None:
    _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    page = client.get("/admin/logs/").get_data(as_text=True)
    assert "Est. cost" in page and 'data-label="Est. cost">$0.' in page
    row = _failover(core_ctx)
    assert 'href="/admin/logs/' in page
    detail = client.get(f"/admin/logs/{row.id}")
    html = detail.get_data(as_text=True)
    assert detail.status_code == 200
    assert "failed over" in html and "served" in html and "429" in html
    assert html.index("failed over") < html.index(">served<")
    assert row.key_prefix and row.key_prefix in html and "data-cost>$" in html
    assert "never stores prompts" in html
    assert client.get("/admin/logs/999999").status_code == 404


def test_detail_is_pool_scoped(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    row = _failover(core_ctx)
    other = next(pid for pid in data.pools.values() if pid != row.pool_id)
    auth.bootstrap()
    auth.create_operator("scoped", "admin", [other])
    auth.login("scoped")
    assert client.get(f"/admin/logs/{row.id}").status_code == 404


def test_csv_export_follows_the_filters(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    assert 'href="/admin/logs/export.csv?status=5xx"' in client.get("/admin/logs/?status=5xx").get_data(as_text=True)
    response = client.get("/admin/logs/export.csv?status=2xx")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    with core_ctx.session_factory() as session:
        ok = session.scalar(select(func.count()).select_from(RequestLog).where(RequestLog.status_code < 300))
    assert len(rows) - 1 == ok
    assert {r[EXPORT_COLUMNS.index("status")] for r in rows[1:]} == {"200"}
    assert client.get("/admin/logs/export.csv?status=9xx").status_code == 400
