"""Envoy's gRPC access log -> evidence and request rows, off the request path.

Two kinds of entries arrive on the same stream (one logger config, so one buffer and ordered): the router's
*upstream* log, one per attempt (that attempt's status, flags and x-codex-* headers; the routing metadata then
names its account), and the HCM's *downstream* log, one per request (final status, timings, tokens from
sse_to_metadata, the routing metadata with every tried account).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

from envoy.data.accesslog.v3.accesslog_pb2 import AccessLogCommon, AccessLogType, HTTPAccessLogEntry
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from google.protobuf.wrappers_pb2 import StringValue

from extproc.metrics import METRICS
from extproc.state import GatewayState
from extproc.structs import int_field, string_field
from pooler import gateway_contract as gc
from pooler.gateway.evidence import (
    CONNECT_FAILURE_FLAGS,
    AttemptRecord,
    RequestRecord,
    attempt_outcomes,
    frame_headers,
    parse_upstream_error,
    stream_failure,
)
from pooler.gateway.switch_causes import refine_cause

log = logging.getLogger(__name__)

UPSTREAM_END = AccessLogType.UpstreamEnd
FLAG_NAMES = {
    "no_healthy_upstream": "UH",
    "upstream_request_timeout": "UT",
    "local_reset": "LR",
    "upstream_remote_reset": "UR",
    "upstream_connection_failure": "UF",
    "upstream_connection_termination": "UC",
    "upstream_overflow": "UO",
    "upstream_retry_limit_exceeded": "URX",
    "stream_idle_timeout": "SI",
    "downstream_connection_termination": "DC",
    "no_cluster_found": "NC",
}


def _seconds(duration: Any) -> float | None:
    """A protobuf Duration or Timestamp in seconds; None when unset (zero)."""
    if duration is None or (duration.seconds == 0 and duration.nanos == 0):
        return None
    return float(duration.seconds + duration.nanos / 1e9)


def entry_request_id(entry: HTTPAccessLogEntry) -> str:
    """Envoy's id of the request an entry belongs to. The ext_proc removes x-request-id before the upstream (no
    Codex client sends it), and that removal reaches the header map the log reads (the entry's `request_id`,
    and the stream id Envoy derives from the header, come out empty). So a downstream entry reads the copy the
    connection manager put in filter state first; an attempt's entry, the copy its response carries
    (`attempt_of`; an attempt that got no response has none: empty)."""
    logged: str = entry.request.request_id
    if entry.common_properties.access_log_type == UPSTREAM_END:
        return attempt_of(entry)[0] or logged
    packed = entry.common_properties.filter_state_objects.get(gc.REQUEST_ID_FILTER_STATE)
    if packed is not None:
        value = StringValue()
        if packed.Unpack(value) and value.value:
            return str(value.value)
    return logged


def attempt_of(entry: HTTPAccessLogEntry) -> tuple[str, int | None]:
    """(request id, account id) an attempt's response was stamped with by the upstream filter chain
    (`gc.ATTEMPT_OF_HEADER`: "<request id> <account id>"; the account is empty when the ext_proc routed none)."""
    value = entry.response.response_headers.get(gc.ATTEMPT_OF_HEADER, "")
    request_id, _, account = value.partition(" ")
    try:
        return request_id, int(float(account)) if account else None
    except ValueError:
        return request_id, None


def answered_at(common: AccessLogCommon, default: float) -> float:
    """When this attempt's upstream answered (start + time to its first byte), wall clock; `default` when Envoy
    did not record it. Evidence is ordered by this, not by when the entry reached us: each Envoy worker streams
    its own access log on its own flush timer, so an older answer can arrive after a newer one (a 200 with its
    0% headers after a later 429 on another worker would otherwise undo the limit)."""
    start = _seconds(common.start_time)
    first_byte = _seconds(common.time_to_first_upstream_rx_byte)
    if start is None or first_byte is None:
        return default
    return start + first_byte


def _flags(common: AccessLogCommon) -> frozenset[str]:
    if not common.HasField("response_flags"):
        return frozenset()
    rf = common.response_flags
    return frozenset(code for name, code in FLAG_NAMES.items() if getattr(rf, name))


def _fields(common: AccessLogCommon, namespace: str) -> Any:
    md = common.metadata.filter_metadata
    return md[namespace].fields if namespace in md else None


class AccessLogHandler:
    def __init__(self, state: GatewayState, attribute_late: bool = False) -> None:
        self.state = state
        self.attribute_late = attribute_late
        """Replica mode: an attempt routed by another replica is attributed from the request's tried list when its
        downstream entry arrives (that replica may never see this log entry)."""
        self._budget_warned: set[tuple[int, int]] = set()
        """(pool id, max_attempts) already warned about Envoy's smaller retry budget."""
        self.ended: list[str] | None = None
        """When a list (a receiver whose requests other processes picked for): the ids of the requests whose end
        arrived since the service last took them, to announce (`AccessLogService`)."""

    def handle(self, message: StreamAccessLogsMessage) -> None:
        started = time.perf_counter()
        for entry in message.http_logs.log_entry:
            try:
                if entry.common_properties.access_log_type == UPSTREAM_END:
                    self._upstream(entry)
                else:
                    self._downstream(entry)
            except (KeyError, ValueError, TypeError, AttributeError):
                # Evidence is best-effort: one malformed entry must not stop the stream (fail-open here is
                # safe, nothing on the request path depends on it). Never log the entry itself.
                log.exception("skipped an access-log entry that could not be read")
        METRICS.observe_phase("accesslog_batch", time.perf_counter() - started)

    def _upstream(self, entry: HTTPAccessLogEntry) -> None:
        """One finished attempt. Envoy gives the upstream log the upstream stream's metadata, which does not hold
        the ext_proc's routing namespace, so the attempt's account is found by position: the n-th upstream entry
        of a request is its n-th attempt, and the processor recorded the account of every attempt it routed."""
        common = entry.common_properties
        request_id = entry_request_id(entry)
        if not request_id:
            return  # an attempt that got no response: its request's downstream entry accounts for it
        stamped = attempt_of(entry)[1]
        now = time.time()
        done = self.state.finished.get(request_id)
        if done is not None:
            # Logged after its request's downstream entry: attribute it from the request's tried list, and keep
            # no slot for it (nothing would ever pop it).
            slot: tuple[float, list[AttemptRecord]] = (now, [])
            position, done.seen = done.seen, done.seen + 1
            account_id = done.accounts[position] if position < len(done.accounts) else None
            account_id = stamped if stamped is not None else account_id
            self.state.late_attempts += 1
        else:
            slot = self.state.attempts.setdefault(request_id, (now, []))
            routed = self.state.requests_in_flight.get(request_id)
            position = len(slot[1])
            account_id = routed[1][position] if routed is not None and position < len(routed[1]) else None
            account_id = stamped if stamped is not None else account_id
        headers = {k.lower(): v for k, v in entry.response.response_headers.items()}
        error = parse_upstream_error(headers.get(gc.UPSTREAM_ERROR_HEADER))
        status = entry.response.response_code.value if entry.response.HasField("response_code") else 0
        record = AttemptRecord(
            request_id=request_id,
            account_id=account_id,
            # The upstream's own status: the error reader turns a credential error into a 503 for the router.
            status=error.status if error is not None else status,
            flags=_flags(common),
            headers=headers,
            observed_at=answered_at(common, now),
            error=error,
        )
        slot[1].append(record)
        log.debug("attempt request=%s n=%d account=%s status=%s", request_id, position + 1, account_id, record.status)
        if account_id is None:
            return  # answered by the gateway itself (no account was routed): no upstream evidence
        self.state.learn(record)

    def _downstream(self, entry: HTTPAccessLogEntry) -> None:
        common = entry.common_properties
        routing = _fields(common, gc.NS_ROUTING)
        request_id = entry_request_id(entry)
        routed = self.state.requests_in_flight.get(request_id)
        self.state.finish(request_id)
        if self.ended is not None and request_id:
            self.ended.append(request_id)
        now = time.time()
        attempts = self.state.attempts.pop(request_id, (now, []))[1]
        self.state.expire_attempts(now)
        done = self.state.remember_finished(request_id, len(attempts), now)
        if routed is not None:
            done.accounts = routed[1]
        if routing is None:
            return  # never reached the ext_proc (health checks, 404s, admin): not a pooled request
        tried_value = routing.get(gc.ROUTING_TRIED) if hasattr(routing, "get") else None
        tried = [int(v.number_value) for v in tried_value.list_value.values] if tried_value is not None else []
        if tried:
            done.accounts = tried  # Envoy's own list: also names attempts another replica routed
        if tried and "URX" in _flags(common):
            self._check_retry_budget(int_field(routing, gc.ROUTING_POOL_ID), len(tried))
        usage = _fields(common, gc.NS_USAGE)
        tokens = {k: v for k in gc.USAGE_KEYS if (v := int_field(usage, k)) is not None}
        request_ns = _fields(common, gc.NS_REQUEST)
        status = entry.response.response_code.value if entry.response.HasField("response_code") else 0
        start = _seconds(common.start_time)
        created = dt.datetime.fromtimestamp(start, dt.UTC) if start is not None else dt.datetime.now(dt.UTC)
        ttfb = _seconds(common.time_to_first_downstream_tx_byte)
        total = _seconds(common.duration) or _seconds(common.time_to_last_downstream_tx_byte)
        error = string_field(routing, gc.ROUTING_ERROR)
        upstream_error = error is None and status >= 400 and bool(attempts) and attempts[-1].error is not None
        if upstream_error:
            # The upstream's own code for the answer the client got (the last attempt's): `usage_not_included`,
            # `account_deactivated`, ... (safe tokens the error reader wrote, never a message).
            last = attempts[-1]
            error = (last.error.label if last.error is not None else None) or f"upstream_{last.status}"
        if error is None and status >= 500 and not attempts and tried:
            error = "upstream_unavailable" if _flags(common) else None
        failed = None
        # Only where the client reads the upstream's own SSE: a /v1 answer is the translator's stream (its
        # processor sees the upstream's and reports a failure as the routing error), whose events sse_to_metadata
        # does not read, so it would always look cut.
        if error is None and tried and string_field(routing, gc.ROUTING_ROUTE_FAMILY) != gc.ROUTE_V1:
            headers = entry.response.response_headers
            failed = stream_failure(
                status,
                headers.get("content-type"),
                string_field(usage, gc.USAGE_STREAM_ERROR),
                string_field(usage, gc.USAGE_RESPONSE_STATUS),
                _flags(common),
            )
        ended = (start or now) + (_seconds(common.duration) or 0.0)
        if failed is not None:
            # The turn failed inside its 200 (bytes had reached the client, so no failover): the served account
            # learns it like the same status, and the row is an error with that code.
            error, upstream_error = failed.code, True
            self.state.learn(AttemptRecord(request_id, tried[-1], failed.status, _flags(common), {}, ended, failed))
        frame = parse_upstream_error(string_field(usage, gc.USAGE_WS_ERROR))
        if frame is not None and tried:
            # A websocket `error` frame (the Lua counter kept the connection's last): its account learns what the
            # same status and body would teach. No flags: the connection's own close (UC) is its normal end.
            model = string_field(request_ns, gc.REQUEST_MODEL)
            frame = dataclasses.replace(frame, model=frame.model or model)
            limits = frame_headers(string_field(usage, gc.USAGE_WS_ERROR_HEADERS))
            self.state.learn(AttemptRecord(request_id, tried[-1], frame.status, frozenset(), limits, ended, frame))
        record = RequestRecord(
            request_id=request_id,
            created_at=created,
            pool_id=int_field(routing, gc.ROUTING_POOL_ID),
            key_id=int_field(routing, gc.ROUTING_KEY_ID),
            key_prefix=string_field(routing, gc.ROUTING_KEY_PREFIX),
            route_family=string_field(routing, gc.ROUTING_ROUTE_FAMILY) or gc.ROUTE_OTHER,
            method=entry.request.request_method and AccessLogMethod.name(entry.request.request_method),
            model=string_field(request_ns, gc.REQUEST_MODEL),
            status_code=status,
            error_code=error,
            ttfb_ms=None if ttfb is None else round(ttfb * 1000, 3),
            duration_ms=None if total is None else round(total * 1000, 3),
            tried=tried,
            tokens=tokens,
            upstream_error=upstream_error,
        )
        if self.attribute_late:
            self._attribute_late(attempts, tried, now)
        self._unanswered(request_id, attempts, tried, _flags(common), now)
        record.attempts = attempt_outcomes(tried, attempts, status)
        record.session_hash = string_field(routing, gc.ROUTING_SESSION)
        record.switch_cause = refine_cause(
            string_field(routing, gc.ROUTING_SWITCH_CAUSE), [a[1] for a in record.attempts]
        )
        if record.key_prefix and tokens.get("total_tokens"):
            self.state.tokens.add(record.key_prefix, tokens["total_tokens"], now)
            self.state.budgets.add(record.key_prefix, record.model, tokens, now)
            served_by = tried[-1] if tried else None
            share_tokens = tokens.get("input_tokens", 0) + tokens.get("output_tokens", 0)
            self.state.shares.add(record.key_prefix, served_by, share_tokens, now)
        if record.key_id is not None and error is None:
            self.state.pending.key_used[record.key_id] = now
        self.state.pending.requests.append(record)
        pool = self.state.snapshot.pools.get(record.pool_id) if self.state.snapshot and record.pool_id else None
        METRICS.finished(record, pool.name if pool is not None else "none")

    def _check_retry_budget(self, pool_id: int | None, attempts: int) -> None:
        """Envoy's `num_retries` is rendered once (`pooler envoy-config`, `pooler up`) from the largest
        max_attempts of the pools at that time; the ext_proc cannot raise it. When Envoy reports its retry limit
        reached (URX) before a pool's max_attempts, the pool was given more attempts than Envoy allows: say so,
        once per pool and setting, naming the fix."""
        snapshot = self.state.snapshot
        pool = snapshot.pools.get(pool_id) if snapshot is not None and pool_id is not None else None
        if pool is None or attempts >= pool.max_attempts or (pool.pool_id, pool.max_attempts) in self._budget_warned:
            return
        self._budget_warned.add((pool.pool_id, pool.max_attempts))
        log.warning(
            "pool %s (%s) has max_attempts %d but Envoy stopped a request after %d attempts (its rendered "
            "num_retries is %d): re-render the Envoy config (pooler envoy-config; pooler up does it by itself "
            "within seconds) so the pool gets its attempts",
            pool.pool_id,
            pool.name,
            pool.max_attempts,
            attempts,
            attempts - 1,
        )

    def _unanswered(
        self, request_id: str, attempts: list[AttemptRecord], tried: list[int], flags: frozenset[str], now: float
    ) -> None:
        """Attempts that got no response (connect failure, reset) have no entry of their own that names their
        request (it is stamped on responses: `attempt_of`). When the request ended with an upstream-failure
        flag, each tried account with no entry is such an attempt: recorded with status 0 and those flags, so
        it demotes its account as its own entry did while x-request-id still went upstream."""
        answered = {a.account_id for a in attempts}
        missing = [account for account in tried if account not in answered]
        if not missing or not flags & CONNECT_FAILURE_FLAGS:
            return
        for account in missing:
            record = AttemptRecord(request_id, account, 0, flags, {}, now)
            attempts.append(record)
            self.state.learn(record, now)

    def _attribute_late(self, attempts: list[AttemptRecord], tried: list[int], now: float) -> None:
        for position, attempt in enumerate(attempts):
            if attempt.account_id is not None or position >= len(tried):
                continue
            attempt = attempts[position] = dataclasses.replace(attempt, account_id=tried[position])
            self.state.learn(attempt, now)


class AccessLogMethod:
    """envoy.config.core.v3.RequestMethod enum -> its name."""

    @staticmethod
    def name(value: int) -> str:
        from envoy.config.core.v3.base_pb2 import RequestMethod

        return str(RequestMethod.Name(value))
