"""Token usage: the Responses `usage` object, and its chat completions form."""

from __future__ import annotations

from typing import Any


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """Responses usage -> chat completions usage (prompt/completion tokens with their details)."""
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("input_tokens"))
    completion = _int(usage.get("output_tokens"))
    cached = _int(_get(usage, "input_tokens_details", "cached_tokens"))
    reasoning = _int(_get(usage, "output_tokens_details", "reasoning_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": _int(usage.get("total_tokens")) or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def token_counts(usage: Any) -> dict[str, int]:
    """The flat counts the request log keeps (names of gateway_contract.USAGE_KEYS)."""
    if not isinstance(usage, dict):
        return {}
    return {
        "input_tokens": _int(usage.get("input_tokens")),
        "cached_tokens": _int(_get(usage, "input_tokens_details", "cached_tokens")),
        "output_tokens": _int(usage.get("output_tokens")),
        "reasoning_tokens": _int(_get(usage, "output_tokens_details", "reasoning_tokens")),
        "total_tokens": _int(usage.get("total_tokens")),
    }


def _get(obj: dict[str, Any], outer: str, inner: str) -> Any:
    value = obj.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
