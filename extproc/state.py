"""The ext_proc's mutable state: the current snapshot (swapped by reference), the gateway's own evidence
overlays, per-key limits, in-flight counts, and the batch of writes waiting for the background writer.

Everything here runs on the event loop thread (the gRPC handlers and the access-log handler), so no locks;
the database is touched only by the reloader and the writer, in worker threads.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from extproc.budgets import BudgetCounters
from extproc.limits import DailyTokens, RequestRateLimiter
from extproc.share import ShareGate
from pooler.context import CoreContext
from pooler.gateway.bound_state import TurnStateIssuers
from pooler.gateway.evidence import AccountEffect, AttemptRecord
from pooler.gateway.snapshot import Overlay, Snapshot, Sticky, rebuild_pool
from pooler.gateway.writes import Batch
from pooler.selection import WindowView

MAX_PENDING_REQUESTS = 200_000
"""Bound on request rows held while the database is away (~100 MB); beyond it the oldest are dropped."""
IN_FLIGHT_TTL = 4 * 3600.0
PENDING_ATTEMPTS_TTL = 300.0
"""How long upstream-log records wait for their request's downstream entry (normally one flush, 0.5 s)."""
FINISHED_TTL = 30.0
"""How long a finished request is remembered for upstream-log entries arriving after its downstream entry."""
MAX_FINISHED = 100_000
STICKY_PRUNE_INTERVAL = 60.0


@dataclass(slots=True)
class Finished:
    """A request whose downstream access-log entry was handled: the accounts of its attempts (by position) and
    how many of its upstream entries were seen, so an upstream entry that arrives late is still attributed."""

    at: float
    accounts: list[int]
    seen: int


