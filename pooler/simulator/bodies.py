"""Request bodies: JSON or form, plain or compressed (Codex sends `Content-Encoding: zstd`).

The server runs with aiohttp's automatic decompression off, so every encoding is handled here in one place.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any
from urllib.parse import parse_qsl

import zstandard
from aiohttp import web

MAX_BODY = 64 * 1024 * 1024


def error_body(message: str, code: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


def bad_request(message: str, code: str = "invalid_request") -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps(error_body(message, code)), content_type="application/json")


def decode(raw: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return raw
    if encoding == "zstd":
        # Streaming decoder: Codex's frames do not always carry the content size.
        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    raise bad_request(f"unsupported content-encoding {encoding}", "unsupported_encoding")


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = decode(raw, request.headers.get("Content-Encoding", ""))
    except (zstandard.ZstdError, OSError, zlib.error) as exc:
        raise bad_request("body could not be decompressed", "bad_encoding") from exc
    if not data:
        return {}
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request("body is not valid JSON", "invalid_json") from exc
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object", "invalid_json")
    return body
