"""The operator admin in real headless Chromium, against a real gunicorn admin, Envoy, ext_proc and simulator.

bootstrap -> login with TOTP -> create pool -> import a simulator auth.json -> create a key (read from the page)
-> a real request with that key through Envoy -> seen in request logs and on the account card -> pause the
account -> readiness line changes -> audit log shows each step. Every rendered page is scanned for canaries
(tokens, the raw key after its one-time display); screenshots go to tests/.artifacts/screenshots.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler.audit import SYSTEM
from pooler.migrate import upgrade
from pooler.models import AlertIncident, AuditEvent, JobRun, UpstreamAccount, utcnow
from pooler.services import operators as ops
from pooler.services.operators import create_operator
from pooler.settings import set_setting
from tests.support.databases import throwaway_postgres_database
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import ManagedProcess, wait_until
from tests.support.scheduler_process import start_scheduler
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


@pytest.fixture
def admin_browser_db() -> Iterator[str]:
    """A database per test: each journey starts from an empty admin (its first owner, its own pools)."""
    with throwaway_postgres_database("pooler_admin_e2e") as url:
        upgrade(url)
        yield url


@pytest.fixture
def stack(admin_browser_db: str, tmp_path: Path) -> Iterator[tuple[Gateway, str]]:
    """The admin on the port Envoy's `/admin` route targets; the browser uses the gateway's own port
    (served through Envoy at /admin on the same port as the gateway)."""
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
        # The confirming code is spent (single-use); the next step's code is inside the drift window.
        login(pyotp.TOTP(seed).at(time.time() + 30))
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


# Every job out of the way but the alert rules (a week: their grid fires on Saturdays at midnight only), so the
# one refresh that moves accounts is the operator's run-now.
ATTENTION_INTERVALS = (
    "refresh_due_tokens=604800,refresh_requested=604800,poll_usage=604800,housekeeping=604800,evaluate_alerts=1"
)


def test_operator_attention(stack: tuple[Gateway, str], artifacts_dir: Path, tmp_path: Path) -> None:
    """Run now moves a pool's accounts to reauth_required (their refresh tokens are revoked upstream): the Jobs
    page shows that run as a warning, the outage is on the dashboard and the pool list on the next load, the
    alert is acknowledged in place, and the accounts' cards offer a new sign-in rather than a refresh."""
    gw, base = stack
    shots = artifacts_dir / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    outage = gw.seed_pool("outage", ["acct-out-1", "acct-out-2"])
    gw.seed_pool("healthy", ["acct-ok-1"])
    with gw.ctx.session_factory.begin() as session:
        set_setting(session, "auth_base_url", gw.simulator.base_url, actor=SYSTEM)
        create_operator(session, username="owner", password=PASSWORD, role="owner")
    for acct in outage.accounts:
        gw.simulator.client.upsert_account(acct, revoked=True)
    gw.update(lambda session: _request_refresh(session, list(outage.accounts.values())))
    scheduler = start_scheduler(
        "scheduler", gw.db_url, tmp_path, {**gw.env, "POOLER_SCHEDULER_INTERVALS": ATTENTION_INTERVALS}
    )
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = chromium.new_page(viewport={"width": 1360, "height": 900})
            b = Browser(page, base, shots)
            b.canaries.extend([outage.key, *outage.tokens.values()])
            b.go("/admin/login")
            page.fill("#username", "owner")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")

            # Run the refresh now; its run is a warning that says what it did.
            b.go("/admin/jobs/")
            page.locator("#job-refresh_due_tokens button", has_text="Run now").click()
            assert "requested" in page.locator(".flash").inner_text()
            wait_until(lambda: _run_now_finished(gw), timeout=30, what="the run-now refresh finished")
            b.go("/admin/jobs/")
            row = page.locator("#job-refresh_due_tokens")
            assert row.locator("[data-job-level]").inner_text() == "warning"
            assert "moved 2 accounts to reauth_required" in row.locator("[data-job-summary]").inner_text()
            assert "run now by owner" in row.inner_text()
            b.shot("20-jobs-warning")

            # The outage on the dashboard and the pool list, on the next load.
            b.go("/admin/")
            alert = page.locator("#attention li.alert", has_text="Pool outage: no routable account")
            assert alert.count() == 1 and "sev-outage" in (alert.get_attribute("class") or "")
            assert page.locator("[data-pool-status]", has_text="active · 0 routable").count() == 1
            b.shot("21-dashboard-outage")
            b.go("/admin/pools/")
            status = page.locator("tr", has_text="outage").locator("[data-pool-status]")
            assert status.inner_text() == "active · 0 routable"
            assert "sev-outage" in (status.get_attribute("class") or "")
            b.shot("22-pools-outage")

            # Acknowledge once the scheduler has recorded the incident; it moves to acknowledged.
            wait_until(lambda: _incident_recorded(gw, outage.pool_id), timeout=30, what="the outage incident")
            b.go("/admin/alerts/")
            alert = page.locator("li.alert", has_text="Pool outage: no routable account")
            alert.locator("button", has_text="Acknowledge").click()
            assert page.url.endswith("/admin/alerts/")  # in place
            assert page.locator("li.alert", has_text="Pool outage: no routable account").count() == 0
            b.go("/admin/alerts/?tab=acknowledged")
            acknowledged = page.locator("li.alert", has_text="Pool outage: no routable account")
            assert acknowledged.get_attribute("data-state") == "acknowledged"
            assert "acknowledged by owner" in acknowledged.inner_text()
            b.shot("23-alerts-acknowledged")

            # The accounts' cards offer a new sign-in, not a refresh that cannot work.
            b.go(f"/admin/accounts/?pool={outage.pool_id}")
            for account_id in outage.accounts.values():
                card = page.locator(f"#account-{account_id}")
                assert "The account must be signed in again." in card.locator("[data-readiness]").inner_text()
                actions = card.locator(".actions")
                assert actions.locator("text=Relink with OpenAI").count() == 1
                assert actions.locator("text=Replace auth.json").count() == 1
                assert actions.locator("text=Refresh token").count() == 0
            b.shot("24-cards-relink")
            chromium.close()
    except BaseException:
        print("----- scheduler log -----\n" + scheduler.log_text()[-4000:])
        raise
    finally:
        scheduler.stop()
    with gw.ctx.session_factory() as session:
        audited = set(session.scalars(select(AuditEvent.action).where(AuditEvent.actor_label == "owner")))
    assert {"job.run_requested", "alert.acknowledge"} <= audited


