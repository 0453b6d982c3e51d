"""Quota evidence is ordered by when the upstream answered, not by when Envoy's access log delivered it: each
Envoy worker flushes its own access-log stream, so an older 200 (0% used) can arrive after a newer 429."""

from __future__ import annotations

from typing import Any, cast

from envoy.data.accesslog.v3.accesslog_pb2 import AccessLogType, HTTPAccessLogEntry
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage

from extproc.accesslog import AccessLogHandler, answered_at
from extproc.state import GatewayState

QUOTA_HEADERS = {
    "x-codex-primary-used-percent": "0",
    "x-codex-primary-window-minutes": "300",
    "x-codex-primary-reset-after-seconds": "3600",
}


def _attempt(request_id: str, status: int, started: float, first_byte: float, headers: dict[str, str]) -> Any:
    entry = HTTPAccessLogEntry()
    entry.common_properties.access_log_type = AccessLogType.UpstreamEnd
    entry.common_properties.start_time.FromNanoseconds(int(started * 1e9))
    entry.common_properties.time_to_first_upstream_rx_byte.FromNanoseconds(int(first_byte * 1e9))
    entry.request.request_id = request_id
    entry.response.response_code.value = status
    entry.response.response_headers.update(headers)
    message = StreamAccessLogsMessage()
    message.http_logs.log_entry.append(entry)
    return message


def test_an_older_200_arriving_after_a_429_does_not_undo_the_limit() -> None:
    state = GatewayState(cast(Any, None))  # no snapshot, no database: the overlay and the pending batch only
    handler = AccessLogHandler(state)
    now = 1_800_000_000.0
    state.start("older-200", 1, now)
    state.start("newer-429", 1, now)
    # The 429 (retry-after only: no header says which window is spent) was answered at now+0.5 and is logged
    # first; the 200 with 0% used was answered at now+0.1, on another worker whose flush came later.
    handler.handle(_attempt("newer-429", 429, now + 0.4, 0.1, {"retry-after": "600"}))
    handler.handle(_attempt("older-200", 200, now, 0.1, QUOTA_HEADERS))

    window = state.overlays[1].windows[300]
    assert window.used_percent == 100.0 and window.observed_at == now + 0.5
    # Both reach the database with their answer times, so its "older never overwrites newer" rule holds too.
    times = sorted((at, effect.limit_window is not None) for effect, at in state.pending.effects)
    assert times == [(now + 0.1, False), (now + 0.5, True)]


def test_a_newer_200_replaces_the_window() -> None:
    state = GatewayState(cast(Any, None))
    handler = AccessLogHandler(state)
    now = 1_800_000_000.0
    state.start("first-429", 1, now)
    state.start("later-200", 1, now)
    handler.handle(_attempt("first-429", 429, now, 0.1, {"retry-after": "600"}))
    handler.handle(_attempt("later-200", 200, now + 1.0, 0.1, QUOTA_HEADERS))
    assert state.overlays[1].windows[300].used_percent == 0.0


def test_answered_at_falls_back_when_envoy_recorded_no_upstream_byte() -> None:
    entry = HTTPAccessLogEntry()
    assert answered_at(entry.common_properties, 42.0) == 42.0  # e.g. an attempt the gateway answered itself
    entry.common_properties.start_time.FromNanoseconds(10_000_000_000)
    assert answered_at(entry.common_properties, 42.0) == 42.0
    entry.common_properties.time_to_first_upstream_rx_byte.FromNanoseconds(250_000_000)
    assert answered_at(entry.common_properties, 42.0) == 10.25


def test_consecutive_failures_double_the_demotion_and_a_success_resets_it() -> None:
    state = GatewayState(cast(Any, None))  # no snapshot: demotion_seconds defaults to 30
    handler = AccessLogHandler(state)
    now = 1_800_000_000.0
    demotions = []
    for n, status in enumerate((500, 502, 503, 200, 504)):
        request_id = f"r{n}"
        state.start(request_id, 1, now)
        handler.handle(_attempt(request_id, status, now + n, 0.0, {}))
        if status >= 500:
            effect, at = state.pending.effects[-1]
            assert effect.demoted_until is not None
            demotions.append(effect.demoted_until - at)
    assert demotions == [30.0, 60.0, 120.0, 30.0]


def test_the_error_readers_header_gives_the_upstreams_status_and_code() -> None:
    state = GatewayState(cast(Any, None))
    handler = AccessLogHandler(state)
    now = 1_800_000_000.0
    state.start("dead", 1, now)
    # The router saw a 503 (the Lua filter rewrote the 403 so Envoy retries it); the evidence is the 403's.
    handler.handle(_attempt("dead", 503, now, 0.1, {"x-pooler-upstream-error": "status=403 code=account_deactivated"}))
    (record,) = state.attempts["dead"][1]
    assert record.status == 403 and record.error is not None and record.error.code == "account_deactivated"
    effect, _ = state.pending.effects[-1]
    assert effect.deactivated == "account_deactivated" and effect.demoted_until is None
