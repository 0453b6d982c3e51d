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
from enum import StrEnum
from typing import NamedTuple

from pooler.gateway_contract import ACTIVE_LIMIT_HEADER
from pooler.quota import DEFAULT_FAMILY, WindowObservation, parse_rate_limit_headers
from pooler.states import FIVE_HOUR_MINUTES

DEFAULT_LIMIT_SECONDS = 60.0
"""A 429 that names no reset (not in its body, headers or retry-after) limits the account this long: short, so
a wrong guess costs little; the scheduler's usage poll corrects it."""
CONNECT_FAILURE_FLAGS = frozenset({"UF", "UH", "UC", "UR", "URX", "UO", "LR", "UT", "NC"})
SWITCHING_PROTOCOLS = 101
DEAD_ACCOUNT_CODES = frozenset(
    {"account_deactivated", "deactivated_workspace", "token_invalidated", "app_session_terminated"}
)
"""Codes with which the upstream says an account cannot serve until a person acts (on a 402/403)."""
MAX_BACKOFF_FACTOR = 64
"""A failing account's demotion doubles per consecutive failure of the same class, up to this many times the
base (`demotion_seconds`): 30 s base -> 32 min at most."""


class ErrorClass(StrEnum):
    """What an upstream attempt's failure says about its account (docs/GATEWAY_SURFACE.md, "What the gateway
    learns from each upstream answer")."""

    USAGE_LIMIT = "usage_limit"
    """429 `usage_limit_reached`: a window of the family `x-codex-active-limit` names is spent."""
    NOT_INCLUDED = "usage_not_included"
    """429 `usage_not_included`: the account's plan lacks what was asked (the model): not a spent window."""
    RATE_LIMITED = "rate_limited"
    """Any other 429 (`rate_limit_exceeded`, ...): a short burst limit."""
    CREDENTIALS = "credentials"
    """401: the access token was refused (expired, invalidated): refresh now."""
    DEACTIVATED = "deactivated"
    """402, or 403 with a DEAD_ACCOUNT_CODES code: out of rotation until a person acts."""
    SERVER = "server"
    """5xx: the upstream failed on this account."""
    CONNECT = "connect"
    """No answer: connect failure, reset, timeout (Envoy's response flags)."""


@dataclass(frozen=True, slots=True)
class UpstreamError:
    """What a non-2xx answer said, as the upstream error reader put it in UPSTREAM_ERROR_HEADER (or an SSE
    `response.failed` event said). Safe tokens only: never a message."""

    status: int
    type: str | None = None
    code: str | None = None
    plan_type: str | None = None
    resets_at: float | None = None
    resets_in_seconds: float | None = None
    model: str | None = None
    """The request's model (the request scanner's), for a limit that belongs to the model, not the account."""

    def names(self) -> frozenset[str]:
        return frozenset(n for n in (self.type, self.code) if n)

    @property
    def label(self) -> str | None:
        """The most specific name for the request log's error code: the code, else the type."""
        return self.code or self.type


_ERROR_FIELDS = {"type", "code", "plan", "resets_at", "resets_in", "model"}


def parse_upstream_error(value: str | None) -> UpstreamError | None:
    """UPSTREAM_ERROR_HEADER (`status=429 type=usage_limit_reached resets_at=...`); None when absent or
    without a status. Unknown or malformed parts are ignored."""
    if not value:
        return None
    parts: dict[str, str] = {}
    for item in value.split(" "):
        name, sep, text = item.partition("=")
        if sep and text and (name == "status" or name in _ERROR_FIELDS):
            parts[name] = text[:64]
    status = parts.get("status", "")
    if not status.isdigit():
        return None
    return UpstreamError(
        status=int(status),
        type=parts.get("type"),
        code=parts.get("code"),
        plan_type=parts.get("plan"),
        resets_at=_number(parts.get("resets_at")),
        resets_in_seconds=_number(parts.get("resets_in")),
        model=parts.get("model"),
    )


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and value >= 0 else None


