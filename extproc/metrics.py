"""Prometheus metrics of the gateway, served by the ext_proc process (names: docs/OPERATIONS.md "Metrics").

Why here: the ext_proc sees every attempt (selection) and every finished request (the access log), and holds
the routing snapshot (accounts, states, quota windows) in memory. So one process serves everything:
- counters and histograms counted in memory (hot path: a cached child per label tuple, one `inc`; no label
  built from an unbounded client value: models outside the known set count as `other`);
- gauges read from the snapshot at scrape time (accounts by state, quota used percent and streams in flight
  per account *label*);
- scheduler job outcomes and open alert incidents read from the database at scrape time (cached a few
  seconds), because the scheduler may run anywhere and the database already holds `job_runs`.

Exposition: plain HTTP on a unix socket beside the ext_proc socket (`<socket>.metrics`), and also on
POOLER_METRICS_LISTEN when set (an Envoy in another pod cannot reach the socket); routed by Envoy at `/metrics`
on the gateway port, where the metrics token is always required (pooler.metrics_token).
Served on the event loop, so collectors read the snapshot without racing its mutations.
Labels never carry account ids, ChatGPT ids, emails or tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from extproc.responses import error_body
from pooler.config import ListenAddress
from pooler.errors import ConfigError
from pooler.gateway.evidence import RequestRecord
from pooler.gateway.snapshot import Snapshot
from pooler.metrics_token import allowed, stored_hash
from pooler.models import AlertIncident, JobRun
from pooler.route_table import ROUTE_HEADER

log = logging.getLogger(__name__)

DB_CACHE_SECONDS = 10.0
MAX_MODELS = 64
"""Distinct model label values before further ones count as `other` (the model comes from client bodies)."""
PHASE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5)
TOKEN_KINDS = {
    "input_tokens": "input",
    "cached_tokens": "cached",
    "output_tokens": "output",
    "reasoning_tokens": "reasoning",
}


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "none"


def window_label(minutes: int) -> str:
    if minutes == 300:
        return "5h"
    if minutes == 10080:
        return "weekly"
    return f"{minutes}m"


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "pooler_requests", "Finished client requests", ["pool", "route_family", "status_class"], registry=r
        )
        self.attempts = Counter("pooler_upstream_attempts", "Upstream attempts", ["pool", "outcome"], registry=r)
        self.failovers = Counter("pooler_failovers", "Requests that needed more than one attempt", ["pool"], registry=r)
        self.selection = Counter("pooler_selection", "Account picks by outcome", ["pool", "outcome"], registry=r)
        self.no_eligible = Counter(
            "pooler_selection_no_eligible",
            "Ineligibility reasons when nothing could be picked",
            ["pool", "reason"],
            registry=r,
        )
        self.unrouted = Counter(
            "pooler_route_not_configured",
            "Requests refused because they did not come through the routes, clusters and filters the route table "
            "renders (a hand-written route or a missing fragment)",
            registry=r,
        )
        self.turn_state_drops = Counter(
            "pooler_turn_state_dropped",
            "Requests whose x-codex-turn-state was not forwarded: its issuing account is not the picked one (the "
            "session moved, or a retry went elsewhere) or is unknown",
            ["pool"],
            registry=r,
        )
        self.tokens = Counter("pooler_tokens", "Tokens", ["pool", "key_prefix", "model", "kind"], registry=r)
        self.phase = Histogram(
            "pooler_extproc_phase_seconds", "ext_proc time per phase", ["phase"], buckets=PHASE_BUCKETS, registry=r
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._models: set[str] = set()
        self._phases = {name: self.phase.labels(name) for name in ("auth", "select", "mutate", "accesslog_batch")}

    def _child(self, metric: Any, *labels: str) -> Any:
        # `labels()` takes a lock and builds a key per call; a dict of children is the cheap path.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- hot path (one synchronous message per attempt) ------------------------------------------------
    def picked(self, pool: str, outcome: str) -> None:
        self._child(self.selection, pool, outcome).inc()

    def no_eligible_reasons(self, pool: str, reasons: Iterator[str]) -> None:
        for reason in reasons:
            self._child(self.no_eligible, pool, reason).inc()

    def route_not_configured(self) -> None:
        self.unrouted.inc()

    def turn_state_dropped(self, pool: str) -> None:
        self._child(self.turn_state_drops, pool).inc()

    def observe_phase(self, phase: str, seconds: float) -> None:
        self._phases[phase].observe(seconds)

    # --- access log (off the request path) --------------------------------------------------------------
    def model_label(self, model: str | None) -> str:
        if not model:
            return "none"
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODELS or len(model) > 64:
            return "other"
        self._models.add(model)
        return model

    def finished(self, record: RequestRecord, pool: str) -> None:
        self._child(self.requests, pool, record.route_family, status_class(record.status_code)).inc()
        outcomes = [attempt.outcome for attempt in record.attempts]
        for outcome in outcomes:
            self._child(self.attempts, pool, outcome).inc()
        if len(outcomes) > 1:
            self._child(self.failovers, pool).inc()
        if record.tokens and record.key_prefix:
            model = self.model_label(record.model)
            for key, kind in TOKEN_KINDS.items():
                value = record.tokens.get(key)
                if value:
                    self._child(self.tokens, pool, record.key_prefix, model, kind).inc(value)


class SnapshotCollector(Collector):
    """Gauges from the routing snapshot: accounts by state, latest quota used percent and streams in flight per
    account label."""

    def __init__(
        self, snapshot: Callable[[], Snapshot | None], in_flight: Callable[[], Mapping[int, int]] | None = None
    ) -> None:
        self.snapshot = snapshot
        self.in_flight = in_flight

    def collect(self) -> Iterator[Any]:
        states = GaugeMetricFamily("pooler_accounts", "Accounts by lifecycle state", labels=["state"])
        quota = GaugeMetricFamily(
            "pooler_quota_used_percent",
            "Latest used percent per account label and window",
            labels=["account", "window"],
        )
        streams = GaugeMetricFamily(
            "pooler_account_inflight_streams",
            "Streams in flight per account label (this ext_proc replica), from the pick to the access-log entry",
            labels=["account"],
        )
        snapshot = self.snapshot()
        in_flight = self.in_flight() if self.in_flight is not None else {}
        if snapshot is not None:
            seen: dict[int, Any] = {}
            for pool in snapshot.pools.values():
                for candidate in pool.candidates:
                    seen.setdefault(candidate.account_id, candidate)
            counts: dict[str, int] = {}
            for candidate in seen.values():
                counts[candidate.state] = counts.get(candidate.state, 0) + 1
                for window in candidate.windows:
                    quota.add_metric([candidate.label, window_label(window.window_minutes)], window.used_percent)
                streams.add_metric([candidate.label], in_flight.get(candidate.account_id, 0))
            for state, count in sorted(counts.items()):
                states.add_metric([state], count)
        yield states
        yield quota
        yield streams


class DatabaseCollector(Collector):
    """Scheduler job outcomes and open alert incidents, refreshed from the database by `refresh` (in a thread)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, str, int]] = []
        self.incidents: list[tuple[str, int]] = []
        self.token_hash: str | None = None
        self.loaded_at = 0.0

    def refresh(self, session_factory: Any) -> None:
        with session_factory() as session:
            jobs = session.execute(
                select(JobRun.job_id, JobRun.outcome, func.count())
                .where(JobRun.outcome != "running")
                .group_by(JobRun.job_id, JobRun.outcome)
            ).all()
            incidents = session.execute(
                select(AlertIncident.severity, func.count())
                .where(AlertIncident.status == "open")
                .group_by(AlertIncident.severity)
            ).all()
            self.token_hash = stored_hash(session)
        self.jobs = [(str(j), str(o), int(n)) for j, o, n in jobs]
        self.incidents = [(str(s), int(n)) for s, n in incidents]
        self.loaded_at = time.monotonic()

    def collect(self) -> Iterator[Any]:
        runs = CounterMetricFamily(
            "pooler_scheduler_job_runs", "Scheduler job runs by outcome", labels=["job", "outcome"]
        )
        for job, outcome, count in self.jobs:
            runs.add_metric([job, outcome], count)
        open_ = GaugeMetricFamily("pooler_alert_incidents_open", "Open alert incidents", labels=["severity"])
        for severity, count in self.incidents:
            open_.add_metric([severity], count)
        yield runs
        yield open_


