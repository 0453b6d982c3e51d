"""What an upstream attempt's request headers may carry: the header policy of the gateway's upstream side.

The upstream must see a careful Codex client: the headers a Codex client sends, the account's bearer and
`ChatGPT-Account-Id`, and nothing that reveals the gateway, the client's network or another account. Pure
functions over plain data; the ext_proc applies them on every attempt (extproc/processor.py), which covers the
bundled Envoy, a team's own Envoy (fragments) and Istio alike, because the ext_proc sits on every cluster the
route table renders.

- `forbidden_upstream(name)`: proxy and internal headers removed before the upstream - Envoy's own
  (`x-envoy-*`, `x-request-id`), forwarding headers any proxy in front may add (`x-forwarded-*`, `forwarded`,
  `via`, `x-real-ip`, ...), tracing headers a proxy (never a Codex client) adds, and the gateway's own
  (`x-pooler-*`, `x-api-key`).
- Per-account installation id: Codex sends its installation id (a UUID made once per installation) in the
  `x-codex-installation-id` header on some requests and inside the `x-codex-turn-metadata` JSON
  (`installation_id`). Passed on as it is, one client's id would reach every account of the pool and link them.
  Each account instead sees `HMAC(pepper, purpose, account ∥ HMAC(pepper, client id))` shaped as a UUID: stable
  for one (account, client installation), different at every account. Only rewritten where the client sent
  one, never inserted (a request a Codex client sends without it must not gain it).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping

from pooler.crypto.hashing import KeyedHasher
from pooler.gateway_contract import INTERNAL_HEADER_PREFIX

INSTALLATION_HEADER = "x-codex-installation-id"
TURN_METADATA_HEADER = "x-codex-turn-metadata"
TURN_METADATA_INSTALLATION_FIELD = "installation_id"
CLIENT_INSTALLATION_PURPOSE = "client-installation"
"""Keyed hash of the client's own installation id: all the gateway keeps of it (routing metadata)."""
ACCOUNT_INSTALLATION_PURPOSE = "upstream-installation"
"""The per-account installation id derived from that hash (a separate domain, so neither reveals the other)."""
MAX_TURN_METADATA = 16384
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

FORBIDDEN_PREFIXES = (
    "x-envoy-",  # Envoy's own (original path, external address, attempt count, timeouts...)
    "x-forwarded-",  # for, proto, host, port, client-cert... from Envoy or any proxy in front of it
    INTERNAL_HEADER_PREFIX,  # the gateway's internal headers (route row, client address)
    "x-b3-",  # Zipkin tracing a team's Envoy or mesh adds
    "x-amzn-",  # AWS load balancers' trace and client headers
)
FORBIDDEN_NAMES = frozenset(
    (
        "x-request-id",  # Envoy's generated id; the gateway keeps it internally (routing metadata, access log)
        "via",
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-original-forwarded-for",
        "x-cloud-trace-context",
        "b3",
        "x-ot-span-context",
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
        "x-api-key",  # a Pool key sent that way
        # Cookies a client sends back were set by an answer of whichever account served it before: forwarded,
        # they would link that account to this one. (The gateway's own calls keep cookies per account:
        # pooler.codex_client.)
        "cookie",
    )
)
SDK_PREFIXES = ("x-stainless-",)
"""An OpenAI SDK's own headers (language, runtime, OS, retry count): on the /v1 routes the gateway is the Codex
client, so these go and the Codex identity (pooler.codex_client) takes their place."""
SDK_NAMES = frozenset(("openai-organization", "openai-project"))


def forbidden_upstream(name: str) -> bool:
    """True for a header (lower-case name, as Envoy gives them) the upstream must never receive."""
    return name in FORBIDDEN_NAMES or name.startswith(FORBIDDEN_PREFIXES)


def sdk_header(name: str) -> bool:
    return name in SDK_NAMES or name.startswith(SDK_PREFIXES)


def removed_upstream(headers: Mapping[str, str], sdk_client: bool = False) -> list[str]:
    """The names of `headers` to remove before the upstream (pseudo-headers are never touched); `sdk_client`:
    a /v1 route, whose client's SDK headers go too."""
    return [
        name for name in headers if name[:1] != ":" and (forbidden_upstream(name) or (sdk_client and sdk_header(name)))
    ]


def client_installation_hash(hasher: KeyedHasher, installation_id: str) -> str:
    """The keyed hash of a client's installation id (what later attempts of the request derive from)."""
    return hasher.hexdigest(CLIENT_INSTALLATION_PURPOSE, installation_id.strip())


def account_installation_id(hasher: KeyedHasher, account_id: int, client_hash: str) -> str:
    """The installation id one account sees for one client installation: a UUID (version 4 layout, like the
    ids Codex makes), stable for the pair and unrelated between accounts."""
    digest = bytes.fromhex(hasher.hexdigest(ACCOUNT_INSTALLATION_PURPOSE, f"{account_id}\x00{client_hash}"))
    return str(uuid.UUID(bytes=digest[:16], version=4))


def turn_metadata_installation(value: str | None) -> str | None:
    """The `installation_id` inside Codex's `x-codex-turn-metadata` JSON, if any."""
    parsed = _turn_metadata(value)
    found = parsed.get(TURN_METADATA_INSTALLATION_FIELD) if parsed is not None else None
    return found if isinstance(found, str) and found else None


def client_installation(headers: Mapping[str, str]) -> str | None:
    """The client's installation id: the header, else the one in the turn metadata; None when it sent none."""
    return headers.get(INSTALLATION_HEADER) or turn_metadata_installation(headers.get(TURN_METADATA_HEADER))


def installation_mutations(headers: Mapping[str, str], installation_id: str) -> dict[str, str]:
    """The headers to overwrite so that every place the client named its installation names `installation_id`
    instead; empty when the client named none (never inserted)."""
    out: dict[str, str] = {}
    if headers.get(INSTALLATION_HEADER):
        out[INSTALLATION_HEADER] = installation_id
    raw = headers.get(TURN_METADATA_HEADER)
    parsed = _turn_metadata(raw)
    client_id = parsed.get(TURN_METADATA_INSTALLATION_FIELD) if parsed is not None else None
    if raw is not None and parsed is not None and isinstance(client_id, str):
        if _PLAIN_ID.match(client_id) and _PLAIN_ID.match(installation_id):
            # The id as a JSON string needs no escaping: replaced in place, the header keeps the client's exact
            # formatting (and the id goes wherever else the client repeated it in this header).
            out[TURN_METADATA_HEADER] = raw.replace(f'"{client_id}"', f'"{installation_id}"')
        else:
            parsed[TURN_METADATA_INSTALLATION_FIELD] = installation_id
            # Codex writes this header as compact ASCII JSON (non-ASCII escaped); keep that shape.
            out[TURN_METADATA_HEADER] = json.dumps(parsed, separators=(",", ":"), ensure_ascii=True)
    return out


def _turn_metadata(value: str | None) -> dict[str, object] | None:
    if not value or len(value) > MAX_TURN_METADATA:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
