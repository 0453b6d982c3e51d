"""The operator admin in real headless Chromium, against a real gunicorn admin, Envoy, ext_proc and simulator.

bootstrap -> login with TOTP -> create pool -> import a simulator auth.json -> create a key (read from the page)
-> a real request with that key through Envoy -> seen in request logs and on the account card -> pause the
account -> readiness line changes -> audit log shows each step. Every rendered page is scanned for canaries
(tokens, the raw key after its one-time display); screenshots go to tests/.artifacts/screenshots.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.sync_api import Page, sync_playwright

from pooler.migrate import upgrade
from tests.support.databases import throwaway_postgres_database
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import ManagedProcess, wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
READY = "admin ready on"


@pytest.fixture(scope="module")
def admin_browser_db() -> Iterator[str]:
    with throwaway_postgres_database("pooler_admin_e2e") as url:
        upgrade(url)
        yield url


@pytest.fixture
def stack(admin_browser_db: str, tmp_path: Path) -> Iterator[tuple[Gateway, str]]:
    """The admin on the port Envoy's `/admin` route targets; the browser uses the gateway's own port (issue 6:
    served through Envoy at /admin on the same port as the gateway)."""
    with running_gateway(admin_browser_db, tmp_path / "gw") as gw:
        admin = ManagedProcess(
            "admin",
            ["python", "-m", "admin_flask"],
            tmp_path / "admin.log",
            env={**gw.env, "POOLER_ADMIN_PORT": str(gw.admin_app_port), "POOLER_ADMIN_WORKERS": "1"},
        ).start()
        try:
            wait_until(lambda: READY in admin.log_text() or not admin.alive(), timeout=30, what="admin ready line")
            assert admin.alive(), admin.log_text()[-3000:]
            yield gw, gw.url
        except BaseException:
            print("----- admin log -----\n" + admin.log_text()[-4000:])
            raise
        finally:
            admin.stop()


class Browser:
    def __init__(self, page: Page, base: str, shots: Path) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.canaries: list[str] = []
        self.pages: list[str] = []

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.scan()

    def scan(self) -> None:
        html = self.page.content()
        self.pages.append(self.page.url)
        for canary in self.canaries:
            assert canary not in html, f"secret rendered on {self.page.url}"

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def test_operator_journey(stack: tuple[Gateway, str], artifacts_dir: Path) -> None:
    gw, base = stack
    shots = artifacts_dir / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    auth_doc = gw.simulator.client.make_auth("acct-browser-1", "plus", email="zoe@example.test")
    tokens = [auth_doc["tokens"][k] for k in ("access_token", "refresh_token", "id_token")]

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 1360, "height": 900})
        page.on("dialog", lambda dialog: dialog.accept())  # confirmations of destructive actions
        b = Browser(page, base, shots)
        b.canaries.extend(tokens)

        # Bootstrap the first owner; the page is gone afterwards.
        b.go("/admin/login")
        assert page.url.endswith("/admin/bootstrap")
        b.shot("01-bootstrap")
        page.fill("#username", "owner")
        page.fill("#password", PASSWORD)
        page.fill("#confirm", PASSWORD)
        page.click("button[type=submit]")
        assert "/admin/login" in page.url
        gone = httpx.get(base + "/admin/bootstrap")
        assert gone.status_code == 404
        # Answered by the admin behind Envoy, on the gateway's port (Envoy adds no x-envoy-* headers of its own).
        assert base == gw.url and not any(name.startswith("x-envoy-") for name in gone.headers)

        def login(code: str = "") -> None:
            b.go("/admin/login")
            page.fill("#username", "owner")
            page.fill("#password", PASSWORD)
            if code:
                page.fill("#code", code)
            page.click("button[type=submit]")
            b.scan()

        # Enrol TOTP from the profile, then sign in again with a code.
        login()
        b.go("/admin/profile")
        page.click("text=Set up two-factor authentication")
        seed = page.inner_text("#totp-seed").strip()
        page.fill("#code", pyotp.TOTP(seed).now())
        page.click("text=Confirm and turn on")
        assert "Two-factor authentication is on" in page.content()
        page.click("text=Sign out")
        login()
        assert "Enter the code" in page.content()
        login(pyotp.TOTP(seed).now())
        assert page.url.rstrip("/").endswith("/admin")

        # Create a pool.
        b.go("/admin/pools/new")
        page.fill("#name", "browser")
        page.fill("#label", "Browser pool")
        page.click("button[type=submit]")
        assert "Pool browser created" in page.content()

        # Import the simulator's auth.json through the dialog.
        b.go("/admin/accounts/")
        page.click("text=Import auth.json")
        dialog = page.locator("#import-dialog")
        dialog.locator("select[name=pool_id]").select_option(label="Browser pool (browser)")
        dialog.locator("textarea[name=auth_json]").fill(json.dumps(auth_doc))
        b.shot("02-import-dialog")
        dialog.locator("button[type=submit]").click()
        assert "Imported zoe" in page.content()
        b.scan()
        account_url = page.url

        # Create a key and read it from the one-time page.
        b.go("/admin/keys/")
        page.select_option("#pool_id", label="browser")
        page.fill("#label", "browser-key")
        page.click("text=Create key")
        raw_key = page.inner_text("[data-raw-key]").strip()
        assert raw_key.startswith("cpk_")
        b.shot("03-key-created")
        b.canaries.append(raw_key)  # from here on it must never be rendered again
        b.go("/admin/keys/")
        prefix = raw_key[:12]
        assert prefix in page.content()

        # A real request with that key through Envoy.
        def served() -> bool:
            response = httpx.post(
                f"{gw.codex_base}/responses",
                json=turn_body("hello from the browser test"),
                headers={"Authorization": f"Bearer {raw_key}", "Accept": "text/event-stream"},
                timeout=30,
            )
            return response.status_code == 200

        wait_until(served, timeout=30, interval=0.3, what="a 200 through Envoy with the new key")
        gw.wait_for_logs(1, key_prefix=prefix)
        b.go(f"/admin/logs/?key={prefix}")
        assert prefix in page.content() and "gpt-5.1-codex" in page.content()
        b.shot("04-request-logs")
        b.go("/admin/accounts/?pool=")
        card = page.locator("article.card", has_text="zoe")
        assert "1 req (1h)" in card.inner_text() or "req (1h)" in card.inner_text()
        readiness_before = card.locator("[data-readiness]").inner_text()
        assert readiness_before.startswith("Routable in browser")
        b.shot("05-accounts")

        # Pause the account: the readiness line says why it no longer routes.
        card.locator("button", has_text="Pause").click()
        assert "The account is paused." in page.locator("[data-readiness]").first.inner_text()  # the cockpit
        b.go("/admin/accounts/")
        card = page.locator("article.card", has_text="zoe")
        assert "The account is paused." in card.locator("[data-readiness]").inner_text()
        b.go(account_url.replace(base, ""))
        b.shot("06-account-cockpit")

        # The audit log shows every step.
        b.go("/admin/audit/")
        audit_html = page.content()
        for action in (
            "operator.bootstrap",
            "operator.totp_enable",
            "operator.login",
            "pool.create",
            "account.import",
            "key.create",
            "account.state_change",
        ):
            assert action in audit_html, action
        b.shot("07-audit")

        for name, path in (
            ("08-dashboard", "/admin/"),
            ("09-pools", "/admin/pools/"),
            ("10-jobs", "/admin/jobs/"),
            ("11-settings", "/admin/settings/"),
            ("12-operators", "/admin/operators/"),
        ):
            b.go(path)
            b.shot(name)
        pool_link = page.goto(base + "/admin/pools/")
        assert pool_link is not None
        page.click("text=Activity")
        b.scan()
        b.shot("13-pool-activity")
        chromium.close()
    assert len(b.pages) > 15
