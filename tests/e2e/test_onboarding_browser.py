"""OAuth onboarding in real headless Chromium against a real gunicorn admin (private PostgreSQL database) and the
simulator's OAuth endpoints: browser-paste link, device link, relink (matching and mismatching identity), invite
acceptance, every error code as the operator sees it, and a canary scan of pages, database and logs for the
authorization codes, callback URLs, states and tokens.

The simulator's consent redirects to http://localhost:1455/auth/callback, where nothing listens: like a real
operator, the test reads the URL the browser was sent to and pastes it back.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from sqlalchemy import select

from pooler import settings
from pooler.audit import Actor
from pooler.config import load_config
from pooler.context import CoreContext, open_context
from pooler.migrate import upgrade
from pooler.models import OAuthFlow, Operator, Pool, UpstreamAccount
from pooler.services import operators as ops
from pooler.services import pools
from pooler.services.credentials import read_token
from pooler.states import AccountState, ActorType, SecretKind
from tests.support.databases import throwaway_postgres_database
from tests.support.dbscan import dump_all_tables
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, wait_until
from tests.support.simulator import RunningSimulator, running_simulator

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
ACTOR = Actor(ActorType.CLI, "e2e")
CALLBACK_PREFIX = "http://localhost:1455/auth/callback"


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Stack:
    base: str
    sim: RunningSimulator
    ctx: CoreContext
    admin: ManagedProcess
    browser: Browser
    alpha: int = 0
    beta: int = 0
    canaries: set[str] = field(default_factory=set)
    """Secrets that must never appear in a page, the database or a log."""
    stored_canaries: set[str] = field(default_factory=set)
    """Secrets a pending flow's own page may show (the state inside the one-time authorization URL) but that must
    never be stored in clear or logged."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("onboarding")
    with throwaway_postgres_database("pooler_onboard_e2e") as db_url, running_simulator(tmp) as sim:
        upgrade(db_url)
        port = free_port()
        env = {
            "DATABASE_URL": db_url,
            "POOLER_DATA_DIR": str(tmp / "data"),
            "POOLER_SECRET_KEYS": f"t1:{_key()}",
            "POOLER_KEY_PEPPER": _key(),
            "POOLER_ADMIN_PORT": str(port),
            "POOLER_ADMIN_WORKERS": "1",
            "POOLER_LOG_LEVEL": "INFO",  # the production level; DEBUG makes gunicorn log request paths
        }
        ctx = open_context(load_config(env))
        with ctx.session_factory.begin() as s:
            for name in ("auth_base_url", "upstream_base_url"):
                settings.set_setting(s, name, sim.base_url, actor=ACTOR)
            alpha = pools.create_pool(s, name="alpha", actor=ACTOR).id
            beta = pools.create_pool(s, name="beta", actor=ACTOR).id
            ops.create_operator(s, username="owner", password=PASSWORD, role="owner")
            ops.create_operator(s, username="scoped", password=PASSWORD, role="admin", pool_ids=[alpha])
        admin = ManagedProcess(
            "admin", [str(VENV_BIN / "python"), "-m", "admin_flask"], tmp / "admin.log", env=env
        ).start()
        try:
            wait_until(lambda: "admin ready on" in admin.log_text() or not admin.alive(), timeout=30, what="admin")
            assert admin.alive(), admin.log_text()[-3000:]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                stack = Stack(f"http://127.0.0.1:{port}", sim, ctx, admin, browser, alpha, beta)
                yield stack
                browser.close()
            _final_canary_scan(stack, tmp)
        except BaseException:
            print("----- admin log -----\n" + admin.log_text()[-4000:])
            raise
        finally:
            admin.stop()
            ctx.dispose()


