"""Wiring: MCP server + bearer gate as one ASGI app, served by uvicorn on POOLER_MCP_HOST:POOLER_MCP_PORT."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings

from mcp_server.auth import BearerGate
from mcp_server.tools import build_server
from pooler.context import CoreContext, open_context
from pooler.errors import PoolerError

READY_LINE = "pooler-mcp ready"
MCP_PATH = "/mcp"


def build_app(ctx: CoreContext) -> Any:
    server = build_server(ctx.session_factory)
    inner = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        # Stateless + JSON answers: no session affinity needed, so any replica behind Envoy can answer.
        stateless_http=True,
        json_response=True,
        # Host/Origin checks guard against DNS rebinding of ambient-credential servers; every request here
        # carries an explicit bearer token instead, and behind Envoy the Host is the gateway's public name.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return BearerGate(inner, ctx.session_factory, ctx.hasher)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        ctx = open_context()
    except PoolerError as exc:
        print(f"pooler-mcp: error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=ctx.config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    port, host = ctx.config.mcp_port, ctx.config.mcp_host
    config = uvicorn.Config(build_app(ctx), host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    original_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets)
        print(f"{READY_LINE} on http://{host}:{port}{MCP_PATH}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        ctx.dispose()
    print("pooler-mcp stopped", flush=True)
    return 0
