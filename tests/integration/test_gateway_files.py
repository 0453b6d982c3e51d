"""File affinity through the real data path (Envoy + ext_proc + PostgreSQL + simulator).

The simulator keeps files per account (finalize from another account is a 404), so a 200 proves the pin."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from pooler.models import PoolAssignment
from pooler.states import AssignmentStatus
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("files")) as gateway:
        yield gateway


def _auth(seeded: SeededPool) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.key}"}


def _last_account(gw: Gateway, route: str, since: int) -> str:
    entries = [e for e in gw.simulator.client.journal(since=since) if e["route"] == route]
    assert entries, route
    return str(entries[-1]["account"])


def _seq(gw: Gateway) -> int:
    journal = gw.simulator.client.journal()
    return int(journal[-1]["seq"]) if journal else 0


def _create(gw: Gateway, seeded: SeededPool, name: str = "notes.txt") -> httpx.Response:
    return httpx.post(
        f"{gw.url}/backend-api/files",
        json={"file_name": name, "file_size": 12, "use_case": "codex"},
        headers=_auth(seeded),
        timeout=20,
    )


def test_file_then_responses_land_on_the_creating_account_while_other_traffic_spreads(gw: Gateway) -> None:
    seeded = gw.seed_pool("files-affinity", ["acct-f1", "acct-f2", "acct-f3"], strategy="round-robin")
    creators: set[str] = set()
    for i in range(20):
        since = _seq(gw)
        created = _create(gw, seeded, f"f{i}.txt")
        assert created.status_code == 200, created.text
        file_id = created.json()["file_id"]
        assert created.json()["upload_url"].startswith("https://")
        creator = _last_account(gw, "files", since)
        creators.add(creator)
        finalized = httpx.post(f"{gw.url}/backend-api/files/{file_id}/uploaded", headers=_auth(seeded), timeout=20)
        assert finalized.status_code == 200, finalized.text  # 404 from any other account
        assert _last_account(gw, "files", since) == creator
        body = turn_body(
            "summarise the file",
            input=[
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "read"}, {"type": "input_file", "file_id": file_id}],
                }
            ],
        )
        reply = httpx.post(f"{gw.codex_base}/responses", json=body, headers=_auth(seeded), timeout=30)
        assert reply.status_code == 200, reply.text
        assert _last_account(gw, "responses", since) == creator, f"try {i}"
    assert len(creators) > 1  # creates themselves spread (round-robin)
    others: set[str] = set()
    for _ in range(6):
        since = _seq(gw)
        plain = httpx.post(f"{gw.codex_base}/responses", json=turn_body("plain"), headers=_auth(seeded), timeout=30)
        assert plain.status_code == 200
        others.add(_last_account(gw, "responses", since))
    assert len(others) == 3


def test_unroutable_creator_gives_file_account_unavailable(gw: Gateway) -> None:
    seeded = gw.seed_pool("files-gone", ["acct-g1", "acct-g2"])
    since = _seq(gw)
    file_id = _create(gw, seeded).json()["file_id"]
    creator = seeded.accounts[_last_account(gw, "files", since)]

    def pause(session: object) -> None:
        row = (
            session.query(PoolAssignment)  # type: ignore[attr-defined]
            .filter_by(pool_id=seeded.pool_id, account_id=creator)
            .one()
        )
        row.status = AssignmentStatus.PAUSED

    gw.update(pause)

    def answered() -> httpx.Response | None:
        r = httpx.post(f"{gw.url}/backend-api/files/{file_id}/uploaded", headers=_auth(seeded), timeout=20)
        return r if r.status_code == 409 else None

    r = wait_until(answered, timeout=15, what="file_account_unavailable")
    assert r.json()["error"]["code"] == "file_account_unavailable"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "base",
    ["http://files.example.com/u", "https://127.0.0.1/u", "https://10.1.2.3/u", "https://user:pw@files.example.com/u"],
)
def test_unsafe_upload_urls_are_refused(gw: Gateway, base: str) -> None:
    # Unique: the integration modules share one database per run, and two URLs once hashed to the same name.
    seeded = gw.seed_pool(f"files-url-{uuid.uuid4().hex[:12]}", ["acct-u1"])
    httpx.post(f"{gw.simulator.base_url}/_sim/files/upload_base", json={"base": base}, timeout=5)
    try:
        r = _create(gw, seeded)
    finally:
        httpx.post(f"{gw.simulator.base_url}/_sim/files/upload_base", json={"base": ""}, timeout=5)
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "invalid_upload_url"
    assert base.split("/")[2] not in r.text
    again = _create(gw, seeded)  # the account was not demoted or limited by the refusal
    assert again.status_code == 200, again.text


def test_v1_files_metadata_flow_is_pinned(gw: Gateway) -> None:
    seeded = gw.seed_pool("files-v1", ["acct-v1a", "acct-v1b"], strategy="round-robin")
    for _ in range(4):
        since = _seq(gw)
        r = httpx.post(
            f"{gw.url}/v1/files",
            json={"filename": "data.csv", "bytes": 42, "purpose": "user_data"},
            headers=_auth(seeded),
            timeout=20,
        )
        assert r.status_code == 200, r.text
        obj = r.json()
        assert obj["object"] == "file" and obj["filename"] == "data.csv" and obj["bytes"] == 42
        assert obj["upload_url"].startswith("https://")
        creator = _last_account(gw, "files", since)
        done = httpx.post(f"{gw.url}/backend-api/files/{obj['id']}/uploaded", headers=_auth(seeded), timeout=20)
        assert done.status_code == 200, done.text
        assert _last_account(gw, "files", since) == creator
    multipart = httpx.post(
        f"{gw.url}/v1/files", files={"file": ("a.txt", b"hello")}, data={"purpose": "x"}, headers=_auth(seeded)
    )
    assert multipart.status_code == 400 and multipart.json()["error"]["code"] == "unsupported_upload"


def test_a_file_account_at_its_stream_cap_says_retry_shortly_not_upload_again(gw: Gateway) -> None:
    seeded = gw.seed_pool("files-busy", ["acct-b1", "acct-b2"], max_concurrency_per_account=1)
    file_id = _create(gw, seeded).json()["file_id"]
    body = turn_body(
        "read it",
        input=[
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "read"}, {"type": "input_file", "file_id": file_id}],
            }
        ],
    )
    # The create call held the account's only slot until its access-log entry arrived: wait for the release.
    idle = [f'pooler_account_inflight_streams{{account="{a}"}} 0.0' for a in seeded.accounts]
    wait_until(lambda: all(line in gw.metrics_text() for line in idle), timeout=15, what="slots released")
    gw.simulator.client.configure(token_rate=4.0)  # a turn of a few seconds holds the file account's only slot
    try:
        with httpx.stream("POST", f"{gw.codex_base}/responses", json=body, headers=_auth(seeded), timeout=30) as held:
            assert held.status_code == 200
            busy = httpx.post(f"{gw.codex_base}/responses", json=body, headers=_auth(seeded), timeout=30)
            for _ in held.iter_bytes():
                pass
    finally:
        gw.simulator.client.configure(token_rate=0.0)
    # The file's account is busy, not gone: retry shortly (a 409 would tell the client to upload it again).
    assert busy.status_code == 503, busy.text
    assert busy.json()["error"]["code"] == "server_is_overloaded"
    assert int(busy.headers["retry-after"]) >= 1
