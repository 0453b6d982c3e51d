"""Per-request state of the ext_proc stays bounded: every map keyed by request id is emptied once the request's
access-log entries arrived, in either order (memory flat across 10,000 requests)."""

from __future__ import annotations

from typing import Any, cast

from envoy.data.accesslog.v3.accesslog_pb2 import AccessLogType, HTTPAccessLogEntry
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from google.protobuf import struct_pb2

from extproc import state as state_module
from extproc.accesslog import AccessLogHandler
from extproc.state import GatewayState
from pooler import gateway_contract as gc
from pooler.gateway.snapshot import EXPIRED_STICKY_MEMORY_SECONDS, Sticky


def _state() -> GatewayState:
    return GatewayState(cast(Any, None))  # these paths never touch the database context


def _upstream(request_id: str, status: int) -> HTTPAccessLogEntry:
    entry = HTTPAccessLogEntry()
    entry.common_properties.access_log_type = AccessLogType.UpstreamEnd
    entry.request.request_id = request_id
    entry.response.response_code.value = status
    return entry


def _downstream(request_id: str, tried: list[int], status: int = 200) -> HTTPAccessLogEntry:
    entry = HTTPAccessLogEntry()
    entry.common_properties.access_log_type = AccessLogType.DownstreamEnd
    entry.request.request_id = request_id
    entry.response.response_code.value = status
    routing = struct_pb2.Struct()
    routing.update(
        {gc.ROUTING_POOL_ID: 1, gc.ROUTING_KEY_ID: 1, gc.ROUTING_KEY_PREFIX: "cpk_x", gc.ROUTING_TRIED: tried}
    )
    entry.common_properties.metadata.filter_metadata[gc.NS_ROUTING].CopyFrom(routing)
    return entry


def _message(*entries: HTTPAccessLogEntry) -> StreamAccessLogsMessage:
    message = StreamAccessLogsMessage()
    message.http_logs.log_entry.extend(entries)
    return message


def test_request_maps_empty_after_entries_in_envoy_order() -> None:
    state = _state()
    handler = AccessLogHandler(state)
    for n in range(2000):
        rid = f"r{n}"
        state.start(rid, 1, 1000.0)
        state.start(rid, 2, 1000.0)  # a failed-over second attempt
        handler.handle(_message(_upstream(rid, 429), _upstream(rid, 200), _downstream(rid, [1, 2])))
    assert state.attempts == {} and state.requests_in_flight == {} and state.in_flight == {}
    assert len(state.pending.requests) == 2000
    assert state.pending.requests[-1].attempts[0] == (1, 429, "failed_over", None)


def test_upstream_entry_after_its_downstream_entry_keeps_no_slot_and_is_attributed() -> None:
    # Envoy logged a request's last attempt after the request itself for a few % of requests under load; each
    # such entry used to re-create an `attempts` slot that only a 5-minute TTL removed, and lost its account.
    state = _state()
    handler = AccessLogHandler(state)
    for n in range(2000):
        rid = f"r{n}"
        state.start(rid, 7, 1000.0)
        handler.handle(_message(_downstream(rid, [7])))
        handler.handle(_message(_upstream(rid, 429)))
    assert state.attempts == {} and state.requests_in_flight == {} and state.in_flight == {}
    assert state.late_attempts == 2000
    assert 7 in state.overlays and state.overlays[7].limited_until is not None  # the 429 still counted


def test_finished_requests_are_bounded_by_age_and_count(monkeypatch: Any) -> None:
    state = _state()
    for n in range(100):
        state.remember_finished(f"old{n}", 0, 1000.0)
    state.remember_finished("new", 0, 1000.0 + state_module.FINISHED_TTL + 1)
    assert list(state.finished) == ["new"]
    monkeypatch.setattr(state_module, "MAX_FINISHED", 50)
    for n in range(500):
        state.remember_finished(f"r{n}", 0, 2000.0)
    assert len(state.finished) == 50


def test_orphaned_attempts_expire_oldest_first() -> None:
    state = _state()
    for n in range(5000):
        state.attempts[f"r{n}"] = (1000.0 + n * 0.01, [])
    state.expire_attempts(1000.0 + state_module.PENDING_ATTEMPTS_TTL + 25.0)
    assert len(state.attempts) == 2500 and next(iter(state.attempts)) == "r2500"


def test_expired_sticky_sessions_are_pruned_from_the_session_table() -> None:
    state = _state()
    for n in range(1000):  # one new conversation per request, TTL 60 s
        state.pin_session(1, f"s{n}", 1, 60.0, 1000.0 + n)
    # Expired ones are kept for EXPIRED_STICKY_MEMORY_SECONDS (a conversation's return is then `sticky_expired`).
    state.prune_sticky(1000.0 + 1000 + EXPIRED_STICKY_MEMORY_SECONDS)
    assert len(state.sessions) == 59
    forget = 2000.0
    assert all(isinstance(v, Sticky) and v.expires_at > forget for v in state.sessions.values())


def test_a_session_claim_outlives_a_snapshot_reload() -> None:
    # The race: a pin made while a reload was loading used to vanish with the old snapshot's table, so the
    # session's next turn was picked afresh (acct-a, acct-a, acct-b for three back-to-back connections).
    state = _state()
    state.pin_session(1, "s", 7, 3600.0, 1000.0)
    stored = {(1, "other"): Sticky(8, 5000.0), (1, "old"): Sticky(9, 10.0)}
    state.adopt_sessions(stored, 1000.0)  # what install() does with the database's table
    assert state.sessions[(1, "s")] == Sticky(7, 4600.0)
    assert state.sessions[(1, "other")] == Sticky(8, 5000.0)  # another replica's claim joins
    assert (1, "old") not in state.sessions  # expired rows never join
    # Where both know a session, the longer-lasting (newer) claim stays.
    state.adopt_sessions({(1, "s"): Sticky(3, 4000.0)}, 1000.0)
    assert state.sessions[(1, "s")].account_id == 7
