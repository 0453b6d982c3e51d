"""Processors of the routes the gateway answers itself (the `gateway_local` cluster, never the upstream):
readiness, pooled usage, the /v1 model list and a key's own usage (self-service). Headers-only and stateless:
one instance serves every stream."""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse

from extproc import responses, v1
from extproc.phases import Attempt, Principal, StreamProcessor
from pooler.budgets import DEFAULT_ZONE, state_payload
from pooler.gateway.snapshot import PoolEntry

if TYPE_CHECKING:
    from extproc.processor import AttemptProcessor


class ReadyProcessor(StreamProcessor):
    """`/readyz`: ready once a snapshot is loaded (`begin` refuses before that). No key."""

    __slots__ = ()

    def request_headers(self, attempt: Attempt) -> ProcessingResponse:
        return responses.json_reply(200, {"status": "ready", "routing_version": attempt.snapshot.version})


class _KeyedLocal(StreamProcessor):
    """A gateway-answered route that needs the Pool key: authenticated like any Codex request, then answered."""

    __slots__ = ("gateway",)

    def __init__(self, gateway: AttemptProcessor) -> None:
        self.gateway = gateway

    def request_headers(self, attempt: Attempt) -> ProcessingResponse:
        refused = self.gateway.authenticate(attempt)
        if refused is not None:
            return refused
        assert attempt.pool is not None and attempt.principal is not None
        return self.answer(attempt, attempt.pool, attempt.principal)

    def answer(self, attempt: Attempt, pool: PoolEntry, principal: Principal) -> ProcessingResponse:
        raise NotImplementedError


class UsageProcessor(_KeyedLocal):
    """Pooled usage (`/backend-api/wham/usage`, `/api/codex/usage`) from every account's windows."""

    __slots__ = ()

    def answer(self, attempt: Attempt, pool: PoolEntry, principal: Principal) -> ProcessingResponse:
        payload = self.gateway.surface.usage_payload(attempt.snapshot, pool, principal.key_id, attempt.now)
        return responses.json_reply(200, payload, attempt.base)


class V1ModelsProcessor(_KeyedLocal):
    """`GET /v1/models[/{id}]`: the models the pool and the key allow."""

    __slots__ = ()

    def answer(self, attempt: Attempt, pool: PoolEntry, principal: Principal) -> ProcessingResponse:
        key = attempt.snapshot.keys.get(principal.key_prefix)
        return v1.models_reply(
            attempt.path, pool.policy.allowed_models, key.allowed_models if key else None, attempt.base
        )


class KeyUsageProcessor(_KeyedLocal):
    """`GET /pooler/usage`: the calling key's own usage, limits and budgets (never another key's, never an
    account's). Answered even when the key is over a limit: that is when its holder asks."""

    __slots__ = ()

    def request_headers(self, attempt: Attempt) -> ProcessingResponse:
        refused = self.gateway.authenticate(attempt, limits=False)
        if refused is not None:
            return refused
        assert attempt.pool is not None and attempt.principal is not None
        return self.answer(attempt, attempt.pool, attempt.principal)

    def answer(self, attempt: Attempt, pool: PoolEntry, principal: Principal) -> ProcessingResponse:
        state, now = self.gateway.state, attempt.now
        key = attempt.snapshot.keys.get(principal.key_prefix)
        payload: dict[str, Any] = {
            "object": "pooler.key_usage",
            "key": {"prefix": principal.key_prefix, "status": key.status if key else None},
            "time_zone": attempt.snapshot.budgets.zones.get(pool.pool_id, DEFAULT_ZONE),
            "generated_at": int(now),
            "limits": {
                "requests_per_minute": key.requests_per_minute if key else None,
                "tokens_per_day": key.tokens_per_day if key else None,
                "tokens_today": state.tokens.used(principal.key_prefix, now),
            },
            "budgets": [state_payload(s, now) for s in state.budgets.states(principal.key_prefix, now)],
            "share": None,
        }
        windows = state.shares.windows(principal.key_prefix, pool, now)
        if windows is not None:
            # Percent of the pool's capacity, never the accounts behind it.
            payload["share"] = {"windows": windows}
        return responses.immediate(
            200, json.dumps(payload, separators=(",", ":")).encode(), attempt.base, NO_STORE, "pooler_answer"
        )


class KeyUsagePageProcessor(StreamProcessor):
    """`GET /pooler/usage.html`: a page that asks for the key in the browser and shows `/pooler/usage`. The key
    stays in the page's memory (a password field, no storage, no cookie); the gateway serves the page without
    a key, and it holds nothing but its own markup."""

    __slots__ = ()

    def request_headers(self, attempt: Attempt) -> ProcessingResponse:
        return responses.immediate(200, KEY_USAGE_PAGE, None, PAGE_HEADERS, "pooler_answer")


NO_STORE = {"cache-control": "no-store"}
PAGE_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "content-security-policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
KEY_USAGE_PAGE = (resources.files("extproc") / "key_usage.html").read_bytes()