METRICS = GatewayMetrics()
"""The process-wide metrics (one ext_proc process = one registry)."""
METRICS_ROUTE = "metrics"
"""The route table row of `/metrics` on the gateway port (pooler/route_table.py)."""


class MetricsServer:
    """`GET /metrics` over HTTP/1.1 on a unix socket (and optionally TCP), on the event loop (no thread touches the
    snapshot)."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        snapshot: Callable[[], Snapshot | None],
        ctx: Any,
        in_flight: Callable[[], Mapping[int, int]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.ctx = ctx
        self.db = DatabaseCollector()
        metrics.registry.register(SnapshotCollector(snapshot, in_flight))
        metrics.registry.register(self.db)
        self._servers: list[asyncio.AbstractServer] = []

    async def start(self, path: Path, tcp: ListenAddress | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        self._servers.append(await asyncio.start_unix_server(self._handle, path=str(path)))
        if tcp is not None:
            try:
                self._servers.append(await asyncio.start_server(self._handle, host=tcp.host, port=tcp.port))
            except OSError as exc:
                raise ConfigError(
                    [f"POOLER_METRICS_LISTEN: cannot listen on {tcp.target} ({exc.strerror or type(exc).__name__})"]
                ) from None

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def _refresh_db(self) -> None:
        if time.monotonic() - self.db.loaded_at < DB_CACHE_SECONDS:
            return
        try:
            await asyncio.to_thread(self.db.refresh, self.ctx.session_factory)
        except Exception:
            log.warning("metrics: database figures unavailable; serving the last ones")
            self.db.loaded_at = time.monotonic()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = ([*lines[0].split(" "), "", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                await self._refresh_db()
                # Envoy's /metrics route on the gateway port names its row in this header (overwriting a client's
                # copy); a direct scrape of the socket or POOLER_METRICS_LISTEN does not send it (and sending it
                # only makes a scrape stricter).
                via_gateway = headers.get(ROUTE_HEADER) == METRICS_ROUTE
                if target.split("?", 1)[0] != "/metrics" or method not in ("GET", "HEAD"):
                    status, body, ctype = "404 Not Found", b"not found\n", "text/plain"
                elif not allowed(
                    self.ctx.hasher, self.db.token_hash, headers.get("authorization"), token_required=via_gateway
                ):
                    status, body = "401 Unauthorized", error_body("metrics_token_required")[1]
                    ctype = "application/json"
                else:
                    status, body = "200 OK", generate_latest(self.metrics.registry)
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                writer.write(
                    f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                    + (b"" if method == "HEAD" else body)
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
