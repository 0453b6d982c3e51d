"""Processors of the routes the gateway answers itself (the `gateway_local` cluster, never the upstream):
readiness, pooled usage and the /v1 model list. Headers-only and stateless: one instance serves every stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse

from extproc import responses, v1
from extproc.phases import Attempt, StreamProcessor

if TYPE_CHECKING:
    from extproc.processor import AttemptProcessor


class ReadyProcessor(StreamProcessor):
    """`/readyz`: ready once a snapshot is loaded (`begin` refuses before that). No key."""

    __slots__ = ()

    def request_headers(self, attempt: Attempt) -> ProcessingResponse:
        return responses.json_reply(200, {"status": "ready", "routing_version": attempt.snapshot.version})


class UsageProcessor(StreamProcessor):
    """Pooled usage (`/backend-api/wham/usage`, `/api/codex/usage`) from every account's windows, after the
    key was authenticated like any Codex request."""

    __slots__ = ("gateway",)

    def __init__(self, gateway: AttemptProcessor) -> None:
        self.gateway = gateway

    def request_headers(self, attempt: Attempt) -> ProcessingResponse:
        refused = self.gateway.authenticate(attempt)
        if refused is not None:
            return refused
        assert attempt.pool is not None and attempt.principal is not None
        payload = self.gateway.surface.usage_payload(
            attempt.snapshot, attempt.pool, attempt.principal.key_id, attempt.now
        )
        return responses.json_reply(200, payload, attempt.base)


class V1ModelsProcessor(StreamProcessor):
    """`GET /v1/models[/{id}]`: the models the pool and the key allow, after the key was authenticated."""

    __slots__ = ("gateway",)

    def __init__(self, gateway: AttemptProcessor) -> None:
        self.gateway = gateway

    def request_headers(self, attempt: Attempt) -> ProcessingResponse:
        refused = self.gateway.authenticate(attempt)
        if refused is not None:
            return refused
        assert attempt.pool is not None and attempt.principal is not None
        key = attempt.snapshot.keys.get(attempt.principal.key_prefix)
        return v1.models_reply(
            attempt.path, attempt.pool.policy.allowed_models, key.allowed_models if key else None, attempt.base
        )
