"""Codex Responses SSE -> `/v1/responses` SSE: the events pass through byte for byte.

The bytes are returned as they came (no copy, no re-encoding); the decoder only watches for the terminal event,
parsing JSON for that one event alone, to learn the usage and to know whether the stream completed. An upstream
that ends early gets a final `response.failed` appended, so the client sees an error event, not a cut stream.
"""

from __future__ import annotations

import json
from typing import Any

from pooler.v1.errors import V1Error, responses_failed_event, stream_interrupted
from pooler.v1.sse import SseDecoder, SseError

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
WATCHED = TERMINAL | {"response.created"}


class ResponsesStream:
    __slots__ = ("_decoder", "_response", "_sequence", "done", "usage")

    def __init__(self) -> None:
        self._decoder = SseDecoder()
        self._response: dict[str, Any] | None = None  # from response.created, to shape a synthetic failure
        self._sequence = 0
        self.done = False
        self.usage: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return data
        try:
            events = self._decoder.feed(data)
        except SseError:
            return data + self._fail(stream_interrupted())
        for name, payload in events:
            if name and name not in WATCHED:
                self._sequence += 1
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            kind = name or str(event.get("type", ""))
            seq = event.get("sequence_number")
            self._sequence = seq + 1 if isinstance(seq, int) else self._sequence + 1
            response = event.get("response")
            if kind == "response.created" and isinstance(response, dict):
                self._response = {k: v for k, v in response.items() if k in ("id", "object", "created_at", "model")}
            elif kind in TERMINAL:
                self.done = True
                if isinstance(response, dict) and isinstance(response.get("usage"), dict):
                    self.usage = response["usage"]
        return data

    def finish(self) -> bytes:
        return b"" if self.done else self._fail(stream_interrupted())

    def fail(self, err: V1Error) -> bytes:
        return b"" if self.done else self._fail(err)

    def _fail(self, err: V1Error) -> bytes:
        self.done = True
        return responses_failed_event(err, self._response, self._sequence)
