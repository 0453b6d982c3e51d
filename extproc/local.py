"""Processors of the routes the gateway answers itself (the `gateway_local` cluster, never the upstream):
readiness, pooled usage and the /v1 model list. Headers-only and stateless: one instance serves every stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse

from extproc import responses, v1
from extproc.phases import Attempt, Principal, StreamProcessor
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
