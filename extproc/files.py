"""File affinity in the ext_proc: the pins (file id hash -> account) and the stream processors of the file
routes.

- `POST /backend-api/files` (cluster `codex_upstream_files`, response body BUFFERED): the reply names the new
  file id and an upload URL. The URL is validated (`pooler.gateway.files.upload_url_problem`) before the client sees it
  (else 502 `invalid_upload_url`, nothing pinned); the id is pinned to the account this attempt was routed to.
- `POST /v1/files` (cluster `codex_upstream_v1_files`, Envoy rewrote the path to /backend-api/files): the JSON
  metadata `{filename, bytes, purpose}` becomes the backend's `{file_name, file_size, use_case}`; the reply
  becomes an OpenAI file object plus `upload_url`. File bytes never pass through the gateway.
- Every other request is pinned in the request-headers phase (`pinned_account`): the finalize path names the id,
  a responses body's `"file_id"` values come from Envoy's Lua scanner as metadata.

Pins are written to `file_pins` by a small background flusher (never on the request path) and loaded at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from extproc import bodyops
from extproc.codex import CodexProcessor
from extproc.phases import Attempt
from pooler.gateway.files import file_hash, upload_url_problem, valid_file_id
from pooler.models import FilePin

if TYPE_CHECKING:
    from extproc.processor import AttemptProcessor

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
DEFAULT_PIN_TTL = 7 * 86400.0
"""A pin's lifetime until the attempt is routed (then the snapshot's `file_pin_ttl_seconds`)."""
MAX_PINS = 500_000
"""Bound on pins held in memory (oldest-expiring dropped first beyond it)."""


@dataclass(slots=True)
class FilePins:
    pins: dict[tuple[int, str], tuple[int, float]] = field(default_factory=dict)
    """(pool id, file hash) -> (account id, expires at)."""
    pending: list[tuple[int, str, int, float]] = field(default_factory=list)

    def remember(self, pool_id: int, hashed: str, account_id: int, expires_at: float) -> None:
        self.pins[(pool_id, hashed)] = (account_id, expires_at)
        self.pending.append((pool_id, hashed, account_id, expires_at))
        if len(self.pins) > MAX_PINS:
            for key, _ in sorted(self.pins.items(), key=lambda kv: kv[1][1])[: len(self.pins) - MAX_PINS]:
                del self.pins[key]

    def lookup(self, pool_id: int, hashed: str, now: float) -> int | None:
        pin = self.pins.get((pool_id, hashed))
        return pin[0] if pin is not None and pin[1] > now else None

    # --- database (worker thread) ---------------------------------------------------------------------------
    def load(self, factory: sessionmaker[Session]) -> None:
        now = dt.datetime.now(dt.UTC)
        with factory() as session:
            for row in session.scalars(select(FilePin).where(FilePin.expires_at > now)):
                self.pins.setdefault((row.pool_id, row.file_hash), (row.account_id, row.expires_at.timestamp()))

    def _write(self, factory: sessionmaker[Session], batch: list[tuple[int, str, int, float]]) -> None:
        now = dt.datetime.now(dt.UTC)
        with factory.begin() as session:
            for pool_id, hashed, account_id, expires in batch:
                row = session.get(FilePin, (pool_id, hashed))
                when = dt.datetime.fromtimestamp(expires, dt.UTC)
                if row is None:
                    session.add(FilePin(pool_id=pool_id, file_hash=hashed, account_id=account_id, expires_at=when))
                else:
                    row.account_id, row.expires_at = account_id, when
            session.execute(delete(FilePin).where(FilePin.expires_at <= now))

    async def run(self, factory: sessionmaker[Session], stop: asyncio.Event) -> None:
        try:
            await asyncio.to_thread(self.load, factory)
        except SQLAlchemyError:
            log.warning("file pins not loaded (database unreachable); new pins still work")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_SECONDS)
            batch, self.pending = self.pending, []
            if not batch:
                continue
            try:
                await asyncio.to_thread(self._write, factory, batch)
            except SQLAlchemyError:
                self.pending = batch + self.pending  # retried next round; memory keeps serving meanwhile
            now = time.time()
            for key, (_, expires) in list(self.pins.items()):
                if expires <= now:
                    del self.pins[key]


class FilesProcessor(CodexProcessor):
    """Body and response phases of one `POST /backend-api/files` (or `/v1/files`) attempt; its request headers
    are the Codex processor's."""

    __slots__ = ("account_id", "openai", "pins", "pool_id", "request", "status", "ttl")

    def __init__(self, gateway: AttemptProcessor, pins: FilePins, openai: bool) -> None:
        super().__init__(gateway)
        self.pins, self.openai = pins, openai
        self.ttl = DEFAULT_PIN_TTL
        self.pool_id: int | None = None
        self.account_id: int | None = None
        self.status = 0
        self.request: dict[str, Any] = {}

    def routed(self, attempt: Attempt, decision: ep.ProcessingResponse) -> None:
        self.pool_id, self.account_id = bodyops.routed_ids(decision)
        self.ttl = attempt.snapshot.features.file_pin_ttl_seconds

    def response_headers(self, headers: ep.HttpHeaders) -> ep.ProcessingResponse:
        self.status = bodyops.status_of(headers)
        resp = ep.ProcessingResponse()
        resp.response_headers.response.header_mutation.remove_headers.append("content-length")
        return resp

    def request_body(self, body: ep.HttpBody) -> ep.ProcessingResponse:
        """/v1/files: OpenAI-style JSON metadata -> the backend's create body."""
        try:
            parsed = json.loads(body.body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("filename"), str):
            return bodyops.immediate(
                400,
                bodyops.error_payload(
                    "Send JSON metadata {filename, bytes, purpose}; then upload the bytes to the returned "
                    "upload_url. Multipart uploads through the gateway are not supported.",
                    "unsupported_upload",
                ),
                "unsupported_upload",
            )
        size = parsed.get("bytes")
        self.request = {
            "filename": parsed["filename"],
            "bytes": size if isinstance(size, int) and not isinstance(size, bool) else None,
            "purpose": str(parsed.get("purpose") or "user_data"),
        }
        create = {
            "file_name": self.request["filename"],
            "file_size": self.request["bytes"],
            "use_case": self.request["purpose"],
        }
        data = json.dumps(create, separators=(",", ":")).encode()
        return bodyops.replace_request_body(data, (("content-type", bodyops.JSON),))

    def response_body(self, body: ep.HttpBody) -> ep.ProcessingResponse:
        raw = body.body
        status = self.status
        try:
            payload: Any = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not 200 <= status < 300:
            return bodyops.replace_response_body(status, status, raw or b"{}")
        problem = upload_url_problem(payload.get("upload_url")) if isinstance(payload, dict) else "no JSON object"
        file_id = payload.get("file_id") if isinstance(payload, dict) else None
        if problem is not None or not isinstance(file_id, str) or not valid_file_id(file_id):
            # The reason is logged (no URL: it may carry a signature); the client gets a safe code.
            log.warning("refused an upstream file reply: %s", problem or "no valid file_id")
            refusal = bodyops.error_payload(
                "The upstream returned an upload URL the gateway does not pass on.",
                "invalid_upload_url",
                "server_error",
            )
            # An immediate response, not a rewritten status: a 502 in the response would be retried by the
            # router (another account, another file) and read as an upstream failure by the evidence path.
            return bodyops.immediate(502, refusal, "invalid_upload_url")
        if self.pool_id is not None and self.account_id is not None:
            hashed = file_hash(self.gateway.hasher, self.pool_id, file_id)
            self.pins.remember(self.pool_id, hashed, self.account_id, time.time() + self.ttl)
        if not self.openai:
            return bodyops.replace_response_body(status, status, raw)
        return bodyops.replace_response_body(
            status,
            status,
            {
                "id": file_id,
                "object": "file",
                "bytes": self.request.get("bytes"),
                "created_at": int(time.time()),
                "filename": self.request.get("filename"),
                "purpose": self.request.get("purpose"),
                "status": "pending",
                "upload_url": payload["upload_url"],
            },
        )
