"""What the gateway learns from finished upstream attempts and requests (Envoy's gRPC access log).

Pure: `attempt_effect` turns one attempt's status/flags/headers into what changes for its account; the
ext_proc applies that to its snapshot at once and hands the records to the batched writer
(`pooler.gateway.writes`). The access log gives one entry per upstream attempt (the router's upstream log,
with that attempt's status and quota headers) and one per downstream request (final status, timings,
tokens); request rows are built from both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from pooler.quota import DEFAULT_FAMILY, WindowObservation, parse_rate_limit_headers
from pooler.states import FIVE_HOUR_MINUTES

DEFAULT_LIMIT_SECONDS = 60.0
"""A 429 without any reset in its headers (the body is not visible on a headers-only path) limits the account
this long: short, so a wrong guess costs little; the scheduler's usage poll corrects it."""
CONNECT_FAILURE_FLAGS = frozenset({"UF", "UH", "UC", "UR", "URX", "UO", "LR", "UT", "NC"})
SWITCHING_PROTOCOLS = 101


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    request_id: str
    account_id: int | None
    status: int
    """0 when no response came back: a connection failure or reset (then `flags` say so), or an attempt the
    gateway answered itself after picking the account (no flag)."""
    flags: frozenset[str]
    headers: Mapping[str, str]
    """Lower-case names: the x-codex-* quota headers and retry-after, if sent."""
    observed_at: float


@dataclass(frozen=True, slots=True)
class AccountEffect:
    account_id: int
    observations: tuple[WindowObservation, ...] = ()
    limited_until: float | None = None
    limit_window: WindowObservation | None = None
    """A 429 whose headers show no spent window: the limit as a full window until `limited_until`, stored with
    source limit_error so a restarted ext_proc, other replicas and the scheduler see it (memory alone would
    forget it)."""
    demoted_until: float | None = None
    refresh_requested: bool = False

    @property
    def changes_state(self) -> bool:
        return self.demoted_until is not None or self.refresh_requested


@dataclass(slots=True)
class RequestRecord:
    """One metadata-only request_logs row and its attempts."""

    request_id: str
    created_at: dt.datetime
    pool_id: int | None
    key_id: int | None
    key_prefix: str | None
    route_family: str
    method: str
    model: str | None
    status_code: int
    error_code: str | None
    ttfb_ms: float | None
    duration_ms: float | None
    tried: list[int]
    tokens: dict[str, int] = field(default_factory=dict)
    attempts: list[tuple[int | None, int | None, str]] = field(default_factory=list)
    """(account_id, status if known, outcome) in order."""
    session_hash: str | None = None
    """The keyed hash of the conversation's session (never the raw id)."""
    switch_cause: str | None = None
    """Why the conversation is not on its sticky account (pooler.gateway.switch_causes); None: it is."""

    @property
    def account_id(self) -> int | None:
        return self.tried[-1] if self.tried and self.error_code is None else None


def is_connect_failure(record: AttemptRecord) -> bool:
    """An upstream failure flag (connect failure, reset, overflow, timeout...). Status 0 alone is not one: an
    attempt the gateway itself answered after the pick (a /v1 body rejected by the translator in the
    request-body phase) also ends with status 0 but no flag, and says nothing about the account. An upgraded
    websocket (101) ends with its upstream connection closing (Envoy flags UC), however well it went: that is
    its normal end, not a failure (demoting on it put every account a closed websocket had used out for
    `demotion_seconds`, so a session's next connection moved)."""
    return record.status != SWITCHING_PROTOCOLS and bool(record.flags & CONNECT_FAILURE_FLAGS)


def limit_reset(observations: list[WindowObservation], headers: Mapping[str, str], now: float) -> float:
    """When a 429'd account is usable again: the latest reset of a spent window, else Retry-After, else a
    short default."""
    spent = [o.resets_at.timestamp() for o in observations if o.used_percent >= 100.0 and o.resets_at is not None]
    if spent:
        return max(spent)
    retry_after = headers.get("retry-after", "")
    if retry_after.strip().isdigit():
        return now + float(retry_after)
    return now + DEFAULT_LIMIT_SECONDS


def attempt_effect(record: AttemptRecord, demotion_seconds: float) -> AccountEffect | None:
    if record.account_id is None:
        return None
    now = record.observed_at
    observations = parse_rate_limit_headers(record.headers, dt.datetime.fromtimestamp(now, dt.UTC))
    if record.status == 429:
        until = limit_reset(observations, record.headers, now)
        if any(o.used_percent >= 100.0 and o.resets_at is not None for o in observations):
            return AccountEffect(record.account_id, tuple(observations), limited_until=until)
        # No header says which window is spent: the shortest codex window (the 5-hour one unless told) is the
        # honest guess; it stops counting at `until`, and newer header or usage evidence replaces it.
        minutes = min(
            (o.window_minutes for o in observations if o.limit_family == DEFAULT_FAMILY), default=FIVE_HOUR_MINUTES
        )
        limit = WindowObservation(DEFAULT_FAMILY, minutes, 100.0, dt.datetime.fromtimestamp(until, dt.UTC))
        rest = tuple(o for o in observations if (o.limit_family, o.window_minutes) != (DEFAULT_FAMILY, minutes))
        return AccountEffect(record.account_id, rest, limited_until=until, limit_window=limit)
    if record.status == 401:
        return AccountEffect(record.account_id, tuple(observations), refresh_requested=True)
    if record.status >= 500 or is_connect_failure(record):
        return AccountEffect(record.account_id, tuple(observations), demoted_until=now + demotion_seconds)
    if observations:
        return AccountEffect(record.account_id, tuple(observations))
    return None


def attempt_outcomes(
    tried: list[int], attempts: list[AttemptRecord], final_status: int
) -> list[tuple[int | None, int | None, str]]:
    """Per attempt: (account, status, outcome). Statuses come from the upstream log entries when they arrived;
    an attempt without one keeps status None (honest: Envoy reports only the final status downstream)."""
    by_account: dict[int | None, list[AttemptRecord]] = {}
    for a in attempts:
        by_account.setdefault(a.account_id, []).append(a)
    rows: list[tuple[int | None, int | None, str]] = []
    for n, account in enumerate(tried, start=1):
        seen = by_account.get(account)
        status = seen.pop(0).status if seen else None
        last = n == len(tried)
        if last and status is None:
            status = final_status
        outcome = "served" if last and final_status < 400 else ("failed" if last else "failed_over")
        rows.append((account, status or None, outcome))
    return rows
