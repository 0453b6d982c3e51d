"""The pure policy of pooler.gateway.evidence: what each upstream answer changes for its account."""

from __future__ import annotations

import datetime as dt

import pytest

from extproc.responses import error_body
from pooler import gateway_contract as gc
from pooler.envoy_config.lua import UPSTREAM_ERRORS_LUA
from pooler.gateway.evidence import (
    DEAD_ACCOUNT_CODES,
    MAX_BACKOFF_FACTOR,
    STREAM_INCOMPLETE,
    AttemptRecord,
    ErrorClass,
    UpstreamError,
    attempt_effect,
    backoff_seconds,
    classify,
    expand_active_limit,
    frame_headers,
    parse_upstream_error,
    stream_failure,
)

NOW = 1_800_000_000.0
CODEX_HEADERS = {
    "x-codex-primary-used-percent": "40",
    "x-codex-primary-window-minutes": "300",
    "x-codex-primary-reset-after-seconds": "600",
}


def _record(status: int, error: UpstreamError | None = None, headers: dict[str, str] | None = None) -> AttemptRecord:
    return AttemptRecord("r1", 7, status, frozenset(), headers or {}, NOW, error)


def test_parse_upstream_error_reads_safe_parts_and_ignores_the_rest() -> None:
    parsed = parse_upstream_error(
        "status=429 type=usage_limit_reached plan=plus resets_at=1800000300 resets_in=300 model=gpt-5 evil=x"
    )
    assert parsed == UpstreamError(429, "usage_limit_reached", None, "plus", 1800000300.0, 300.0, "gpt-5")
    assert parse_upstream_error("status=401 code=token_expired") == UpstreamError(401, code="token_expired")
    for bad in (None, "", "type=x", "status=abc", "status= code=x"):
        assert parse_upstream_error(bad) is None
    assert parse_upstream_error("status=429 resets_at=nan resets_in=-3") == UpstreamError(429)


def test_expand_active_limit_unpacks_every_slot() -> None:
    packed = {gc.ACTIVE_LIMIT_HEADER: "codex_other primary 100 60 1800000100 - codex_other secondary 20 10080 - 50"}
    headers = expand_active_limit(packed)
    assert headers["x-codex_other-primary-used-percent"] == "100"
    assert headers["x-codex_other-primary-reset-at"] == "1800000100"
    assert "x-codex_other-primary-reset-after-seconds" not in headers
    assert headers["x-codex_other-secondary-reset-after-seconds"] == "50"
    assert expand_active_limit({"a": "b"}) == {"a": "b"}
    assert expand_active_limit({gc.ACTIVE_LIMIT_HEADER: "short"}) == {gc.ACTIVE_LIMIT_HEADER: "short"}


@pytest.mark.parametrize(
    ("status", "names", "flags", "expected"),
    [
        (429, {"type": "usage_limit_reached"}, (), ErrorClass.USAGE_LIMIT),
        (429, {"code": "usage_not_included"}, (), ErrorClass.NOT_INCLUDED),
        (429, {"code": "rate_limit_exceeded"}, (), ErrorClass.RATE_LIMITED),
        (429, {}, (), ErrorClass.RATE_LIMITED),
        (401, {"code": "token_expired"}, (), ErrorClass.CREDENTIALS),
        (401, {"code": "token_invalidated"}, (), ErrorClass.CREDENTIALS),
        (402, {}, (), ErrorClass.DEACTIVATED),
        (403, {"code": "account_deactivated"}, (), ErrorClass.DEACTIVATED),
        (403, {"type": "deactivated_workspace"}, (), ErrorClass.DEACTIVATED),
        (403, {"code": "app_session_terminated"}, (), ErrorClass.DEACTIVATED),
        (403, {"code": "unsupported_country"}, (), None),
        (400, {"code": "invalid_request"}, (), None),
        (500, {}, (), ErrorClass.SERVER),
        (504, {}, (), ErrorClass.SERVER),
        (0, {}, ("UF",), ErrorClass.CONNECT),
        (0, {}, (), None),
        (200, {}, (), None),
    ],
)
def test_classify(status: int, names: dict[str, str], flags: tuple[str, ...], expected: ErrorClass | None) -> None:
    assert classify(status, UpstreamError(status, **names), frozenset(flags)) is expected


def test_backoff_doubles_per_consecutive_failure_up_to_a_cap() -> None:
    assert [backoff_seconds(30, n) for n in (0, 1, 2, 3, 4)] == [30, 30, 60, 120, 240]
    assert backoff_seconds(30, 100) == 30 * MAX_BACKOFF_FACTOR


def test_usage_limit_reached_benches_the_codex_family_until_the_body_reset() -> None:
    error = UpstreamError(429, type="usage_limit_reached", resets_at=NOW + 900)
    effect = attempt_effect(_record(429, error, {**CODEX_HEADERS, "x-codex-active-limit": "codex"}), 30)
    assert effect is not None and effect.limited_until == NOW + 900
    assert effect.limit_window is not None and effect.limit_window.limit_family == "codex"
    assert effect.limit_window.resets_at == dt.datetime.fromtimestamp(NOW + 900, dt.UTC)
    assert effect.excluded_model is None and effect.demoted_until is None


