"""Keeps the snapshot current: reload when the routing version changes.

PostgreSQL: a LISTEN connection (in a thread) wakes the reloader on NOTIFY; a cheap version poll is the
fallback for missed notifications. SQLite: the version poll only. A database outage leaves the current
snapshot in place (requests keep flowing); the reloader retries quietly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from extproc.state import GatewayState
from pooler.gateway.budgets import RECONCILE_SECONDS, BudgetBook, read_share_tokens, read_usage
from pooler.gateway.snapshot import Snapshot, load_snapshot, read_tokens_today
from pooler.versions import ENDED_CHANNEL, NOTIFY_CHANNEL, REQUESTS_CHANNEL, routing_version

log = logging.getLogger(__name__)

POLL_SECONDS_SQLITE = 1.0
POLL_SECONDS_POSTGRES = 5.0


class Reloader:
    def __init__(self, state: GatewayState, reconcile_seconds: float | None = None, tokens: bool = False) -> None:
        self.state = state
        self.reconcile_seconds = reconcile_seconds or RECONCILE_SECONDS
        self.tokens = tokens
        """Also re-read the tokens/day of limited keys at each reconcile: a decision worker with no access log
        of its own would otherwise only learn them at its next snapshot load."""
        self.wake = asyncio.Event()
        self.requests_written = asyncio.Event()
        """Set on a `REQUESTS_CHANNEL` notification (PostgreSQL): rows were written, possibly of requests this
        process picked for (see extproc/shared.py)."""
        self.reloads = 0
        self._listen_stop = threading.Event()
        engine = state.ctx.engine
        self.postgres = engine.dialect.name == "postgresql"
        self.poll = POLL_SECONDS_POSTGRES if self.postgres else POLL_SECONDS_SQLITE
        self._db_ok = True
        self._budgets_read = time.monotonic()

    def _version(self) -> int:
        with self.state.ctx.session_factory() as session:
            return routing_version(session)

    def _load(self) -> Snapshot:
        with self.state.ctx.session_factory() as session:
            return load_snapshot(
                session, self.state.ctx.box, dt.datetime.now(dt.UTC), self.state.overlays, self.state.snapshot
            )

    async def load_now(self) -> None:
        snapshot = await asyncio.to_thread(self._load)
        self.state.install(snapshot)
        self.reloads += 1

    def _budget_usage(self, book: BudgetBook) -> BudgetBook:
        with self.state.ctx.session_factory() as session:
            now = time.time()
            used = read_usage(session, book.keys, book.prices, now)
            pools = {s.pool_id for s in book.shares.values()}
            tokens = read_share_tokens(session, book.groups, pools, now)
            return BudgetBook(book.keys, book.prices, used, book.zones, book.shares, book.groups, tokens)

    async def reconcile_budgets(self) -> None:
        """Re-read the budgeted keys' usage (every replica's requests) between snapshot loads."""
        snapshot = self.state.snapshot
        now = time.monotonic()
        if snapshot is None or now - self._budgets_read < self.reconcile_seconds:
            return
        if self.tokens:
            await self.reconcile_tokens(snapshot)
            self._budgets_read = now
        if not (snapshot.budgets.keys or snapshot.budgets.shares):
            return
        self._budgets_read = now
        try:
            book = await asyncio.to_thread(self._budget_usage, snapshot.budgets)
        except SQLAlchemyError:
            return  # the version check reports the outage; counting goes on from the access log
        if self.state.snapshot is snapshot:
            snapshot.budgets = book
            self.state.budgets.seed(book)
            self.state.shares.seed(book)

    def _tokens_today(self, prefixes: list[str]) -> dict[str, int]:
        with self.state.ctx.session_factory() as session:
            return read_tokens_today(session, dt.datetime.now(dt.UTC), prefixes)

    async def reconcile_tokens(self, snapshot: Snapshot) -> None:
        prefixes = [k.prefix for k in snapshot.keys.values() if k.tokens_per_day is not None]
        if not prefixes:
            return
        try:
            used = await asyncio.to_thread(self._tokens_today, prefixes)
        except SQLAlchemyError:
            return  # the version check reports the outage
        self.state.tokens.seed(used, time.time())

    async def check(self) -> None:
        try:
            version = await asyncio.to_thread(self._version)
            current = self.state.snapshot
            if current is None or version != current.version:
                await self.load_now()
            if not self._db_ok:
                log.info(
                    "database reachable again; snapshot version %s", self.state.snapshot and self.state.snapshot.version
                )
            self._db_ok = True
        except SQLAlchemyError:
            if self._db_ok:
                log.warning(
                    "database unreachable: serving from the snapshot loaded at version %s",
                    self.state.snapshot and self.state.snapshot.version,
                )
            self._db_ok = False

    def start_listener(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.postgres:
            threading.Thread(target=self._listen, args=(loop,), name="pooler-listen", daemon=True).start()

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        import psycopg

        url = self.state.ctx.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._listen_stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    conn.execute(f"LISTEN {REQUESTS_CHANNEL}")
                    conn.execute(f"LISTEN {ENDED_CHANNEL}")
                    loop.call_soon_threadsafe(self.wake.set)  # catch up on anything missed while away
                    while not self._listen_stop.is_set():
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            if note.channel == ENDED_CHANNEL:
                                loop.call_soon_threadsafe(self.release_ended, note.payload)
                                continue
                            event = self.requests_written if note.channel == REQUESTS_CHANNEL else self.wake
                            loop.call_soon_threadsafe(event.set)
            except psycopg.Error:
                self._listen_stop.wait(2.0)

    def release_ended(self, request_ids: str) -> None:
        """A receiver announced these requests' ends (space-separated ids): free the ones this process picked for.
        The rows written later find nothing left to free here."""
        self.state.finish_ended(request_ids.split())

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.check()
            await self.reconcile_budgets()
            # Wall clock, like the start times the processor records (the loop's clock is monotonic).
            self.state.expire_in_flight(time.time())
            self.state.prune_sticky(time.time())
            wake = asyncio.ensure_future(self.wake.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({wake, stopped}, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            stopped.cancel()
            self.wake.clear()
        self._listen_stop.set()
