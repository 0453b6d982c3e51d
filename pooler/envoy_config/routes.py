"""Envoy routes rendered from the route table (pooler/route_table.py): one Envoy route per row, first match wins."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc
from pooler import route_table as rt
from pooler.envoy_config.header_mutations import client_address_header
from pooler.envoy_config.http_filters import (
    HEADERS_FILTER,
    REQUEST_SCAN_FILTER,
    USAGE_FILTER,
    WS_USAGE_FILTER,
    WS_VIEW_FILTER,
    headers_on,
    lua_on,
)
from pooler.envoy_config.inputs import Upstream
from pooler.envoy_config.lua import REQUEST_SCAN_SCRIPT, WS_USAGE_SCRIPT, WS_VIEW_SCRIPT
from pooler.envoy_config.parts import disabled_filters, error_body, json_content_type
from pooler.envoy_config.timeouts import retry_policy

# Kept here for callers that imported it from the renderer.
V1_UNSUPPORTED_MESSAGE = rt.V1_UNSUPPORTED_MESSAGE


def build_route(route: rt.Route, num_retries: int, upstream: Upstream) -> dict[str, Any]:
    """The Envoy route of one table row."""
    match: dict[str, Any] = {"path": route.path} if route.path is not None else {"prefix": route.prefix}
    headers: list[dict[str, Any]] = []
    if route.websocket:
        headers.append({"name": "upgrade", "string_match": {"exact": "websocket", "ignore_case": True}})
    if route.method is not None:
        headers.append({"name": ":method", "string_match": {"exact": route.method}})
    if headers:
        match["headers"] = headers
    out: dict[str, Any] = {"name": route.name, "match": match}
    if route.target is rt.Target.DIRECT:
        body = '{"status":"ok"}' if route.status == 200 else error_body(route.message, route.code, _kind(route))
        out["direct_response"] = {"status": route.status, "body": {"inline_string": body}}
        out["response_headers_to_add"] = [json_content_type()]
        return out
    action: dict[str, Any] = {"cluster": rt.cluster_name(route), "timeout": route.timeout}
    if route.idle_timeout is not None:
        action["idle_timeout"] = route.idle_timeout
    if route.prefix_rewrite is not None:
        action["prefix_rewrite"] = route.prefix_rewrite
    if route.retry_statuses and route.target in (rt.Target.CODEX, rt.Target.CODEX_WS):
        action["retry_policy"] = retry_policy(num_retries, route.retry_statuses)
    if route.target in (rt.Target.CODEX, rt.Target.CODEX_WS):
        # Every route to the upstream sends the upstream's own authority, not the client's Host.
        action["host_rewrite_literal"] = upstream.authority
    if route.websocket:
        # On the route, so the upgrade works in an Envoy whose connection manager does not enable websockets.
        action["upgrade_configs"] = [{"upgrade_type": "websocket", "enabled": True}]
    out["route"] = action
    # The derived client address (per-key allowlists, the admin's login throttle), set by the route itself so a
    # client's own copy never survives, whether or not the pooler's header filter is installed.
    added = [client_address_header()]
    if route.through_extproc or route.target is rt.Target.METRICS:
        # The ext_proc finds this row by name (overwriting any client-sent copy); see pooler/route_table.py. The
        # metrics server learns from it that a scrape came through the gateway port, where it needs the token.
        added.append(
            {
                "header": {"key": rt.ROUTE_HEADER, "value": route.name},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        )
    out["request_headers_to_add"] = added
    if route.through_extproc:
        # Only the ext_proc may mark an attempt decided (pooler/envoy_config/lua/decision_guard.lua).
        out["request_headers_to_remove"] = [gc.DECIDED_HEADER]
    if route.target in (rt.Target.CODEX, rt.Target.CODEX_WS):
        # The upstream error reader's notes are for the access log only.
        out["response_headers_to_remove"] = [gc.UPSTREAM_ERROR_HEADER, gc.ACTIVE_LIMIT_HEADER]
    out["typed_per_filter_config"] = _filters(route)
    return out


def _kind(route: rt.Route) -> str:
    return "invalid_request_error" if route.status < 500 else "server_error"


def _filters(route: rt.Route) -> dict[str, Any]:
    """The pooler's connection-manager filters this row needs (envoy_config.http_filters)."""
    filters: dict[str, Any] = {HEADERS_FILTER: headers_on()}
    if not route.through_extproc:
        # The admin and MCP get the control-header strip and the derived client address, nothing else.
        return {**filters, **disabled_filters(USAGE_FILTER)}
    if route.body is rt.Body.SCAN:
        filters[REQUEST_SCAN_FILTER] = lua_on(REQUEST_SCAN_SCRIPT)
    if not route.usage_events:
        filters.update(disabled_filters(USAGE_FILTER))
    if route.websocket:
        # The pooled view's frame rewriter streams websocket frames through this route only.
        filters[WS_VIEW_FILTER] = lua_on(WS_VIEW_SCRIPT)
        # Token counts of the connection's turns (read-only; the SSE routes get theirs from sse_to_metadata).
        filters[WS_USAGE_FILTER] = lua_on(WS_USAGE_SCRIPT)
    return filters


def build_routes(
    num_retries: int, upstream: Upstream, routes: tuple[rt.Route, ...] | None = None
) -> list[dict[str, Any]]:
    """The Envoy routes of `routes` (default: the whole table), in table order."""
    return [build_route(route, num_retries, upstream) for route in (rt.ROUTES if routes is None else routes)]
