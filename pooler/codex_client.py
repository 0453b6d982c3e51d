"""The Codex client the gateway presents on its own upstream calls: one place for the identity headers and the
per-account cookies.

Usage polls, token refreshes, and the onboarding's device and code-exchange calls (pooler.services.usage_poll,
pooler.oauth, pooler.onboarding) go out the way codex-rs makes them: `originator: codex_cli_rs`, a
`codex_cli_rs/<version> (<os> <os version>; <arch>) <terminal>` user agent and `version`, from the one client
`make_http_client` builds. The version is pinned (CODEX_CLI_VERSION), not the installed CLI's: the gateway has
none, and a pinned value changes only with a reviewed commit.

Cookies: codex-rs keeps the cookies chatgpt.com sets (e.g. Cloudflare's `__cf_bm` / `cf_clearance`) and sends
them back. The gateway keeps them **per account**: a call names its account (`for_account`), gets that
account's cookies and stores what the answer sets, and a cookie one account's answer set is never sent for
another account (it would link the two). httpx's own client-wide jar is switched off. The jars live in memory
of the process that made the calls (the scheduler, the admin): a restart starts with none, as a fresh Codex
install does, and cookies are never written anywhere nor logged. Calls that name no account (the device flow,
a code exchange before the account exists) carry no cookies and keep none.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

CODEX_CLI_VERSION = "0.171.0"
"""The Codex CLI version the gateway presents (npm @openai/codex, 2026-12-04)."""
ORIGINATOR = "codex_cli_rs"
ACCOUNT_EXTENSION = "pooler.account"
"""httpx request extension naming the account whose cookies a call uses (see `for_account`)."""
HTTP_TIMEOUT = httpx.Timeout(20.0, connect=5.0)


def _os_name() -> str:
    """What codex-rs's os_info reports on Linux (the distribution and its version), else the system's name."""
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    name, version = release.get("NAME"), release.get("VERSION_ID")
    if name:
        return f"{name} {version}" if version else name
    return f"{platform.system() or 'Linux'} {platform.release()}".strip()


def user_agent(os_name: str | None = None, arch: str | None = None) -> str:
    """codex-rs's user agent shape; the terminal part is `unknown`, as Codex reports it without a terminal."""
    return (
        f"{ORIGINATOR}/{CODEX_CLI_VERSION} ({os_name or _os_name()}; {arch or platform.machine() or 'x86_64'}) unknown"
    )


def identity_headers(os_name: str | None = None, arch: str | None = None) -> dict[str, str]:
    """The headers naming the client on every call: originator, user agent, version."""
    return {"originator": ORIGINATOR, "user-agent": user_agent(os_name, arch), "version": CODEX_CLI_VERSION}


def for_account(account_id: int) -> dict[str, str]:
    """The `extensions=` of a call made for one account: its cookies go with it, and what it sets is kept."""
    return {ACCOUNT_EXTENSION: str(account_id)}


class AccountCookies:
    """One cookie jar per account, in memory (thread-safe: the admin serves requests on threads)."""

    def __init__(self) -> None:
        self._jars: dict[str, httpx.Cookies] = {}
        self._lock = threading.Lock()

    def _jar(self, extensions: Mapping[str, object]) -> httpx.Cookies | None:
        account = extensions.get(ACCOUNT_EXTENSION)
        if not isinstance(account, str):
            return None
        with self._lock:
            return self._jars.setdefault(account, httpx.Cookies())

    def on_request(self, request: httpx.Request) -> None:
        request.headers.pop("cookie", None)  # only ever the account's own cookies
        jar = self._jar(request.extensions)
        if jar is not None:
            with self._lock:
                jar.set_cookie_header(request)

    def on_response(self, response: httpx.Response) -> None:
        jar = self._jar(response.request.extensions)
        if jar is not None:
            with self._lock:
                jar.extract_cookies(response)

    def names(self, account_id: int) -> list[str]:
        """The cookie names kept for an account (never their values): for tests and diagnostics."""
        with self._lock:
            jar = self._jars.get(str(account_id))
            return sorted({cookie.name for cookie in jar.jar}) if jar is not None else []


def make_http_client(
    cookies: AccountCookies | None = None, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The client of the gateway's own upstream calls: the Codex identity on every request, per-account cookies,
    and no client-wide cookie jar (its policy accepts no domain, so nothing set for one call reaches another).
    `transport`: a fake for tests (httpx.MockTransport)."""
    jars = cookies or AccountCookies()
    return httpx.Client(
        transport=transport,
        timeout=HTTP_TIMEOUT,
        follow_redirects=False,
        headers=identity_headers(),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        event_hooks={"request": [jars.on_request], "response": [jars.on_response]},
    )
