"""The ext_proc's mutable state: the current snapshot (swapped by reference), the gateway's own evidence
overlays, per-key limits, in-flight counts, and the batch of writes waiting for the background writer.

Everything here runs on the event loop thread (the gRPC handlers and the access-log handler), so no locks;
the database is touched only by the reloader and the writer, in worker threads.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from extproc.budgets import BudgetCounters
from extproc.limits import DailyTokens, RequestRateLimiter
from extproc.share import ShareGate
from pooler.context import CoreContext
from pooler.gateway.bound_state import TurnStateIssuers
from pooler.gateway.evidence import AccountEffect, AttemptRecord, ErrorClass, attempt_effect, backoff_seconds
from pooler.gateway.snapshot import EXPIRED_STICKY_MEMORY_SECONDS, Overlay, Snapshot, Sticky, rebuild_pool
from pooler.gateway.writes import Batch
from pooler.selection import WindowView
from pooler.selection.load import RecentPicks

MAX_PENDING_REQUESTS = 200_000
"""Bound on request rows held while the database is away (~100 MB); beyond it the oldest are dropped."""
IN_FLIGHT_TTL = 65 * 60.0
"""A request whose access-log entry never came (Envoy restarted) stops holding its stream slot after this long:
above the longest stream Codex keeps open (a websocket: the upstream closes it at 60 minutes), so such a stream
keeps its slot, and a lost one blocks one slot of its account for about an hour at most."""
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
    """account id -> streams in flight: from the pick until the request's access-log entry (see `start`)."""
    recent: RecentPicks = field(default_factory=RecentPicks)
    """Recent picks per account (least-used's tie-break)."""
    cap_workers: int | None = None
    """Replica mode with POOLER_EXTPROC_WORKERS: how many workers share the accounts. Each enforces its share of
    every account's stream cap on its own streams (`pooler.selection.worker_cap`), so together they never exceed
    the cap; None: each process enforces the whole cap on the streams it picked (with replicas an account can then
    carry up to replicas x cap)."""
    sessions: dict[tuple[int, str], Sticky] = field(default_factory=dict)
    """(pool id, session hash) -> the account the session is claimed by: this process's session table. A pin
    is in force here from the moment of its pick; it outlives snapshots (a reload used to replace the table
    with the database's, which did not hold the pins made since the last flush: back-to-back turns of one
    session could land on two accounts)."""
    requests_in_flight: dict[str, tuple[float, list[int]]] = field(default_factory=dict)
    request_sessions: dict[str, tuple[int, str]] = field(default_factory=dict)
    """request id -> (pool id, session hash), for the requests in flight that named a session."""
    session_streams: dict[tuple[int, str], int] = field(default_factory=dict)
    """(pool id, session hash) -> the session's requests in flight (a finished turn stays counted until its
    access-log entry): whether an attempt stopped by the cap is a session's next turn (extproc/processor.py)."""
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
    failures: dict[tuple[int, ErrorClass], int] = field(default_factory=dict)
    """(account, error class) -> consecutive failed attempts; a success of the account clears its entries.
    Per process: each replica learns its own back-off (the demotion itself is shared through the database)."""
    turn_states: TurnStateIssuers = field(default_factory=TurnStateIssuers)
    """Which account issued each echoed `x-codex-turn-state` (keyed hashes, this process only)."""
    _sticky_pruned_at: float = 0.0
    _release_waiters: list[asyncio.Future[None]] = field(default_factory=list)

    # --- snapshot ---------------------------------------------------------------------------------------
    def install(self, snapshot: Snapshot) -> None:
        """Swap in a freshly loaded snapshot (overlays already applied by the loader)."""
        now = time.time()
        self.tokens.seed(snapshot.tokens_today, now)
        self.adopt_sessions(snapshot.sticky, now)
        snapshot.sticky.clear()  # adopted: `sessions` is the one table (no second copy to read by mistake)
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
            if overlay.deactivated_epoch is not None and (
                account is None or account.credential_epoch != overlay.deactivated_epoch or account.deactivated
            ):
                overlay.deactivated_epoch = None  # relinked, or the database has the state now
            for model in [m for m, until in overlay.excluded_models.items() if until is not None and until <= now]:
                del overlay.excluded_models[model]
            if account is not None:
                for model in account.excluded_models:
                    overlay.excluded_models.pop(model, None)  # the database has it now
            if (
                (overlay.limited_until or 0) <= now
                and (overlay.demoted_until or 0) <= now
                and overlay.refresh_epoch is None
                and overlay.deactivated_epoch is None
                and not overlay.excluded_models
                and all((w.resets_at or 0) <= now for w in overlay.windows.values())
            ):
                del self.overlays[account_id]
        self.snapshot = snapshot

    # --- evidence ---------------------------------------------------------------------------------------
    def learn(self, record: AttemptRecord, observed_at: float | None = None) -> None:
        """One finished attempt of a routed account: its effect (with this account's back-off for a repeated
        failure of the same class) applied now. `observed_at`: when to date it (default: when it answered)."""
        account_id = record.account_id
        if account_id is None:
            return
        kind = record.error_class
        base = self.snapshot.demotion_seconds if self.snapshot is not None else 30.0
        if kind is None:
            if record.status and record.status < 400 and self.failures:
                for key in [k for k in self.failures if k[0] == account_id]:
                    del self.failures[key]
        else:
            count = self.failures[(account_id, kind)] = self.failures.get((account_id, kind), 0) + 1
            base = backoff_seconds(base, count)
        effect = attempt_effect(record, base)
        if effect is not None:
            self.apply_effect(effect, record.observed_at if observed_at is None else observed_at)

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
        if effect.deactivated is not None and snapshot is not None and effect.account_id in snapshot.accounts:
            overlay.deactivated_epoch = snapshot.accounts[effect.account_id].credential_epoch
        if effect.excluded_model is not None:
            overlay.excluded_models[effect.excluded_model] = effect.excluded_until
        if snapshot is not None:
            for pool in snapshot.pools_of(effect.account_id):
                rebuild_pool(snapshot, pool, self.overlays)
        self.pending.effects.append((effect, observed_at))

    # --- sessions -----------------------------------------------------------------------------------------
    def pin_session(self, pool_id: int, session_hash: str, account_id: int, ttl: float, now: float) -> None:
        """Claim the session for `account_id` now (the next turn sees it whatever reloads in between), and
        queue the claim for the database."""
        if ttl <= 0:
            return
        expires = now + ttl
        self.sessions[(pool_id, session_hash)] = Sticky(account_id, expires)
        self.pending.sticky[(pool_id, session_hash)] = (account_id, expires)

    def adopt_sessions(self, stored: dict[tuple[int, str], Sticky], now: float) -> None:
        """Sessions read from the database (other replicas' and earlier runs' claims) join the table; where both
        know a session, the claim that lasts longer is the newer one and stays."""
        sessions = self.sessions
        for key, sticky in stored.items():
            have = sessions.get(key)
            if sticky.expires_at > now and (have is None or have.expires_at < sticky.expires_at):
                sessions[key] = sticky

    # --- in flight ----------------------------------------------------------------------------------------
    # A request holds one concurrency slot: its current attempt's account. The end of an attempt is not seen
    # on the request path (one message per attempt), so a slot is released at the next attempt's pick (the
    # earlier attempt is over: Envoy retries only after it ended) or, for the last attempt, when the request's
    # access-log entry arrives - up to one flush interval (0.5 s) late. Releasing that one earlier would need a
    # response-phase message per request; a cap is thus conservative by at most one flush interval.
    def start(self, request_id: str, account_id: int, now: float, session: tuple[int, str] | None = None) -> None:
        """`session`: (pool id, session hash) of the request, counted in `session_streams` too."""
        self.in_flight[account_id] = self.in_flight.get(account_id, 0) + 1
        entry = self.requests_in_flight.get(request_id)
        if entry is None:
            self.requests_in_flight[request_id] = (now, [account_id])
            if session is not None:
                self.request_sessions[request_id] = session
                self.session_streams[session] = self.session_streams.get(session, 0) + 1
        else:
            self._release(entry[1][-1])
            entry[1].append(account_id)  # every attempt's account stays listed: the access log reads by position

    def finish(self, request_id: str) -> None:
        for hook in self.finish_hooks:
            hook(request_id)
        entry = self.requests_in_flight.pop(request_id, None)
        if entry is not None:
            self._release(entry[1][-1])
        session = self.request_sessions.pop(request_id, None)
        if session is not None:
            left = self.session_streams.get(session, 0) - 1
            if left > 0:
                self.session_streams[session] = left
            else:
                self.session_streams.pop(session, None)

    def _release(self, account_id: int) -> None:
        left = self.in_flight.get(account_id, 0) - 1
        if left > 0:
            self.in_flight[account_id] = left
        else:
            self.in_flight.pop(account_id, None)
        waiters, self._release_waiters = self._release_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def slot_released(self, timeout: float) -> bool:
        """Whether some stream slot was released within `timeout` (attempts stopped by the stream cap wait on
        it; each then picks again, so a release wakes them all)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._release_waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        finally:
            if waiter in self._release_waiters:
                self._release_waiters.remove(waiter)
        return True

    def finish_ended(self, request_ids: Iterable[str]) -> None:
        """Finish the requests another process reported ended, those still in flight here (the rest were
        finished already, or were never picked here)."""
        in_flight = self.requests_in_flight
        for request_id in request_ids:
            if request_id in in_flight:
                self.finish(request_id)

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
        """Drop expired sessions from the session table: `pin_session` adds one per new conversation and nothing
        else removes them. Once a minute: a full scan, cheap at that rate."""
        if now - self._sticky_pruned_at < STICKY_PRUNE_INTERVAL:
            return
        self._sticky_pruned_at = now
        forget = now - EXPIRED_STICKY_MEMORY_SECONDS  # kept a while after expiry: a return is `sticky_expired`
        for key in [k for k, v in self.sessions.items() if v.expires_at <= forget]:
            del self.sessions[key]

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
