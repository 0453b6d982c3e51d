"""ASGI gate in front of the MCP app: every HTTP request needs a valid operator MCP token and both gates on.

Checked per request (not per MCP session) so revoking a token or switching a gate off takes effect at once,
and the server can run stateless behind any number of replicas.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from pooler.crypto.hashing import KeyedHasher
from pooler.services.mcp_access import Denied, McpPrincipal, authenticate

log = logging.getLogger("mcp_server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATH = "/healthz"


def bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


class BearerGate:
    def __init__(self, app: ASGIApp, factory: sessionmaker[Session], hasher: KeyedHasher) -> None:
        self.app, self.factory, self.hasher = app, factory, hasher

    def check(self, raw: str | None) -> McpPrincipal | Denied:
        with self.factory.begin() as session:
            return authenticate(session, self.hasher, raw)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan events go straight to the app (it runs the session manager)
            await self.app(scope, receive, send)
            return
        if scope.get("path") == HEALTH_PATH:
            await _respond(send, 200, {"status": "ok"})
            return
        try:
            result = await anyio.to_thread.run_sync(self.check, bearer(scope))
        except Exception as exc:  # database down: fail closed, without detail
            log.warning("mcp auth check failed: %s", type(exc).__name__)
            await _respond(send, 503, _error(-32603, "service unavailable"))
            return
        if isinstance(result, Denied):
            # The reason code is safe to show; the token never is (not even its prefix here).
            headers = [(b"www-authenticate", b'Bearer realm="pooler-mcp"')] if result.http_status == 401 else []
            await _respond(send, result.http_status, _error(-32001, result.value), headers)
            return
        scope.setdefault("state", {})["mcp_principal"] = result
        await self.app(scope, receive, send)


def _error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}


async def _respond(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": data})