def test_usage_limit_of_another_family_excludes_only_the_model() -> None:
    error = UpstreamError(429, type="usage_limit_reached", resets_in_seconds=120, model="gpt-5-codex-mini")
    packed = "codex_mini primary 100 300 - 120"
    headers = {**CODEX_HEADERS, "x-codex-active-limit": "codex_mini", gc.ACTIVE_LIMIT_HEADER: packed}
    effect = attempt_effect(_record(429, error, headers), 30)
    assert effect is not None
    assert effect.limited_until is None  # the account still serves other models
    assert (effect.excluded_model, effect.excluded_until) == ("gpt-5-codex-mini", NOW + 120)
    families = {(o.limit_family, o.used_percent) for o in effect.observations}
    assert ("codex_mini", 100.0) in families and ("codex", 40.0) in families


def test_usage_not_included_excludes_the_model_and_is_no_quota_bench() -> None:
    error = UpstreamError(429, type="usage_not_included", model="gpt-5.1-codex-max")
    effect = attempt_effect(_record(429, error, CODEX_HEADERS), 30)
    assert effect is not None
    assert (effect.excluded_model, effect.excluded_until) == ("gpt-5.1-codex-max", None)
    assert effect.limited_until is None and effect.limit_window is None and effect.demoted_until is None


def test_named_burst_limit_cools_down_from_retry_after() -> None:
    error = UpstreamError(429, code="rate_limit_exceeded")
    effect = attempt_effect(_record(429, error, {**CODEX_HEADERS, "retry-after": "7"}), 30)
    assert effect is not None and effect.demoted_until == NOW + 7
    assert effect.limit_window is None and effect.limited_until is None


def test_unnamed_429_is_still_taken_for_a_quota_limit() -> None:
    effect = attempt_effect(_record(429, None, {"retry-after": "20"}), 30)
    assert effect is not None and effect.limited_until == NOW + 20 and effect.limit_window is not None


def test_credentials_deactivation_and_server_errors() -> None:
    refresh = attempt_effect(_record(401, UpstreamError(401, code="token_expired")), 30)
    assert refresh is not None and refresh.refresh_requested and refresh.deactivated is None
    dead = attempt_effect(_record(403, UpstreamError(403, code="account_deactivated")), 30)
    assert dead is not None and dead.deactivated == "account_deactivated" and dead.changes_state
    payment = attempt_effect(_record(402, UpstreamError(402)), 30)
    assert payment is not None and payment.deactivated == "http_402"
    server = attempt_effect(_record(503), 120)
    assert server is not None and server.demoted_until == NOW + 120
    assert attempt_effect(_record(403, UpstreamError(403, code="unsupported_country")), 30) is None


def test_stream_failure() -> None:
    sse = "text/event-stream; charset=utf-8"
    none: frozenset[str] = frozenset()
    overloaded = stream_failure(200, sse, "server_is_overloaded", "failed", none)
    assert overloaded == UpstreamError(503, code="server_is_overloaded")
    assert stream_failure(200, sse, "rate_limit_exceeded", None, none) == UpstreamError(429, code="rate_limit_exceeded")
    assert stream_failure(200, sse, None, "in_progress", none) == UpstreamError(502, code=STREAM_INCOMPLETE)
    assert stream_failure(200, sse, None, "completed", none) is None
    assert stream_failure(200, sse, None, "in_progress", frozenset({"DC"})) is None  # the client went away
    assert stream_failure(200, "application/json", None, None, none) is None
    assert stream_failure(429, sse, None, None, none) is None


def test_a_websocket_error_frame_spends_its_window_like_the_same_429() -> None:
    packed = "x-codex-primary-used-percent=100 x-codex-primary-reset-at=1800000600 junk retry-after=60"
    headers = frame_headers(packed)
    assert headers == {
        "x-codex-primary-used-percent": "100",
        "x-codex-primary-reset-at": "1800000600",
        "retry-after": "60",
    }
    error = parse_upstream_error("status=429 type=usage_limit_reached resets_at=1800000600")
    effect = attempt_effect(_record(429, error, headers), 30)
    assert effect is not None and effect.limited_until == 1800000600
    assert frame_headers(None) == {} and frame_headers("") == {}


def test_the_error_readers_reply_is_the_gateways_own_no_eligible_account() -> None:
    status, reply = error_body("no_eligible_account")
    assert status == 503 and f"local reply = '{reply.decode()}'" in UPSTREAM_ERRORS_LUA
    dead = {m for m in DEAD_ACCOUNT_CODES if f"{m} = true" in UPSTREAM_ERRORS_LUA}
    assert dead == DEAD_ACCOUNT_CODES  # the filter rewrites the same codes the policy deactivates on


def test_deactivated_accounts_raise_a_watch_alert_and_read_as_not_routable() -> None:
    from pooler.alerts.rules import RULES, AlertSnapshot, PoolState, Thresholds
    from pooler.readiness import AccountFacts, AssignmentFacts, account_readiness

    now = dt.datetime.fromtimestamp(NOW, dt.UTC)
    pool = PoolState(pool_id=1, label="main", status="active", accounts=3, routable=1, by_state={"deactivated": 2})
    snap = AlertSnapshot(now=now, pools=(pool,))
    signals = RULES["accounts_deactivated"](snap, Thresholds())
    assert [(s.rule, s.subject, s.details["accounts_in_state"]) for s in signals] == [
        ("accounts_deactivated", "pool:1", 2)
    ]
    facts = AccountFacts("deactivated", state_reason="account_deactivated", assignments=(AssignmentFacts("main"),))
    readiness = account_readiness(facts, now)
    assert not readiness.routable and readiness.category == "deactivated"
    assert "chatgpt.com" in readiness.reason
