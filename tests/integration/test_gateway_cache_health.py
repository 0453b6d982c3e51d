"""Prompt-cache health through the real data plane: a websocket connection's turns have token counts in the
request log (Envoy's Lua counter, no Python per frame)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import Gateway, running_gateway
from tests.support.simulator import turn_body, ws_turn_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-cache-health")) as gateway:
        yield gateway


def test_a_websocket_connection_logs_the_tokens_of_all_its_turns(gw: Gateway) -> None:
    seeded = gw.seed_pool("ws-tokens", ["acct-wt1"])
    headers = {"Authorization": f"Bearer {seeded.key}", "session-id": "ws-tokens-1"}

    async def run() -> list[dict[str, Any]]:
        usages = []
        async with aiohttp.ClientSession() as session, session.ws_connect(gw.ws_url, headers=headers) as ws:
            for prompt in ("first turn", "second turn, a little longer", "third"):
                await ws.send_json({"type": "response.create", **turn_body(prompt, prompt_cache_key="ws-tokens-1")})
                events = await ws_turn_events(ws)
                assert events[-1]["type"] == "response.completed", events[-1]
                usages.append(events[-1]["response"]["usage"])
        return usages

    usages = asyncio.run(run())
    row = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses_ws")[-1]
    assert row.input_tokens == sum(u["input_tokens"] for u in usages) > 0
    assert row.cached_tokens == sum(u["input_tokens_details"]["cached_tokens"] for u in usages)
    assert row.cached_tokens > 0  # the later turns hit the account's prompt cache
    assert row.output_tokens == sum(u["output_tokens"] for u in usages)
    assert row.total_tokens == sum(u["total_tokens"] for u in usages)
