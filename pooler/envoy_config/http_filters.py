"""The connection manager's pooler HTTP filters, in order, to sit before the router.

The request-id filter is on everywhere (it only copies x-request-id into filter state). The header filter and
both Lua filters are listed `disabled: true` and turned on per route by the rows that need
them (envoy_config.routes, with a per-route config: Envoy enables a default-off filter only with one), so in an
Envoy the pooler is added to, the team's own routes never pass through them. sse_to_metadata takes no per-route
config, so it is on by default and turned off on the pooler's rows that do not want it; on other routes it only
reads SSE responses for a `response.completed` event's usage into the pooler.usage metadata namespace, which
nothing but the pooler reads. Names are the pooler's own (not the extension names), so they cannot collide with
filters the team already has.
"""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc
from pooler.envoy_config.header_mutations import build_request_mutations, build_view_response_mutations
from pooler.envoy_config.lua import REQUEST_SCAN_LUA, REQUEST_SCAN_SCRIPT, WS_VIEW_LUA, WS_VIEW_SCRIPT
from pooler.envoy_config.parts import FILTER_CONFIG
from pooler.envoy_config.usage_metadata import build_usage_rules

REQUEST_ID_FILTER = "pooler.request_id"
"""set_filter_state: the request's x-request-id kept for the access log (the header never reaches the upstream)."""
WS_VIEW_FILTER = "pooler.ws_rate_limits"
"""The pooled view on websocket frames (websocket route only)."""
HEADERS_FILTER = "pooler.headers"
"""Strips client-sent Envoy control headers and sets the derived client address; on responses, the pooled
quota view's x-codex-* headers."""
REQUEST_SCAN_FILTER = "pooler.request_scan"
"""The Lua request scanner: top-level `model`, `prompt_cache_key` and file ids of JSON bodies."""
USAGE_FILTER = "pooler.usage"
"""sse_to_metadata: token usage of the SSE `response.completed` event."""

_HEADER_MUTATION = "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
POOLER_FILTERS = (REQUEST_ID_FILTER, WS_VIEW_FILTER, HEADERS_FILTER, REQUEST_SCAN_FILTER, USAGE_FILTER)


def build_http_filters() -> list[dict[str, Any]]:
    return [
        {
            # On by default (it takes no per-route config): the request's x-request-id copied into filter state
            # before any attempt. The ext_proc removes the header before the upstream, and the access log then
            # finds the request by this copy. Not shared with the upstream: measured, a TRANSITIVE copy is
            # tied to the upstream *connection* (attempt entries on a reused connection named the request that
            # opened it) and delayed a retried attempt's log entry to the end of its request; attempts get the
            # id on their response instead (gc.ATTEMPT_OF_HEADER, envoy_config.upstream_filters).
            "name": REQUEST_ID_FILTER,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
                "on_request_headers": [
                    {
                        "object_key": gc.REQUEST_ID_FILTER_STATE,
                        "factory_key": "envoy.string",
                        "format_string": {"text_format_source": {"inline_string": f"%REQ({gc.REQUEST_ID_HEADER})%"}},
                    }
                ],
            },
        },
        # Listed before the header filter so that, encoding in reverse order, it sees the frame-view header the
        # header filter puts on the 101 (and removes it).
        {
            "name": WS_VIEW_FILTER,
            "disabled": True,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "source_codes": {WS_VIEW_SCRIPT: {"inline_string": WS_VIEW_LUA}},
            },
        },
        {
            "name": HEADERS_FILTER,
            "disabled": True,
            "typed_config": {
                "@type": f"type.googleapis.com/{_HEADER_MUTATION}",
                "mutations": {
                    "request_mutations": build_request_mutations(),
                    "response_mutations": build_view_response_mutations(),
                },
            },
        },
        {
            "name": REQUEST_SCAN_FILTER,
            "disabled": True,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "source_codes": {REQUEST_SCAN_SCRIPT: {"inline_string": REQUEST_SCAN_LUA}},
            },
        },
        {
            "name": USAGE_FILTER,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.sse_to_metadata.v3.SseToMetadata",
                "response_rules": {
                    # A `response.completed` event carries the whole response (output included): allow big events.
                    "max_event_size": 4194304,
                    "content_parser": {
                        "name": "envoy.content_parsers.json",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.content_parsers.json.v3.JsonContentParser",
                            "rules": build_usage_rules(),
                        },
                    },
                },
            },
        },
    ]


def lua_on(script: str) -> dict[str, Any]:
    """Per-route config that turns on a default-off Lua filter with one of its named scripts."""
    return {
        "@type": FILTER_CONFIG,
        "config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute", "name": script},
    }


def headers_on() -> dict[str, Any]:
    """Per-route config that turns on the default-off header filter (its own mutations; none added here)."""
    return {
        "@type": FILTER_CONFIG,
        "config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute"
        },
    }
