"""Real Envoy + ext_proc + PostgreSQL + simulator, then the admin: a request that failed over shows its chain on
the detail page, and neither that page nor the CSV export ever contains the prompt or the output."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx
import pytest

from admin_flask import create_app
from pooler.services import operators as ops
from tests.support.admin import PASSWORD, Auth
from tests.support.gateway import Gateway, running_gateway
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration
PROMPT_CANARY = "canary-prompt-7d1e0b"


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-logs")) as gateway:
        yield gateway


def test_detail_and_export_show_the_failover_chain_never_the_prompt(gw: Gateway) -> None:
    seeded = gw.seed_pool("logs-export", ["acct-lx1", "acct-lx2"])
    gw.simulator.client.add_fault("status", status=429, count=1, body={"error": {"code": "usage_limit_reached"}})
    response = httpx.post(
        f"{gw.codex_base}/responses",
        json=turn_body(PROMPT_CANARY),
        headers={"Authorization": f"Bearer {seeded.key}", "Accept": "text/event-stream"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    row = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")[-1]
    assert row.attempt_count == 2

    with gw.ctx.session_factory.begin() as session:
        ops.create_operator(session, username="logs-owner", password=PASSWORD, role="owner")
    client = create_app({"POOLER_CONTEXT": gw.ctx, "TESTING": True}).test_client()
    Auth(client, gw.ctx).login("logs-owner")

    detail = client.get(f"/admin/logs/{row.id}").get_data(as_text=True)
    assert "failed over" in detail and "acct-lx1" in detail and "acct-lx2" in detail
    assert PROMPT_CANARY not in detail

    export = client.get(f"/admin/logs/export.csv?pool={seeded.pool_id}")
    text = export.get_data(as_text=True)
    assert export.status_code == 200 and PROMPT_CANARY not in text
    rows = {r["request_id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows[str(row.request_id)]["key_prefix"] == seeded.key_prefix
    assert rows[str(row.request_id)]["attempts"] == "2"
    assert seeded.key not in text
