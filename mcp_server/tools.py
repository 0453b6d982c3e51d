"""The MCP tools: read-only views of pools, accounts, keys, request logs, audit events and service status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from sqlalchemy.orm import Session, sessionmaker

from pooler.services import mcp_queries as q

T = TypeVar("T")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
INSTRUCTIONS = (
    "Read-only view of a Codex Pooler instance: pools, upstream accounts (metadata and quota windows), "
    "Pool API key metadata, request logs, audit events and service status. Metadata only: no tokens, "
    "key hashes, emails or request content are ever returned."
)


def build_server(factory: sessionmaker[Session]) -> MCPServer:
    server = MCPServer(name="codex-pooler", instructions=INSTRUCTIONS, version="1")

    async def read(fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with factory() as session:
                return fn(session)

        # SQLAlchemy is synchronous: keep queries off the event loop.
        return await anyio.to_thread.run_sync(run)

    @server.tool(annotations=READ_ONLY)
    async def list_pools() -> list[dict[str, Any]]:
        """Every pool with its status, strategy, assigned and routable account counts and key count."""
        return await read(q.list_pools)

    @server.tool(annotations=READ_ONLY)
    async def get_pool(pool: str) -> dict[str, Any]:
        """One pool (by name or numeric id): routing settings, account assignments and key prefixes."""
        return await read(lambda s: q.get_pool(s, pool))

    @server.tool(annotations=READ_ONLY)
    async def list_accounts(pool: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Upstream accounts (label, plan, lifecycle state, token expiry, quota windows); filter by pool/state."""
        return await read(lambda s: q.list_accounts(s, pool, state))

    @server.tool(annotations=READ_ONLY)
    async def get_account(account_id: int) -> dict[str, Any]:
        """One upstream account by numeric id: metadata and quota windows (never credentials)."""
        return await read(lambda s: q.get_account(s, account_id))

    @server.tool(annotations=READ_ONLY)
    async def list_keys(pool: str | None = None) -> list[dict[str, Any]]:
        """Pool API key metadata: prefix, label, pool, status, expiry, limits, allowed models, last use."""
        return await read(lambda s: q.list_keys(s, pool))

    @server.tool(annotations=READ_ONLY)
    async def list_request_logs(
        pool: str | None = None, key_prefix: str | None = None, status_class: int | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Newest request log rows (metadata only); status_class 2, 4 or 5 selects 2xx/4xx/5xx; limit <= 200."""
        return await read(
            lambda s: q.list_request_logs(s, pool=pool, key_prefix=key_prefix, status_class=status_class, limit=limit)
        )

    @server.tool(annotations=READ_ONLY)
    async def list_audit_events(action: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest audit events (actor, action, target, outcome); `action` filters by prefix, e.g. `key.`."""
        return await read(lambda s: q.list_audit_events(s, action=action, limit=limit))

    @server.tool(annotations=READ_ONLY)
    async def service_status() -> dict[str, Any]:
        """Instance health: pools without routable accounts, accounts by state, keys by status, last job runs,
        open alert incidents."""
        return await read(q.service_status)

    return server