def _request_refresh(session: Session, account_ids: list[int]) -> None:
    for account_id in account_ids:
        account = session.get(UpstreamAccount, account_id)
        assert account is not None
        account.refresh_requested_at = utcnow()


def _run_now_finished(gw: Gateway) -> bool:
    with gw.ctx.session_factory() as session:
        run = session.scalar(
            select(JobRun).where(JobRun.job_id == "refresh_due_tokens", JobRun.requested_by == "owner")
        )
        return run is not None and run.finished_at is not None


def _incident_recorded(gw: Gateway, pool_id: int) -> bool:
    with gw.ctx.session_factory() as session:
        return (
            session.scalar(
                select(AlertIncident.id).where(
                    AlertIncident.rule == "pool_no_routable", AlertIncident.subject == f"pool:{pool_id}"
                )
            )
            is not None
        )


def _cookie_payload(context: BrowserContext) -> dict[str, object]:
    """The admin cookie decoded as anyone holding it could (Flask's cookie is signed, not encrypted)."""
    value = next(c["value"] for c in context.cookies() if c["name"] == "pooler_admin")
    compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    payload: dict[str, object] = json.loads(zlib.decompress(raw) if compressed else raw)
    return payload


def test_sessions_are_server_side_and_totp_codes_single_use(stack: tuple[Gateway, str]) -> None:
    """Logout in one browser ends the operator's session in another; the cookie never carries the TOTP seed;
    a TOTP code works once; Secure cookies only when TLS is believed; /metrics on the client port needs its
    token."""
    gw, base = stack
    with gw.ctx.session_factory.begin() as session:
        ops.create_operator(session, username="sessions-owner", password=PASSWORD, role="owner")

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        first, second = chromium.new_context(), chromium.new_context()
        page_a, page_b = first.new_page(), second.new_page()

        def login(page: Page, code: str = "") -> None:
            page.goto(base + "/admin/login")
            page.fill("#username", "sessions-owner")
            page.fill("#password", PASSWORD)
            if code:
                page.fill("#code", code)
            page.click("button[type=submit]")

        def signed_in(page: Page) -> bool:
            page.goto(base + "/admin/")
            return "/admin/login" not in page.url

        login(page_a)
        login(page_b)
        assert signed_in(page_a) and signed_in(page_b)
        assert set(_cookie_payload(first)) <= {"sid", "csrf_token", "_flashes"}

        # Enrol TOTP in the first browser: the seed is on the page, never in the cookie.
        page_a.goto(base + "/admin/profile")
        page_a.click("text=Set up two-factor authentication")
        seed = page_a.inner_text("#totp-seed").strip()
        cookie = _cookie_payload(first)
        assert seed not in json.dumps(cookie) and set(cookie) <= {"sid", "csrf_token", "_flashes"}
        code = pyotp.TOTP(seed).now()
        page_a.fill("#code", code)
        page_a.click("text=Confirm and turn on")
        assert "Two-factor authentication is on" in page_a.content()
        assert "Signed-in sessions" in page_a.content() and "this browser" in page_a.content()

        # Sign out in the first browser: the second one is signed out too (the rows are revoked server-side).
        page_a.click("text=Sign out")
        assert "/admin/login" in page_a.url
        assert not signed_in(page_b)

        # The code that confirmed the enrolment is spent: replaying it is refused, the next step's code works.
        login(page_b, code)
        assert "Wrong authentication code" in page_b.content()
        assert not signed_in(page_b)
        login(page_b, pyotp.TOTP(seed).at(time.time() + 30))
        assert signed_in(page_b)
        chromium.close()

    # Secure cookies: Envoy overwrites a client's X-Forwarded-Proto with its own (plain http here), so a client
    # cannot make the admin mark a cookie Secure over http; a proxy on the admin's host saying https can.
    forged = httpx.get(f"{gw.url}/admin/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "pooler_admin=" in forged.headers["set-cookie"] and "Secure" not in forged.headers["set-cookie"]
    local_tls_proxy = httpx.get(
        f"http://127.0.0.1:{gw.admin_app_port}/admin/login", headers={"X-Forwarded-Proto": "https"}, timeout=10
    )
    assert "Secure" in local_tls_proxy.headers["set-cookie"]

    # /metrics on the client port: no token configured, still refused (it would list every pool and key prefix).
    scrape = httpx.get(f"{gw.url}/metrics", timeout=10)
    assert scrape.status_code == 401 and scrape.json()["error"]["code"] == "metrics_token_required"