def _final_canary_scan(stack: Stack, tmp: Path) -> None:
    assert stack.canaries, "the tests collected no canaries"
    with stack.ctx.session_factory() as s:
        for account in s.scalars(select(UpstreamAccount)):
            for kind in (SecretKind.ACCESS_TOKEN, SecretKind.REFRESH_TOKEN, SecretKind.ID_TOKEN):
                token = read_token(s, stack.ctx.box, account.id, kind)
                if token:
                    stack.canaries.add(token)
    blob = dump_all_tables(stack.ctx.engine)
    logs = b"".join(p.read_bytes() for p in tmp.rglob("*.log"))
    for canary in stack.canaries | stack.stored_canaries:
        assert canary.encode() not in blob, "a secret is stored in clear"
        assert canary.encode() not in logs, "a secret is in a log"


@dataclass
class Operator_:
    stack: Stack
    context: BrowserContext
    page: Page

    def scan(self, page: Page | None = None) -> str:
        html = (page or self.page).content()
        for canary in self.stack.canaries:
            assert canary not in html, f"secret rendered on {(page or self.page).url}"
        return html

    def go(self, path: str) -> str:
        self.page.goto(self.stack.base + path)
        return self.scan()

    def start_link(self, method: str = "browser", pool: int | None = None) -> int:
        self.go("/admin/accounts/")
        self.page.click("#oauth-link")
        self.page.select_option("#pool_id", str(pool or self.stack.alpha))
        self.page.check(f"input[name=method][value={method}]")
        self.page.click("[data-start]")
        return int(self.page.get_attribute("[data-flow]", "data-flow") or 0)

    def start_relink(self, account_id: int, method: str = "browser") -> int:
        self.go(f"/admin/accounts/{account_id}")
        self.page.click("#oauth-relink")
        self.page.check(f"input[name=method][value={method}]")
        self.page.click("[data-start]")
        return int(self.page.get_attribute("[data-flow]", "data-flow") or 0)

    def consent(self, login: str) -> str:
        """Opens the authorization URL in a second tab and returns the localhost URL it was redirected to."""
        self.stack.sim.client.configure(default_login_account=login)
        url = self.page.get_attribute("#authorize-link", "href")
        assert url and "code_challenge_method=S256" in url
        tab = self.context.new_page()
        seen: list[str] = []
        tab.on("request", lambda r: seen.append(r.url) if r.url.startswith(CALLBACK_PREFIX) else None)
        with contextlib.suppress(Exception):  # nothing listens on localhost:1455: the page fails, as for people
            tab.goto(url)
        wait_until(lambda: seen, timeout=10, what="callback navigation")
        tab.close()
        callback = seen[-1]
        code = callback.split("code=")[1].split("&")[0]
        state = callback.split("state=")[1].split("&")[0]
        self.stack.canaries.update({callback, code})
        self.stack.stored_canaries.add(state)
        return callback

    def paste(self, text: str, page: Page | None = None) -> str:
        page = page or self.page
        page.fill("#callback_url", text)
        page.click("#submit-callback")
        html = self.scan(page)
        assert text not in html or not text.strip(), "the pasted URL was echoed"
        return html

    def error_code(self, page: Page | None = None) -> str | None:
        return (page or self.page).get_attribute("[data-error-code]", "data-error-code")

    def linked_account(self) -> int:
        return int(self.page.get_attribute("[data-linked]", "data-linked") or 0)