def expand_active_limit(headers: Mapping[str, str]) -> Mapping[str, str]:
    """`headers` plus the windows ACTIVE_LIMIT_HEADER packs (`<family> <slot> <used> <minutes> <reset-at>
    <reset-after>`, `-` for missing, repeated per slot) under their own `x-<family>-<slot>-*` names, so
    `parse_rate_limit_headers` reads every family the same way."""
    packed = headers.get(ACTIVE_LIMIT_HEADER)
    if not packed:
        return headers
    words = packed.split(" ")
    out = dict(headers)
    for i in range(0, len(words) - 5, 6):
        family, slot, used, minutes, reset_at, reset_after = words[i : i + 6]
        if slot not in ("primary", "secondary") or not family:
            continue
        base = f"x-{family}-{slot}-"
        for name, text in (
            ("used-percent", used),
            ("window-minutes", minutes),
            ("reset-at", reset_at),
            ("reset-after-seconds", reset_after),
        ):
            if text != "-":
                out[base + name] = text
    return out


STREAM_INCOMPLETE = "stream_incomplete"
"""Request-log error code of an SSE answer that ended without `response.completed` (and no failure event)."""
STREAM_CODE_STATUS = {"rate_limit_exceeded": 429, "usage_limit_reached": 429, "usage_not_included": 429}
"""A failure event's code -> the status whose effect it has on the account (others: 503, an upstream failure)."""


def stream_failure(
    status: int, content_type: str | None, stream_error: str | None, response_status: str | None, flags: frozenset[str]
) -> UpstreamError | None:
    """A 200 SSE answer whose turn failed inside the stream, as the error it amounts to: its failure event's code
    (`response.failed`, `error`), or `stream_incomplete` when it ended without `response.completed` - unless the
    client went away (DC): that says nothing about the account. None for anything else."""
    if status != 200 or not content_type or not content_type.startswith("text/event-stream"):
        return None
    if stream_error:
        return UpstreamError(status=STREAM_CODE_STATUS.get(stream_error, 503), code=stream_error)
    if response_status == "completed" or "DC" in flags:
        return None
    return UpstreamError(status=502, code=STREAM_INCOMPLETE)


def frame_headers(packed: str | None) -> dict[str, str]:
    """A websocket error frame's limit headers as the Lua counter packed them (`name=value` words,
    gateway_contract.USAGE_WS_ERROR_HEADERS), lower-case names."""
    headers: dict[str, str] = {}
    for word in (packed or "").split(" "):
        name, sep, value = word.partition("=")
        if sep and name and value:
            headers[name.lower()] = value
    return headers


def classify(status: int, error: UpstreamError | None, flags: frozenset[str]) -> ErrorClass | None:
    """The class of a failed attempt, None for one that says nothing against its account (2xx, a 4xx about the
    request itself, or status 0 the gateway answered itself)."""
    names = error.names() if error is not None else frozenset()
    if status == 429:
        if "usage_limit_reached" in names:
            return ErrorClass.USAGE_LIMIT
        if "usage_not_included" in names:
            return ErrorClass.NOT_INCLUDED
        return ErrorClass.RATE_LIMITED
    if status == 401:
        return ErrorClass.CREDENTIALS
    if status == 402 or (status == 403 and names & DEAD_ACCOUNT_CODES):
        return ErrorClass.DEACTIVATED
    if status >= 500:
        return ErrorClass.SERVER
    # An upstream failure flag: connect failure, reset, overflow, timeout... Status 0 alone is not one (an attempt
    # the gateway itself answered after the pick also ends with status 0, with no flag). An upgraded websocket
    # (101) ends with its upstream connection closing (Envoy flags UC), however well it went: its normal end,
    # never a demotion (demoting on it moved every session's next connection).
    if status != SWITCHING_PROTOCOLS and flags & CONNECT_FAILURE_FLAGS:
        return ErrorClass.CONNECT
    return None


