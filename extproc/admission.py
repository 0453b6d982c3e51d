"""Admission control: a concurrency limit per route family with a bounded, time-limited queue.

Why here and not in Envoy (measured/checked against Envoy 1.40, see docs/GATEWAY_SURFACE.md): Envoy has no
"N concurrent + a queue of Q with a deadline" primitive. The local rate limit is a token bucket (rate, not
concurrency); adaptive_concurrency moves its limit by latency; the overload manager is process-wide; cluster
circuit breakers cap requests per cluster but their pending queue is a wait for a *connection* (HTTP/1.1 only,
without a deadline on our un-timed streaming routes - a queued request could wait as long as a 5-minute
stream). So the ext_proc keeps the counts: zero extra messages (the decision rides on the request-headers
message it answers anyway), one dict lookup when no limit is set. A slot is taken on the first attempt only and
released when Envoy's access log reports the request finished (`GatewayState.finish`) - so a slot frees up to
one access-log flush interval (0.5 s) after the stream ends. A queued request waits at most
`admission_queue_wait_ms` (kept below the ext_proc message timeout, so nothing ever hangs), then gets the 503.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse

from pooler.gateway.features import Admission

SLOT_TTL_SECONDS = 2 * 3600.0
"""A slot whose access-log entry never arrived (Envoy restarted) is reclaimed after this long."""


@dataclass(slots=True)
class Deferred:
    """A decision that must wait (for an admission slot); the server awaits `resolve()`."""

    resolve: Callable[[], Awaitable[ProcessingResponse]]


@dataclass
class AdmissionControl:
    active: dict[str, int] = field(default_factory=dict)
    owners: dict[str, tuple[str, float]] = field(default_factory=dict)
    """request id -> (family, admitted at)."""
    waiting: dict[str, deque[tuple[str, asyncio.Future[bool]]]] = field(default_factory=dict)
    """family -> (request id, future) in arrival order."""

    def try_acquire(self, family: str | None, request_id: str | None, config: Admission) -> bool | None:
        """True: admitted (or unlimited). None: full but the queue has room (call `wait`). False: reject."""
        if family is None or request_id is None:
            return True
        limit = config.limits.get(family)
        if not limit:
            return True
        if request_id in self.owners:
            return True
        self._reclaim(time.monotonic())
        if self.active.get(family, 0) < limit and not self.waiting.get(family):
            self._take(family, request_id)
            return True
        queue = self.waiting.get(family)
        if config.queue > 0 and config.queue_wait_seconds > 0 and (queue is None or len(queue) < config.queue):
            return None
        return False

    async def wait(self, family: str, request_id: str, config: Admission) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue = self.waiting.setdefault(family, deque())
        entry = (request_id, future)
        queue.append(entry)
        try:
            return await asyncio.wait_for(asyncio.shield(future), config.queue_wait_seconds)
        except TimeoutError:
            if future.done() and not future.cancelled() and future.result():
                return True  # handed a slot at the deadline: keep it (already its owner)
            future.cancel()
            return False
        finally:
            if entry in queue:
                queue.remove(entry)

    def release(self, request_id: str) -> None:
        owner = self.owners.pop(request_id, None)
        if owner is None:
            # The request ended while still queued (client gone): it must not be handed a slot later, which
            # nothing would ever release.
            self._drop_waiter(request_id)
            return
        family = owner[0]
        queue = self.waiting.get(family)
        while queue:
            rid, future = queue.popleft()
            if not future.done():
                future.set_result(True)  # the slot passes to the waiter: `active` is unchanged
                # Owned from now, not from when the waiter resumes: a release arriving before that frees it.
                self.owners[rid] = (family, time.monotonic())
                return
        left = self.active.get(family, 0) - 1
        if left > 0:
            self.active[family] = left
        else:
            self.active.pop(family, None)

    def _drop_waiter(self, request_id: str) -> None:
        for queue in self.waiting.values():
            for entry in queue:
                if entry[0] == request_id:
                    if not entry[1].done():
                        entry[1].set_result(False)  # its wait answers "overloaded" to a stream that is gone
                    queue.remove(entry)
                    return

    def _take(self, family: str, request_id: str) -> None:
        self.active[family] = self.active.get(family, 0) + 1
        self.owners[request_id] = (family, time.monotonic())

    def _reclaim(self, now: float) -> None:
        if len(self.owners) < 64:
            return
        for request_id, (_, since) in list(self.owners.items()):
            if now - since > SLOT_TTL_SECONDS:
                self.release(request_id)
