"""Pure builders of ext_proc ProcessingResponses (upb classes from xds-protos, the hot path).

User-facing error bodies are OpenAI-shaped (`{"error": {"message", "type", "param", "code"}}`) with a code
from a fixed allow-list; the Codex 429 is `{"error": {"type": "usage_limit_reached", ...}}` like the upstream's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ImmediateResponse,
    ProcessingResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct

from pooler.gateway_contract import NS_ROUTING

OVERWRITE = HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD

# code -> (status, type, message). The only messages a client ever sees from the gateway.
ERRORS: dict[str, tuple[int, str, str]] = {
    "invalid_api_key": (401, "invalid_request_error", "Invalid Pool API key."),
    # Its own code, so a client (or its operator) sees at once that nothing was sent rather than a wrong key.
    "missing_api_key": (
        401,
        "invalid_request_error",
        "Missing Pool API key: send it as `Authorization: Bearer <key>` or in the `x-api-key` header.",
    ),
    "key_revoked": (403, "invalid_request_error", "This Pool API key has been revoked."),
    "key_paused": (403, "invalid_request_error", "This Pool API key is paused."),
    "key_expired": (403, "invalid_request_error", "This Pool API key has expired."),
    "rate_limit_exceeded": (429, "rate_limit_error", "Request rate limit of this Pool API key reached."),
    "tokens_limit_exceeded": (429, "rate_limit_error", "Daily token limit of this Pool API key reached."),
    "pool_paused": (503, "server_error", "The pool is paused."),
    # A 4xx: the request itself is wrong for this key, so retrying cannot help (Codex retries a 503 for ~30 s
    # and the SDKs raise InternalServerError for it). 403 like the key's other permission refusals.
    "model_not_allowed": (403, "invalid_request_error", "This model is not allowed for this pool or key."),
    # The Codex routes' body is not a JSON object (the Lua request scanner says so): refused before any account
    # is picked, so an upstream never sees it on an account's token.
    "invalid_json": (400, "invalid_request_error", "We could not parse the JSON body of your request."),
    "no_eligible_account": (503, "server_error", "No upstream account can serve this request right now."),
    "gateway_not_ready": (503, "server_error", "The gateway is starting."),
    "internal_error": (500, "server_error", "The gateway failed to process this request."),
    # The request reached the ext_proc without the route, cluster or filters the route table renders (a route
    # written by hand, or a missing fragment): refused, never forwarded with an account token.
    "route_not_configured": (
        503,
        "server_error",
        "This gateway's Envoy is not configured for this route; re-render its pooler routes, clusters and filters.",
    ),
    # Ingress, media and file controls (docs/GATEWAY_SURFACE.md).
    "ip_not_allowed": (403, "invalid_request_error", "This Pool API key may not be used from this address."),
    "image_generation_disabled": (403, "invalid_request_error", "Image generation is disabled for this pool."),
    "file_account_unavailable": (
        409,
        "invalid_request_error",
        "A file this request references lives in an upstream account that cannot serve it now; upload it again.",
    ),
    "server_is_overloaded": (503, "server_error", "The gateway is at its concurrency limit; retry shortly."),
    "request_too_large": (413, "invalid_request_error", "The request body is larger than this gateway accepts."),
    "length_required": (411, "invalid_request_error", "Uploads need a Content-Length header."),
    # /metrics (served by extproc/metrics.py): through the gateway port only with the metrics token.
    "metrics_token_required": (
        401,
        "invalid_request_error",
        "/metrics needs the metrics token: `Authorization: Bearer <token>` (create one with `pooler metrics token "
        "create`).",
    ),
}


def error_body(code: str) -> tuple[int, bytes]:
    status, kind, message = ERRORS[code]
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return status, json.dumps(body, separators=(",", ":")).encode()


def usage_limit_body(resets_at: float | None, now: float) -> bytes:
    error: dict[str, Any] = {
        "type": "usage_limit_reached",
        "code": "usage_limit_reached",
        "message": "The usage limit has been reached on every account of this pool.",
    }
    if resets_at is not None:
        error["resets_at"] = int(resets_at)
        error["resets_in_seconds"] = max(0, int(resets_at - now))
    return json.dumps({"error": error}, separators=(",", ":")).encode()


def _header(key: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=key, raw_value=value.encode()), append_action=OVERWRITE)


def _metadata(routing: Mapping[str, Any]) -> Struct:
    struct = Struct()
    struct.update({NS_ROUTING: dict(routing)})
    return struct


def immediate(
    status: int,
    body: bytes,
    routing: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    details: str = "pooler",
) -> ProcessingResponse:
    all_headers = {"content-type": "application/json", **(headers or {})}
    response = ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=status),
            headers=HeaderMutation(set_headers=[_header(k, v) for k, v in all_headers.items()]),
            body=body,
            details=details,
        )
    )
    if routing:
        response.dynamic_metadata.CopyFrom(_metadata(routing))
    return response


def error(
    code: str, routing: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
) -> ProcessingResponse:
    status, body = error_body(code)
    return immediate(status, body, {**(routing or {}), "error": code}, headers, details=f"pooler_{code}")


def json_reply(status: int, payload: Any, routing: Mapping[str, Any] | None = None) -> ProcessingResponse:
    return immediate(status, json.dumps(payload, separators=(",", ":")).encode(), routing, details="pooler_answer")


def forward(set_headers: Mapping[str, str], remove: Iterable[str], routing: Mapping[str, Any]) -> ProcessingResponse:
    """Continue to the upstream with these header changes, recording `routing` as dynamic metadata."""
    response = ProcessingResponse(
        request_headers=HeadersResponse(
            response=CommonResponse(
                header_mutation=HeaderMutation(
                    set_headers=[_header(k, v) for k, v in set_headers.items()], remove_headers=list(remove)
                )
            )
        )
    )
    response.dynamic_metadata.CopyFrom(_metadata(routing))
    return response


def passthrough() -> ProcessingResponse:
    """For phases this processor never asks for (Envoy only sends them if the config is changed)."""
    return ProcessingResponse(request_headers=HeadersResponse())
