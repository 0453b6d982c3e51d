"""Alert rules: pure functions from a plain-data snapshot of the instance to the signals that hold right now.

No I/O and no ORM here, so every rule is tested against hand-built snapshots. Each signal names its subject
(`pool:3`, `key:cpk_ab12cd34`, `job:poll_usage`): the incident store keeps one open incident per rule and
subject. Signal details are metadata only - pool labels, key prefixes, counts, states - never account
identifiers, emails, tokens or request content, because they are copied into webhooks and emails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    INFO = "info"
    """A state changed; traffic is not known to be affected."""
    WATCH = "watch"
    """Capacity may shrink, or follow-up is needed if it persists."""
    DEGRADED = "degraded"
    """Some traffic may fail, retry, or route to fewer accounts."""
    OUTAGE = "outage"
    """A pool cannot serve its traffic."""
    SECURITY = "security"
    """Credentials or access need owner review."""


SEVERITY_RANK: Mapping[str, int] = {s.value: i for i, s in enumerate(Severity)}


@dataclass(frozen=True)
class PoolState:
    pool_id: int
    label: str
    status: str
    accounts: int
    """Accounts assigned (any assignment status) and not deleted."""
    routable: int
    by_category: Mapping[str, int] = field(default_factory=dict)
    """Non-routable accounts counted by readiness category (`reauth`, `quota_exhausted`, `paused`, ...)."""
    by_state: Mapping[str, int] = field(default_factory=dict)
    """Assigned accounts counted by lifecycle state."""
    windows_over: Mapping[str, int] = field(default_factory=dict)
    """Assigned accounts with a live quota window at or above the threshold, by window name (`5h`, `weekly`)."""


@dataclass(frozen=True)
class KeyErrors:
    key_prefix: str | None
    """None when the client sent no recognisable Pool key."""
    pool_label: str | None
    unauthorized: int
    forbidden: int


@dataclass(frozen=True)
class KeyBudgetUse:
    """A budget of a key whose soft or hard limit is reached in the current period."""

    key_prefix: str
    pool_label: str | None
    period: str
    unit: str
    used: float
    soft_limit: float | None
    hard_limit: float | None
    resets_at: dt.datetime


@dataclass(frozen=True)
class JobHealth:
    job_id: str
    consecutive_failures: int
    last_error_code: str | None
    last_failed_at: dt.datetime | None


@dataclass(frozen=True)
class CacheShare:
    """A pool's prompt-cache facts: input and cached tokens of the last hour and of the 24 h before it, and the
    last hour's conversation moves by switch cause (pooler.gateway.switch_causes)."""

    pool_id: int
    label: str
    status: str
    recent_input: int
    recent_cached: int
    baseline_input: int
    baseline_cached: int
    switches: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Thresholds:
    min_routable: int = 2
    quota_percent: float = 90.0
    key_error_threshold: int = 20
    key_error_window: dt.timedelta = dt.timedelta(minutes=15)
    job_failure_runs: int = 3
    cache_drop_points: float = 20.0
    """Percentage points the last hour's cached share may fall below the 24 h baseline before it alerts."""
    cache_min_input_tokens: int = 100_000
    """Input tokens the last hour (and the baseline) need before a share means anything."""


@dataclass(frozen=True)
class AlertSnapshot:
    now: dt.datetime
    pools: Sequence[PoolState] = ()
    unassigned_reauth: int = 0
    """Accounts in reauth_required that no pool routes to (still worth a follow-up)."""
    key_errors: Sequence[KeyErrors] = ()
    jobs: Sequence[JobHealth] = ()
    cache: Sequence[CacheShare] = ()
    budgets: Sequence[KeyBudgetUse] = ()


@dataclass(frozen=True)
class Signal:
    rule: str
    subject: str
    severity: Severity
    title: str
    impact: str
    next_check: str
    details: Mapping[str, Any]

    def as_details(self) -> dict[str, Any]:
        return {"impact": self.impact, "next_check": self.next_check, **self.details}


Rule = Callable[[AlertSnapshot, Thresholds], list[Signal]]

# Jobs whose failure shrinks routing capacity (stale tokens or quota evidence) rather than only delaying upkeep.
CAPACITY_JOBS = frozenset({"refresh_due_tokens", "refresh_requested", "poll_usage"})


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _live(pool: PoolState) -> bool:
    # A paused or archived pool takes no traffic by the operator's choice: nothing to alert about.
    return pool.status == "active"


def pool_no_routable(snap: AlertSnapshot, th: Thresholds) -> list[Signal]:
    out = []
    for pool in snap.pools:
        if not _live(pool) or pool.routable > 0:
            continue
        impact = (
            f"requests with keys of pool {pool.label} cannot be served"
            if pool.accounts
            else f"pool {pool.label} has no accounts assigned, so its keys cannot be served"
        )
        out.append(
            Signal(
                rule="pool_no_routable",
                subject=f"pool:{pool.pool_id}",
                severity=Severity.OUTAGE,
                title=f"Pool {pool.label}: no routable account",
                impact=impact,
                next_check="upstream accounts of the pool (state, quota, assignments), then recent audit events",
                details={"pool": pool.label, "accounts": pool.accounts, "routable": 0, **_cats(pool)},
            )
        )
    return out


