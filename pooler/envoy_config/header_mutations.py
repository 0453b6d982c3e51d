"""Downstream header mutations: client-sent Envoy control headers and client address on requests; the pooled
view's quota headers on responses."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc

# Client-sent headers that would steer Envoy's own retry/timeout behaviour.
ENVOY_CONTROL_HEADERS = (
    "x-envoy-max-retries",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-force-trace",
)


def build_request_mutations() -> list[dict[str, Any]]:
    """Strip client-sent Envoy control headers. (The derived client address is set by every route itself,
    `client_address_header`, so per-key allowlists never depend on this filter being installed.)"""
    return [{"remove": name} for name in ENVOY_CONTROL_HEADERS]


def client_address_header() -> dict[str, Any]:
    """A route's request_headers_to_add entry: the derived client address, overwriting any client-sent copy."""
    return {
        "header": {"key": gc.CLIENT_IP_HEADER, "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }


def build_view_response_mutations() -> list[dict[str, Any]]:
    """x-codex-* quota headers overwritten from the pooled view the attempt's response carries
    (`gc.view_response_header`, set by the clusters' upstream filter chain from NS_VIEW); an absent one gives an
    empty value, which Envoy drops (keep_empty_value false), leaving the upstream's header untouched. Then the
    view's and the attempt's own headers are removed: the client never sees them. (The websocket frame view goes
    straight to WS_VIEW_RESPONSE_HEADER, which the websocket route's Lua filter removes.)"""
    overwrite = [
        {
            "append": {
                "header": {"key": header, "value": f"%RESP({gc.view_response_header(key)})%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                "keep_empty_value": False,
            }
        }
        for header, key in gc.VIEW_HEADERS.items()
    ]
    removed = [{"remove": gc.view_response_header(key)} for key in gc.VIEW_HEADERS.values()]
    return [*overwrite, *removed, {"remove": gc.ATTEMPT_OF_HEADER}]
