"""Codex Responses SSE -> `chat.completion.chunk` SSE, incrementally.

`ChatStream.feed(bytes)` takes upstream bytes cut anywhere and returns the chat SSE bytes they complete; the
upstream ending is reported with `finish()`. Per-chunk cost is kept small: events the chat shape does not need
are skipped by their `event:` name without JSON parsing, and each output chunk is a precomputed prefix + the
JSON-escaped delta + a precomputed suffix (no dict building and no full `json.dumps` per token).

Output sequence: a role chunk (on `response.created`), content / refusal / tool-call deltas, a final chunk with
`finish_reason` (`stop`, `tool_calls`, `length`, `content_filter`), a usage chunk when the client asked for
`stream_options.include_usage`, then `data: [DONE]`. A `response.failed`, an `error` event or an upstream that ends
early yields an error chunk (the openai SDKs raise APIError on it) and `[DONE]` instead of a cut connection.
"""

from __future__ import annotations

import json
import secrets
import time
from json.encoder import encode_basestring
from typing import Any

from pooler.v1.errors import V1Error, chat_error_chunk, from_failed_response, stream_interrupted
from pooler.v1.sse import DONE, SseDecoder, SseError
from pooler.v1.usage import chat_usage

# Events this translator acts on; everything else (in_progress, content_part.*, *.done texts, reasoning
# summaries, rate-limit notes...) is skipped by name alone.
HANDLED = frozenset(
    {
        "response.created",
        "response.output_text.delta",
        "response.refusal.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
    }
)
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
FINISH_BY_INCOMPLETE_REASON = {"max_output_tokens": "length", "content_filter": "content_filter"}


def escape(text: str) -> str:
    return encode_basestring(text)


class ChatStream:
    __slots__ = (
        "_args_sent",
        "_decoder",
        "_head",
        "_meta",
        "_tools",
        "completion_id",
        "created",
        "done",
        "include_usage",
        "model",
        "usage",
    )

    def __init__(self, model: str, include_usage: bool = False, created: int | None = None) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = created if created is not None else int(time.time())
        self.completion_id = ""
        self.done = False
        self.usage: dict[str, Any] | None = None  # Responses usage from the terminal event (for the request log)
        self._decoder = SseDecoder()
        self._head = b""
        self._meta = b""
        self._tools: dict[int, int] = {}  # Responses output_index -> chat tool_calls index
        self._args_sent: set[int] = set()  # tool indices whose arguments arrived as deltas

    # --- public ------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        try:
            events = self._decoder.feed(data)
        except SseError:
            return self._fail(stream_interrupted())
        out: list[bytes] = []
        for name, payload in events:
            if name and name not in HANDLED:
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue  # a malformed event is skipped; a stream that never completes still ends in an error
            if not isinstance(event, dict):
                continue
            chunk = self._on_event(name or str(event.get("type", "")), event)
            if chunk:
                out.append(chunk)
            if self.done:
                break
        return b"".join(out)

    def finish(self) -> bytes:
        """The upstream body ended: a stream without a terminal event ends in an error chunk, not silence."""
        if self.done:
            return b""
        return self._fail(stream_interrupted())

    def fail(self, err: V1Error) -> bytes:
        """Ends the stream with `err` (e.g. the gateway's own error after headers went out)."""
        return b"" if self.done else self._fail(err)

    # --- events ------------------------------------------------------------------------------------------
    def _on_event(self, name: str, event: dict[str, Any]) -> bytes:
        if name == "response.output_text.delta":
            return self._chunk(b'{"content":' + escape(str(event.get("delta", ""))).encode() + b"}")
        if name == "response.function_call_arguments.delta":
            index = self._tools.get(_int(event.get("output_index")))
            if index is None:
                return b""
            self._args_sent.add(index)
            delta = escape(str(event.get("delta", ""))).encode()
            return self._chunk(b'{"tool_calls":[{"index":%d,"function":{"arguments":%s}}]}' % (index, delta))
        if name == "response.created":
            return self._start(event.get("response"))
        if name == "response.output_item.added":
            return self._item_added(event)
        if name == "response.output_item.done":
            return self._item_done(event)
        if name == "response.refusal.delta":
            return self._chunk(b'{"refusal":' + escape(str(event.get("delta", ""))).encode() + b"}")
        if name in ("response.completed", "response.incomplete"):
            return self._complete(event.get("response"))
        if name == "response.failed":
            return self._fail(from_failed_response(event.get("response")))
        if name == "error":
            return self._fail(from_failed_response(event.get("error", event)))
        return b""

    def _start(self, response: Any) -> bytes:
        first = not self._head
        self._ensure_head(response)
        return self._chunk(b'{"role":"assistant","content":""}') if first else b""

    def _item_added(self, event: dict[str, Any]) -> bytes:
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return b""
        index = len(self._tools)
        self._tools[_int(event.get("output_index"))] = index
        call = {"index": index, "id": item.get("call_id") or item.get("id"), "type": "function"}
        call["function"] = {"name": item.get("name", ""), "arguments": ""}
        return self._chunk(b'{"tool_calls":[' + _dumps(call) + b"]}")

    def _item_done(self, event: dict[str, Any]) -> bytes:
        # Arguments that arrived only whole (no deltas) are sent in one delta here.
        index = self._tools.get(_int(event.get("output_index")))
        item = event.get("item")
        if index is None or index in self._args_sent or not isinstance(item, dict) or not item.get("arguments"):
            return b""
        self._args_sent.add(index)
        delta = escape(str(item["arguments"])).encode()
        return self._chunk(b'{"tool_calls":[{"index":%d,"function":{"arguments":%s}}]}' % (index, delta))

    def _complete(self, response: Any) -> bytes:
        self._ensure_head(response)
        response = response if isinstance(response, dict) else {}
        reason = "tool_calls" if self._tools else "stop"
        if response.get("status") == "incomplete":
            details = response.get("incomplete_details")
            why = details.get("reason") if isinstance(details, dict) else None
            reason = FINISH_BY_INCOMPLETE_REASON.get(str(why), "length")
        self.usage = response.get("usage") if isinstance(response.get("usage"), dict) else None
        out = [self._head + b'{},"logprobs":null,"finish_reason":"' + reason.encode() + b'"}]}\n\n']
        if self.include_usage:
            usage = chat_usage(self.usage) or chat_usage({})
            out.append(b"data: {" + self._meta + b',"choices":[],"usage":' + _dumps(usage) + b"}\n\n")
        out.append(DONE)
        self.done = True
        return b"".join(out)

    def _fail(self, err: V1Error) -> bytes:
        self.done = True
        return chat_error_chunk(err) + DONE

    # --- framing -----------------------------------------------------------------------------------------
    def _ensure_head(self, response: Any) -> None:
        if self._head:
            return
        response = response if isinstance(response, dict) else {}
        rid = response.get("id")
        suffix = rid.removeprefix("resp_") if isinstance(rid, str) else secrets.token_hex(12)
        self.completion_id = "chatcmpl-" + suffix
        model = response.get("model") if isinstance(response.get("model"), str) else self.model
        self._meta = b'"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s' % (
            _dumps(self.completion_id),
            self.created,
            _dumps(model),
        )
        self._head = b"data: {" + self._meta + b',"choices":[{"index":0,"delta":'

    def _chunk(self, delta: bytes) -> bytes:
        if not self._head:
            self._ensure_head(None)
        return self._head + delta + b',"logprobs":null,"finish_reason":null}]}\n\n'


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1
