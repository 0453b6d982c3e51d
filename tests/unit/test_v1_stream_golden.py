"""Golden tests: Codex Responses SSE -> chat.completion.chunk SSE, -> collected objects, -> /v1/responses SSE.

Upstream streams are under golden/v1/upstream/*.sse; expected outputs beside them (UPDATE_GOLDEN=1 rewrites
them). Every stream is also fed cut at arbitrary byte boundaries and must give the same output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooler.v1.chat_stream import ChatStream
from pooler.v1.collect import ResponsesCollector, chat_completion
from pooler.v1.errors import V1Error
from pooler.v1.responses_stream import ResponsesStream

GOLDEN = Path(__file__).parent / "golden" / "v1"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
UPSTREAMS = sorted((GOLDEN / "upstream").glob("*.sse"))
CREATED = 1767225600


def check_text(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual)
    assert actual == path.read_text()


def chat_stream(chunks: list[bytes], include_usage: bool = True) -> bytes:
    stream = ChatStream("gpt-5.1-codex", include_usage=include_usage, created=CREATED)
    out = b"".join(stream.feed(c) for c in chunks)
    return out + stream.finish()


def collected(chunks: list[bytes]) -> dict[str, Any]:
    collector = ResponsesCollector()
    for c in chunks:
        collector.feed(c)
    try:
        response = collector.result()
    except V1Error as err:
        return {"status": err.status, "error": json.loads(err.body())}
    return {"response": response, "chat": chat_completion(response, "gpt-5.1-codex")}


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize("path", UPSTREAMS, ids=lambda p: p.stem)
def test_chat_stream_golden(path: Path) -> None:
    check_text(GOLDEN / "chat_stream" / f"{path.stem}.txt", chat_stream([path.read_bytes()]).decode())


@pytest.mark.parametrize("path", UPSTREAMS, ids=lambda p: p.stem)
def test_collect_golden(path: Path) -> None:
    actual = json.dumps(collected([path.read_bytes()]), indent=1, ensure_ascii=False) + "\n"
    check_text(GOLDEN / "collect" / f"{path.stem}.json", actual)


@pytest.mark.parametrize("path", UPSTREAMS, ids=lambda p: p.stem)
@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0), max_size=60))
def test_any_chunk_boundaries_give_the_same_output(path: Path, cuts: list[int]) -> None:
    data = path.read_bytes()
    crlf = data.replace(b"\n", b"\r\n")
    whole = chat_stream([data])
    assert chat_stream(cut(data, cuts)) == whole
    assert chat_stream(cut(crlf, cuts)) == whole
    assert collected(cut(data, cuts)) == collected([data])


def test_byte_by_byte() -> None:
    data = (GOLDEN / "upstream" / "tool_calls.sse").read_bytes()
    assert chat_stream([data[i : i + 1] for i in range(len(data))]) == chat_stream([data])


def test_chat_stream_without_usage_has_no_usage_chunk() -> None:
    out = chat_stream([(GOLDEN / "upstream" / "text.sse").read_bytes()], include_usage=False).decode()
    assert '"usage"' not in out
    assert out.endswith('"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')


def test_chat_stream_records_usage_for_the_request_log() -> None:
    stream = ChatStream("m")
    stream.feed((GOLDEN / "upstream" / "tool_calls.sse").read_bytes())
    assert stream.done
    assert stream.usage is not None and stream.usage["total_tokens"] == 150


def test_chat_stream_fail_after_start() -> None:
    stream = ChatStream("m", created=CREATED)
    stream.feed((GOLDEN / "upstream" / "truncated.sse").read_bytes())
    out = stream.fail(V1Error(502, "gateway gave up", code="upstream_timeout"))
    assert out.startswith(b'data: {"error":{"message":"gateway gave up"')
    assert out.endswith(b"data: [DONE]\n\n")
    assert stream.finish() == b""


@pytest.mark.parametrize("path", UPSTREAMS, ids=lambda p: p.stem)
def test_responses_stream_passes_bytes_through(path: Path) -> None:
    data = path.read_bytes()
    stream = ResponsesStream()
    out = b"".join(stream.feed(c) for c in cut(data, [7, 300, 301, 2000]))
    tail = stream.finish()
    assert out == data
    if path.stem == "truncated":
        assert tail.startswith(b"event: response.failed\n")
        event = json.loads(tail.split(b"data: ", 1)[1])
        assert event["response"]["id"] == "resp_abc123"
        assert event["response"]["status"] == "failed"
        assert event["response"]["error"]["code"] == "upstream_stream_interrupted"
        assert event["sequence_number"] == 5  # five events were sent
    else:
        assert tail == b""
    if path.stem in ("text", "tool_calls"):
        assert stream.usage is not None and stream.usage["total_tokens"] == 150
