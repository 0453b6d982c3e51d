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

from extproc.metrics import METRICS
from extproc.state import GatewayState
from pooler import gateway_contract as gc
from pooler.gateway.evidence import AttemptRecord, RequestRecord, attempt_effect, attempt_outcomes

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


def _num(fields: Any, key: str) -> int | None:
    if fields is None or key not in fields:
        return None
    value = fields[key]
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return int(value.number_value)
    if kind == "string_value" and value.string_value.isdigit():
        return int(value.string_value)
    return None


def _str(fields: Any, key: str) -> str | None:
    if fields is None or key not in fields:
        return None
    value = fields[key]
    return value.string_value if value.WhichOneof("kind") == "string_value" else None


class AccessLogHandler:
    def __init__(self, state: GatewayState, attribute_late: bool = False) -> None:
        self.state = state
        self.attribute_late = attribute_late
        """Replica mode: an attempt routed by another replica is attributed from the request's tried list when its
        downstream entry arrives (that replica may never see this log entry)."""
        self._budget_warned: set[tuple[int, int]] = set()
        """(pool id, max_attempts) already warned about Envoy's smaller retry budget."""

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
        request_id = entry.request.request_id
        now = time.time()
        done = self.state.finished.get(request_id)
        if done is not None:
            # Logged after its request's downstream entry: attribute it from the request's tried list, and keep
            # no slot for it (nothing would ever pop it).
            slot: tuple[float, list[AttemptRecord]] = (now, [])
            position, done.seen = done.seen, done.seen + 1
            account_id = done.accounts[position] if position < len(done.accounts) else None
            self.state.late_attempts += 1
        else:
            slot = self.state.attempts.setdefault(request_id, (now, []))
            routed = self.state.requests_in_flight.get(request_id)
            position = len(slot[1])
            account_id = routed[1][position] if routed is not None and position < len(routed[1]) else None
        record = AttemptRecord(
            request_id=request_id,
            account_id=account_id,
            status=entry.response.response_code.value if entry.response.HasField("response_code") else 0,
            flags=_flags(common),
            headers={k.lower(): v for k, v in entry.response.response_headers.items()},
            observed_at=answered_at(common, now),
        )
        slot[1].append(record)
        log.debug("attempt request=%s n=%d account=%s status=%s", request_id, position + 1, account_id, record.status)
        if account_id is None:
            return  # answered by the gateway itself (no account was routed): no upstream evidence
        snapshot = self.state.snapshot
        demotion = snapshot.demotion_seconds if snapshot is not None else 30.0
        effect = attempt_effect(record, demotion)
        if effect is not None:
            self.state.apply_effect(effect, record.observed_at)

    def _downstream(self, entry: HTTPAccessLogEntry) -> None:
        common = entry.common_properties
        routing = _fields(common, gc.NS_ROUTING)
        request_id = entry.request.request_id
        routed = self.state.requests_in_flight.get(request_id)
        self.state.finish(request_id)
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
            self._check_retry_budget(_num(routing, gc.ROUTING_POOL_ID), len(tried))
        usage = _fields(common, gc.NS_USAGE)
        tokens = {k: v for k in gc.USAGE_KEYS if (v := _num(usage, k)) is not None}
        request_ns = _fields(common, gc.NS_REQUEST)
        status = entry.response.response_code.value if entry.response.HasField("response_code") else 0
        start = _seconds(common.start_time)
        created = dt.datetime.fromtimestamp(start, dt.UTC) if start is not None else dt.datetime.now(dt.UTC)
        ttfb = _seconds(common.time_to_first_downstream_tx_byte)
        total = _seconds(common.duration) or _seconds(common.time_to_last_downstream_tx_byte)
        error = _str(routing, gc.ROUTING_ERROR)
        if error is None and status >= 500 and not attempts and tried:
            error = "upstream_unavailable" if _flags(common) else None
        record = RequestRecord(
            request_id=request_id,
            created_at=created,
            pool_id=_num(routing, gc.ROUTING_POOL_ID),
            key_id=_num(routing, gc.ROUTING_KEY_ID),
            key_prefix=_str(routing, gc.ROUTING_KEY_PREFIX),
            route_family=_str(routing, gc.ROUTING_ROUTE_FAMILY) or gc.ROUTE_OTHER,
            method=entry.request.request_method and AccessLogMethod.name(entry.request.request_method),
            model=_str(request_ns, gc.REQUEST_MODEL),
            status_code=status,
            error_code=error,
            ttfb_ms=None if ttfb is None else round(ttfb * 1000, 3),
            duration_ms=None if total is None else round(total * 1000, 3),
            tried=tried,
            tokens=tokens,
        )
        if self.attribute_late:
            self._attribute_late(attempts, tried, now)
        record.attempts = attempt_outcomes(tried, attempts, status)
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
            "num_retries is %d): re-render the Envoy config (pooler envoy-config, or restart pooler up) so the "
            "pool gets its attempts",
            pool.pool_id,
            pool.name,
            pool.max_attempts,
            attempts,
            attempts - 1,
        )

    def _attribute_late(self, attempts: list[AttemptRecord], tried: list[int], now: float) -> None:
        snapshot = self.state.snapshot
        demotion = snapshot.demotion_seconds if snapshot is not None else 30.0
        for position, attempt in enumerate(attempts):
            if attempt.account_id is not None or position >= len(tried):
                continue
            attempt = attempts[position] = dataclasses.replace(attempt, account_id=tried[position])
            effect = attempt_effect(attempt, demotion)
            if effect is not None:
                self.state.apply_effect(effect, now)


class AccessLogMethod:
    """envoy.config.core.v3.RequestMethod enum -> its name."""

    @staticmethod
    def name(value: int) -> str:
        from envoy.config.core.v3.base_pb2 import RequestMethod

        return str(RequestMethod.Name(value))
