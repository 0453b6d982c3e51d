"""Pooled rate-limit view: x-codex-* response headers carry the pool's aggregate (the same figures
as the pooled /backend-api/wham/usage), written by Envoy from the ext_proc's request-time metadata.

Proven here at the Envoy side (what reaches a client: HTTP SSE headers, the websocket 101 headers and the
websocket `codex.rate_limits` events, rewritten by the websocket route's Lua filter; the permessage-deflate
offer is dropped only when the view is on). Byte-level frame handling: test_gateway_pooled_view_ws_frames.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from sqlalchemy import select

from pooler.audit import SYSTEM
from pooler.models import Pool, PoolKey, QuotaWindow
from pooler.services import keys
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import turn_body, upgrade_headers, ws_turn_events

pytestmark = pytest.mark.integration
USAGE = {"acct-p1": (10, 5), "acct-p2": (40, 20), "acct-p3": (70, 50)}


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("view")) as gateway:
        yield gateway


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _usage(gw: Gateway, key: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/backend-api/wham/usage", headers=_headers(key), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _expected_headers(usage: dict[str, Any]) -> dict[str, str]:
    out = {}
    for slot in ("primary", "secondary"):
        w = usage["rate_limit"][f"{slot}_window"]
        out[f"x-codex-{slot}-used-percent"] = str(w["used_percent"])
        out[f"x-codex-{slot}-window-minutes"] = str(w["limit_window_seconds"] // 60)
        out[f"x-codex-{slot}-reset-at"] = str(w["reset_at"])
    return out


def test_headers_and_ws_upgrade_show_the_pool_aggregate(gw: Gateway) -> None:
    seeded = gw.seed_pool("view", list(USAGE), strategy="round-robin", pooled_rate_limits=True)
    for acct, (p, s) in USAGE.items():
        gw.simulator.client.upsert_account(acct, primary_used_percent=p, secondary_used_percent=s)
    for _ in range(3):  # one turn per account: the gateway learns each account's windows from its headers
        assert (
            httpx.post(f"{gw.codex_base}/responses", json=turn_body(), headers=_headers(seeded.key)).status_code == 200
        )

    def learnt() -> dict[str, Any] | None:
        usage = _usage(gw, seeded.key)
        primary = usage["rate_limit"]["primary_window"]
        return usage if primary and abs(primary["used_percent"] - 40) <= 1 else None

    usage = wait_until(learnt, timeout=15, what="pooled usage from evidence")
    assert usage is not None
    assert abs(usage["rate_limit"]["secondary_window"]["used_percent"] - 25) <= 1

    seen_accounts = set()
    for _ in range(3):
        r = httpx.post(f"{gw.codex_base}/responses", json=turn_body(), headers=_headers(seeded.key), timeout=30)
        assert r.status_code == 200
        now_usage = _usage(gw, seeded.key)
        got = {k: r.headers.get(k) for k in _expected_headers(now_usage)}
        expected = _expected_headers(now_usage)
        for k in ("x-codex-primary-used-percent", "x-codex-secondary-used-percent"):
            assert abs(int(got[k] or -99) - int(expected[k])) <= 1, (k, got, expected)
        assert got["x-codex-primary-window-minutes"] == "300" and got["x-codex-secondary-window-minutes"] == "10080"
        assert got["x-codex-primary-reset-at"] == expected["x-codex-primary-reset-at"]
        seen_accounts.add(gw.simulator.client.journal()[-1]["account"])
        assert not any(k.startswith("x-pooler-") for k in r.headers)
    assert len(seen_accounts) == 3  # three different accounts, one pooled figure
    # The view never travels upstream (it rides on the attempt's metadata and response, not its request).
    upstream = [e for e in gw.simulator.client.journal() if e["account"] in USAGE and e["method"] != "WS"]
    assert upstream and not [k for e in upstream for k in e["received"] if k.startswith("x-pooler-")]

    # The evidence path still reads each account's own headers (the rewrite is downstream only).
    def own_value() -> bool:
        with gw.ctx.session_factory() as session:
            row = session.scalar(
                select(QuotaWindow).where(
                    QuotaWindow.account_id == seeded.accounts["acct-p1"], QuotaWindow.window_minutes == 300
                )
            )
            return row is not None and row.used_percent < 20

    wait_until(own_value, timeout=15, what="acct-p1 keeps its own 5h figure")

    upgrade, events, compress = asyncio.run(_ws_turn(gw, seeded.key))
    usage = _usage(gw, seeded.key)
    expected = _expected_headers(usage)
    assert abs(int(upgrade["x-codex-primary-used-percent"]) - int(expected["x-codex-primary-used-percent"])) <= 1
    assert events[-1]["type"] == "response.completed"
    # The offered permessage-deflate was dropped (compressed frames could not be rewritten).
    assert compress == 0 and "sec-websocket-extensions" not in upgrade
    assert not any(k.startswith("x-pooler-") for k in upgrade)
    # The 101's headers Codex reads pass the view's filters untouched.
    assert upgrade["x-codex-turn-state"] and upgrade["x-models-etag"] and upgrade["x-reasoning-included"] == "true"
    rate_events = [e for e in events if e["type"] == "codex.rate_limits"]
    assert len(rate_events) == 2  # one on connect, one per turn (simulator)
    for event in rate_events:
        assert event["plan_type"] == usage["plan_type"]
        _assert_event_is_pooled(event["rate_limits"], usage)
        assert "credits" in event  # other fields stay the upstream's, like the x-codex-credits-* headers
    # Every other event is the simulator's own: the turn streamed as usual.
    deltas = "".join(e.get("delta", "") for e in events if e["type"] == "response.output_text.delta")
    completed = events[-1]["response"]
    assert deltas and completed["output"][0]["content"][0]["text"] == deltas


def _assert_event_is_pooled(limits: dict[str, Any], usage: dict[str, Any]) -> None:
    rate = usage["rate_limit"]
    assert limits["allowed"] == rate["allowed"] and limits["limit_reached"] == rate["limit_reached"]
    for slot in ("primary", "secondary"):
        want, have = rate[f"{slot}_window"], limits[slot]
        assert abs(have["used_percent"] - want["used_percent"]) <= 1, (slot, limits, usage)
        assert have["window_minutes"] == want["limit_window_seconds"] // 60
        assert have["reset_at"] == want["reset_at"]
        assert abs(have["reset_after_seconds"] - want["reset_after_seconds"]) <= 5


async def _ws_turn(gw: Gateway, key: str) -> tuple[dict[str, str], list[dict[str, Any]], int]:
    """One websocket turn offering permessage-deflate (as Codex does): (101 headers, events, compress bits)."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(gw.ws_url, headers=_headers(key), compress=15) as sock,
    ):
        await sock.send_json({"type": "response.create", **turn_body("ws")})
        return upgrade_headers(sock), await ws_turn_events(sock), sock.compress


