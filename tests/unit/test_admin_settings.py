"""Settings page: the pricing table goes through the catalogue's `admin_model_pricing` JSON setting."""

from __future__ import annotations

import json

from flask.testing import FlaskClient
from sqlalchemy import select

from admin_flask import pricing
from pooler.context import CoreContext
from pooler.models import AuditEvent
from pooler.settings import get_json_setting
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth


def test_pricing_saved_as_catalogue_setting(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    auth.bootstrap()
    auth.login()
    page = client.get("/admin/settings/").get_data(as_text=True)
    assert "Reset to the vendored table" not in page
    assert 'action="/admin/settings/admin_model_pricing"' not in page  # no one-line editor for JSON
    table = {"gpt-5": {"input": 1, "cached_input": 0.1, "output": 10}, "*": {"input": 2, "output": 8}}
    assert auth.post("/admin/settings/pricing", {"value": json.dumps(table)}).status_code == 302
    with core_ctx.session_factory() as session:
        stored = get_json_setting(session, pricing.PRICING_SETTING)
        assert stored is not None and stored["*"] == {"input": 2.0, "cached_input": 0.0, "output": 8.0}
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "setting.update"))
        assert event is not None and event.target_id == pricing.PRICING_SETTING and event.actor_label == "owner"
        assert event.details is not None and event.details["entries"] == 2
        assert pricing.load(session)["gpt-5"]["output"] == 10.0
    assert "Reset to the vendored table" in client.get("/admin/settings/").get_data(as_text=True)
    assert auth.post("/admin/settings/pricing", {"value": '{"m": {"input": -1}}'}).status_code == 302
    assert auth.post("/admin/settings/admin_model_pricing/reset").status_code == 302
    with core_ctx.session_factory() as session:
        assert get_json_setting(session, pricing.PRICING_SETTING) is None
        assert pricing.load(session) == pricing.vendored()


def test_unusable_stored_table_falls_back_to_vendored(core_ctx: CoreContext) -> None:
    from pooler.audit import SYSTEM
    from pooler.settings import set_setting

    with core_ctx.session_factory.begin() as session:
        set_setting(session, pricing.PRICING_SETTING, {"m": "not an object"}, actor=SYSTEM)
        assert pricing.load(session) == pricing.vendored()
