"""Settings page: one typed form per group (errors next to the field, nothing half-saved), resets, write-only
secrets, every input labelled, no `None`; the pricing table edited as rows into `admin_model_pricing`."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select

from admin_flask import pricing
from pooler.context import CoreContext
from pooler.models import AuditEvent
from pooler.settings import get_json_setting, get_setting
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth


def test_pricing_saved_as_catalogue_setting(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    auth.bootstrap()
    auth.login()
    page = client.get("/admin/settings/").get_data(as_text=True)
    assert "Reset to the vendored table" not in page
    assert 'action="/admin/settings/admin_model_pricing"' not in page  # no one-line editor for JSON
    rows = {"rows": "4", "model-0": "gpt-5", "input-0": "1", "cached_input-0": "0.1", "output-0": "10"}
    rows |= {"model-1": "*", "input-1": "2", "output-1": "8", "model-2": "", "input-2": "5"}
    assert auth.post("/admin/settings/pricing", rows).status_code == 302
    with core_ctx.session_factory() as session:
        stored = get_json_setting(session, pricing.PRICING_SETTING)
        assert stored is not None and stored["*"] == {"input": 2.0, "cached_input": 0.0, "output": 8.0}
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "setting.update"))
        assert event is not None and event.target_id == pricing.PRICING_SETTING and event.actor_label == "owner"
        assert event.details is not None and event.details["entries"] == 2
        assert pricing.load(session)["gpt-5"]["output"] == 10.0
    assert "Reset to the vendored table" in client.get("/admin/settings/").get_data(as_text=True)
    bad = auth.post("/admin/settings/pricing", {"rows": "2", "model-0": "m", "input-0": "-1", "model-1": "m"})
    assert bad.status_code == 400
    html = bad.get_data(as_text=True)
    assert "input must be zero or more" in html and "m is listed twice" in html
    with core_ctx.session_factory() as session:
        assert pricing.load(session)["gpt-5"]["output"] == 10.0  # the refused table changed nothing
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


LABEL_FOR = re.compile(r'<label for="([^"]+)"')
INPUT = re.compile(r"<(input|select|textarea)\b([^>]*)>")


def test_grouped_typed_forms_save_validate_and_reset(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    auth.bootstrap()
    auth.login()
    page = client.get("/admin/settings/").get_data(as_text=True)
    assert "None" not in page and ">True<" not in page
    for group in ("Upstream and sign-in", "Routing", "Alert delivery", "Admission control"):
        assert f"<h2>{group}</h2>" in page
    assert 'type="checkbox" role="switch" class="toggle" id="set-smtp_starttls"' in page
    assert 'type="url" id="set-alert_webhook_url"' in page
    assert 'type="password" id="set-smtp_password"' in page
    assert 'id="set-demotion_seconds" name="demotion_seconds" value="30"' in page and "= 30s" in page
    labelled = set(LABEL_FOR.findall(page))
    for tag, attrs in INPUT.findall(page):
        if 'type="hidden"' in attrs:
            continue
        ident = re.search(r'id="([^"]+)"', attrs)
        assert "aria-label=" in attrs or (ident and ident.group(1) in labelled), f"unlabelled <{tag}{attrs}>"

    # A bad value: 400, the error next to its field, nothing of the group saved.
    bad = auth.post(
        "/admin/settings/group/routing",
        {"demotion_seconds": "45", "sticky_ttl_default_seconds": "-5", "file_pin_ttl_seconds": "604800"},
        page="/admin/settings/",
    )
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert 'data-error-for="sticky_ttl_default_seconds">must be at least 0' in html
    assert 'name="demotion_seconds" value="45"' in html  # what was typed stays in the form
    with core_ctx.session_factory() as session:
        assert get_setting(session, "demotion_seconds") == 30

    ok = auth.post(
        "/admin/settings/group/routing",
        {"demotion_seconds": "45", "sticky_ttl_default_seconds": "3600", "transcription_max_bytes": "26214400"},
    )
    assert ok.status_code == 302
    with core_ctx.session_factory() as session:
        assert get_setting(session, "demotion_seconds") == 45
        updates = session.scalars(select(AuditEvent.target_id).where(AuditEvent.action == "setting.update")).all()
        assert updates == ["demotion_seconds"]  # unchanged fields are not written
    page = client.get("/admin/settings/").get_data(as_text=True)
    assert 'data-setting="demotion_seconds"' in page and "changed from default" in page
    assert auth.post("/admin/settings/demotion_seconds/reset").status_code == 302

    # Toggle off (unticked = absent), secrets write-only (empty = unchanged), empty text = default.
    delivery = {"smtp_host": "mail.example.test", "smtp_password": "hunter2-canary", "smtp_port": "587"}
    assert auth.post("/admin/settings/group/alert-delivery", delivery).status_code == 302
    with core_ctx.session_factory() as session:
        assert get_setting(session, "smtp_starttls") is False
        assert get_setting(session, "smtp_password", core_ctx.box) == "hunter2-canary"
    page = client.get("/admin/settings/").get_data(as_text=True)
    assert "hunter2-canary" not in page and "set (hidden)" in page
    again = {"smtp_host": "", "smtp_password": "", "smtp_starttls": "on", "alert_email_from": "pooler@localhost"}
    assert auth.post("/admin/settings/group/alert-delivery", again).status_code == 302
    with core_ctx.session_factory() as session:
        assert get_setting(session, "smtp_host") is None and get_setting(session, "smtp_starttls") is True
        assert get_setting(session, "smtp_password", core_ctx.box) == "hunter2-canary"
    assert auth.post("/admin/settings/group/nope", {}).status_code == 302
