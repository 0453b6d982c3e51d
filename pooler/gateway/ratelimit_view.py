"""What a client is shown as its rate limits: the pool's aggregate, or a key's own limits (pure functions).

The pooled figures are exactly `/backend-api/wham/usage`'s (`pooled_usage_payload`), turned into the
`x-codex-*` response header values Codex reads (keys = `gateway_contract.VIEW_HEADERS` values). A window the
pool has no evidence of is left out, so Envoy leaves that upstream header as it is.

A key with `hide_upstream_quota` sees its own daily token budget instead (both slots, 1440-minute window,
resetting at UTC midnight; 0 % when the key has no budget) - never an upstream account's figures.

Websocket `codex.rate_limits` frames get the same figures (`ws_view_value`): the ext_proc puts the value in the
attempt's NS_VIEW metadata (`WS_VIEW_KEY`), the clusters' upstream filter chain copies it onto the 101 as
`WS_VIEW_RESPONSE_HEADER`, and the websocket route's Lua filter (`pooler/envoy_config/lua/ws_view.lua`) removes
that header and splices the value into the frames. Names live here because the renderer and the ext_proc both need them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pooler.selection.pooled import PooledUsage, pooled_usage_payload

DAY_SECONDS = 86400
WS_VIEW_KEY = "ws_rate_limits"
"""Key of the view values that carries the websocket frame replacement (only on websocket upgrades)."""
WS_VIEW_RESPONSE_HEADER = "x-pooler-ws-view"
_PLAN = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def _slot_values(slot: str, window: dict[str, Any] | None) -> dict[str, str]:
    if not window:
        return {}
    return {
        f"{slot}_used_percent": str(window["used_percent"]),
        f"{slot}_window_minutes": str(window["limit_window_seconds"] // 60),
        f"{slot}_reset_at": str(window["reset_at"]),
        f"{slot}_reset_after_seconds": str(window["reset_after_seconds"]),
    }


def header_values(payload: dict[str, Any]) -> dict[str, str]:
    """Usage-API payload (wham/usage shape) -> the view metadata values."""
    rate = payload.get("rate_limit") or {}
    values = {
        **_slot_values("primary", rate.get("primary_window")),
        **_slot_values("secondary", rate.get("secondary_window")),
    }
    if payload.get("plan_type"):
        values["plan_type"] = str(payload["plan_type"])
    return values


def pooled_view(usage: PooledUsage, now: float) -> dict[str, str]:
    return header_values(pooled_usage_payload(usage, now))


def key_usage_payload(tokens_used: int, tokens_per_day: int | None, now: float, plan_type: str) -> dict[str, Any]:
    """A key's own limits in the usage-API shape (for `/wham/usage` and the quota headers)."""
    midnight = (int(now) // DAY_SECONDS + 1) * DAY_SECONDS
    used = 0
    if tokens_per_day:
        used = max(0, min(100, int(100 * tokens_used / tokens_per_day)))
    reached = bool(tokens_per_day) and tokens_used >= (tokens_per_day or 0)
    window = {
        "used_percent": used,
        "limit_window_seconds": DAY_SECONDS,
        "reset_after_seconds": max(0, midnight - int(now)),
        "reset_at": midnight,
    }
    return {
        "plan_type": plan_type,
        "rate_limit": {
            "allowed": not reached,
            "limit_reached": reached,
            "primary_window": window,
            "secondary_window": dict(window),
        },
    }


def _event_window(window: dict[str, Any] | None) -> dict[str, int] | None:
    if not window:
        return None
    return {
        "used_percent": int(window["used_percent"]),
        "window_minutes": int(window["limit_window_seconds"]) // 60,
        "reset_after_seconds": int(window["reset_after_seconds"]),
        "reset_at": int(window["reset_at"]),
    }


def ws_view_value(payload: dict[str, Any]) -> str | None:
    """Usage-API payload -> `"<plan_type> <rate_limits JSON>"`, what the Lua filter writes into a
    `codex.rate_limits` frame (the `plan_type` value and the `rate_limits` object; other fields such as
    `credits` stay the upstream's, as the `x-codex-credits-*` headers do). None when the pool has no window
    evidence (frames stay untouched, like the headers). The key order `reset_after_seconds, reset_at` is
    relied on by the Lua filter, which refreshes `reset_after_seconds` per frame (a connection lives an hour)."""
    rate = payload.get("rate_limit") or {}
    primary = _event_window(rate.get("primary_window"))
    plan = str(payload.get("plan_type") or "")
    if primary is None or not _PLAN.match(plan):
        return None
    limits = {
        "allowed": bool(rate.get("allowed", True)),
        "limit_reached": bool(rate.get("limit_reached", False)),
        "primary": primary,
        "secondary": _event_window(rate.get("secondary_window")),
    }
    return f"{plan} {json.dumps(limits, separators=(',', ':'))}"
