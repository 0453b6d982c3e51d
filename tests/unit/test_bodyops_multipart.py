"""The /v1 audio multipart splitter (`extproc.media.split_multipart`) and the processor's request-body answer.

The splitter's documented error is `None` ("not this multipart"), which the processor answers with 400
`invalid_multipart`; it must never raise, whatever the bytes (hypothesis).
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from envoy.service.ext_proc.v3.external_processor_pb2 import HttpBody
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.media import V1AudioProcessor, part_value, split_multipart

BOUNDARY = b"----pooler7MA4YWxkTrZu0gW"


def form(fields: list[tuple[str, bytes]], boundary: bytes = BOUNDARY, filename_first: bool = False) -> bytes:
    out = b""
    for name, value in fields:
        if name == "file":
            params = b'filename="a.wav"; name="file"' if filename_first else b'name="file"; filename="a.wav"'
            head = b"Content-Disposition: form-data; " + params + b"\r\nContent-Type: audio/wav\r\n"
        else:
            head = b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n'
        out += b"--" + boundary + b"\r\n" + head + b"\r\n" + value + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def test_fields_in_order_with_their_bytes() -> None:
    body = form([("model", b"whisper-1"), ("file", b"RIFF\x00\x01audio"), ("language", b"de")])
    parts = split_multipart(body, BOUNDARY)
    assert parts is not None
    assert [name for name, _ in parts] == ["model", "file", "language"]
    assert part_value(parts[0][1]) == "whisper-1" and part_value(parts[2][1]) == "de"
    assert parts[1][1].endswith(b"\r\n\r\nRIFF\x00\x01audio\r\n")
    # The parts are the bytes between delimiters: joined again they give the body back.
    delimiter = b"--" + BOUNDARY
    assert delimiter + delimiter.join(c for _, c in parts) + delimiter + b"--\r\n" == body


def test_filename_before_name_is_still_the_file_field() -> None:
    parts = split_multipart(form([("file", b"x")], filename_first=True), BOUNDARY)
    assert parts is not None and parts[0][0] == "file"


def test_name_of_another_header_is_not_the_field_name() -> None:
    body = (
        b"--" + BOUNDARY + b'\r\nContent-Type: audio/wav; name="decoy"\r\nContent-Disposition: form-data; name="file"'
        b"\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n"
    )
    parts = split_multipart(body, BOUNDARY)
    assert parts is not None and parts[0][0] == "file"


def test_preamble_epilogue_and_a_large_part() -> None:
    audio = bytes(range(256)) * 8192  # 2 MiB, every byte value, CRLFs included
    body = b"preamble to ignore\r\n" + form([("file", audio)]) + b"epilogue"
    parts = split_multipart(body, BOUNDARY)
    assert parts is not None and len(parts) == 1
    assert parts[0][1].partition(b"\r\n\r\n")[2] == audio + b"\r\n"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not multipart at all",
        b"--" + BOUNDARY + b"--\r\n",  # no part
        form([("file", b"x")]).removesuffix(b"--\r\n"),  # no closing delimiter
        form([("file", b"x")])[:-20],  # truncated
        b"--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="file"\r\nx\r\n--'
        + BOUNDARY
        + b"--",  # no blank line
        b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data\r\n\r\nx\r\n--" + BOUNDARY + b"--",  # no name
        form([("file", b"x")], boundary=b"other"),  # another boundary
    ],
)
def test_malformed_is_none(body: bytes) -> None:
    assert split_multipart(body, BOUNDARY) is None


@given(st.binary(max_size=2048), st.binary(min_size=1, max_size=40))
@settings(max_examples=300)
def test_never_raises_on_arbitrary_bytes(body: bytes, boundary: bytes) -> None:
    result = split_multipart(body, boundary)
    assert result is None or all(isinstance(n, str) and isinstance(c, bytes) for n, c in result)


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@given(st.lists(st.tuples(_names, st.binary(max_size=300)), min_size=1, max_size=6), st.booleans())
@settings(max_examples=200)
def test_generated_forms_split_back(fields: list[tuple[str, bytes]], filename_first: bool) -> None:
    body = form(fields, filename_first=filename_first)
    if body.count(b"--" + BOUNDARY) != len(fields) + 1:
        return  # a value happened to contain the boundary: not a valid form (RFC 2046)
    parts = split_multipart(body, BOUNDARY)
    assert parts is not None
    assert [n for n, _ in parts] == [n for n, _ in fields]
    for (_, chunk), (_, value) in zip(parts, fields, strict=True):
        assert chunk.partition(b"\r\n\r\n")[2] == value + b"\r\n"


# --- the processor's answer -------------------------------------------------------------------------------------
NO_GATEWAY: Any = cast(Any, None)
"""The request-body hook never reaches the gateway (request headers are the Codex processor's)."""


def _processor() -> V1AudioProcessor:
    proc = V1AudioProcessor(NO_GATEWAY)
    proc.boundary = BOUNDARY
    return proc


def _body(raw: bytes) -> HttpBody:
    return HttpBody(body=raw, end_of_stream=True)


def _error(resp: object) -> tuple[int, str]:
    imm = resp.immediate_response  # type: ignore[attr-defined]
    return imm.status.code, json.loads(imm.body)["error"]["code"]


def test_processor_keeps_only_backend_fields() -> None:
    body = form([("model", b"whisper-1"), ("file", b"AUDIO"), ("temperature", b"0.2"), ("language", b"en")])
    resp = _processor().request_body(_body(body))
    out = resp.request_body.response.body_mutation.body
    parts = split_multipart(out, BOUNDARY)
    assert parts is not None and [n for n, _ in parts] == ["file", "language"]
    lengths = [h for h in resp.request_body.response.header_mutation.set_headers if h.header.key == "content-length"]
    assert lengths[0].header.raw_value == str(len(out)).encode()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([("model", b"whisper-1")], (400, "invalid_multipart")),  # no file part
        ([("model", b"gpt-9-transcribe"), ("file", b"A")], (404, "model_not_found")),
        ([("file", b"A"), ("response_format", b"srt")], (400, "unsupported_response_format")),
    ],
)
def test_processor_errors(fields: list[tuple[str, bytes]], expected: tuple[int, str]) -> None:
    assert _error(_processor().request_body(_body(form(fields)))) == expected


def test_processor_malformed_or_no_boundary_is_invalid_multipart() -> None:
    assert _error(_processor().request_body(_body(b"garbage"))) == (400, "invalid_multipart")
    no_boundary = V1AudioProcessor(NO_GATEWAY)
    assert _error(no_boundary.request_body(_body(form([("file", b"A")])))) == (400, "invalid_multipart")
