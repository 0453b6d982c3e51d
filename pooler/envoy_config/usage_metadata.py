"""sse_to_metadata rules: the token counts of a streamed `response.completed` into dynamic metadata."""

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
    return [
        {
            "rule": {
                "selectors": [{"key": k} for k in ("response", "usage", *path)],
                "on_present": {"metadata_namespace": gc.NS_USAGE, "key": key, "type": "NUMBER"},
            }
        }
        for key, path in paths.items()
    ]
