"""Codex Responses SSE -> one JSON body, for clients that asked `stream: false`.

The backend always streams; the collector keeps only what the final object needs (the latest response object,
finished output items by index), then builds a Responses object (`output`, `output_text`, `usage`) or a
`chat.completion`. The backend's `response.completed` may carry an empty `output`; the items then come from the
`response.output_item.done` events.
"""

from __future__ import annotations

import json
from typing import Any

from pooler.v1.errors import V1Error, from_failed_response, stream_interrupted
from pooler.v1.sse import SseDecoder, SseError
from pooler.v1.usage import chat_usage

COLLECTED = frozenset(
    {
        "response.created",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
    }
)


class ResponsesCollector:
    __slots__ = ("_decoder", "_items", "_response", "done", "error")

    def __init__(self) -> None:
        self._decoder = SseDecoder()
        self._items: dict[int, dict[str, Any]] = {}
        self._response: dict[str, Any] = {}
        self.done = False
        self.error: V1Error | None = None

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        try:
            events = self._decoder.feed(data)
        except SseError:
            self._end(stream_interrupted())
            return
        for name, payload in events:
            if name and name not in COLLECTED:
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._on_event(name or str(event.get("type", "")), event)
            if self.done:
                return

    def _on_event(self, kind: str, event: dict[str, Any]) -> None:
        response = event.get("response")
        if kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            index = event.get("output_index")
            self._items[index if isinstance(index, int) else len(self._items)] = event["item"]
        elif kind in ("response.created", "response.completed", "response.incomplete") and isinstance(response, dict):
            self._response = response
            self.done = kind != "response.created"
        elif kind == "response.failed":
            self._end(from_failed_response(response))
        elif kind == "error":
            self._end(from_failed_response(event.get("error", event)))

    def _end(self, err: V1Error) -> None:
        self.done = True
        self.error = err

    def result(self) -> dict[str, Any]:
        """The Responses object; raises the stream's V1Error (or `stream_interrupted`) when it did not complete."""
        if self.error is not None:
            raise self.error
        if not self.done:
            raise stream_interrupted()
        response = dict(self._response)
        output = response.get("output")
        if not isinstance(output, list) or not output:
            response["output"] = [self._items[i] for i in sorted(self._items)]
        response["output_text"] = output_text(response["output"])
        return response

    @property
    def usage(self) -> dict[str, Any] | None:
        usage = self._response.get("usage")
        return usage if isinstance(usage, dict) else None


def output_text(output: list[Any]) -> str:
    return "".join(
        str(part.get("text", ""))
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    )


def chat_completion(response: dict[str, Any], model: str, created: int | None = None) -> dict[str, Any]:
    """A collected Responses object as one `chat.completion`."""
    raw = response.get("output")
    output: list[Any] = raw if isinstance(raw, list) else []
    text = output_text(output)
    refusal = "".join(
        str(part.get("refusal", ""))
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "refusal"
    )
    calls = [
        {
            "id": item.get("call_id") or item.get("id"),
            "type": "function",
            "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
        }
        for item in output
        if isinstance(item, dict) and item.get("type") == "function_call"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": refusal or None}
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else "stop"
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        why = details.get("reason") if isinstance(details, dict) else None
        finish = "content_filter" if why == "content_filter" else "length"
    rid = response.get("id")
    created_at = response.get("created_at")
    return {
        "id": "chatcmpl-" + (rid.removeprefix("resp_") if isinstance(rid, str) else "unknown"),
        "object": "chat.completion",
        "created": created if created is not None else (created_at if isinstance(created_at, int) else 0),
        "model": response.get("model") if isinstance(response.get("model"), str) else model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": chat_usage(response.get("usage")) or chat_usage({}),
    }
