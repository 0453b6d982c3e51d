"""Scripted failures. A fault applies to the next `count` matching requests (or until cleared when count is
null), optionally only for one account, one route and one transport.

Kinds and their phase:
- before the response starts ("pre"): `status` (429/401/500/502/503 or any, optional body/headers),
  `delay` (seconds before the first byte);
- during a stream ("stream"): `slow` (token_rate), `slow_start` (a pause of `seconds` after
  `response.created`/`response.in_progress`, before the first output: a turn slow to start), `close_mid_stream`
  (connection dropped after
  `after_tokens` deltas), `malformed_sse` (a broken event after `after_tokens` deltas, then the stream goes
  on), `ws_close` (websocket closed cleanly without a terminal event after `after_tokens` deltas),
  `fail_event` (after `after_tokens` deltas, 0 = before any, the turn ends with an SSE `response.failed` event
  whose `response.error.code` is `code`; over websockets the same event as a frame).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

PRE_KINDS = {"status", "delay"}
STREAM_KINDS = {"slow", "slow_start", "close_mid_stream", "malformed_sse", "ws_close", "fail_event"}
KINDS = PRE_KINDS | STREAM_KINDS
ROUTES = {"responses", "compact", "models", "usage", "oauth_token", "authorize", "device", "*"}
TRANSPORTS = {"any", "http", "websocket"}


class FaultError(ValueError):
    pass


@dataclass
class Fault:
    id: int
    kind: str
    account: str | None = None
    route: str = "responses"
    transport: str = "any"
    count: int | None = 1
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    token_rate: float = 5.0
    after_tokens: int = 2
    code: str = "server_is_overloaded"
    hits: int = 0

    def matches(self, route: str, account: str | None, transport: str) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.route != "*" and self.route != route:
            return False
        if self.transport != "any" and self.transport != transport:
            return False
        return self.account is None or self.account == account

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_fault(spec: dict[str, Any], fault_id: int) -> Fault:
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultError(f"kind must be one of {sorted(KINDS)}")
    fault = Fault(id=fault_id, kind=str(kind))
    if spec.get("account") is not None:
        fault.account = str(spec["account"])
    fault.route = str(spec.get("route", "responses"))
    if fault.route not in ROUTES:
        raise FaultError(f"route must be one of {sorted(ROUTES)}")
    fault.transport = str(spec.get("transport", "any"))
    if fault.transport not in TRANSPORTS:
        raise FaultError(f"transport must be one of {sorted(TRANSPORTS)}")
    if "count" in spec:
        fault.count = None if spec["count"] is None else int(spec["count"])
    fault.status = int(spec.get("status", 500))
    fault.body = spec.get("body")
    fault.headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
    fault.seconds = float(spec.get("seconds", 0.0))
    fault.token_rate = float(spec.get("token_rate", 5.0))
    fault.after_tokens = int(spec.get("after_tokens", 2))
    fault.code = str(spec.get("code", "server_is_overloaded"))
    return fault


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> Fault:
        fault = parse_fault(spec, next(self._ids))
        self._faults.append(fault)
        return fault

    def clear(self, fault_id: int | None = None) -> int:
        before = len(self._faults)
        self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
        return before - len(self._faults)

    def list(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self._faults]

    def take(self, kinds: set[str], route: str, account: str | None, transport: str) -> Fault | None:
        """Returns (and uses up one count of) the oldest matching fault among `kinds`."""
        for fault in self._faults:
            if fault.kind in kinds and fault.matches(route, account, transport):
                fault.hits += 1
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:  # used up: drop it so the list shows only what is still armed
                        self._faults.remove(fault)
                return fault
        return None
