"""The MCP endpoint with the official SDK's Streamable HTTP client against a real `python -m mcp_server`.

Lists pools and request logs with an operator token; rejected without a token, with a bad or revoked one, and
with either gate off. Payloads are scanned for the secrets the database holds.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy.orm import Session, sessionmaker

from pooler.audit import SYSTEM
from pooler.crypto.hashing import KeyedHasher
from pooler.db import make_engine, make_session_factory
from pooler.migrate import upgrade
from pooler.models import Operator, Pool, PoolKey, PoolSettings, RequestLog, UpstreamAccount
from pooler.services import mcp_access
from pooler.settings import set_setting
from tests.support.processes import ManagedProcess, free_port, wait_until

PEPPER = os.urandom(32)
KEY_HASH_CANARY = "feed" * 16
EMAIL_CANARY = "mcp.canary@private-mail.test"


@dataclass
class McpStack:
    url: str
    factory: sessionmaker[Session]
    token: str
    token_prefix: str
    process: ManagedProcess


def _seed(factory: sessionmaker[Session]) -> str:
    now = dt.datetime.now(dt.UTC)
    with factory.begin() as s:
        s.add(Operator(username="alice", password_hash="x", role="viewer"))
        pool = Pool(name="team-mcp", label="Team MCP", settings=PoolSettings())
        s.add(pool)
        s.flush()
        s.add(
            UpstreamAccount(
                label="mcp-acct",
                chatgpt_account_id="acct-mcp-private",
                email=EMAIL_CANARY,
                access_token_expires_at=now + dt.timedelta(days=1),
            )
        )
        s.add(PoolKey(pool_id=pool.id, label="ci", prefix="cpk_mcp00001", key_hash=KEY_HASH_CANARY))
        for i, status in enumerate((200, 200, 429, 401)):
            s.add(
                RequestLog(
                    created_at=now - dt.timedelta(seconds=10 - i),
                    request_id=f"mcp-{i}",
                    pool_id=pool.id,
                    key_prefix="cpk_mcp00001",
                    route_family="responses",
                    method="POST",
                    model="gpt-5-codex",
                    status_code=status,
                )
            )
        created = mcp_access.create_token(s, KeyedHasher(PEPPER), "alice", "tests", actor=SYSTEM)
    return created.raw


@pytest.fixture(scope="module")
def mcp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpStack]:
    data_dir: Path = tmp_path_factory.mktemp("mcp")
    url = f"sqlite:///{data_dir / 'pooler.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    token = _seed(factory)
    port = free_port()
    env = {
        "DATABASE_URL": url,
        "POOLER_DATA_DIR": str(data_dir),
        "POOLER_SECRET_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
        "POOLER_KEY_PEPPER": base64.b64encode(PEPPER).decode(),
        "POOLER_MCP_PORT": str(port),
    }
    proc = ManagedProcess("mcp", ["python", "-m", "mcp_server"], data_dir / "mcp.log", env=env).start()
    try:
        wait_until(lambda: "pooler-mcp ready" in proc.log_text() or not proc.alive(), 20, what="mcp ready")
        assert proc.alive(), proc.log_text()
        yield McpStack(f"http://127.0.0.1:{port}/mcp", factory, token, mcp_access.token_prefix(token), proc)
    finally:
        proc.stop()
        engine.dispose()
    log = proc.log_text()
    assert token not in log and token.split("_", 2)[2] not in log  # the token never reaches the log


def _gates(stack: McpStack, *, instance: bool, operator: bool) -> None:
    with stack.factory.begin() as s:
        set_setting(s, "mcp_enabled", instance, actor=SYSTEM)
        mcp_access.set_operator_gate(s, "alice", operator, actor=SYSTEM)


def _raw_post(stack: McpStack, token: str | None) -> httpx.Response:
    """One JSON-RPC call without the SDK, to see the HTTP status the gate answers with."""
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    return httpx.post(stack.url, json=body, headers=headers, timeout=10)


async def _call(stack: McpStack, token: str | None, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        Client(streamable_http_client(stack.url, http_client=http)) as client,
    ):
        tools = await client.list_tools()
        out: list[Any] = [sorted(t.name for t in tools.tools)]
        for name, args in calls:
            result = await client.call_tool(name, args)
            assert not result.is_error, result
            out.append(result.structured_content)
        return out


def run_client(stack: McpStack, token: str | None, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async def main() -> list[Any]:
        with anyio.fail_after(30):
            return await _call(stack, token, calls)

    return anyio.run(main)


def _unwrap(structured: Any) -> Any:
    # Tools returning lists come back wrapped as {"result": [...]} in structured content.
    return structured["result"] if isinstance(structured, dict) and set(structured) == {"result"} else structured


def test_lists_pools_and_request_logs_with_a_token(mcp_stack: McpStack) -> None:
    _gates(mcp_stack, instance=True, operator=True)
    names, pools, logs, keys, status = run_client(
        mcp_stack,
        mcp_stack.token,
        [
            ("list_pools", {}),
            ("list_request_logs", {"pool": "team-mcp", "limit": 10}),
            ("list_keys", {}),
            ("service_status", {}),
        ],
    )
    assert {"list_pools", "get_pool", "list_accounts", "get_account", "list_keys", "list_request_logs"} <= set(names)
    assert {"list_audit_events", "service_status"} <= set(names)
    pool = next(p for p in _unwrap(pools) if p["name"] == "team-mcp")
    assert pool["label"] == "Team MCP" and pool["keys"] == 1
    rows = _unwrap(logs)
    assert [r["status_code"] for r in rows] == [401, 429, 200, 200]  # newest first
    assert all(r["key_prefix"] == "cpk_mcp00001" and r["pool"] == "team-mcp" for r in rows)
    assert _unwrap(keys)[0]["prefix"] == "cpk_mcp00001"
    assert status["mcp_enabled"] is True
    blob = json.dumps([pools, logs, keys, status])
    for secret in (KEY_HASH_CANARY, EMAIL_CANARY, "acct-mcp-private", mcp_stack.token):
        assert secret not in blob


def test_account_tool_returns_metadata_without_identifiers(mcp_stack: McpStack) -> None:
    _gates(mcp_stack, instance=True, operator=True)
    _, accounts = run_client(mcp_stack, mcp_stack.token, [("list_accounts", {})])
    account = _unwrap(accounts)[0]
    assert account["label"] == "mcp-acct" and account["state"] == "active"
    assert "email" not in account and "chatgpt_account_id" not in account


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [(None, 401, "missing_token"), ("mcp_deadbeef_nope", 401, "invalid_token"), ("garbage", 401, "invalid_token")],
)
def test_rejected_without_a_valid_token(mcp_stack: McpStack, token: str | None, status: int, code: str) -> None:
    _gates(mcp_stack, instance=True, operator=True)
    response = _raw_post(mcp_stack, token)
    assert response.status_code == status
    assert response.json()["error"]["message"] == code
    assert response.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(Exception):  # noqa: B017 - the SDK surfaces the refusal as its own error types
        run_client(mcp_stack, token, [])


def test_a_wrong_secret_with_a_real_prefix_is_rejected(mcp_stack: McpStack) -> None:
    _gates(mcp_stack, instance=True, operator=True)
    forged = mcp_stack.token_prefix + "_" + "A" * 43
    assert _raw_post(mcp_stack, forged).status_code == 401
    for _ in range(20):  # secrets containing "_" still authenticate (the prefix is split off from the left)
        with mcp_stack.factory.begin() as s:
            created = mcp_access.create_token(s, KeyedHasher(PEPPER), "alice", "many", actor=SYSTEM)
        assert _raw_post(mcp_stack, created.raw).status_code == 200


@pytest.mark.parametrize(
    ("instance", "operator", "code"),
    [(False, True, "mcp_disabled"), (True, False, "mcp_disabled_for_operator"), (False, False, "mcp_disabled")],
)
def test_rejected_with_a_gate_off(mcp_stack: McpStack, instance: bool, operator: bool, code: str) -> None:
    _gates(mcp_stack, instance=instance, operator=operator)
    response = _raw_post(mcp_stack, mcp_stack.token)
    assert response.status_code == 403 and response.json()["error"]["message"] == code
    with pytest.raises(Exception):  # noqa: B017
        run_client(mcp_stack, mcp_stack.token, [])


def test_revoked_token_is_rejected_at_once(mcp_stack: McpStack) -> None:
    _gates(mcp_stack, instance=True, operator=True)
    with mcp_stack.factory.begin() as s:
        extra = mcp_access.create_token(s, KeyedHasher(PEPPER), "alice", "short-lived", actor=SYSTEM)
    assert _raw_post(mcp_stack, extra.raw).status_code == 200
    with mcp_stack.factory.begin() as s:
        mcp_access.revoke_token(s, extra.prefix, actor=SYSTEM)
    response = _raw_post(mcp_stack, extra.raw)
    assert response.status_code == 401 and response.json()["error"]["message"] == "revoked_token"
