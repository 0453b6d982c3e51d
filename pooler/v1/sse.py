"""Server-sent events framing over arbitrary byte chunk boundaries.

The decoder keeps only the unfinished tail of the stream, so each `feed` costs time proportional to the new
bytes (it resumes the delimiter search where the previous one stopped) and never re-reads the whole stream.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""An event this large without a delimiter means a broken upstream; refuse rather than grow without bound."""


class SseEvent(NamedTuple):
    event: str  # the `event:` field, "" when absent
    data: bytes  # `data:` lines joined by "\n"


class SseError(ValueError):
    pass


class SseDecoder:
    __slots__ = ("_buf", "_scan")

    def __init__(self) -> None:
        self._buf = b""
        self._scan = 0  # offset up to which the buffer holds no complete delimiter

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if not chunk:
            return []
        if b"\r" in chunk or self._buf.endswith(b"\r"):
            # CRLF and lone CR are legal line ends; normalise so one delimiter search suffices. A CR at the end
            # of the buffer may be the first half of a CRLF split across chunks, so it is normalised here too.
            buf = (self._buf + chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if chunk.endswith(b"\r") and not chunk.endswith(b"\r\n"):
                buf = buf[:-1] + b"\r"
            self._scan = 0
        else:
            buf = self._buf + chunk if self._buf else chunk
        events: list[SseEvent] = []
        start = 0
        pos = buf.find(b"\n\n", max(self._scan - 1, 0))
        while pos != -1:
            event = _parse_block(buf[start:pos])
            if event is not None:
                events.append(event)
            start = pos + 2
            pos = buf.find(b"\n\n", start)
        self._buf = buf[start:]
        self._scan = len(self._buf)
        if self._scan > MAX_EVENT_BYTES:
            raise SseError("server-sent event exceeds the size limit")
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (a stream that ends here was cut)."""
        return bool(self._buf.strip())


def _parse_block(block: bytes) -> SseEvent | None:
    event = ""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode("utf-8", "replace")
        # `id:`, `retry:` and `:` comments carry nothing a translator needs.
    if not data and not event:
        return None
    return SseEvent(event, b"\n".join(data))


def encode_event(event: str, data: bytes) -> bytes:
    """One SSE event with an `event:` line, as the Responses API sends them."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def encode_data(data: bytes) -> bytes:
    """One SSE event with only a `data:` line, as chat completions streams send them."""
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
