"""Codex `auth.json` files with tokens the simulator honours (minted offline with the shared secret)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pooler.simulator.tokens import ACCESS_TTL_SECONDS, Identity, issue_bundle


def make_auth_json(
    ident: Identity, secret: str, now: float, *, expired: bool = False, access_ttl: float = ACCESS_TTL_SECONDS
) -> dict[str, Any]:
    # An expired file is minted as if it had been issued long ago, so both tokens and last_refresh are stale.
    issued = now - access_ttl - 3600 if expired else now
    bundle = issue_bundle(ident.filled(), secret, issued, access_ttl)
    last_refresh = datetime.fromtimestamp(issued, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {**bundle.as_dict(), "account_id": ident.account_id},
        "last_refresh": last_refresh,
    }
