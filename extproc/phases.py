"""The interface of an ext_proc stream processor: one hook per message kind, and the per-attempt state.

One ext_proc stream is one upstream attempt. Its processor is picked once, on the request-headers message, from
the registry (extproc/processors.py) by the route row's processor name; every later message goes to the hook of
its kind. A hook a processor does not override answers "continue" of its kind - except `request_headers`, which
has no pass-through: a request forwarded undecided would carry the client's Pool key and no account token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.admission import Deferred
from pooler import route_table as rt
from pooler.gateway.snapshot import PoolEntry, Snapshot

LATER_PHASES = frozenset(("request_body", "response_headers", "response_body", "request_trailers", "response_trailers"))
"""Message kinds (the `ProcessingRequest.request` oneof's field names) after request headers; each is also the
name of its hook, which gets that field of the message."""


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    key_prefix: str
    pool_id: int


@dataclass(frozen=True, slots=True)
class Exhausted:
    """Every account was tried (or the pool's attempts are used up): the answer depends on why the earlier
    attempts failed, which only the access log tells. The server awaits `AttemptProcessor.conclude`."""

    pool: PoolEntry
    model: str | None
    request_id: str | None
    attempts: int
    routing: dict[str, Any]


Decision: TypeAlias = ep.ProcessingResponse | Exhausted | Deferred
"""What a request-headers hook answers: a response now, or one the server awaits (admission slot, evidence)."""

Answers: TypeAlias = ep.ProcessingResponse | tuple[ep.ProcessingResponse, ...]
"""What a later hook answers: one response, or (a processor that holds messages) the answers due now, in
message order - none while it holds."""


@dataclass(slots=True)
class Attempt:
    """One upstream attempt's request-headers facts, made once from the message and handed to the processor's
    hooks instead of long parameter lists. `AttemptProcessor.begin` fills the request's facts; `authenticate`
    the principal, its pool and what earlier attempts left in the routing metadata; `decide` the file pin."""

    headers: dict[str, str]
    """The one dict made from the message's headers (never copied)."""
    path: str
    """`:path` without the query."""
    route: rt.Route
    snapshot: Snapshot
    routing_ns: Any
    """NS_ROUTING as forwarded by Envoy: empty on attempt 1, the principal and tried accounts after."""
    request_ns: Any
    """NS_REQUEST: what the Lua request scanner lifted from the body (model, prompt_cache_key, file ids)."""
    now: float
    request_id: str | None
    """Envoy's x-request-id (attempt 1) or its copy in NS_ROUTING (later attempts: the header is never sent on)."""
    model: str | None = None
    first: bool = True
    """Attempt 1 of its request (authenticated here; admission applies)."""
    principal: Principal | None = None
    pool: PoolEntry | None = None
    tried: Sequence[int] = ()
    """Accounts earlier attempts of this request were routed to, in order."""
    base: dict[str, Any] | None = None
    """The routing metadata every answer of this attempt carries (pool, key, route family)."""
    pinned: int | None = None
    """The account a referenced file lives in: that account or an error, never another."""

    @property
    def upgrade(self) -> bool:
        return self.route.websocket


class StreamProcessor:
    """Hooks of one ext_proc stream. Subclasses keep their per-stream state in slots; stateless ones are shared
    by every stream (the registry says which).

    A processor may hold messages unanswered (extproc/first_event.py): its hooks then answer an empty tuple,
    `held_until` says by when (monotonic seconds) the server calls `expire` for the held answers if no message
    came, and `ended` asks the server to end the stream after its answers (Envoy then passes the rest of the
    response through without the ext_proc)."""

    __slots__ = ()

    @property
    def held_until(self) -> float | None:
        return None

    @property
    def ended(self) -> bool:
        return False

    def expire(self) -> tuple[ep.ProcessingResponse, ...]:
        """The held answers, unchanged, when `held_until` passed."""
        return ()

    def request_headers(self, attempt: Attempt) -> Decision:
        """The attempt's decision. No default (see the module docstring); an override that raises is answered
        fail-closed by the server."""
        raise NotImplementedError(f"{type(self).__name__} does not decide request headers")

    def routed(self, attempt: Attempt, decision: ep.ProcessingResponse) -> None:
        """The final request-headers answer, after any wait (admission, evidence): where the attempt went."""

    def request_body(self, body: ep.HttpBody) -> ep.ProcessingResponse:
        return ep.ProcessingResponse(request_body=ep.BodyResponse())

    def response_headers(self, headers: ep.HttpHeaders) -> Answers:
        return ep.ProcessingResponse(response_headers=ep.HeadersResponse())

    def response_body(self, body: ep.HttpBody) -> Answers:
        return ep.ProcessingResponse(response_body=ep.BodyResponse())

    def request_trailers(self, trailers: ep.HttpTrailers) -> ep.ProcessingResponse:
        return ep.ProcessingResponse(request_trailers=ep.TrailersResponse())

    def response_trailers(self, trailers: ep.HttpTrailers) -> ep.ProcessingResponse:
        return ep.ProcessingResponse(response_trailers=ep.TrailersResponse())


PASS_THROUGH = StreamProcessor()
"""A stream's processor until its request headers picked one (and for a request refused before that)."""
