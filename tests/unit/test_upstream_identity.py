"""The upstream header policy (pooler.gateway.upstream_identity): what never goes upstream, and the per-account
installation id."""

from __future__ import annotations

import json
import uuid

import pytest

from pooler.crypto.hashing import KeyedHasher
from pooler.gateway.upstream_identity import (
    INSTALLATION_HEADER,
    TURN_METADATA_HEADER,
    account_installation_id,
    client_installation,
    client_installation_hash,
    forbidden_upstream,
    installation_mutations,
    removed_upstream,
)

HASHER = KeyedHasher(b"p" * 32)
CLIENT = "8f1f0b18-2fb3-4c24-9a9a-000000000001"


@pytest.mark.parametrize(
    "name",
    [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-envoy-external-address",
        "x-envoy-original-host",
        "x-envoy-expected-rq-timeout-ms",
        "x-envoy-attempt-count",
        "x-request-id",
        "via",
        "forwarded",
        "x-real-ip",
        "x-pooler-route",
        "x-pooler-client-ip",
        "x-api-key",
        "x-b3-traceid",
    ],
)
def test_proxy_and_internal_headers_never_go_upstream(name: str) -> None:
    assert forbidden_upstream(name)


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "chatgpt-account-id",
        "originator",
        "user-agent",
        "version",
        "session-id",
        "thread-id",
        "x-client-request-id",
        "x-codex-window-id",
        "x-codex-turn-metadata",
        "x-codex-turn-state",
        "x-codex-beta-features",
        "x-openai-subagent",
        "openai-beta",
        "content-type",
        "accept",
        "content-encoding",
    ],
)
def test_what_a_codex_client_sends_is_kept(name: str) -> None:
    assert not forbidden_upstream(name)


def test_removed_upstream_lists_only_forbidden_names_and_never_pseudo_headers() -> None:
    headers = {":path": "/x", ":authority": "h", "x-forwarded-for": "1.2.3.4", "session-id": "s", "via": "1.1 e"}
    assert removed_upstream(headers) == ["x-forwarded-for", "via"]


def test_installation_id_is_a_uuid_stable_per_account_and_different_between_accounts() -> None:
    client_hash = client_installation_hash(HASHER, CLIENT)
    first = account_installation_id(HASHER, 1, client_hash)
    assert first == account_installation_id(HASHER, 1, client_hash)
    assert first != account_installation_id(HASHER, 2, client_hash)
    assert first != CLIENT and uuid.UUID(first).version == 4 and str(uuid.UUID(first)) == first
    # Another client installation at the same account: another id (clients stay apart too).
    other = account_installation_id(HASHER, 1, client_installation_hash(HASHER, CLIENT.replace("1", "2")))
    assert other != first
    # Domain-separated from the client hash and keyed by the pepper.
    assert client_hash.replace("-", "") not in first.replace("-", "")
    assert account_installation_id(KeyedHasher(b"q" * 32), 1, client_hash) != first


def test_client_installation_comes_from_the_header_or_the_turn_metadata() -> None:
    assert client_installation({INSTALLATION_HEADER: CLIENT}) == CLIENT
    metadata = json.dumps({"turn_id": "t", "installation_id": CLIENT})
    assert client_installation({TURN_METADATA_HEADER: metadata}) == CLIENT
    assert client_installation({TURN_METADATA_HEADER: "not json"}) is None
    assert client_installation({TURN_METADATA_HEADER: "[1]"}) is None
    assert client_installation({}) is None


def test_mutations_rewrite_every_place_the_client_named_its_installation_and_insert_nothing() -> None:
    metadata = json.dumps({"turn_id": "t", "installation_id": CLIENT, "model": "gpt-5.1-codex", "note": "é"})
    out = installation_mutations({INSTALLATION_HEADER: CLIENT, TURN_METADATA_HEADER: metadata}, "new-id")
    assert out[INSTALLATION_HEADER] == "new-id"
    rewritten = json.loads(out[TURN_METADATA_HEADER])
    assert rewritten == {"turn_id": "t", "installation_id": "new-id", "model": "gpt-5.1-codex", "note": "é"}
    assert out[TURN_METADATA_HEADER].isascii() and CLIENT not in out[TURN_METADATA_HEADER]
    # Turn metadata without an installation id, or no header at all: nothing is added.
    assert installation_mutations({TURN_METADATA_HEADER: json.dumps({"model": "m"})}, "new-id") == {}
    assert installation_mutations({}, "new-id") == {}


def test_cookies_never_go_upstream_and_sdk_headers_only_leave_on_sdk_routes() -> None:
    headers = {"cookie": "__cf_bm=x", "x-stainless-lang": "python", "openai-project": "p", "user-agent": "OpenAI/1"}
    assert removed_upstream(headers) == ["cookie"]
    assert removed_upstream(headers, sdk_client=True) == ["cookie", "x-stainless-lang", "openai-project"]
