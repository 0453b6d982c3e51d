"""Settings saved through the browser with typed inputs, and the main pages at desktop and phone size as
screenshots (`make screenshots` writes them to docs/screenshots/ for docs/ADMIN.md; in the suite they go to the
test artifacts)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from pooler.settings import get_setting
from tests.e2e.test_admin_browser import CHROMIUM, CHROMIUM_ARGS, admin_browser_db, stack  # noqa: F401
from tests.e2e.test_admin_layout import DESKTOP, PHONE, _login, _overflow, _seed
from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e
SCREENSHOT_PAGES = {
    "dashboard": "/admin/",
    "pools": "/admin/pools/",
    "accounts": "/admin/accounts/",
    "keys": "/admin/keys/",
    "logs": "/admin/logs/",
    "alerts": "/admin/alerts/",
    "jobs": "/admin/jobs/",
    "settings": "/admin/settings/",
}


def test_settings_save_with_typed_inputs(stack: tuple[Gateway, str]) -> None:  # noqa: F811
    gw, base = stack
    _seed(gw)
    with sync_playwright() as p:
        page = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS).new_page(viewport=DESKTOP)
        _login(page, base)
        page.goto(base + "/admin/settings/")
        toggle = page.locator("input[type=checkbox][role=switch][name=mcp_enabled]")
        number = page.locator("input[type=number][name=usage_poll_interval_seconds]")
        assert not toggle.is_checked() and number.input_value() == "300"
        number.fill("600")
        form = page.locator("form[data-settings-group]", has=number)
        assert form.count() == 1 and form.locator("[name=mcp_enabled]").count() == 0  # two groups, two saves
        form.locator("button.primary").click()
        toggle = page.locator("input[type=checkbox][role=switch][name=mcp_enabled]")
        toggle.check()
        page.locator("form[data-settings-group]", has=toggle).locator("button.primary").click()
        changed = page.locator("[data-setting=usage_poll_interval_seconds].changed")
        assert changed.count() == 1 and changed.locator("text=Reset to default").count() == 1
        assert page.locator("input[name=mcp_enabled]").is_checked()
        # A value the catalogue refuses: 400, the message beside its field, nothing of the group saved.
        number = page.locator("input[type=number][name=usage_poll_interval_seconds]")
        number.fill("5")
        page.locator("form[data-settings-group]", has=number).locator("button.primary").click()
        assert page.locator("[data-error-for=usage_poll_interval_seconds]").is_visible()
    with gw.ctx.session_factory() as session:
        assert get_setting(session, "usage_poll_interval_seconds") == 600
        assert get_setting(session, "mcp_enabled") is True


def test_screenshots_of_the_main_pages(stack: tuple[Gateway, str], artifacts_dir: Path) -> None:  # noqa: F811
    gw, base = stack
    _seed(gw)
    out = Path(os.environ.get("POOLER_SCREENSHOTS_DIR") or artifacts_dir / "screenshots-main")
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page = chromium.new_page(viewport=viewport)
            _login(page, base)
            for name, path in SCREENSHOT_PAGES.items():
                page.goto(base + path)
                assert page.locator("#main-nav").count() == 1, path
                assert size == "desktop" or _overflow(page) <= 0, path
                shot = out / f"{name}-{size}.png"
                page.screenshot(path=str(shot), full_page=size == "desktop")
                assert shot.stat().st_size > 5_000, shot  # a rendered page, not a blank one
            page.close()
