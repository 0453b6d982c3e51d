"""Concurrent requests per account, as the upstream sees them: open now and the most ever open at once.

A gateway's per-account concurrency cap is checked against this (the upstream's view, not the gateway's own
counters). Counted by the middleware around every authenticated request, from its arrival until its handler
returns (an SSE stream's last event, a websocket's close).

GET    /_sim/streams   -> {"open": {account: n}, "max": {account: n}}
DELETE /_sim/streams   forget the maxima (open counts stay: they are requests still running)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

routes = web.RouteTableDef()


@dataclass
class StreamCounter:
    open: dict[str, int] = field(default_factory=dict)
    max: dict[str, int] = field(default_factory=dict)

    def enter(self, account_id: str) -> None:
        now = self.open.get(account_id, 0) + 1
        self.open[account_id] = now
        if now > self.max.get(account_id, 0):
            self.max[account_id] = now

    def leave(self, account_id: str) -> None:
        left = self.open.get(account_id, 0) - 1
        if left > 0:
            self.open[account_id] = left
        else:
            self.open.pop(account_id, None)

    def forget_maxima(self) -> None:
        self.max = dict(self.open)


STREAMS_KEY = web.AppKey("streams", StreamCounter)


@routes.get("/_sim/streams")
async def get_streams(request: web.Request) -> web.Response:
    counter = request.app[STREAMS_KEY]
    return web.json_response({"open": counter.open, "max": counter.max})


@routes.delete("/_sim/streams")
async def reset_streams(request: web.Request) -> web.Response:
    request.app[STREAMS_KEY].forget_maxima()
    return web.json_response({"ok": True})
