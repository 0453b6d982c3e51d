"""Replica mode (POOLER_EXTPROC_SHARED=1): what several ext_proc processes behind one or more Envoys must agree
on goes through the database, around the unchanged per-attempt processor (docs/OPERATIONS.md "Horizontal
scaling"). Off by default: a single replica keeps its purely in-memory hot path.

Before attempt 1 of a request (in a worker thread, off the event loop):
- requests/min of a limited key: admitted by `pooler.gateway.replica_state.admit_request` (exact sliding window across
  replicas); a refusal is the same 429 the processor gives. Database down: the local limiter alone decides.
- stickiness: a session this replica does not know is read through from `sticky_sessions`.
After the decision: a session the processor pinned for the first time is claimed in the database at once
(first writer wins), so the next turn finds it on any replica - not 0.5 s later with the writer's batch.
An attempt routed here is recorded at its attempt index, so this replica never attributes another replica's
attempt to its own account (see extproc/accesslog.py).

Every ENDED_CHECK_SECONDS: requests this replica picked for that have been in flight a while are looked up in
`request_logs`; those another replica logged (their access-log entry went there) are finished here too, so
the per-account stream cap and the admission slots do not fill up with requests that ended elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest, ProcessingResponse
from sqlalchemy.exc import SQLAlchemyError

from extproc import responses
from extproc.processor import presented_key, request_id_of, route_of
from extproc.state import GatewayState
from extproc.structs import string_field
from pooler import gateway_contract as gc
from pooler.gateway.replica_state import admit_request, claim_sticky, ended_requests, read_sticky
from pooler.gateway.sessions import session_hash, session_key
from pooler.gateway.snapshot import Sticky
from pooler.poolkeys import key_matches, key_prefix

log = logging.getLogger(__name__)

ENDED_CHECK_SECONDS = 0.25
"""How often requests in flight are checked against `request_logs` (a slot freed elsewhere is freed here within
this plus the logging replica's flush interval). Short: each worker enforces its share of the stream cap on
these counts, and an attempt stopped by the cap waits at most 1 s for a release (extproc/processor.py)."""
ENDED_CHECK_AFTER_SECONDS = 0.25
"""Requests younger than this are not looked up: their entry cannot have been flushed anywhere yet."""
ENDED_CHECK_WORKER_SECONDS = 0.25
"""The same for a decision worker, whose every request ends elsewhere (SQLite has no notification to wait on)."""
ENDED_CHECK_AFTER_WRITE_SECONDS = 0.1
"""After a rows-written notification, requests from this age are looked up: the rows just written may be theirs."""


def enabled() -> bool:
    return os.environ.get("POOLER_EXTPROC_SHARED", "").lower() in ("1", "true", "yes")


def workers() -> int | None:
    """POOLER_EXTPROC_WORKERS: how many ext_proc workers (on every host) share the database's accounts; None when
    unset, not a positive number, or outside replica mode. Each worker then enforces its share of the stream cap."""
    raw = os.environ.get("POOLER_EXTPROC_WORKERS", "")
    if not enabled() or not raw.strip().isdigit() or int(raw) < 1:
        return None
    return int(raw)


def drain_seconds() -> float:
    """How long a stopping replica stays up answering NOT_SERVING before it closes, so every Envoy's health
    check has taken it out of rotation first (> the rendered check interval)."""
    try:
        return max(0.0, float(os.environ.get("POOLER_EXTPROC_DRAIN_SECONDS", "2.5" if enabled() else "0")))
    except ValueError:
        return 0.0


@dataclass(slots=True)
class Prepared:
    request_id: str | None
    attempt: int
    session: tuple[int, str, float] | None = None
    """(pool id, session hash, ttl) when this replica had no pin for the session before the decision."""


class SharedState:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.hasher = state.ctx.hasher
        state.cap_workers = workers()

    def _db(self, fn: Any, *args: Any) -> Any:
        with self.state.ctx.session_factory.begin() as session:
            return fn(session, *args)

    async def before(self, request: ProcessingRequest) -> ProcessingResponse | Prepared:
        snapshot = self.state.snapshot
        headers = {
            h.key: h.raw_value.decode("latin-1") if h.raw_value else h.value
            for h in request.request_headers.headers.headers
        }
        metadata = request.metadata_context.filter_metadata
        routing = metadata.get(gc.NS_ROUTING, None)
        tried = (
            len(routing.fields[gc.ROUTING_TRIED].list_value.values)
            if routing is not None and gc.ROUTING_TRIED in routing.fields
            else 0
        )
        prepared = Prepared(request_id_of(headers, routing), tried)
        if snapshot is None or (routing is not None and gc.ROUTING_KEY_ID in routing.fields):
            return prepared  # attempts >= 2 carry their principal; nothing shared to check again
        raw = presented_key(headers)
        prefix = key_prefix(raw) if raw else None
        key = snapshot.keys.get(prefix) if prefix else None
        if raw is None or key is None or not key_matches(self.hasher, raw, key.key_hash):
            return prepared  # the processor answers (401); nothing to count
        now = time.time()
        if key.requests_per_minute is not None:
            try:
                wait = await asyncio.to_thread(self._db, admit_request, key.key_id, key.requests_per_minute, now)
            except SQLAlchemyError:
                wait = None  # database away: the per-replica limiter in the processor still applies
            if wait is not None:
                route = route_of(headers)
                family = route.family if route is not None else gc.ROUTE_OTHER
                base = {
                    gc.ROUTING_POOL_ID: key.pool_id,
                    gc.ROUTING_KEY_ID: key.key_id,
                    gc.ROUTING_KEY_PREFIX: key.prefix,
                    gc.ROUTING_ROUTE_FAMILY: family,
                }
                return responses.error("rate_limit_exceeded", base, {"retry-after": str(wait)})
        pool = snapshot.pools.get(key.pool_id)
        raw_session = session_key(headers, string_field(metadata.get(gc.NS_REQUEST, None), gc.REQUEST_PROMPT_CACHE_KEY))
        if pool is None or not raw_session or pool.policy.sticky_ttl_seconds <= 0:
            return prepared
        hashed = session_hash(self.hasher, pool.pool_id, raw_session)
        known = self.state.sessions.get((pool.pool_id, hashed))
        if known is not None and known.expires_at > now:
            return prepared
        try:
            found = await asyncio.to_thread(self._db, read_sticky, pool.pool_id, hashed, now)
        except SQLAlchemyError:
            found = None
        if found is not None:
            self.state.sessions[(pool.pool_id, hashed)] = Sticky(*found)
        else:
            prepared.session = (pool.pool_id, hashed, float(pool.policy.sticky_ttl_seconds))
        return prepared

    async def after(self, prepared: Prepared) -> None:
        if prepared.request_id:
            self._index_attempt(prepared.request_id, prepared.attempt)
        if prepared.session is None:
            return
        pool_id, hashed, ttl = prepared.session
        pinned = self.state.sessions.get((pool_id, hashed))
        if pinned is None:
            return
        try:
            winner = await asyncio.to_thread(
                self._db, claim_sticky, pool_id, hashed, pinned.account_id, time.time() + ttl
            )
        except SQLAlchemyError:
            return  # the writer's batch still persists the pin
        if winner != pinned.account_id:
            # Another replica pinned this brand-new session a moment earlier: follow it from the next turn.
            pinned.account_id = winner
            self.state.pending.sticky.pop((pool_id, hashed), None)

    async def release_ended(self, now: float, after: float = ENDED_CHECK_AFTER_SECONDS) -> int:
        """Finish the requests in flight here whose request-log row another process wrote; how many."""
        ids = [rid for rid, (started, _) in self.state.requests_in_flight.items() if now - started > after]
        if not ids:
            return 0
        try:
            ended = await asyncio.to_thread(self._db, ended_requests, ids)
        except SQLAlchemyError:
            return 0  # database away: the slots wait for the next check (or IN_FLIGHT_TTL)
        self.state.finish_ended(ended)
        return len(ended)

    async def run(self, stop: asyncio.Event, written: asyncio.Event | None = None) -> None:
        """Every ENDED_CHECK_SECONDS; with `written` (a decision worker, which has no access log of its own: its
        every request ends elsewhere) every ENDED_CHECK_WORKER_SECONDS and as soon as rows were written, looking
        at requests from ENDED_CHECK_AFTER_WRITE_SECONDS old."""
        after = ENDED_CHECK_AFTER_SECONDS if written is None else ENDED_CHECK_AFTER_WRITE_SECONDS
        interval = ENDED_CHECK_SECONDS if written is None else ENDED_CHECK_WORKER_SECONDS
        while not stop.is_set():
            await self.release_ended(time.time(), after)
            waits = [asyncio.ensure_future(stop.wait())]
            if written is not None:
                waits.append(asyncio.ensure_future(written.wait()))
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
            if written is not None:
                written.clear()

    def _index_attempt(self, request_id: str, attempt: int) -> None:
        """The processor appends the account of each attempt it routes; with replicas, earlier attempts of the
        same request may have been routed elsewhere, so place this one at its attempt index (None = unknown)."""
        entry = self.state.requests_in_flight.get(request_id)
        if entry is None or len(entry[1]) >= attempt + 1:
            return
        accounts: list[Any] = entry[1]
        accounts[-1:-1] = [None] * (attempt + 1 - len(accounts))
