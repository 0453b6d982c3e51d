"""sse_to_metadata rules: the token counts of a streamed `response.completed`, and the code of a stream's
failure event, into dynamic metadata."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc


def build_usage_rules() -> list[dict[str, Any]]:
    """sse_to_metadata rules: token counts of `response.completed` (`response.usage...`) into NS_USAGE."""
    paths = {
        "input_tokens": ("input_tokens",),
        "cached_tokens": ("input_tokens_details", "cached_tokens"),
        "output_tokens": ("output_tokens",),
        "reasoning_tokens": ("output_tokens_details", "reasoning_tokens"),
        "total_tokens": ("total_tokens",),
    }
    assert set(paths) == set(gc.USAGE_KEYS)
    # A turn that fails inside its 200: `response.failed` (`response.error.code`, e.g. server_is_overloaded)
    # or an `error` event (top-level `code`; no other Codex event has one).
    # `response.status`, last one wins: `completed` tells a finished stream from a cut one.
    failures = [
        {
            "rule": {
                "selectors": [{"key": k} for k in path],
                "on_present": {"metadata_namespace": gc.NS_USAGE, "key": key, "type": "STRING"},
            }
        }
        for key, path in (
            (gc.USAGE_STREAM_ERROR, ("response", "error", "code")),
            (gc.USAGE_STREAM_ERROR, ("code",)),
            (gc.USAGE_RESPONSE_STATUS, ("response", "status")),
        )
    ]
    return failures + [
        {
            "rule": {
                "selectors": [{"key": k} for k in ("response", "usage", *path)],
                "on_present": {"metadata_namespace": gc.NS_USAGE, "key": key, "type": "NUMBER"},
            }
        }
        for key, path in paths.items()
    ]
