"""The gateway's own upstream client (pooler.codex_client): a Codex identity, and cookies kept per account."""

from __future__ import annotations

import itertools

import httpx

from pooler import codex_client
from pooler.codex_client import AccountCookies, for_account, identity_headers, user_agent


def test_identity_is_codex_cli_shaped() -> None:
    headers = identity_headers("Ubuntu 24.04", "x86_64")
    assert headers == {
        "originator": "codex_cli_rs",
        "user-agent": f"codex_cli_rs/{codex_client.CODEX_CLI_VERSION} (Ubuntu 24.04; x86_64) unknown",
        "version": codex_client.CODEX_CLI_VERSION,
    }
    assert user_agent().startswith(f"codex_cli_rs/{codex_client.CODEX_CLI_VERSION} (")


def _client(seen: list[httpx.Request]) -> tuple[httpx.Client, AccountCookies]:
    counter = itertools.count(1)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}, headers={"set-cookie": f"__cf_bm=v{next(counter)}; Path=/; HttpOnly"})

    cookies = AccountCookies()
    return codex_client.make_http_client(cookies, httpx.MockTransport(handler)), cookies


def test_cookies_go_back_to_the_same_account_only() -> None:
    seen: list[httpx.Request] = []
    client, cookies = _client(seen)
    url = "https://chatgpt.com/backend-api/wham/usage"
    with client:
        client.get(url, extensions=for_account(1))  # sets v1 for account 1
        client.get(url, extensions=for_account(2))  # account 2 has none yet: sends nothing, gets v2
        client.get(url, extensions=for_account(1))  # account 1's own v1
        client.get(url)  # no account: no cookie, and what it sets is kept nowhere
        client.get(url, extensions=for_account(2))  # account 2's own v2
    sent = [r.headers.get("cookie") for r in seen]
    assert sent == [None, None, "__cf_bm=v1", None, "__cf_bm=v2"]
    assert all(r.headers["originator"] == "codex_cli_rs" for r in seen)
    assert all(r.headers["user-agent"].startswith("codex_cli_rs/") and r.headers["version"] for r in seen)
    assert cookies.names(1) == ["__cf_bm"] and cookies.names(3) == []
    assert not list(client.cookies.jar)  # the client-wide jar never keeps anything


def test_a_cookie_header_set_by_a_caller_is_replaced_by_the_accounts_own() -> None:
    seen: list[httpx.Request] = []
    client, _ = _client(seen)
    with client:
        client.get("https://chatgpt.com/x", headers={"cookie": "stray=1"}, extensions=for_account(7))
    assert seen[0].headers.get("cookie") is None