def backoff_seconds(base: float, consecutive: int) -> float:
    """Demotion after the `consecutive`-th failure in a row of one class on one account: base, 2x, 4x, ...
    capped at MAX_BACKOFF_FACTOR x base. A success resets the count (GatewayState)."""
    if consecutive <= 1:
        return base
    return base * float(min(2 ** (consecutive - 1), MAX_BACKOFF_FACTOR))


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
    error: UpstreamError | None = None
    """What the answer's body (or the stream's failure event) said; `status` is then the upstream's own status
    (the error reader may have turned a credential error into a 503 for the router)."""

    @property
    def error_class(self) -> ErrorClass | None:
        return classify(self.status, self.error, self.flags)


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
    deactivated: str | None = None
    """The code with which the upstream said the account is dead (account_deactivated, ...): it leaves rotation
    in state `deactivated` until an operator reactivates or relinks it."""
    excluded_model: str | None = None
    """A model this account cannot serve: excluded for that model only (429 usage_not_included: until an
    operator clears it; a limit of another family than `codex`: until `excluded_until`)."""
    excluded_until: float | None = None

    @property
    def changes_state(self) -> bool:
        return (
            self.demoted_until is not None
            or self.refresh_requested
            or self.deactivated is not None
            or self.excluded_model is not None
        )


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
    attempts: list[AttemptOutcome] = field(default_factory=list)
    """In order."""
    session_hash: str | None = None
    """The keyed hash of the conversation's session (never the raw id)."""
    switch_cause: str | None = None
    """Why the conversation is not on its sticky account (pooler.gateway.switch_causes); None: it is."""

    upstream_error: bool = False
    """`error_code` is the upstream's own (the last attempt reached an account): the row keeps that account."""

    @property
    def account_id(self) -> int | None:
        return self.tried[-1] if self.tried and (self.error_code is None or self.upstream_error) else None


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    value = headers.get("retry-after", "").strip()
    return now + float(value) if value.isdigit() else None


def limit_reset(
    observations: list[WindowObservation], headers: Mapping[str, str], now: float, error: UpstreamError | None = None
) -> float:
    """When a 429'd account is usable again: the body's `resets_at` (or `resets_in_seconds`), else the latest
    reset of a spent window, else Retry-After, else a short default."""
    if error is not None and error.resets_at is not None and error.resets_at > now:
        return error.resets_at
    if error is not None and error.resets_in_seconds is not None:
        return now + error.resets_in_seconds
    spent = [o.resets_at.timestamp() for o in observations if o.used_percent >= 100.0 and o.resets_at is not None]
    if spent:
        return max(spent)
    return retry_after(headers, now) or now + DEFAULT_LIMIT_SECONDS


def _usage_limit(record: AttemptRecord, observations: list[WindowObservation], account_id: int) -> AccountEffect:
    """429 usage_limit_reached: the family `x-codex-active-limit` names (default `codex`) is spent until the
    body's reset. A `codex` limit benches the account; another family's limit belongs to the request's model
    (the upstream meters some models apart), so only that model is excluded until the reset."""
    now = record.observed_at
    family = record.headers.get("x-codex-active-limit") or DEFAULT_FAMILY
    mine = [o for o in observations if o.limit_family == family]
    until = limit_reset(mine, record.headers, now, record.error)
    effect = _limit_window(account_id, observations, family, until)
    if family == DEFAULT_FAMILY:
        return effect
    model = record.error.model if record.error is not None else None
    return AccountEffect(
        account_id,
        effect.observations,
        limit_window=effect.limit_window,
        excluded_model=model,
        excluded_until=until if model else None,
    )


def _limit_window(account_id: int, observations: list[WindowObservation], family: str, until: float) -> AccountEffect:
    """The account limited until `until`: by the spent window of `family` its headers show, else (no header says
    which window is spent) by that family's shortest window (the 5-hour one unless told) as a full window with
    that reset: it stops counting at `until`, and newer header or usage evidence replaces it."""
    spent = [o for o in observations if o.limit_family == family and o.used_percent >= 100.0 and o.resets_at]
    limited = until if family == DEFAULT_FAMILY else None
    if spent:
        return AccountEffect(account_id, tuple(observations), limited_until=limited)
    minutes = min((o.window_minutes for o in observations if o.limit_family == family), default=FIVE_HOUR_MINUTES)
    limit = WindowObservation(family, minutes, 100.0, dt.datetime.fromtimestamp(until, dt.UTC))
    rest = tuple(o for o in observations if (o.limit_family, o.window_minutes) != (family, minutes))
    return AccountEffect(account_id, rest, limited_until=limited, limit_window=limit)


