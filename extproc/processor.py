"""The per-attempt decision: one synchronous ext_proc message (request headers) per upstream attempt.

Attempt 1 (no principal in the forwarded NS_ROUTING metadata): authenticate the Pool key, check its limits and
the model. Every attempt: choose an account (skipping those already tried), overwrite `authorization` and
`chatgpt-account-id` (mutations persist into the next attempt, so what we own is always overwritten), strip
client-sent internal headers, and record the routing metadata the next attempt and the access log read.

Fail-closed throughout: a request this code cannot decide never reaches the upstream (it would carry no
account token, or the client's Pool key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal, overload

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest, ProcessingResponse

from extproc import responses
from extproc.admission import Deferred
from extproc.ingress import key_allows_client
from extproc.metrics import METRICS
from extproc.phases import Attempt, Exhausted, Principal
from extproc.state import GatewayState
from extproc.structs import int_field, string_field
from extproc.surface import WS_EXTENSIONS_HEADER, Surface, attach_view
from pooler import gateway_contract as gc
from pooler import route_table as rt
from pooler.codex_client import identity_headers
from pooler.gateway.bound_state import TURN_STATE_PURPOSE, forwards_turn_state, keeps_sealed_session
from pooler.gateway.sessions import session_hash, session_key
from pooler.gateway.snapshot import AccountEntry, KeyEntry, PoolEntry, Snapshot
from pooler.gateway.switch_causes import attempt_cause
from pooler.gateway.upstream_identity import (
    account_installation_id,
    client_installation,
    client_installation_hash,
    installation_mutations,
    removed_upstream,
)
from pooler.poolkeys import key_matches, key_prefix
from pooler.selection import Selection, SelectionRequest, StrategyState, select_account
from pooler.selection.eligibility import ineligibility
from pooler.states import KeyStatus

log = logging.getLogger(__name__)

SDK_ROUTES = frozenset(r.name for r in rt.ROUTES if (r.path or r.prefix or "").startswith("/v1/"))
"""Routes an OpenAI SDK calls: upstream, the gateway is the Codex client (its identity replaces the SDK's)."""
CODEX_IDENTITY = identity_headers()

EVIDENCE_WAIT_SECONDS = 1.5
"""Longest wait for the access log (flushed every 0.5 s) before answering a request whose accounts all failed."""
STICKY_REFRESH_FRACTION = 0.25
SEQUENTIAL_STREAMS = 1
"""An attempt stopped by the cap waits only for a session with at most this many requests counted (its previous
turn, not yet logged): a session's next turn. More is a burst of the session's own, answered at once."""
CAP_WAIT_SECONDS = 1.0
"""How long an attempt stopped only by the stream cap waits for a stream to end: two access-log flush intervals
(a slot is released up to one flush after its stream ended), well below the ext_proc's 2 s message timeout."""


class Busy:
    """`_pick`'s answer when only the stream cap stood in the way and the caller said it would wait."""


BUSY = Busy()
"""A kept sticky session is re-written only once a quarter of its TTL has passed (fewer writes)."""


def route_of(headers: Mapping[str, str], routing: Any = None) -> rt.Route | None:
    """The route table row of this request; None for anything else. Attempt 1: the `x-pooler-route` header
    Envoy's route set. Later attempts: the row attempt 1 recorded in NS_ROUTING (metadata only Envoy carries;
    the header itself was removed before the upstream, and that removal persists into every later attempt)."""
    name = string_field(routing, gc.ROUTING_ROUTE) or headers.get(rt.ROUTE_HEADER, "")
    route = rt.ROUTES_BY_NAME.get(name)
    return route if route is not None and route.through_extproc else None


def misconfigured(
    route: rt.Route | None, stream_processor: str | None, request_ns: Any, path: str = "", websocket: bool = False
) -> bool:
    """True when this request did not come through what the route table renders for its row: no row, a cluster
    whose filter names another body processor (a /v1 route sent to the plain Codex cluster would go upstream
    untranslated), a scanning row whose request scanner did not run (model allow-lists would see no model), or -
    for the rows whose processor forwards as it is - a path or upgrade the row's route cannot have matched (a
    hand-written route with a client-sent row name). Body processors are bound to their cluster, so their
    retried attempts (which see the path an earlier attempt rewrote) need no path check."""
    if route is None:
        return True
    expected = None if route.spec.headers_only else route.processor
    if stream_processor != expected:
        return True
    if route.body is rt.Body.SCAN and string_field(request_ns, gc.REQUEST_SCANNED) != "1":
        return True
    return expected is None and not route.admits(path, websocket)


CACHE_MAX = 65536


def _bounded(cache: dict[Any, str]) -> dict[Any, str]:
    """The cache, emptied first when full (clients choose the values)."""
    if len(cache) >= CACHE_MAX:
        cache.clear()
    return cache


def request_id_of(headers: Mapping[str, str], routing: Any = None) -> str | None:
    """Envoy's id of this request: the header on attempt 1; later attempts read the copy attempt 1 recorded in
    NS_ROUTING, because the header is removed before the upstream and that removal persists."""
    return headers.get(gc.REQUEST_ID_HEADER) or string_field(routing, gc.ROUTING_REQUEST_ID)


def presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key") or None


def model_from_turn_metadata(value: str | None) -> str | None:
    """Websocket upgrades carry no body; Codex's `x-codex-turn-metadata` header names the model."""
    if not value or len(value) > 16384:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return model if isinstance(model, str) else None


class AttemptProcessor:
    """The decision of one attempt's request headers, in steps the stream processors (extproc/processors.py)
    compose: `begin` (the route row and the facts of the message), `authenticate` (the principal and its pool),
    `decide` (gates, file pin, admission, the account pick) and, for a request out of attempts, `conclude`."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.hasher = state.ctx.hasher
        self.surface = Surface(state)
        # Keyed hashes of client installation ids and the per-account ids derived from them: two HMACs per
        # attempt otherwise, for values that repeat with every turn of a client.
        self._client_hashes: dict[str, str] = {}
        self._installations: dict[tuple[int, str], str] = {}

    def begin(self, request: ProcessingRequest, stream_processor: str | None = None) -> Attempt | ProcessingResponse:
        """The attempt's facts, or a refusal before any processor: no route row, a row whose processor is not the
        one the cluster's filter names (`stream_processor`; None: headers only), no snapshot yet."""
        headers = {
            h.key: h.raw_value.decode("latin-1") if h.raw_value else h.value
            for h in request.request_headers.headers.headers
        }
        metadata = request.metadata_context.filter_metadata
        routing = metadata.get(gc.NS_ROUTING, None)
        request_ns = metadata.get(gc.NS_REQUEST, None)
        route = route_of(headers, routing)
        path = headers.get(":path", "").split("?", 1)[0]
        websocket = headers.get("upgrade", "").lower() == "websocket"
        if route is None or misconfigured(route, stream_processor, request_ns, path, websocket):
            METRICS.route_not_configured()
            return responses.error("route_not_configured")
        snapshot = self.state.snapshot
        if snapshot is None:
            return responses.error("gateway_not_ready")
        return Attempt(
            headers, path, route, snapshot, routing, request_ns, time.time(), request_id_of(headers, routing)
        )

    def authenticate(self, attempt: Attempt, limits: bool = True) -> ProcessingResponse | None:
        """Fills the attempt's model, principal, pool and routing base; a response refuses the request. Attempt 1
        authenticates the Pool key; later attempts trust the principal in metadata only Envoy can carry.
        `limits=False`: the key's usage limits do not apply (its holder asks how much of them is left)."""
        headers, snapshot, routing, route = attempt.headers, attempt.snapshot, attempt.routing_ns, attempt.route
        family = route.family
        model = string_field(attempt.request_ns, gc.REQUEST_MODEL) or model_from_turn_metadata(
            headers.get("x-codex-turn-metadata")
        )
        attempt.model = model
        key_id = int_field(routing, gc.ROUTING_KEY_ID)
        if key_id is None:
            started = time.perf_counter()
            outcome = self._check_key(snapshot, headers, model, family, attempt.now, limits)
            METRICS.observe_phase("auth", time.perf_counter() - started)
            if isinstance(outcome, ProcessingResponse):
                return outcome
            principal = outcome
        else:
            principal = Principal(
                key_id, string_field(routing, gc.ROUTING_KEY_PREFIX) or "", int_field(routing, gc.ROUTING_POOL_ID) or 0
            )
            attempt.first = False
            if gc.ROUTING_TRIED in routing.fields:
                attempt.tried = [int(v.number_value) for v in routing.fields[gc.ROUTING_TRIED].list_value.values]
        attempt.principal = principal
        attempt.base = base = {
            gc.ROUTING_POOL_ID: principal.pool_id,
            gc.ROUTING_KEY_ID: principal.key_id,
            gc.ROUTING_KEY_PREFIX: principal.key_prefix,
            gc.ROUTING_ROUTE_FAMILY: family,
            gc.ROUTING_ROUTE: route.name,
        }
        if attempt.request_id:
            base[gc.ROUTING_REQUEST_ID] = attempt.request_id
        attempt.pool = snapshot.pools.get(principal.pool_id)
        if attempt.pool is None:
            return responses.error("no_eligible_account", base)
        return None

    def decide(self, attempt: Attempt) -> ProcessingResponse | Exhausted | Deferred:
        """An authenticated attempt of a route the upstream serves: feature gates, file affinity, admission
        (first attempt only), then the account pick with the client's quota view."""
        pool, base = attempt.pool, attempt.base
        assert pool is not None and base is not None, "authenticate() first"
        headers, request_ns, route = attempt.headers, attempt.request_ns, attempt.route
        if string_field(request_ns, gc.REQUEST_INVALID_JSON) == "1":
            # The scanner found no JSON object: the upstream would only reject it, on an account's token.
            return responses.error("invalid_json", base)
        gate = self.surface.gate(attempt.snapshot, pool.pool_id, route.family, headers, request_ns, base)
        if gate is not None:
            return gate
        pinned = self.surface.pinned_account(pool.pool_id, attempt.path, request_ns, attempt.now)
        if pinned is False:
            return responses.error("file_account_unavailable", base)
        attempt.pinned = pinned or None
        if not attempt.first:
            return self._pick_or_wait(attempt)
        admission_family = route.admission
        request_id = attempt.request_id
        config = attempt.snapshot.features.admission
        admitted = self.surface.admission.try_acquire(admission_family, request_id, config)
        if admitted:
            return self._pick_or_wait(attempt)
        overloaded = responses.error("server_is_overloaded", base, {"retry-after": str(config.retry_after_seconds)})
        if admitted is False or admission_family is None or request_id is None:
            return overloaded
        family_name, rid = admission_family, request_id

        async def queued() -> ProcessingResponse:
            if not await self.surface.admission.wait(family_name, rid, config):
                return overloaded
            decision = self._pick(attempt)
            return await self.conclude(decision) if isinstance(decision, Exhausted) else decision

        return Deferred(queued)

    def _check_key(
        self,
        snapshot: Snapshot,
        headers: Mapping[str, str],
        model: str | None,
        family: str,
        now: float,
        limits: bool = True,
    ) -> Principal | ProcessingResponse:
        raw = presented_key(headers)
        prefix = key_prefix(raw) if raw else None
        key: KeyEntry | None = snapshot.keys.get(prefix) if prefix else None
        if not raw:
            return responses.error("missing_api_key", {gc.ROUTING_ROUTE_FAMILY: family})
        # The secret is verified (constant time) before any state of the key is revealed.
        if key is None or not key_matches(self.hasher, raw, key.key_hash):
            return responses.error("invalid_api_key", {gc.ROUTING_ROUTE_FAMILY: family})
        routing = {
            gc.ROUTING_POOL_ID: key.pool_id,
            gc.ROUTING_KEY_ID: key.key_id,
            gc.ROUTING_KEY_PREFIX: key.prefix,
            gc.ROUTING_ROUTE_FAMILY: family,
        }
        if not key_allows_client(snapshot.features, key.key_id, headers):
            return responses.error("ip_not_allowed", routing)
        if key.status == KeyStatus.REVOKED:
            return responses.error("key_revoked", routing)
        if key.status == KeyStatus.PAUSED:
            return responses.error("key_paused", routing)
        if key.expires_at is not None and key.expires_at <= now:
            return responses.error("key_expired", routing)
        if model is not None and key.allowed_models is not None and model not in key.allowed_models:
            return responses.error("model_not_allowed", routing)
        if limits:
            refused = self._check_limits(key, snapshot.pools.get(key.pool_id), routing, now)
            if refused is not None:
                return refused
        return Principal(key.key_id, key.prefix, key.pool_id)

    def _check_limits(
        self, key: KeyEntry, pool: PoolEntry | None, routing: Mapping[str, Any], now: float
    ) -> ProcessingResponse | None:
        """Tokens per day, budgets, quota share, then requests per minute (last: a refused request does not use
        a slot)."""
        if key.tokens_per_day is not None and self.state.tokens.used(key.prefix, now) >= key.tokens_per_day:
            wait = self.state.tokens.seconds_to_midnight(now)
            return responses.error("tokens_limit_exceeded", routing, {"retry-after": str(wait)})
        over_budget = self.state.budgets.check(key.prefix, routing, now)
        if over_budget is not None:
            return over_budget
        over_share = self.state.shares.check(key.prefix, pool, routing, now)
        if over_share is not None:
            return over_share
        if key.requests_per_minute is not None:
            wait_s = self.state.limiter.check_and_count(key.key_id, key.requests_per_minute, now)
            if wait_s is not None:
                return responses.error("rate_limit_exceeded", routing, {"retry-after": str(wait_s)})
        return None

    def _pick_or_wait(self, attempt: Attempt) -> ProcessingResponse | Exhausted | Deferred:
        """`_pick`, except that a session's next turn stopped only by the stream cap (every account at it, or the
        session's own) waits up to CAP_WAIT_SECONDS for a stream to end before it is refused or overflows. Slots
        are released when a request's access-log entry arrives, up to one flush after the stream ended, so the
        next turn finds the previous one still counted: under a steady load near the cap (the soak in
        tests/integration/test_gateway_spread_soak.py) those late releases alone refused turns the accounts could
        serve and moved a third of the sessions. Only a session with at most SEQUENTIAL_STREAMS requests counted
        waits; anything else (a burst of one session, no session) is answered at once: waiting there made
        back-to-back requests wait for each flush, and the slower flushes of a slower load kept it there
        (`make bench`, c=1: 9-37 instead of ~500 requests/s)."""
        decision = self._pick(attempt, busy_ok=False)
        if not isinstance(decision, Busy):
            return decision
        state = self.state

        async def until_a_slot() -> ProcessingResponse:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CAP_WAIT_SECONDS
            while True:
                remaining = deadline - loop.time()
                final = remaining <= 0 or not await state.slot_released(remaining)
                attempt.now = time.time()
                picked = self._pick(attempt, busy_ok=final)
                if not isinstance(picked, Busy):
                    break
            return await self.conclude(picked) if isinstance(picked, Exhausted) else picked

        return Deferred(until_a_slot)

    @overload
    def _pick(self, attempt: Attempt, busy_ok: Literal[True] = True) -> ProcessingResponse | Exhausted: ...
    @overload
    def _pick(self, attempt: Attempt, busy_ok: bool) -> ProcessingResponse | Exhausted | Busy: ...
    def _pick(self, attempt: Attempt, busy_ok: bool = True) -> ProcessingResponse | Exhausted | Busy:
        """The account of this attempt (skipping those already tried), its bearer and the routing metadata; the
        pooled quota view is attached to a forwarded request. `busy_ok` False: BUSY instead of the refusal the
        stream cap alone causes (the caller waits for a slot)."""
        decision = self._select(attempt, busy_ok)
        if isinstance(decision, ProcessingResponse) and decision.HasField("request_headers"):
            assert attempt.pool is not None and attempt.principal is not None
            view = self.surface.view_values(
                attempt.snapshot, attempt.pool, attempt.principal.key_id, attempt.route, attempt.now
            )
            attach_view(decision, view)
        return decision

    def _select(self, attempt: Attempt, busy_ok: bool = True) -> ProcessingResponse | Exhausted | Busy:
        pool, base = attempt.pool, attempt.base
        assert pool is not None and base is not None
        snapshot = attempt.snapshot
        headers = attempt.headers
        model = attempt.model
        tried = attempt.tried
        pinned = attempt.pinned
        now = attempt.now
        raw_session = session_key(headers, string_field(attempt.request_ns, gc.REQUEST_PROMPT_CACHE_KEY))
        hashed = session_hash(self.hasher, pool.pool_id, raw_session) if raw_session else None
        sticky = self.state.sessions.get((pool.pool_id, hashed)) if hashed else None
        sticky_account = sticky.account_id if sticky is not None and sticky.expires_at > now else None
        session_account = sticky_account
        routing = {**base, gc.ROUTING_TRIED: list(tried)}
        if hashed:
            routing[gc.ROUTING_SESSION] = hashed

        if len(tried) >= pool.max_attempts:
            return Exhausted(pool, model, attempt.request_id, len(tried), routing)
        exclude = frozenset(tried)
        if pinned is not None:
            # A referenced file lives in one account: that account or a clear error, never another account.
            if pinned in tried:
                return responses.error("file_account_unavailable", routing)
            exclude = frozenset(c.account_id for c in pool.candidates if c.account_id != pinned)
            sticky_account = pinned
        started = time.perf_counter()
        wanted = SelectionRequest(
            now=now,
            model=model,
            exclude=exclude,
            sticky_account_id=sticky_account,
            in_flight=self.state.in_flight,
            recent=self.state.recent,
            cap_workers=self.state.cap_workers or 1,
        )
        selection = select_account(pool.policy, pool.index, wanted, pool.strategy)
        sealed = string_field(attempt.request_ns, gc.REQUEST_SEALED_STATE) == "1"
        if sealed and session_account is not None and pinned is None and not selection.sticky_kept:
            selection = self._sealed_home(pool, wanted, session_account) or selection
        picked_at = time.perf_counter()
        METRICS.observe_phase("select", picked_at - started)
        if (
            not busy_ok
            and (selection.error == "concurrency_cap" or selection.sticky_full)
            and hashed is not None
            and self.state.session_streams.get((pool.pool_id, hashed), 0) <= SEQUENTIAL_STREAMS
        ):
            return BUSY
        if selection.account_id is None:
            # Rare path: explain it per account (bounded reason codes) for pooler_selection_no_eligible_total.
            outcome = {"usage_limit_reached": "usage_limit", "concurrency_cap": "concurrency_cap"}
            METRICS.picked(pool.name, outcome.get(selection.error or "", "no_eligible"))
            METRICS.no_eligible_reasons(
                pool.name,
                (r for c in pool.candidates if (r := ineligibility(c, pool.policy, wanted)) is not None),
            )
        else:
            METRICS.picked(pool.name, "sticky" if selection.sticky_kept else "strategy")
        if selection.account_id is None and pinned is not None and selection.error != "concurrency_cap":
            # (A file's account that is only busy answers "retry shortly" below, not "upload it again".)
            return responses.error("file_account_unavailable", routing)
        if selection.account_id is None:
            if selection.error == "no_eligible_account" and tried:
                return Exhausted(pool, model, attempt.request_id, len(tried), routing)
            if selection.error == "usage_limit_reached":
                return self._usage_limit(snapshot, pool, selection.earliest_reset, now, routing)
            if selection.error == "concurrency_cap":
                # Busy, not unfit: Codex backs off and retries a 503 `server_is_overloaded` (never a plain 429).
                wait = str(snapshot.features.admission.retry_after_seconds)
                return responses.error("server_is_overloaded", routing, {"retry-after": wait})
            return responses.error(selection.error or "no_eligible_account", routing)
        account = snapshot.accounts[selection.account_id]
        if account.access_token is None:  # selection never picks these; guard against a stale index anyway
            return responses.error("no_eligible_account", routing)

        # A retry of sealed state lands where it can only fail (400 invalid_encrypted_content): the session keeps
        # its account for the next request instead of following this attempt. A request that only overflowed a
        # busy sticky account (sticky_full) keeps the session's claim too.
        if (
            hashed
            and not selection.sticky_full
            and not (sealed and tried)
            and (
                not selection.sticky_kept
                or sticky is None
                or sticky.expires_at - now < pool.policy.sticky_ttl_seconds * (1 - STICKY_REFRESH_FRACTION)
            )
        ):
            self.state.pin_session(pool.pool_id, hashed, account.account_id, pool.policy.sticky_ttl_seconds, now)
        request_id = attempt.request_id
        if request_id:
            self.state.start(request_id, account.account_id, now, (pool.pool_id, hashed) if hashed else None)
        self.state.recent.add(account.account_id, now)

        routing[gc.ROUTING_TRIED] = [*tried, account.account_id]
        routing[gc.ROUTING_ACCOUNT_ID] = account.account_id
        cause = attempt_cause(
            pool,
            wanted,
            has_session=hashed is not None,
            previous_cause=string_field(attempt.routing_ns, gc.ROUTING_SWITCH_CAUSE),
            sticky=sticky,
            tried=tried,
            picked=account.account_id,
        )
        if cause is not None:
            routing[gc.ROUTING_SWITCH_CAUSE] = cause
        set_headers = {
            "authorization": f"Bearer {account.access_token}",
            gc.ACCOUNT_ID_HEADER: account.chatgpt_account_id,
        }
        if attempt.upgrade and not headers.get(gc.WEBSOCKET_BETA_HEADER):
            set_headers[gc.WEBSOCKET_BETA_HEADER] = gc.WEBSOCKET_BETA_VALUE
        set_headers.update(self._installation(attempt, account, routing))
        sdk_client = attempt.route.name in SDK_ROUTES
        if sdk_client:
            set_headers.update(CODEX_IDENTITY)
        remove = removed_upstream(headers, sdk_client)
        if attempt.upgrade:
            # Envoy's token counter (pooler.ws_usage) and the pooled view's frame rewriter read frames, which a
            # negotiated permessage-deflate would compress: the upgrade goes upstream without the offer.
            remove.append(WS_EXTENSIONS_HEADER)
        turn_state = headers.get(gc.TURN_STATE_HEADER)
        if turn_state and not self._forwards_turn_state(pool, turn_state, session_account, account.account_id, now):
            remove.append(gc.TURN_STATE_HEADER)
        forward = responses.forward(set_headers, remove, routing)
        METRICS.observe_phase("mutate", time.perf_counter() - picked_at)
        return forward

    @staticmethod
    def _sealed_home(pool: PoolEntry, wanted: SelectionRequest, account_id: int) -> Selection | None:
        """The sticky account kept for a request with sealed items, when only a demotion stood against it."""
        candidate = next((c for c in pool.candidates if c.account_id == account_id), None)
        if candidate is None or not keeps_sealed_session(candidate, pool.policy, wanted):
            return None
        return Selection(account_id, sticky_kept=True)

    def _forwards_turn_state(
        self, pool: PoolEntry, token: str, session_account: int | None, picked: int, now: float
    ) -> bool:
        """Whether the client's turn-state may go to the picked account: only to the account that issued it. The
        removal persists into later attempts of the request (Envoy keeps header mutations), which only ever
        drops a token, never sends one elsewhere."""
        token_hash = self.hasher.hexdigest(TURN_STATE_PURPOSE, f"{pool.pool_id}\x00{token}")
        issuer = self.state.turn_states.issuer(token_hash, session_account, now)
        if forwards_turn_state(issuer, picked):
            return True
        METRICS.turn_state_dropped(pool.name)
        return False

    def _installation(self, attempt: Attempt, account: AccountEntry, routing: dict[str, Any]) -> dict[str, str]:
        """The client's installation id, wherever it named it, replaced by this account's own (see
        pooler.gateway.upstream_identity). Attempt 1 keeps only a keyed hash of the client's id, in the routing
        metadata, because its rewrite persists into the headers later attempts see."""
        client_hash = string_field(attempt.routing_ns, gc.ROUTING_INSTALLATION)
        if client_hash is None:
            raw = client_installation(attempt.headers)
            if raw is None:
                return {}
            client_hash = self._client_hashes.get(raw)
            if client_hash is None:
                client_hash = _bounded(self._client_hashes)[raw] = client_installation_hash(self.hasher, raw)
        routing[gc.ROUTING_INSTALLATION] = client_hash
        derived = self._installations.get((account.account_id, client_hash))
        if derived is None:
            derived = account_installation_id(self.hasher, account.account_id, client_hash)
            _bounded(self._installations)[(account.account_id, client_hash)] = derived
        # For the upstream Lua filter that gives the body's copy of the id the same account's value.
        routing[gc.ROUTING_ACCOUNT_INSTALLATION] = derived
        return installation_mutations(attempt.headers, derived)

    def _usage_limit(
        self, snapshot: Snapshot, pool: PoolEntry, earliest: float | None, now: float, routing: dict[str, Any]
    ) -> ProcessingResponse:
        """The gateway's own 429 with the quota headers an upstream 429 carries (Codex shows them to the user),
        here the pool's figures - or the key's own when its upstream quota is hidden."""
        extra = self.surface.quota_headers(snapshot, pool, int(routing[gc.ROUTING_KEY_ID]), now)
        if earliest is not None and earliest > now:
            extra["retry-after"] = str(max(1, int(earliest - now)))
        return responses.immediate(
            429,
            responses.usage_limit_body(earliest, now),
            {**routing, gc.ROUTING_ERROR: "usage_limit_reached"},
            extra,
            details="pooler_usage_limit_reached",
        )

    async def conclude(self, exhausted: Exhausted, wait_seconds: float = EVIDENCE_WAIT_SECONDS) -> ProcessingResponse:
        """Answer a request whose attempts are used up. The earlier attempts' statuses are not visible on this
        headers-only path, so wait (this rare path only) until the access log has delivered them - then a 429
        has marked its account limited - and classify the pool as a whole: the Codex-shaped 429 with the
        earliest reset when every serving account is spent, else 503 `no_eligible_account`. A process without
        the access log (`pooler up`'s decision workers) sees the limits arrive with a snapshot reload instead:
        it stops waiting as soon as the pool reads spent."""
        deadline = time.monotonic() + wait_seconds
        while exhausted.request_id and time.monotonic() < deadline:
            seen = self.state.attempts.get(exhausted.request_id)
            if seen is not None and len(seen[1]) >= exhausted.attempts:
                break
            if self._pool_overall(exhausted, StrategyState())[1].error == "usage_limit_reached":
                break  # a look only: a scratch strategy state leaves the pool's round-robin cursor where it is
            await asyncio.sleep(0.02)
        pool, overall = self._pool_overall(exhausted)
        if overall.error == "usage_limit_reached" and self.state.snapshot is not None:
            return self._usage_limit(self.state.snapshot, pool, overall.earliest_reset, time.time(), exhausted.routing)
        return responses.error("no_eligible_account", exhausted.routing, {"retry-after": "1"})

    def _pool_overall(self, exhausted: Exhausted, strategy: StrategyState | None = None) -> tuple[PoolEntry, Selection]:
        """The pool as the current snapshot has it, and what it could serve now."""
        snapshot = self.state.snapshot
        pool = snapshot.pools.get(exhausted.pool.pool_id, exhausted.pool) if snapshot else exhausted.pool
        wanted = SelectionRequest(now=time.time(), model=exhausted.model)
        return pool, select_account(pool.policy, pool.index, wanted, strategy or pool.strategy)