def test_view_off_leaves_ws_frames_and_compression_alone(gw: Gateway) -> None:
    seeded = gw.seed_pool("view-off", ["acct-off1"])
    gw.simulator.client.upsert_account("acct-off1", primary_used_percent=33, secondary_used_percent=11)
    upgrade, events, compress = asyncio.run(_ws_turn(gw, seeded.key))
    assert compress == 15 and "permessage-deflate" in upgrade["sec-websocket-extensions"]
    assert events[-1]["type"] == "response.completed"
    rate_events = [e for e in events if e["type"] == "codex.rate_limits"]
    assert rate_events
    for event in rate_events:  # the serving account's own figures, as the upstream sent them
        assert event["rate_limits"]["primary"]["used_percent"] == 33
        assert event["rate_limits"]["secondary"]["used_percent"] == 11


def test_key_hiding_upstream_quota_sees_its_own_limits(gw: Gateway) -> None:
    seeded = gw.seed_pool("view-hide", ["acct-hide1"])
    holder: dict[str, str] = {}

    def add_key(session: Any) -> None:
        pool = session.get(Pool, seeded.pool_id)
        created = keys.create_key(session, gw.ctx.hasher, pool=pool, label="hidden", actor=SYSTEM, tokens_per_day=1000)
        session.flush()
        session.scalar(select(PoolKey).where(PoolKey.id == created.key.id)).hide_upstream_quota = True
        holder["raw"] = created.raw

    gw.update(add_key)
    raw = holder["raw"]

    def hidden() -> dict[str, Any] | None:
        r = httpx.get(f"{gw.url}/backend-api/wham/usage", headers=_headers(raw), timeout=10)
        if r.status_code != 200:
            return None
        body: dict[str, Any] = r.json()
        return body if body["rate_limit"]["primary_window"]["limit_window_seconds"] == 86400 else None

    usage = wait_until(hidden, timeout=15, what="key-own usage view")
    assert usage is not None and usage["rate_limit"]["primary_window"]["used_percent"] == 0
    r = httpx.post(f"{gw.codex_base}/responses", json=turn_body(), headers=_headers(raw), timeout=30)
    assert r.status_code == 200
    assert r.headers["x-codex-primary-window-minutes"] == "1440"
    assert r.headers["x-codex-secondary-window-minutes"] == "1440"
    assert r.headers["x-codex-primary-used-percent"] == "0"