def attempt_effect(record: AttemptRecord, demotion_seconds: float) -> AccountEffect | None:
    """What one attempt changes for its account. `demotion_seconds`: this failure's demotion (the caller applies
    the per-account back-off, `backoff_seconds`)."""
    account_id = record.account_id
    if account_id is None:
        return None
    now = record.observed_at
    observations = parse_rate_limit_headers(expand_active_limit(record.headers), dt.datetime.fromtimestamp(now, dt.UTC))
    kind = record.error_class
    if kind is ErrorClass.USAGE_LIMIT:
        return _usage_limit(record, observations, account_id)
    if kind is ErrorClass.NOT_INCLUDED:
        model = record.error.model if record.error is not None else None
        if model:
            return AccountEffect(account_id, tuple(observations), excluded_model=model)
        # No model to exclude (a request without one): a short cooldown, never a quota bench.
        return AccountEffect(account_id, tuple(observations), demoted_until=now + demotion_seconds)
    if kind is ErrorClass.RATE_LIMITED:
        spent = any(o.used_percent >= 100.0 and o.resets_at is not None for o in observations)
        if spent or record.error is None or not record.error.names():
            # Headers show a spent window (that is the limit, whatever the body calls it), or nothing says what
            # kind of 429 this is (an unreadable body): treated as a quota limit, as before bodies were read.
            until = limit_reset(observations, record.headers, now)
            return _limit_window(account_id, observations, DEFAULT_FAMILY, until)
        # A named burst limit (rate_limit_exceeded, ...): a short cooldown, not a spent window.
        until = retry_after(record.headers, now) or now + DEFAULT_LIMIT_SECONDS
        return AccountEffect(account_id, tuple(observations), demoted_until=until)
    if kind is ErrorClass.CREDENTIALS:
        return AccountEffect(account_id, tuple(observations), refresh_requested=True)
    if kind is ErrorClass.DEACTIVATED:
        error = record.error
        code = (error.code or error.type) if error is not None and error.names() & DEAD_ACCOUNT_CODES else None
        return AccountEffect(account_id, tuple(observations), deactivated=code or f"http_{record.status}")
    if kind in (ErrorClass.SERVER, ErrorClass.CONNECT):
        return AccountEffect(account_id, tuple(observations), demoted_until=now + demotion_seconds)
    if observations:
        return AccountEffect(account_id, tuple(observations))
    return None


class AttemptOutcome(NamedTuple):
    """One `request_attempts` row."""

    account_id: int | None
    status: int | None
    outcome: str
    """`served`, `failed_over` or `failed`."""
    error_code: str | None = None
    """What the attempt's error body or failure event said (its code, else its type), when it was read."""


def attempt_outcomes(tried: list[int], attempts: list[AttemptRecord], final_status: int) -> list[AttemptOutcome]:
    """Per attempt: account, status, outcome, code. Statuses come from the upstream log entries when they
    arrived; an attempt without one keeps status None (honest: Envoy reports only the final status downstream)."""
    by_account: dict[int | None, list[AttemptRecord]] = {}
    for a in attempts:
        by_account.setdefault(a.account_id, []).append(a)
    rows: list[AttemptOutcome] = []
    for n, account in enumerate(tried, start=1):
        seen = by_account.get(account)
        record = seen.pop(0) if seen else None
        status = record.status if record is not None else None
        last = n == len(tried)
        if last and status is None:
            status = final_status
        outcome = "served" if last and final_status < 400 else ("failed" if last else "failed_over")
        code = record.error.label if record is not None and record.error is not None else None
        rows.append(AttemptOutcome(account, status or None, outcome, code))
    return rows
