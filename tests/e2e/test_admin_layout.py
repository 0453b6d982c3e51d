"""The admin in headless Chromium with seeded data: no page scrolls sideways on a phone (390x844), status and
action columns stay on screen, the menu button opens the nav, chart values show on keyboard focus, and live
pages pick up database changes by themselves (no reload by the test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright

from pooler.audit import SYSTEM
from pooler.services import pools
from pooler.services.operators import create_operator
from pooler.services.seed import seed
from pooler.settings import set_setting
from tests.e2e.test_admin_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, admin_browser_db, stack  # noqa: F401
from tests.support.gateway import Gateway
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1440, "height": 900}


def _seed(gw: Gateway) -> None:
    with gw.ctx.session_factory.begin() as session:
        seed(session, gw.ctx.box, gw.ctx.hasher, requests=150)
        create_operator(session, username="owner", password=PASSWORD, role="owner")


def _login(page: Page, base: str) -> None:
    page.goto(base + "/admin/login")
    page.fill("#username", "owner")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    # The click returns once the next page's navigation commits; its stylesheet may still be loading.
    page.wait_for_load_state("load")
    assert page.url.rstrip("/").endswith("/admin"), page.url


def _overflow(page: Page) -> int:
    """How far the page scrolls sideways (0 = not at all)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def _on_screen(page: Page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5


def test_phone_layout_never_scrolls_sideways(stack: tuple[Gateway, str], artifacts_dir: Path) -> None:  # noqa: F811
    gw, base = stack
    _seed(gw)
    shots = artifacts_dir / "layout"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport=PHONE)
        _login(page, base)

        # The nav hides behind the menu button and opens from it.
        nav = page.locator("#main-nav")
        expect(nav).to_be_hidden()
        page.click("[data-menu-toggle]")
        expect(nav).to_be_visible()
        nav_paths = [str(a.get_attribute("href")) for a in nav.locator("a").all()]
        assert len(nav_paths) >= 9

        page.goto(base + "/admin/pools/")
        pool_link = page.locator("#live a[href*='/admin/pools/']:not([href$='/new'])").first
        detail_paths = [str(pool_link.get_attribute("href"))]
        page.goto(base + "/admin/logs/")
        for target in ("logs", "accounts"):
            link = page.locator(f"#live table.logs a[href*='/admin/{target}/']").first
            detail_paths.append(str(link.get_attribute("href")))
        page.goto(base + detail_paths[0])
        detail_paths.append(str(page.locator("#live a[href*='/activity']").first.get_attribute("href")))
        assert all(path.rstrip("/").rsplit("/", 1)[-1].isdigit() for path in detail_paths[:3]), detail_paths
        extra = ["/admin/accounts/import", "/admin/pools/new", "/admin/onboarding/link", "/admin/profile"]

        wide: dict[str, int] = {}
        for path in [*nav_paths, *detail_paths, *extra]:
            page.goto(base + path)
            if (over := _overflow(page)) > 0:
                wide[path] = over
            page.screenshot(path=str(shots / f"{path.strip('/').replace('/', '_') or 'root'}.png"), full_page=True)
        assert wide == {}, f"pages that scroll sideways at 390 px: {wide}"

        # Status and action columns stay on screen.
        page.goto(base + "/admin/logs/")
        assert _on_screen(page, "table.logs td[data-label=Status]")
        page.goto(base + "/admin/accounts/")
        assert _on_screen(page, "article.card .actions button")
        page.goto(base + "/admin/keys/")
        assert _on_screen(page, "form[action$='/revoke'] button")
        page.goto(base + "/admin/settings/")
        assert _on_screen(page, "button:has-text('Save routing')")

        # Charts keep their 12 px text: they scroll inside their own box rather than shrink.
        page.goto(base + "/admin/?span=30d")
        width = page.evaluate("document.querySelector('svg.chart').getBoundingClientRect().width")
        assert width >= 560 and _overflow(page) == 0
        chromium.close()


def test_chart_tooltips_and_live_refresh(stack: tuple[Gateway, str]) -> None:  # noqa: F811
    gw, base = stack
    _seed(gw)
    with gw.ctx.session_factory.begin() as session:
        set_setting(session, "admin_live_refresh_seconds", 1, actor=SYSTEM)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport=DESKTOP)
        _login(page, base)

        # Keyboard focus on a chart bucket shows every series' value there.
        page.locator("svg.chart rect.hit").last.focus()
        tip = page.locator(".chart-tip")
        assert tip.is_visible() and ":" in tip.inner_text()
        page.evaluate("document.activeElement.blur()")  # focus inside the page holds the refresh back
        assert not tip.is_visible()

        # A pool created behind the page's back shows up without a reload; the scroll position is kept.
        page.evaluate("window.scrollTo(0, 300)")
        page.evaluate("window.__sameDocument = true")
        with gw.ctx.session_factory.begin() as session:
            pools.create_pool(session, name="arrived-live", actor=SYSTEM)
        wait_until(lambda: page.locator("[data-pool='arrived-live']").count() > 0, timeout=20, what="live refresh")
        assert page.evaluate("window.__sameDocument") is True and page.evaluate("window.scrollY") >= 250

        # While a field is being edited, the page holds still.
        page.goto(base + "/admin/accounts/")
        page.evaluate("window.__sameDocument = true")
        field = page.locator("#live input[name=q]")
        field.fill("typing")
        stamp = page.evaluate("document.getElementById('live').dataset.refreshedAt || ''")

        def held(ticks: int) -> bool:
            return int(page.evaluate("document.getElementById('live').dataset.heldTicks || 0")) >= ticks

        wait_until(lambda: held(2), timeout=20, what="two refresh ticks held back while typing")
        assert page.evaluate("document.getElementById('live').dataset.refreshedAt || ''") == stamp
        assert field.input_value() == "typing" and page.evaluate("window.__sameDocument") is True
        chromium.close()
