"""Wiring of the ext_proc process: config, state, gRPC server (unix sockets, optionally a TCP address with TLS),
background tasks, shutdown.

`python -m extproc` prints READY_LINE once the server listens and the first snapshot is loaded. Its role
(`--role`): `all` (default) serves the ext_proc and the access log in one process; `pooler up` runs the two
apart - several `decide` workers (ext_proc only) and one `access-log` receiver (Envoy's access log, the
evidence it carries and the request-log writer) - so a decision worker's crash loses no request-log row
(docs/ARCHITECTURE.md "Processes of `pooler up`").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError

from extproc import shared
from extproc.accesslog import AccessLogHandler
from extproc.metrics import METRICS, MetricsServer
from extproc.processor import AttemptProcessor
from extproc.reloader import Reloader
from extproc.server import AccessLogService, ExternalProcessorService
from extproc.shared import SharedState
from extproc.state import GatewayState
from extproc.writer import Writer
from pooler.config import Config, ServerTlsMaterial, load_config, read_server_tls
from pooler.context import CoreContext, open_context
from pooler.envoy_config import metrics_socket_for
from pooler.errors import ConfigError
from pooler.versions import notify_requests_ended

READY_LINE = "pooler extproc ready"
DRAIN_SECONDS = 5.0
log = logging.getLogger("extproc")

ROLE_ALL = "all"
ROLE_DECIDE = "decide"
ROLE_ACCESS_LOG = "access-log"
ROLES = (ROLE_ALL, ROLE_DECIDE, ROLE_ACCESS_LOG)
DECIDE_RECONCILE_SECONDS = 5.0
"""A decision worker's budget and tokens/day counters are only the database's (no access log feeds them):
re-read this often (the receiver's own counters stay exact; a worker may admit up to this long past a limit)."""


def _bind_unix(server: grpc.aio.Server, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()  # a stale socket of a previous run
    server.add_insecure_port(f"unix:{path}")


def _bind_tcp(server: grpc.aio.Server, config: Config, tls: ServerTlsMaterial | None) -> None:
    """POOLER_EXTPROC_LISTEN: the same services (ext_proc, access log, health) on TCP, for an Envoy elsewhere."""
    if config.extproc_listen is None:
        return
    target = config.extproc_listen.target
    try:
        if tls is None:
            server.add_insecure_port(target)
        else:
            credentials = grpc.ssl_server_credentials(
                [(tls.private_key, tls.cert_chain)],
                root_certificates=tls.client_ca,
                require_client_auth=tls.client_ca is not None,
            )
            server.add_secure_port(target, credentials)
    except RuntimeError:
        # grpc raises a bare "Failed to bind" here (busy port, unknown host): say which setting to change.
        raise ConfigError([f"POOLER_EXTPROC_LISTEN: cannot listen on {target}"]) from None


# Prepared statements each SQLite connection keeps (Python's sqlite3 default: 128). The writer's
# `request_id IN (...)` check and the ORM's multi-row INSERT render one SQL text per batch size, so the default cache
# slowly filled with up to 128 large prepared statements per pooled connection: SQLite's own heap
# (sqlite3_memory_used) grew 0.9 -> 20.9 MiB over 125k gateway requests and was most of the ext_proc's RSS growth.
# With 16 it stays at 2-6 MiB: RSS at ~85k requests 140.6 -> 125-135 MiB, growth 3.1 -> 1.3-2.3 MiB per 10k requests
# (docs/BENCHMARKS.md, 2026-11-24). The statements this process repeats are few; re-preparing an evicted one
# costs microseconds, at most once per 0.5 s flush.
SQLITE_CACHED_STATEMENTS = 16


def _bound_sqlite_statement_cache(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["cached_statements"] = SQLITE_CACHED_STATEMENTS


def _announcer(ctx: CoreContext) -> Callable[[list[str]], Awaitable[None]]:
    def notify(request_ids: list[str]) -> None:
        with ctx.session_factory.begin() as session:
            notify_requests_ended(session, request_ids)

    async def announce(request_ids: list[str]) -> None:
        # Database away: the workers find the ends in request_logs once the rows are written.
        with contextlib.suppress(SQLAlchemyError):
            await asyncio.to_thread(notify, request_ids)

    return announce


async def serve(config: Config, role: str = ROLE_ALL) -> int:
    # Read before anything else starts: a bad certificate stops the process with one line, not half-way up.
    tls = read_server_tls(config.extproc_tls) if config.extproc_tls is not None else None
    ctx = open_context(config, hide_parameters=True)
    _bound_sqlite_statement_cache(ctx.engine)
    state = GatewayState(ctx)
    decider_only = role == ROLE_DECIDE
    reloader = Reloader(state, DECIDE_RECONCILE_SECONDS if decider_only else None, tokens=decider_only)
    writer = Writer(state)
    # Buffered /v1 audio bodies reach the ext_proc in one message: allow up to Envoy's buffer limit (16 MiB).
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 32 * 1024 * 1024)])
    processor = AttemptProcessor(state)
    decides, logs = role != ROLE_ACCESS_LOG, role != ROLE_DECIDE
    # A decision worker without the access log learns request ends from the database, like a replica does for
    # the requests another replica logged (shared.SharedState.release_ended); a lone one keeps its local limits.
    shared_state = SharedState(state) if decides and (shared.enabled() or not logs) else None
    if decides:
        service = ExternalProcessorService(processor, shared_state if shared.enabled() else None)
        ep_grpc.add_ExternalProcessorServicer_to_server(service, server)
    # The receiver routes nothing: every attempt's account comes from the request's tried list.
    handler = AccessLogHandler(state, attribute_late=shared.enabled() or not decides)
    # Other processes picked for the requests this one logs (a receiver of its own, or replicas): tell them each
    # end as it arrives (PostgreSQL), so their stream-cap and admission slots are free before the row is written.
    others_picked = logs and (shared.enabled() or not decides) and ctx.engine.dialect.name == "postgresql"
    access_log = AccessLogService(handler, _announcer(ctx) if others_picked else None)
    if logs:
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(access_log, server)
    health = health_aio.HealthServicer()
    # grpc's servicer starts out SERVING: a (re)starting replica was put in rotation by Envoy's health check
    # before its first snapshot, and answered 503 gateway_not_ready (seen in the replica restart test).
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    sockets = [s for s, on in ((config.extproc_socket, decides), (config.accesslog_socket, logs)) if on]
    for path in dict.fromkeys(sockets):
        _bind_unix(server, path)
    _bind_tcp(server, config, tls)
    metrics = MetricsServer(METRICS, lambda: state.snapshot, ctx, lambda: state.in_flight)
    # Before the gRPC server starts: a busy metrics port is reported while nothing serves yet.
    await metrics.start(Path(metrics_socket_for(sockets[0].resolve())), config.metrics_listen)
    await server.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # Serve `gateway_not_ready` until the first snapshot loads; keep retrying while the DB is away.
    while state.snapshot is None and not stop.is_set():
        await reloader.check()
        if state.snapshot is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    reloader.start_listener(loop)
    # The writer stops last, on its own event: access-log entries keep arriving while the replica drains and
    # while the server stops, and a writer that made its final flush at SIGTERM left them unwritten (measured:
    # 14 of 127 rows lost in the restart test of tests/integration/test_multi_replica.py).
    writer_stop = asyncio.Event()
    writer_task = asyncio.create_task(writer.run(writer_stop))
    # The background tasks run on until the server has stopped, not just until SIGTERM: a draining worker still
    # gets streams until Envoy's health check takes it out, and with its reloader (the announced request ends) and
    # its ended-request look-up stopped, its in-flight counts only grew: it refused a turn at the stream cap in
    # about one restart in three (tests/integration/test_workers.py).
    background_stop = asyncio.Event()
    tasks = [
        asyncio.create_task(reloader.run(background_stop)),
        asyncio.create_task(processor.surface.pins.run(ctx.session_factory, background_stop)),  # file pins
    ]
    if shared_state is not None:
        # Requests that ended on another replica, or (a decision worker) at the access-log receiver: looked up
        # as soon as the receiver wrote rows (PostgreSQL's notification), else every ENDED_CHECK_SECONDS.
        written = reloader.requests_written if not logs else None
        tasks.append(asyncio.create_task(shared_state.run(background_stop, written)))
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    if not stop.is_set():
        print(READY_LINE, flush=True)
        log.info(
            "serving (%s): ext_proc %s, access log %s, tcp %s, metrics tcp %s, snapshot version %s",
            role,
            config.extproc_socket if decides else "off",
            config.accesslog_socket if logs else "off",
            _describe_tcp(config),
            config.metrics_listen.target if config.metrics_listen else "off",
            state.snapshot.version if state.snapshot else None,
        )

    await stop.wait()
    # Graceful: tell health checkers first, let in-flight streams finish, then flush the last writes.
    await health.enter_graceful_shutdown()
    drain = shared.drain_seconds()
    if drain:
        # Replicas: stay up answering NOT_SERVING until every Envoy's health check has taken us out of rotation
        # (the first 60% of the drain: > the 1 s check interval), then end each access-log stream right after
        # the next message it brings. Envoy opens its next stream at the next flush (0.5 s later), and by then
        # only to a replica still in rotation: one stream end per Envoy worker, each just after a flush.
        log.info("draining for %.1f s", drain)
        await asyncio.sleep(drain * 0.6)
        if logs:
            access_log.draining = True
            await access_log.wait_ended(drain * 0.4)
    await server.stop(DRAIN_SECONDS)
    await metrics.stop()
    background_stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    writer_stop.set()
    await writer_task
    if state.pending.requests:
        # Only when the final flush failed (database away at exit): say how many rows the exit cost.
        log.warning("%d request-log rows were not written at exit", len(state.pending.requests))
    ctx.dispose()
    log.info("stopped")
    return 0


def _describe_tcp(config: Config) -> str:
    if config.extproc_listen is None:
        return "off"
    tls = config.extproc_tls
    mode = "plaintext" if tls is None else ("mTLS" if tls.client_ca_file is not None else "TLS")
    return f"{config.extproc_listen.target} ({mode})"


def parse_role(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m extproc")
    parser.add_argument(
        "--role", choices=ROLES, default=ROLE_ALL, help="ext_proc decisions, the access-log receiver, or both"
    )
    return str(parser.parse_args(argv).role)


def main(argv: list[str] | None = None) -> int:
    role = parse_role(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"extproc: invalid configuration: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=getattr(logging, config.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Headers and bodies are never logged by this package; keep noisy libraries from doing so either.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("grpc").setLevel(logging.WARNING)
    os.umask(0o077)  # sockets readable by this user only
    try:
        return asyncio.run(serve(config, role))
    except ConfigError as exc:
        print(f"extproc: invalid configuration: {exc}", file=sys.stderr)
        return 1
