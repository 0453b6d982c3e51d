"""Plain data the selection policy works on (no ORM, no I/O).

The ext_proc builds these from its in-memory snapshot: one `PoolPolicy` per pool and one `AccountCandidate`
per (pool, account) assignment; `SelectionRequest` is made per upstream attempt. Times are unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pooler.selection.load import RecentPicks

_NO_IN_FLIGHT: Mapping[int, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class WindowView:
    """One quota window of an account (latest evidence)."""

    window_minutes: int
    """300 = 5-hour, 10080 = weekly. Windows are classified by length, never by slot."""
    used_percent: float
    resets_at: float | None
    observed_at: float


@dataclass(frozen=True, slots=True)
class AccountCandidate:
    account_id: int
    label: str
    plan_type: str | None
    state: str
    """A `pooler.states.AccountState` value."""
    assignment_status: str
    """A `pooler.states.AssignmentStatus` value."""
    priority: int
    """Lower first (primary-first)."""
    access_token_expires_at: float | None
    demoted_until: float | None
    limited_until: float | None
    """Set by the gateway after a 429, until the reported reset."""
    refresh_requested: bool
    """The gateway saw a 401: skipped until the scheduler refreshed the token."""
    has_token: bool
    windows: tuple[WindowView, ...] = ()
    excluded_models: tuple[tuple[str, float | None], ...] = ()
    """(model, until or None) this account cannot serve (429 usage_not_included; a per-model limit family)."""


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    pool_status: str
    """A `pooler.states.PoolStatus` value."""
    strategy: str
    """A `pooler.states.Strategy` value; unknown values behave as least-used."""
    primary_cap_percent: float = 100.0
    """Cap on the 5-hour window (keeps a reserve); 100 = no cap."""
    secondary_cap_percent: float = 100.0
    """Cap on the weekly window; 100 = no cap."""
    allowed_models: frozenset[str] | None = None
    """None = every model."""
    max_concurrency_per_account: int | None = None
    sticky_ttl_seconds: int = 3600
    stale_after_seconds: float | None = None
    """Quota evidence observed longer ago than this is ignored (None = evidence never goes stale; a window
    whose `resets_at` has passed is ignored regardless)."""


@dataclass(frozen=True, slots=True)
class SelectionRequest:
    now: float
    model: str | None = None
    """None (e.g. a websocket upgrade without model metadata) passes the allow-list: nothing to check."""
    exclude: frozenset[int] = frozenset()
    """Accounts already tried for this request."""
    sticky_account_id: int | None = None
    """The session's current account, if any."""
    in_flight: Mapping[int, int] = field(default_factory=lambda: _NO_IN_FLIGHT)
    """account_id -> streams in flight (the concurrency cap, and least-used's tie-break)."""
    recent: RecentPicks | None = None
    """Recent picks per account (least-used's tie-break); None = no history."""
    enforce_cap: bool = True
    """False: the caller cannot count streams reliably, so the pool's concurrency cap is not applied (ext_proc
    replicas that were not told how many they are: in-flight counts still break ties)."""
    cap_workers: int = 1
    """How many processes split each account's stream cap; this one enforces its share (`worker_cap`)."""
    stale_after_seconds: float | None = None
    """Overrides the policy's staleness bound when set."""


@dataclass(frozen=True, slots=True)
class Selection:
    account_id: int | None
    error: str | None = None
    """When no account is chosen: `usage_limit_reached` (every account that is otherwise serving is quota-spent),
    `concurrency_cap` (every account that could serve is at its cap), `pool_paused`, `model_not_allowed` or
    `no_eligible_account`."""
    earliest_reset: float | None = None
    """With `usage_limit_reached`: the earliest time a spent account becomes usable again (None if unknown)."""
    sticky_kept: bool = False
    """The chosen account is the session's sticky account."""
    sticky_moved: bool = False
    """The session had a sticky account that is no longer eligible, and another account was chosen."""
    sticky_full: bool = False
    """The session's account is eligible but at its concurrency cap: this request went to another account and
    the session stays claimed by its own (the caller must not re-pin it)."""


def worker_cap(cap: int | None, workers: int) -> int | None:
    """One worker's share of a per-account stream cap that `workers` processes enforce, each on its own streams:
    the shares add up to at most the cap, so the accounts never see more (at least 1 each, so a cap below the
    worker count admits up to one stream per worker)."""
    if cap is None:
        return None
    return max(1, cap // max(1, workers))


def effective_stale_after(policy: PoolPolicy, request: SelectionRequest) -> float | None:
    return request.stale_after_seconds if request.stale_after_seconds is not None else policy.stale_after_seconds
