"""OpenAI-shaped errors for the /v1 surface.

Every /v1 failure a client sees has the body `{"error": {"message", "type", "param", "code"}}` and a status code
OpenAI's SDKs map to the right exception class. Three sources:

- the request itself (bad JSON, missing model, an unsupported endpoint): `V1Error` raised by the translators;
- an upstream non-2xx reply (Codex-shaped `{"error": {...}}` or `{"detail": ...}`): `from_upstream`, which keeps
  the upstream's status and code (clients rely on codes such as `previous_response_not_found`);
- a failure after the stream started (headers are gone, the status is 200): a final error *event* instead of a
  broken connection, `chat_error_chunk` / `responses_failed_event`.

Messages never contain prompts, outputs, keys or tokens.
"""

from __future__ import annotations

import json
from typing import Any

from pooler.errors import PoolerError

TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# `response.failed` error codes -> the status a non-streaming client gets for them.
STATUS_BY_CODE = {
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
    "previous_response_not_found": 400,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "usage_not_included": 429,
    "usage_limit_reached": 429,
    "server_is_overloaded": 503,
    "slow_down": 503,
}

# Extra fields of upstream error objects worth passing on (Codex clients read the reset time of a 429).
KEPT_EXTRA_FIELDS = ("resets_at", "resets_in_seconds", "plan_type")


class V1Error(PoolerError):
    """A /v1 request that ends in an OpenAI-shaped error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,  # the OpenAI field name
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.code = code
        self.param = param
        self.extra = extra or {}

    def error_object(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code, **self.extra}

    def body(self) -> bytes:
        return json.dumps({"error": self.error_object()}, separators=(",", ":")).encode()


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> V1Error:
    return V1Error(400, message, param=param, code=code)


def request_json(raw: bytes) -> Any:
    """A /v1 request body parsed, or a 400 `invalid_json`: bytes that are not JSON, and JSON nested deeper than
    the parser's recursion limit (a RecursionError would otherwise end the stream as a 503 with a traceback)."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_request("We could not parse the JSON body of your request.", code="invalid_json") from None
    except RecursionError:
        raise too_deeply_nested() from None


def too_deeply_nested() -> V1Error:
    return invalid_request("The JSON body of your request is nested too deeply.", code="invalid_json")


def unsupported_endpoint(method: str, path: str) -> V1Error:
    # Deterministic: the same answer for every path not built yet, so clients can feature-detect.
    path = path.split("?", 1)[0]
    return V1Error(
        404,
        f"{method} {path} is not supported by this gateway; supported: GET /v1/models, "
        "POST /v1/responses, POST /v1/chat/completions",
        code="unsupported_endpoint",
    )


def model_not_found(model: str) -> V1Error:
    return V1Error(
        404,
        f"The model '{model}' does not exist or is not available in this pool",
        param="model",
        code="model_not_found",
    )


def stream_interrupted() -> V1Error:
    return V1Error(502, "The upstream stream ended before the response completed", code="upstream_stream_interrupted")


def from_upstream(status: int, raw: bytes) -> V1Error:
    """An upstream non-2xx reply (any body, possibly not JSON) as an OpenAI-shaped error with the same status."""
    try:
        parsed: Any = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        parsed = None
    message = f"Upstream error (HTTP {status})"
    kind: str | None = None
    code: str | None = None
    param: str | None = None
    extra: dict[str, Any] = {}
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict):
        message = _str(err.get("message")) or message
        kind = _str(err.get("type"))
        code = _str(err.get("code")) or kind
        param = _str(err.get("param"))
        extra = {k: err[k] for k in KEPT_EXTRA_FIELDS if k in err}
    elif isinstance(err, str):
        code = err
    elif isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
        message = parsed["detail"]
    return V1Error(status, message, type=kind, code=code, param=param, extra=extra)


def from_failed_response(response: Any) -> V1Error:
    """The `error` of a `response.failed` event's response object (or an `error` event) as a V1Error."""
    err = response.get("error") if isinstance(response, dict) else None
    if not isinstance(err, dict):
        err = response if isinstance(response, dict) and "message" in response else {}
    code = _str(err.get("code")) or "upstream_error"
    message = _str(err.get("message")) or "The upstream failed to complete the response"
    status = STATUS_BY_CODE.get(code, 500)
    return V1Error(status, message, code=code, type=_str(err.get("type")), param=_str(err.get("param")))


def chat_error_chunk(err: V1Error) -> bytes:
    """A chat completions stream's terminal error (the openai SDKs raise APIError on a `data: {"error"...}`)."""
    return b"data: " + json.dumps({"error": err.error_object()}, separators=(",", ":")).encode() + b"\n\n"


def responses_failed_event(err: V1Error, response: dict[str, Any] | None = None, sequence: int = 0) -> bytes:
    """A Responses stream's terminal `response.failed` event, built on the last response object seen."""
    base = dict(response or {})
    base.setdefault("object", "response")
    base["status"] = "failed"
    base["error"] = {"code": err.code or "server_error", "message": err.message}
    event = {"type": "response.failed", "sequence_number": sequence, "response": base}
    return b"event: response.failed\ndata: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
