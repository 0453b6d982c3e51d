"""Transcription and images: the /v1 audio processor (multipart model alias -> the backend's form).

`POST /v1/audio/transcriptions` is routed by Envoy to `/backend-api/transcribe` on the cluster
`codex_upstream_v1_audio` (request body BUFFERED, after the size check of the request-headers phase). The
backend takes the audio `file` (+ optional `language`, `prompt`) and answers `{"text": ...}` - already the
OpenAI `json` response shape. OpenAI model names are aliases of that one backend transcriber; the `model` part
and fields the backend does not take are removed. Unknown models -> 400 `model_not_found`; a response_format
other than json -> 400 `unsupported_response_format`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import bodyops
from extproc.codex import CodexProcessor
from extproc.phases import Attempt

if TYPE_CHECKING:
    from extproc.processor import AttemptProcessor

TRANSCRIPTION_ALIASES = frozenset(
    {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize", "codex-transcribe"}
)
"""OpenAI transcription model names the gateway maps onto the backend's transcriber."""
BACKEND_FIELDS = frozenset({"file", "language", "prompt"})
# The `name` parameter of the Content-Disposition line only: not `filename="..."` (which may come first), nor a
# `name=` parameter of another header.
_DISPOSITION = re.compile(rb'(?im)^content-disposition:[^\r\n]*?(?:;|\s)name="([^"]*)"')
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')


def split_multipart(body: bytes, boundary: bytes) -> list[tuple[str, bytes]] | None:
    """(field name, whole part bytes incl. its headers) in order; None when the body is not this multipart."""
    delimiter = b"--" + boundary
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        return None
    parts: list[tuple[str, bytes]] = []
    for chunk in chunks[1:-1]:
        head, sep, _ = chunk.partition(b"\r\n\r\n")
        match = _DISPOSITION.search(head) if sep else None
        if match is None:
            return None
        parts.append((match.group(1).decode("latin-1"), chunk))
    return parts


def part_value(chunk: bytes) -> str:
    value = chunk.partition(b"\r\n\r\n")[2]
    return value.removesuffix(b"\r\n").decode("utf-8", "replace").strip()


class V1AudioProcessor(CodexProcessor):
    """The request body of one `/v1/audio/transcriptions` attempt; its request headers are the Codex
    processor's (which also checked the declared size)."""

    __slots__ = ("boundary",)

    def __init__(self, gateway: AttemptProcessor) -> None:
        super().__init__(gateway)
        self.boundary: bytes | None = None

    def routed(self, attempt: Attempt, decision: ep.ProcessingResponse) -> None:
        match = _BOUNDARY.search(attempt.headers.get("content-type", ""))
        self.boundary = match.group(1).encode("latin-1") if match else None

    def request_body(self, body: ep.HttpBody) -> ep.ProcessingResponse:
        raw = body.body
        parts = split_multipart(raw, self.boundary) if self.boundary else None
        if parts is None:
            return _bad("Send multipart/form-data with a `file` part.", "invalid_multipart")
        fields = {name: chunk for name, chunk in parts}
        model = part_value(fields["model"]) if "model" in fields else None
        if model is not None and model not in TRANSCRIPTION_ALIASES:
            message = f"Transcription model {model!r} is not available; use one of {sorted(TRANSCRIPTION_ALIASES)}."
            return bodyops.immediate(404, bodyops.error_payload(message, "model_not_found"), "model_not_found")
        fmt = part_value(fields["response_format"]) if "response_format" in fields else "json"
        if fmt != "json":
            return _bad("Only response_format=json is supported by this gateway.", "unsupported_response_format")
        if "file" not in fields:
            return _bad("The `file` part is required.", "invalid_multipart")
        assert self.boundary is not None
        delimiter = b"--" + self.boundary
        kept = [chunk for name, chunk in parts if name in BACKEND_FIELDS]
        data = delimiter + delimiter.join(kept) + delimiter + b"--\r\n"
        return bodyops.replace_request_body(data)


def _bad(message: str, code: str) -> ep.ProcessingResponse:
    return bodyops.immediate(400, bodyops.error_payload(message, code), code)
