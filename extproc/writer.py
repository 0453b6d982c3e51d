"""The background writer: flushes the state's pending batch to the database every interval.

A failed flush (database down) keeps the batch and retries with backoff; rows are written exactly once
because request ids are unique and every other write is an upsert (see pooler.gateway.writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import SQLAlchemyError

from extproc.state import GatewayState
from pooler.gateway.writes import Batch, write_batch

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
MAX_BACKOFF = 5.0


class Writer:
    def __init__(self, state: GatewayState, interval: float = FLUSH_INTERVAL) -> None:
        self.state = state
        self.interval = interval
        self.failures = 0
        self.written = 0

    def _write(self, batch: Batch) -> None:
        with self.state.ctx.session_factory.begin() as session:
            write_batch(session, batch)

    async def flush(self) -> bool:
        batch = self.state.take_pending()
        if not len(batch):
            return True
        try:
            await asyncio.to_thread(self._write, batch)
        except SQLAlchemyError as exc:
            self.state.requeue(batch)
            self.failures += 1
            if self.failures == 1 or self.failures % 20 == 0:
                # The driver's first line only: never statements or bound values.
                first = str(getattr(exc, "orig", exc) or type(exc).__name__).splitlines()[:1]
                log.warning(
                    "database write failed (%s); %d rows kept for retry",
                    first[0][:200] if first else "",
                    len(batch.requests),
                )
            return False
        if self.failures:
            log.info("database writes resumed after %d failed attempts", self.failures)
        self.failures = 0
        self.written += len(batch.requests)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            ok = await self.flush()
            delay = self.interval if ok else min(MAX_BACKOFF, self.interval * 2 ** min(self.failures, 4))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        await self.flush()