@dataclass
class GatewayState:
    ctx: CoreContext
    snapshot: Snapshot | None = None
    overlays: dict[int, Overlay] = field(default_factory=dict)
    limiter: RequestRateLimiter = field(default_factory=RequestRateLimiter)
    tokens: DailyTokens = field(default_factory=DailyTokens)
    budgets: BudgetCounters = field(default_factory=BudgetCounters)
    shares: ShareGate = field(default_factory=ShareGate)
    in_flight: dict[int, int] = field(default_factory=dict)
    requests_in_flight: dict[str, tuple[float, list[int]]] = field(default_factory=dict)
    attempts: dict[str, tuple[float, list[AttemptRecord]]] = field(default_factory=dict)
    """request id -> upstream-log records of its finished attempts (until its downstream entry arrives).
    Insertion order is arrival order, so expiry pops from the front (`expire_attempts`)."""
    finished: OrderedDict[str, Finished] = field(default_factory=OrderedDict)
    """Recently finished requests (bounded by FINISHED_TTL and MAX_FINISHED). Envoy does not always log a
    request's last attempt before the request itself (measured: a few % of requests under load); without this,
    such a late entry re-created an `attempts` slot nobody ever popped (kept PENDING_ATTEMPTS_TTL, the ext_proc's
    RSS growth in docs/BENCHMARKS.md) and lost its account, hence its evidence."""
    late_attempts: int = 0
    pending: Batch = field(default_factory=Batch)
    finish_hooks: list[Callable[[str], None]] = field(default_factory=list)
    """Called with the request id when its downstream access-log entry arrives (admission slots)."""
    dropped_rows: int = 0
    turn_states: TurnStateIssuers = field(default_factory=TurnStateIssuers)
    """Which account issued each echoed `x-codex-turn-state` (keyed hashes, this process only)."""
    _sticky_pruned_at: float = 0.0

    # --- snapshot ---------------------------------------------------------------------------------------
    def install(self, snapshot: Snapshot) -> None:
        """Swap in a freshly loaded snapshot (overlays already applied by the loader)."""
        now = time.time()
        self.tokens.seed(snapshot.tokens_today, now)
        self.budgets.seed(snapshot.budgets)
        self.shares.seed(snapshot.budgets)
        # Drop overlays that no longer say anything. A 401 flag is over once the account's credential epoch
        # moved (the scheduler refreshed it): without this the overlay would be kept for ever.
        for account_id, overlay in list(self.overlays.items()):
            account = snapshot.accounts.get(account_id)
            if overlay.refresh_epoch is not None and (
                account is None or account.credential_epoch != overlay.refresh_epoch
            ):
                overlay.refresh_epoch = None
            if (
                (overlay.limited_until or 0) <= now
                and (overlay.demoted_until or 0) <= now
                and overlay.refresh_epoch is None
                and all((w.resets_at or 0) <= now for w in overlay.windows.values())
            ):
                del self.overlays[account_id]
        self.snapshot = snapshot

    # --- evidence ---------------------------------------------------------------------------------------
    def apply_effect(self, effect: AccountEffect, observed_at: float) -> None:
        """Make the evidence visible to the very next selection, and queue it for the database."""
        snapshot = self.snapshot
        overlay = self.overlays.setdefault(effect.account_id, Overlay())
        limit = (effect.limit_window,) if effect.limit_window is not None else ()
        for obs in (*effect.observations, *limit):
            if obs.limit_family != "codex":
                continue
            seen = overlay.windows.get(obs.window_minutes)
            if seen is not None and seen.observed_at > observed_at:
                continue  # older evidence that arrived late (see extproc.accesslog.answered_at)
            overlay.windows[obs.window_minutes] = WindowView(
                obs.window_minutes,
                obs.used_percent,
                None if obs.resets_at is None else obs.resets_at.timestamp(),
                observed_at,
            )
        if effect.limited_until is not None:
            overlay.limited_until = max(effect.limited_until, overlay.limited_until or 0.0)
        if effect.demoted_until is not None:
            overlay.demoted_until = max(effect.demoted_until, overlay.demoted_until or 0.0)
        if effect.refresh_requested and snapshot is not None and effect.account_id in snapshot.accounts:
            overlay.refresh_epoch = snapshot.accounts[effect.account_id].credential_epoch
        if snapshot is not None:
            for pool in snapshot.pools_of(effect.account_id):
                rebuild_pool(snapshot, pool, self.overlays)
        self.pending.effects.append((effect, observed_at))

    def pin_session(self, pool_id: int, session_hash: str, account_id: int, ttl: float, now: float) -> None:
        snapshot = self.snapshot
        if snapshot is None or ttl <= 0:
            return
        expires = now + ttl
        snapshot.sticky[(pool_id, session_hash)] = Sticky(account_id, expires)
        self.pending.sticky[(pool_id, session_hash)] = (account_id, expires)

    # --- in flight ----------------------------------------------------------------------------------------
    # A request holds one concurrency slot: its current attempt's account. The end of an attempt is not seen
    # on the request path (one message per attempt), so a slot is released at the next attempt's pick (the
    # earlier attempt is over: Envoy retries only after it ended) or, for the last attempt, when the request's
    # access-log entry arrives - up to one flush interval (0.5 s) late. Releasing that one earlier would need a
    # response-phase message per request; a cap is thus conservative by at most one flush interval.
    def start(self, request_id: str, account_id: int, now: float) -> None:
        self.in_flight[account_id] = self.in_flight.get(account_id, 0) + 1
        entry = self.requests_in_flight.get(request_id)
        if entry is None:
            self.requests_in_flight[request_id] = (now, [account_id])
        else:
            self._release(entry[1][-1])
            entry[1].append(account_id)  # every attempt's account stays listed: the access log reads by position

    def finish(self, request_id: str) -> None:
        for hook in self.finish_hooks:
            hook(request_id)
        entry = self.requests_in_flight.pop(request_id, None)
        if entry is not None:
            self._release(entry[1][-1])

    def _release(self, account_id: int) -> None:
        left = self.in_flight.get(account_id, 0) - 1
        if left > 0:
            self.in_flight[account_id] = left
        else:
            self.in_flight.pop(account_id, None)

    def expire_in_flight(self, now: float) -> None:
        """Requests whose access-log entry never came (Envoy restarted) must not hold a slot forever."""
        for request_id, (started, _) in list(self.requests_in_flight.items()):
            if now - started > IN_FLIGHT_TTL:
                self.finish(request_id)

    def expire_attempts(self, now: float) -> None:
        """Drop upstream-log records whose downstream entry never came (oldest first: amortised O(1))."""
        attempts = self.attempts
        while attempts:
            request_id, (seen, _) = next(iter(attempts.items()))
            if now - seen <= PENDING_ATTEMPTS_TTL:
                break
            del attempts[request_id]

    def remember_finished(self, request_id: str, seen: int, now: float) -> Finished:
        """Record that the request's downstream entry was handled after `seen` upstream entries."""
        done = self.finished.pop(request_id, None) or Finished(now, [], seen)
        done.at = now
        self.finished[request_id] = done
        finished = self.finished
        while finished and (len(finished) > MAX_FINISHED or now - next(iter(finished.values())).at > FINISHED_TTL):
            finished.popitem(last=False)
        return done

    def prune_sticky(self, now: float) -> None:
        """Drop expired sticky sessions from the live snapshot. `pin_session` adds one per new conversation and
        only a snapshot reload (a routing-version bump) dropped expired ones, so a gateway whose routing never
        changed kept every session it ever saw. Once a minute: a full scan, cheap at that rate."""
        snapshot = self.snapshot
        if snapshot is None or now - self._sticky_pruned_at < STICKY_PRUNE_INTERVAL:
            return
        self._sticky_pruned_at = now
        for key in [k for k, v in snapshot.sticky.items() if v.expires_at <= now]:
            del snapshot.sticky[key]

    # --- writes -------------------------------------------------------------------------------------------
    def take_pending(self) -> Batch:
        batch, self.pending = self.pending, Batch()
        return batch

    def requeue(self, batch: Batch) -> None:
        """A batch the database refused goes back in front of newer writes (bounded)."""
        batch.merge(self.pending)
        overflow = len(batch.requests) - MAX_PENDING_REQUESTS
        if overflow > 0:
            del batch.requests[:overflow]
            self.dropped_rows += overflow
        self.pending = batch