def _operator(stack: Stack, username: str = "owner") -> Operator_:
    context = stack.browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(stack.base + "/admin/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    assert "/login" not in page.url
    return Operator_(stack, context, page)


@pytest.fixture
def owner(stack: Stack) -> Iterator[Operator_]:
    op = _operator(stack)
    yield op
    op.context.close()


def _acct() -> str:
    return f"acct-{secrets.token_hex(4)}"


def test_browser_paste_link(owner: Operator_) -> None:
    login = _acct()
    owner.start_link()
    callback = owner.consent(login)
    owner.paste(callback)
    account_id = owner.linked_account()
    assert owner.page.get_attribute("[data-primed]", "data-primed") == "ok"
    assert owner.page.get_attribute("[data-state]", "data-state") == AccountState.ACTIVE
    owner.page.click("text=Close")
    html = owner.scan()
    assert login in html and "oauth_link" in html  # the cockpit shows the audit event
    with owner.stack.ctx.session_factory() as s:
        account = s.get(UpstreamAccount, account_id)
        assert account is not None and account.chatgpt_account_id == login
        assert [a.pool_id for a in account.assignments] == [owner.stack.alpha]


def test_device_link(owner: Operator_) -> None:
    login = _acct()
    owner.stack.sim.client.configure(device_auto_approve_polls=0)
    owner.start_link("device")
    user_code = owner.page.inner_text("#user-code").strip()
    verification = owner.page.get_attribute("#verification-url", "href")
    assert verification and verification.endswith("/codex/device")
    # The person approves on the provider's page in another tab; the admin page keeps polling meanwhile.
    tab = owner.context.new_page()
    tab.goto(f"{verification}?user_code={user_code}&account={login}")
    assert "Signed in as" in tab.content()
    tab.close()
    owner.page.wait_for_selector("[data-linked]", timeout=20_000)
    owner.scan()
    with owner.stack.ctx.session_factory() as s:
        account = s.get(UpstreamAccount, owner.linked_account())
        assert account is not None and account.chatgpt_account_id == login


def test_relink_matching_and_mismatching(owner: Operator_) -> None:
    login = _acct()
    owner.start_link()
    owner.paste(owner.consent(login))
    account_id = owner.linked_account()
    with owner.stack.ctx.session_factory.begin() as s:
        account = s.get(UpstreamAccount, account_id)
        assert account is not None
        account.state, account.state_reason = AccountState.REAUTH_REQUIRED, "refresh_token_reused"
        epoch = account.credential_epoch
    owner.start_relink(account_id)
    owner.paste(owner.consent(_acct()))
    assert owner.error_code() == "identity_mismatch"
    owner.start_relink(account_id)
    owner.paste(owner.consent(login))
    assert owner.linked_account() == account_id
    assert "Relinked" in owner.page.content()
    with owner.stack.ctx.session_factory() as s:
        account = s.get(UpstreamAccount, account_id)
        assert account is not None and account.state == AccountState.ACTIVE
        assert account.credential_epoch == epoch + 1


def test_each_error_code_is_shown(owner: Operator_, stack: Stack) -> None:
    base = CALLBACK_PREFIX + "?"
    owner.start_link()
    callback = owner.consent(_acct())
    state = callback.split("state=")[1].split("&")[0]
    for text, code in [
        ("not a url", "invalid_callback_url"),
        (callback.replace("localhost:1455", "example.test:1455"), "invalid_callback_origin"),
        (callback + "&state=" + state, "duplicate_callback_param"),
        (base + "code=abc", "missing_state"),
        (base + "code=abc&state=someone-elses", "invalid_state"),
        (base + "state=" + state, "missing_callback_result"),
    ]:
        owner.paste(text)
        assert owner.error_code() == code, code
    owner.start_link()
    state = owner.consent(_acct()).split("state=")[1].split("&")[0]
    owner.paste(base + "error=access_denied&state=" + state)
    assert owner.error_code() == "provider_denied"

    # token_exchange_failed: the auth server refuses the code.
    owner.start_link()
    callback = owner.consent(_acct())
    stack.sim.client.add_fault("status", status=400, route="oauth_token", body={"error": {"code": "invalid_grant"}})
    owner.paste(callback)
    assert owner.error_code() == "token_exchange_failed"

    # expired_flow.
    flow_id = owner.start_link()
    callback = owner.consent(_acct())
    with stack.ctx.session_factory.begin() as s:
        flow = s.get(OAuthFlow, flow_id)
        assert flow is not None
        flow.expires_at = flow.created_at - dt.timedelta(seconds=1)
    owner.paste(callback)
    assert owner.error_code() == "expired_flow"

    # stale_flow and flow_not_pending: two tabs of the same session.
    first = owner.start_link()
    stale_callback = owner.consent(_acct())
    old_tab = owner.context.new_page()
    old_tab.goto(f"{stack.base}/admin/onboarding/flows/{first}")
    owner.start_link()  # a newer flow for the same pool supersedes the first
    owner.paste(stale_callback, old_tab)
    assert owner.error_code(old_tab) == "stale_flow"
    flow_id = owner.start_link()
    callback = owner.consent(_acct())
    old_tab.goto(f"{stack.base}/admin/onboarding/flows/{flow_id}")
    owner.paste(callback)
    assert owner.page.query_selector("[data-linked]")
    owner.paste(callback, old_tab)
    assert owner.error_code(old_tab) == "flow_not_pending"
    old_tab.close()

    # identity_conflict: linking an account that is already an upstream.
    login = _acct()
    owner.start_link()
    owner.paste(owner.consent(login))
    owner.start_link(pool=stack.beta)
    owner.paste(owner.consent(login))
    assert owner.error_code() == "identity_conflict"

    # identity_mismatch is covered by the relink test; unauthorized_pool: an admin loses the pool mid-flow.
    scoped = _operator(stack, "scoped")
    try:
        scoped_flow = scoped.start_link()
        callback = scoped.consent(_acct())
        with stack.ctx.session_factory.begin() as s:
            op = s.scalar(select(Operator).where(Operator.username == "scoped"))
            assert op is not None
            ops.set_pool_assignments(s, op, [stack.beta])
        scoped.paste(callback)
        assert scoped.error_code() == "unauthorized_pool"
    finally:
        scoped.context.close()
        with stack.ctx.session_factory.begin() as s:
            op = s.scalar(select(Operator).where(Operator.username == "scoped"))
            assert op is not None
            ops.set_pool_assignments(s, op, [stack.alpha])
    # Only the operator and browser session that started a flow can see or complete it (even an owner gets 404).
    response = owner.page.goto(f"{stack.base}/admin/onboarding/flows/{scoped_flow}")
    assert response is not None and response.status == 404


def test_invite_acceptance(owner: Operator_, stack: Stack) -> None:
    login = _acct()
    stack.sim.client.configure(device_auto_approve_polls=0)
    owner.go("/admin/accounts/")
    owner.page.click("#invites")
    owner.page.select_option("#pool_id", str(stack.beta))
    owner.page.fill("#label", "Dana")
    owner.page.click("text=Create invite")
    link = owner.page.inner_text("#invite-link").strip()
    token = link.rsplit("/", 1)[1]
    assert "/admin/invite/" in link
    # The invitee: a separate, anonymous browser.
    invitee = stack.browser.new_context()
    try:
        page = invitee.new_page()
        page.goto(link)
        html = page.content()
        assert "Connect your ChatGPT account" in html and "Sign out" not in html and "Accounts" not in html
        page.click("#start-invite")
        user_code = page.inner_text("#user-code").strip()
        verification = page.get_attribute("#verification-url", "href")
        tab = invitee.new_page()
        tab.goto(f"{verification}?user_code={user_code}&account={login}")
        tab.close()
        page.wait_for_selector("[data-invite-accepted]", timeout=20_000)
        # Single use: the link is dead now.
        response = page.goto(link)
        assert response is not None and response.status == 404
        # The invitee cannot reach anything else.
        response = page.goto(stack.base + "/admin/accounts/")
        assert "/admin/login" in page.url
    finally:
        invitee.close()
    owner.go("/admin/invites/")
    assert owner.page.inner_text("[data-invite-status]").strip() == "accepted"
    with stack.ctx.session_factory() as s:
        account = s.scalar(select(UpstreamAccount).where(UpstreamAccount.chatgpt_account_id == login))
        assert account is not None and {a.pool_id for a in account.assignments} == {stack.beta}
        pool = s.get(Pool, stack.beta)
        assert pool is not None
    # Revoked invites show as such, and their link is dead.
    owner.page.fill("#label", "Eve")
    owner.page.select_option("#pool_id", str(stack.beta))
    owner.page.click("text=Create invite")
    revoked_link = owner.page.inner_text("#invite-link").strip()
    stack.canaries.update({token, revoked_link.rsplit("/", 1)[1]})
    owner.go("/admin/invites/")
    owner.page.click("text=Revoke")
    assert "revoked" in owner.page.inner_text("table")
    response = owner.page.goto(revoked_link)
    assert response is not None and response.status == 404
