"""`POST /v1/responses` body -> the body the Codex backend accepts.

The Codex backend is the Responses API with house rules: it always streams (`stream: true`), never stores
(`store: false`, so reasoning must travel as `reasoning.encrypted_content`), requires `instructions`, and rejects
sampling and limit parameters. Fields are passed through an allow-list rather than a deny-list, so a new OpenAI
parameter the backend does not know is dropped instead of failing every request that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pooler.v1.errors import invalid_request

DEFAULT_INSTRUCTIONS = "You are a helpful assistant."
ENCRYPTED_REASONING = "reasoning.encrypted_content"

PASSED_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "include",
        "prompt_cache_key",  # keeps a conversation on one account (stickiness) and its prompt cache warm
        "text",
        "previous_response_id",
        "client_metadata",
    }
)
"""Everything else (`max_output_tokens`, `temperature`, `top_p`, `prompt_cache_retention`, `safety_identifier`,
`user`, `metadata`, `service_tier`, `truncation`, `background`, `top_logprobs`, `stream_options`, ...) is dropped."""

TEXT_PART_BY_ROLE = {"assistant": "output_text"}  # other roles' string content becomes input_text


@dataclass(frozen=True)
class UpstreamRequest:
    """A translated request: the Codex body plus what the client asked for the reply's shape."""

    body: dict[str, Any]
    model: str
    stream: bool  # the client wants SSE back (else one JSON object is collected)
    include_usage: bool = False  # chat only: stream_options.include_usage
    dropped: tuple[str, ...] = field(default=())  # names of client fields not sent upstream (for tests and debug)


def normalize_responses(body: Any) -> UpstreamRequest:
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("you must provide a model parameter", param="model", code="missing_required_parameter")
    stream = body.get("stream") is True
    out: dict[str, Any] = {k: v for k, v in body.items() if k in PASSED_FIELDS}
    dropped = tuple(sorted(k for k in body if k not in PASSED_FIELDS and k not in ("stream", "store")))
    instructions = out.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid_request("instructions must be a string", param="instructions")
    items, system_text = normalize_input(body.get("input"))
    # The backend rejects `system` messages in input; their text joins the instructions, in order.
    merged = "\n\n".join(t for t in (instructions, *system_text) if t)
    out["instructions"] = merged or DEFAULT_INSTRUCTIONS
    out["input"] = items
    out["stream"] = True
    out["store"] = False
    include = out.get("include")
    include_list = [x for x in include if isinstance(x, str)] if isinstance(include, list) else []
    if ENCRYPTED_REASONING not in include_list:
        include_list.append(ENCRYPTED_REASONING)
    out["include"] = include_list
    return UpstreamRequest(body=out, model=model, stream=stream, dropped=dropped)


def normalize_input(value: Any) -> tuple[list[Any], list[str]]:
    """Input items with string content turned into parts; returns (items, texts of system messages)."""
    if value is None:
        return [], []
    if isinstance(value, str):
        return [user_message(value)], []
    if not isinstance(value, list):
        raise invalid_request("input must be a string or an array of items", param="input")
    items: list[Any] = []
    system: list[str] = []
    for item in value:
        if not isinstance(item, dict):
            raise invalid_request("input items must be objects", param="input")
        role = item.get("role")
        if role is None or item.get("type", "message") != "message":
            items.append(item)  # function_call, function_call_output, reasoning, ... pass as they are
            continue
        content = item.get("content")
        if role == "system":
            system.append(content_text(content))
            continue
        if isinstance(content, str):
            item = {**item, "content": [{"type": TEXT_PART_BY_ROLE.get(str(role), "input_text"), "text": content}]}
        items.append({"type": "message", **item})
    return items, system


def user_message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def content_text(content: Any) -> str:
    """The text of string content or of the text parts of a part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p)
    return ""
