"""The real Codex CLI (npm @openai/codex, pinned by `make codex-cli`) -> Envoy gateway -> simulator, over HTTP SSE
and the websocket transport, with the Pool key `pooler up --demo` printed.

The upstream must see an account token and never the Pool key; the request log must name the account and carry
the token counts.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from pooler.models import RequestLog, UpstreamAccount
from pooler.simulator.client import SimulatorClient
from tests.support.codex_cli import (
    CODEX_BIN,
    CODEX_PREV_BIN,
    MODEL,
    pinned_versions,
    run_codex_exec,
    write_codex_config,
)
from tests.support.databases import psycopg_url, throwaway_postgres_database
from tests.support.pooler_up import PoolerUp, pooler_up_demo
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e
ANSWER = "Gateway answer 4711 from {model}."
KEY_ENV = "POOLER_API_KEY"


def run_codex(
    base_url: str, key: str, tmp_path: Path, websockets: bool, codex_bin: Path = CODEX_BIN
) -> subprocess.CompletedProcess[str]:
    """The CLI with the gateway as its only provider (what `pooler up --demo` tells an operator to paste)."""
    home = write_codex_config(
        tmp_path / "codex-home",
        provider="pooler",
        provider_name="Codex Pooler",
        base_url=base_url,
        env_key=KEY_ENV,
        websockets=websockets,
    )
    return run_codex_exec(tmp_path, home, KEY_ENV, key, timeout=120, codex_bin=codex_bin)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolerUp]:
    """`pooler up --demo` on SQLite (what `make run` gets) and on a throwaway PostgreSQL database."""
    with ExitStack() as stack:
        db_url = stack.enter_context(throwaway_postgres_database("pooler_e2e")) if request.param == "postgres" else None
        yield stack.enter_context(pooler_up_demo(tmp_path_factory.mktemp("gateway"), database_url=db_url))


def log_rows(up: PoolerUp) -> list[dict[str, Any]]:
    url = up.database_url
    engine = create_engine(psycopg_url(url) if url.startswith("postgresql") else url)
    try:
        with engine.connect() as conn:
            result = conn.execute(
                select(
                    RequestLog.id,
                    RequestLog.route_family,
                    RequestLog.status_code,
                    RequestLog.model,
                    RequestLog.key_prefix,
                    RequestLog.input_tokens,
                    RequestLog.output_tokens,
                    RequestLog.total_tokens,
                    UpstreamAccount.chatgpt_account_id,
                )
                .join(UpstreamAccount, RequestLog.account_id == UpstreamAccount.id, isouter=True)
                .order_by(RequestLog.id)
            )
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


@pytest.mark.parametrize("websockets", [False, True], ids=["http-sse", "websocket"])
def test_codex_exec_through_the_gateway(gateway: PoolerUp, tmp_path: Path, websockets: bool) -> None:
    up = gateway
    with SimulatorClient(up.simulator_url) as sim:
        sim.configure(text=ANSWER)
        since = max((e["seq"] for e in sim.journal()), default=0)
        logs_before = {row["id"] for row in log_rows(up)}

        result = run_codex(up.codex_base_url, up.key, tmp_path, websockets)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert ANSWER.format(model=MODEL) in result.stdout

        entries = [e for e in sim.journal(since=since) if e["route"] == "responses"]
        turns = [e for e in entries if e.get("usage") and e["usage"]["output_tokens"]]
        assert len(turns) == 1, entries
        turn = turns[0]
        assert turn["model"] == MODEL and turn["account"] in {"acct-1", "acct-2", "acct-3"}
        # The upstream saw account tokens only: never the Pool key, in any request of this run.
        authorizations = {e["authorization"] for e in sim.journal(since=since)}
        assert all(a and a.startswith("Bearer ey") for a in authorizations), authorizations
        assert not any(up.key in (a or "") for a in authorizations)
        # Every HTTP request (the upgrade included; websocket frames carry no headers) names the chosen account.
        http = [e for e in entries if e["method"] != "WS"]
        assert http and all(e["headers"].get("chatgpt-account-id") == e["account"] for e in http)
        if websockets:
            upgrades = [e for e in entries if e["transport"] == "websocket" and e["method"] == "GET"]
            assert upgrades and upgrades[0]["status"] == 101
            assert upgrades[0]["headers"]["openai-beta"].startswith("responses_websockets=")
        else:
            assert [e["method"] for e in entries] == ["POST"]

    family = "responses_ws" if websockets else "responses"

    def new_row() -> dict[str, Any] | None:
        rows = [r for r in log_rows(up) if r["id"] not in logs_before and r["route_family"] == family]
        return rows[-1] if rows else None

    row = wait_until(new_row, timeout=20, what=f"a {family} request log row")
    assert isinstance(row, dict)
    assert row["chatgpt_account_id"] == turn["account"]
    assert row["key_prefix"] and up.key.startswith(row["key_prefix"])
    if websockets:
        # Per-turn token usage is not visible to a headers-only websocket path (a documented gap): the row
        # names the account and the upgrade's status.
        assert row["status_code"] == 101
    else:
        usage = turn["usage"]
        assert row["status_code"] == 200 and row["model"] == MODEL
        assert row["input_tokens"] == usage["input_tokens"]
        assert row["output_tokens"] == usage["output_tokens"]
        assert row["total_tokens"] == usage["total_tokens"]


@pytest.mark.parametrize(
    ("pin", "codex_bin"),
    [("CODEX_VERSION", CODEX_BIN), ("CODEX_PREV_VERSION", CODEX_PREV_BIN)],
    ids=["current-pin", "previous-pin"],
)
def test_both_pinned_codex_versions_take_an_http_turn(
    gateway: PoolerUp, tmp_path: Path, pin: str, codex_bin: Path
) -> None:
    """Users upgrade the CLI at their own pace: the newest pin and the one before it both work."""
    version = subprocess.run([str(codex_bin), "--version"], capture_output=True, text=True, timeout=30, check=True)
    assert version.stdout.split()[-1] == pinned_versions()[pin], (pin, version.stdout)
    up = gateway
    with SimulatorClient(up.simulator_url) as sim:
        sim.configure(text=ANSWER)
        since = max((e["seq"] for e in sim.journal()), default=0)
        result = run_codex(up.codex_base_url, up.key, tmp_path, websockets=False, codex_bin=codex_bin)
        assert result.returncode == 0, result.stdout + result.stderr
        assert ANSWER.format(model=MODEL) in result.stdout
        turns = [e for e in sim.journal(since=since) if e["route"] == "responses" and e.get("usage")]
        assert len(turns) == 1 and turns[0]["model"] == MODEL, turns
        assert turns[0]["authorization"].startswith("Bearer ey") and up.key not in turns[0]["authorization"]