def pool_low_routable(snap: AlertSnapshot, th: Thresholds) -> list[Signal]:
    out = []
    for pool in snap.pools:
        if not _live(pool) or not 0 < pool.routable < th.min_routable:
            continue
        out.append(
            Signal(
                rule="pool_low_routable",
                subject=f"pool:{pool.pool_id}",
                severity=Severity.DEGRADED,
                title=f"Pool {pool.label}: only {_plural(pool.routable, 'routable account')}",
                impact=f"pool {pool.label} routes to fewer accounts; failover has little room",
                next_check="upstream accounts of the pool that are not routable, and their quota reset times",
                details={
                    "pool": pool.label,
                    "accounts": pool.accounts,
                    "routable": pool.routable,
                    "minimum": th.min_routable,
                    **_cats(pool),
                },
            )
        )
    return out


def _cats(pool: PoolState) -> dict[str, Any]:
    return {"not_routable_by_category": dict(sorted(pool.by_category.items()))} if pool.by_category else {}


def _accounts_in_state(snap: AlertSnapshot, state: str, until: str, next_check: str) -> list[Signal]:
    """One watch signal per (non-archived) pool with accounts in `state`, a state a person must resolve."""
    out = []
    for pool in snap.pools:
        count = pool.by_state.get(state, 0)
        if count == 0 or pool.status == "archived":
            continue
        out.append(
            Signal(
                rule=f"accounts_{state}",
                subject=f"pool:{pool.pool_id}",
                severity=Severity.WATCH,
                title=f"Pool {pool.label}: {_plural(count, 'account')} in {state}",
                impact=f"pool {pool.label} lost {_plural(count, 'account')} until {until}",
                next_check=next_check,
                details={"pool": pool.label, "state": state, "accounts_in_state": count},
            )
        )
    return out


def accounts_deactivated(snap: AlertSnapshot, th: Thresholds) -> list[Signal]:
    """Accounts the upstream called dead (402, 403 account_deactivated, ...), seen by the gateway."""
    return _accounts_in_state(
        snap,
        "deactivated",
        "a person reactivates them",
        "upstream accounts in deactivated (admin account page shows the upstream's code): check each at "
        "chatgpt.com, then reactivate or relink it",
    )


def accounts_reauth_required(snap: AlertSnapshot, th: Thresholds) -> list[Signal]:
    out = _accounts_in_state(
        snap,
        "reauth_required",
        "they are signed in again",
        "upstream accounts in reauth_required: import a fresh login for each",
    )
    if snap.unassigned_reauth:
        count = snap.unassigned_reauth
        out.append(
            Signal(
                rule="accounts_reauth_required",
                subject="unassigned",
                severity=Severity.INFO,
                title=f"{_plural(count, 'unassigned account')} in reauth_required",
                impact="no pool routes to these accounts; no traffic is affected",
                next_check="upstream accounts in reauth_required that no pool uses",
                details={"state": "reauth_required", "accounts_in_state": count},
            )
        )
    return out


def quota_above_threshold(snap: AlertSnapshot, th: Thresholds) -> list[Signal]:
    out = []
    for pool in snap.pools:
        if not _live(pool) or not pool.windows_over:
            continue
        worst = max(pool.windows_over.values())
        out.append(
            Signal(
                rule="quota_above_threshold",
                subject=f"pool:{pool.pool_id}",
                severity=Severity.WATCH,
                title=f"Pool {pool.label}: {_plural(worst, 'account')} at or above {th.quota_percent:g}% quota",
                impact=f"pool {pool.label} is running out of quota; accounts drop out as windows fill",
                next_check="quota windows of the pool's accounts and their reset times",
                details={
                    "pool": pool.label,
                    "threshold_percent": th.quota_percent,
                    "accounts_over_by_window": dict(sorted(pool.windows_over.items())),
                    "accounts": pool.accounts,
                },
            )
        )
    return out


