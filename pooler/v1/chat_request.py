"""`POST /v1/chat/completions` body -> the Codex backend's Responses body.

Messages become Responses input items: system/developer text -> `instructions`; user and assistant text and
images -> message parts; assistant `tool_calls` -> `function_call` items; `tool` messages ->
`function_call_output`. Function tools, `tool_choice`, `response_format` (-> `text.format`) and
`reasoning_effort` (-> `reasoning.effort`) map one to one. Sampling and limit parameters are dropped: the
backend rejects them.
"""

from __future__ import annotations

import json
from typing import Any

from pooler.v1.errors import invalid_request
from pooler.v1.responses_request import DEFAULT_INSTRUCTIONS, ENCRYPTED_REASONING, UpstreamRequest, content_text

TRANSLATED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "functions",
        "tool_choice",
        "function_call",
        "parallel_tool_calls",
        "reasoning_effort",
        "response_format",
        "verbosity",
        "prompt_cache_key",
    }
)
"""Every other field (temperature, top_p, max_tokens, max_completion_tokens, penalties, logit_bias, logprobs, seed,
stop, user, metadata, store, service_tier, ...) is dropped: the backend rejects or ignores them."""


def chat_to_responses(body: Any) -> UpstreamRequest:
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("you must provide a model parameter", param="model", code="missing_required_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages must be a non-empty array", param="messages")
    n = body.get("n")
    if n is not None and n != 1:
        raise invalid_request("only n=1 is supported", param="n", code="unsupported_parameter")
    if body.get("audio") is not None:
        raise invalid_request("audio output is not supported", param="audio", code="unsupported_parameter")
    instructions, items = translate_messages(messages)
    out: dict[str, Any] = {
        "model": model,
        "instructions": instructions or DEFAULT_INSTRUCTIONS,
        "input": items,
        "stream": True,
        "store": False,
        "include": [ENCRYPTED_REASONING],
    }
    tools = translate_tools(body.get("tools"), body.get("functions"))
    if tools:
        out["tools"] = tools
    tool_choice = translate_tool_choice(body.get("tool_choice", body.get("function_call")))
    if tool_choice is not None:
        out["tool_choice"] = tool_choice
    if isinstance(body.get("parallel_tool_calls"), bool):
        out["parallel_tool_calls"] = body["parallel_tool_calls"]
    effort = body.get("reasoning_effort")
    if isinstance(effort, str):
        out["reasoning"] = {"effort": effort}
    text = translate_response_format(body.get("response_format"))
    if isinstance(body.get("verbosity"), str):
        text["verbosity"] = body["verbosity"]
    if text:
        out["text"] = text
    if isinstance(body.get("prompt_cache_key"), str):
        out["prompt_cache_key"] = body["prompt_cache_key"]
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    dropped = tuple(sorted(k for k in body if k not in TRANSLATED_FIELDS))
    return UpstreamRequest(
        body=out, model=model, stream=body.get("stream") is True, include_usage=include_usage, dropped=dropped
    )


def translate_messages(messages: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise invalid_request(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            instructions.append(content_text(content))
        elif role == "user":
            items.append({"type": "message", "role": "user", "content": user_parts(content, i)})
        elif role == "assistant":
            items.extend(assistant_items(msg, i))
        elif role in ("tool", "function"):
            call_id = msg.get("tool_call_id") if role == "tool" else msg.get("name")
            if not isinstance(call_id, str) or not call_id:
                raise invalid_request(f"messages[{i}] needs a tool_call_id", param=f"messages[{i}].tool_call_id")
            items.append({"type": "function_call_output", "call_id": call_id, "output": content_text(content)})
        else:
            raise invalid_request(f"messages[{i}] has an unsupported role {role!r}", param=f"messages[{i}].role")
    return "\n\n".join(t for t in instructions if t), items


def user_parts(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise invalid_request(f"messages[{i}].content must be a string or an array", param=f"messages[{i}].content")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": str(part.get("text", ""))})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise invalid_request("image_url needs a url", param=f"messages[{i}].content")
            detail = image.get("detail", "auto") if isinstance(image, dict) else "auto"
            parts.append({"type": "input_image", "image_url": url, "detail": detail})
        elif kind == "file" and isinstance(part.get("file"), dict) and "file_data" in part["file"]:
            f = part["file"]
            parts.append({"type": "input_file", "file_data": f["file_data"], "filename": f.get("filename", "file")})
        else:
            message = f"content part type {kind!r} is not supported"
            raise invalid_request(message, param=f"messages[{i}].content", code="unsupported_content")
    return parts


def assistant_items(msg: dict[str, Any], i: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    content = msg.get("content")
    text = content_text(content)
    refusal = msg.get("refusal")
    if text or isinstance(refusal, str):
        parts: list[dict[str, Any]] = []
        if text:
            parts.append({"type": "output_text", "text": text})
        if isinstance(refusal, str) and refusal:
            parts.append({"type": "refusal", "refusal": refusal})
        items.append({"type": "message", "role": "assistant", "content": parts})
    calls = msg.get("tool_calls") or []
    if isinstance(msg.get("function_call"), dict):  # the pre-tools form
        fc = msg["function_call"]
        calls = [*calls, {"id": fc.get("name"), "type": "function", "function": fc}]
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise invalid_request("tool_calls need a function name", param=f"messages[{i}].tool_calls[{j}]")
        args = fn.get("arguments", "")
        items.append(
            {
                "type": "function_call",
                "call_id": str(call.get("id") or f"call_{i}_{j}"),
                "name": fn["name"],
                "arguments": args if isinstance(args, str) else json.dumps(args),
            }
        )
    return items


def translate_tools(tools: Any, functions: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    specs = [t.get("function") for t in tools or [] if isinstance(t, dict) and t.get("type") == "function"]
    if tools and len(specs) != len(tools):
        raise invalid_request("only function tools are supported", param="tools", code="unsupported_tool")
    specs += [f for f in functions or [] if isinstance(f, dict)]
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise invalid_request("function tools need a name", param="tools")
        tool: dict[str, Any] = {"type": "function", "name": spec["name"]}
        if "description" in spec:
            tool["description"] = spec["description"]
        tool["parameters"] = spec.get("parameters") or {"type": "object", "properties": {}}
        if isinstance(spec.get("strict"), bool):
            tool["strict"] = spec["strict"]
        out.append(tool)
    return out


def translate_tool_choice(choice: Any) -> Any:
    if choice is None:
        return None
    if choice in ("none", "auto", "required"):
        return choice
    if isinstance(choice, dict):
        fn = choice.get("function") if "function" in choice else choice  # {"type":"function","function":{..}}
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return {"type": "function", "name": fn["name"]}
    raise invalid_request("tool_choice is not valid", param="tool_choice")


def translate_response_format(fmt: Any) -> dict[str, Any]:
    if fmt is None:
        return {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"format": {"type": "json_object"}}
    if kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        spec = fmt["json_schema"]
        out: dict[str, Any] = {"type": "json_schema", "name": str(spec.get("name", "response"))}
        if "description" in spec:
            out["description"] = spec["description"]
        out["schema"] = spec.get("schema") or {}
        if isinstance(spec.get("strict"), bool):
            out["strict"] = spec["strict"]
        return {"format": out}
    raise invalid_request("response_format is not valid", param="response_format")
