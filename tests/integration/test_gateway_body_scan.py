"""Real Envoy + ext_proc + PostgreSQL + simulator: the Lua request scanner (pooler/envoy_config/lua/request_scan.lua)
gives the ext_proc the top-level `model` and `prompt_cache_key` of JSON bodies - for model allow-lists, stickiness
and the request log - however the body spells or hides them (tests/unit/test_lua_request_scan.py: the same and
more edge cases under LuaJIT)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from pooler.states import Strategy
from tests.support.gateway import Gateway, running_gateway
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration

ALLOWED = "gpt-5.1-codex"


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-body-scan")) as gateway:
        yield gateway


def _post_raw(gw: Gateway, key: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{gw.codex_base}/responses",
        content=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            **(headers or {}),
        },
        timeout=30,
    )


def _body(members: str, prompt: str = "hello") -> bytes:
    """A Codex turn body whose `model` is given as raw top-level JSON `members`, written last (after the
    input), so repeated or escaped keys that a dict cannot express can be sent."""
    fields = {k: v for k, v in turn_body(prompt).items() if k != "model"}
    return (json.dumps(fields)[:-1] + ", " + members + "}").encode()


def _responses_seen(gw: Gateway, since: int) -> list[dict[str, object]]:
    return [e for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"]


def _journal_end(gw: Gateway) -> int:
    journal = gw.simulator.client.journal()
    return int(journal[-1]["seq"]) if journal else 0


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("plain", _body('"model": "gpt-5-pro"')),
        ("repeated", _body('"model": "gpt-5.1-codex", "model": "gpt-5-pro"')),  # the last wins, as upstream
        ("escaped", _body('"model": "gpt-5.1-codex", "mod\\u0065l": "gpt-5-pro"')),  # key spelled with \u
        ("nested", _body('"metadata": {"model": "gpt-5.1-codex"}, "model": "gpt-5-pro"')),  # allowed only nested
        ("late", _body('"model": "gpt-5-pro"', prompt="x" * 200_000)),  # after a 200 KB input
    ],
)
def test_a_model_off_the_allow_list_is_refused_however_it_is_written(gw: Gateway, case: str, body: bytes) -> None:
    seeded = gw.seed_pool(f"allow-{case}", ["acct-m1"], allowed_models=[ALLOWED])
    since = _journal_end(gw)
    response = _post_raw(gw, seeded.key, body)
    assert response.status_code == 403, (response.status_code, response.text[:300])
    assert response.json()["error"]["code"] == "model_not_allowed"
    assert _responses_seen(gw, since) == []


def test_the_allowed_model_passes_even_when_the_body_quotes_other_models(gw: Gateway) -> None:
    seeded = gw.seed_pool("allow-ok", ["acct-m2"], allowed_models=[ALLOWED])
    # The other model names appear only inside strings and an escaped key: the top-level `model` is the allowed one.
    prompt = 'Compare {"model": "gpt-5-pro"} with the \\"model\\" field'
    body = _body('"model": "gpt-5.1-codex", "mod\\\\u0065l": "gpt-5-pro"', prompt=prompt)
    since = _journal_end(gw)
    response = _post_raw(gw, seeded.key, body)
    assert response.status_code == 200, response.text[:300]
    assert [e["account"] for e in _responses_seen(gw, since)] == ["acct-m2"]
    rows = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")
    assert rows[-1].model == ALLOWED  # the last member, after the input


def test_prompt_cache_key_keeps_a_conversation_on_one_account(gw: Gateway) -> None:
    """No session headers: the body's prompt_cache_key is the stickiness key. Round-robin alone would rotate."""
    seeded = gw.seed_pool("pck", ["acct-p1", "acct-p2", "acct-p3"], strategy=Strategy.ROUND_ROBIN)
    since = _journal_end(gw)
    for n in range(6):
        # The key is the last member, after the input, as the Codex CLI sends it.
        body = json.dumps(turn_body(f"turn {n}", prompt_cache_key="conversation-1")).encode()
        assert _post_raw(gw, seeded.key, body).status_code == 200
    sticky = {e["account"] for e in _responses_seen(gw, since)}
    assert len(sticky) == 1, sticky

    since = _journal_end(gw)
    for n in range(6):
        assert _post_raw(gw, seeded.key, json.dumps(turn_body(f"free {n}")).encode()).status_code == 200
    rotated = {e["account"] for e in _responses_seen(gw, since)}
    assert len(rotated) == 3, rotated  # the control: without the key the strategy spreads the requests