def key_errors_spike(snap: AlertSnapshot, th: Thresholds) -> list[Signal]:
    out = []
    minutes = int(th.key_error_window.total_seconds() // 60)
    for ke in snap.key_errors:
        total = ke.unauthorized + ke.forbidden
        if total < th.key_error_threshold:
            continue
        who = f"key {ke.key_prefix}" if ke.key_prefix else "requests without a known key"
        out.append(
            Signal(
                rule="key_errors_spike",
                subject=f"key:{ke.key_prefix or '-'}",
                severity=Severity.SECURITY,
                title=f"{who[0].upper()}{who[1:]}: {total} rejected in {minutes} min",
                impact=f"{who} got {ke.unauthorized} invalid-key (401) and {ke.forbidden} refused (403) answers",
                next_check="request logs for the key prefix, the key's status, and audit events for key rotation",
                details={
                    "key_prefix": ke.key_prefix,
                    "pool": ke.pool_label,
                    "status_401": ke.unauthorized,
                    "status_403": ke.forbidden,
                    "window_minutes": minutes,
                },
            )
        )
    return out


def job_failing(snap: AlertSnapshot, th: Thresholds) -> list[Signal]:
    out = []
    for job in snap.jobs:
        if job.consecutive_failures < th.job_failure_runs:
            continue
        capacity = job.job_id in CAPACITY_JOBS
        out.append(
            Signal(
                rule="job_failing",
                subject=f"job:{job.job_id}",
                severity=Severity.DEGRADED if capacity else Severity.WATCH,
                title=f"Job {job.job_id} failed {job.consecutive_failures} runs in a row",
                impact=(
                    "token or quota evidence goes stale, so fewer accounts stay eligible"
                    if capacity
                    else "scheduled maintenance is delayed"
                ),
                next_check="jobs page (outcome and error code of recent runs) and the scheduler's log",
                details={
                    "job": job.job_id,
                    "state": "failed",
                    "consecutive_failures": job.consecutive_failures,
                    "error_code": job.last_error_code,
                },
            )
        )
    return out


def cache_share_drop(snap: AlertSnapshot, th: Thresholds) -> list[Signal]:
    out = []
    for pool in snap.cache:
        if pool.status != "active" or min(pool.recent_input, pool.baseline_input) < th.cache_min_input_tokens:
            continue
        recent = 100.0 * pool.recent_cached / pool.recent_input
        baseline = 100.0 * pool.baseline_cached / pool.baseline_input
        if baseline - recent < th.cache_drop_points:
            continue
        moves = {cause: n for cause, n in pool.switches.items() if n > 0}
        dominant = max(sorted(moves), key=lambda cause: moves[cause]) if moves else None
        because = f"; most moves: {dominant} ({moves[dominant]})" if dominant else "; no conversation moves recorded"
        out.append(
            Signal(
                rule="cache_share_drop",
                subject=f"pool:{pool.pool_id}",
                severity=Severity.WATCH,
                title=f"Pool {pool.label}: cached input share fell to {recent:.0f}% (from {baseline:.0f}%)",
                impact=f"pool {pool.label} pays for more uncached input and answers slower{because}",
                next_check="the pool's cache health page: switches by cause and the sessions that moved",
                details={
                    "pool": pool.label,
                    "recent_share_percent": round(recent, 1),
                    "baseline_share_percent": round(baseline, 1),
                    "recent_input_tokens": pool.recent_input,
                    "dominant_switch_cause": dominant,
                    "switches_by_cause": dict(sorted(moves.items())),
                },
            )
        )
    return out


def key_budget_reached(snap: AlertSnapshot, th: Thresholds) -> list[Signal]:
    """A key's soft budget (an early warning: WATCH) or hard budget (its requests are refused: DEGRADED) is
    reached; one incident per key, period and unit, resolved when the period resets."""
    out = []
    for use in snap.budgets:
        hard = use.hard_limit is not None and use.used >= use.hard_limit
        limit = use.hard_limit if hard else use.soft_limit
        amount = f"${use.used:.2f}" if use.unit == "usd" else f"{int(use.used)} tokens"
        out.append(
            Signal(
                rule="key_budget_reached",
                subject=f"key:{use.key_prefix}:{use.period}:{use.unit}",
                severity=Severity.DEGRADED if hard else Severity.WATCH,
                title=f"Key {use.key_prefix}: {use.period} {use.unit} budget {'used up' if hard else 'soft limit'}",
                impact=(
                    f"requests with key {use.key_prefix} are refused (429 budget_exceeded) until the period resets"
                    if hard
                    else f"key {use.key_prefix} used {amount} of its {use.period} budget; nothing is refused yet"
                ),
                next_check="the key's page (usage by model, budgets) and whether its budget fits its work",
                details={
                    "key_prefix": use.key_prefix,
                    "pool": use.pool_label,
                    "period": use.period,
                    "unit": use.unit,
                    "used": round(use.used, 6),
                    "limit": limit,
                    "resets_at": use.resets_at.isoformat(),
                },
            )
        )
    return out


RULES: Mapping[str, Rule] = {
    "pool_no_routable": pool_no_routable,
    "pool_low_routable": pool_low_routable,
    "accounts_reauth_required": accounts_reauth_required,
    "accounts_deactivated": accounts_deactivated,
    "quota_above_threshold": quota_above_threshold,
    "key_errors_spike": key_errors_spike,
    "job_failing": job_failing,
    "cache_share_drop": cache_share_drop,
    "key_budget_reached": key_budget_reached,
}


def evaluate_rules(snap: AlertSnapshot, th: Thresholds, rules: Mapping[str, Rule] = RULES) -> list[Signal]:
    signals: list[Signal] = []
    for rule in rules.values():
        signals.extend(rule(snap, th))
    return signals
