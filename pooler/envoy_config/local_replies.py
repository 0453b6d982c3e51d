"""Local-reply mappers: errors Envoy makes itself become OpenAI-shaped JSON with a safe code."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc
from pooler.envoy_config.parts import error_body
from pooler.route_table import ROUTE_HEADER


def build_local_reply_mappers(client_allowlist: bool = True) -> list[dict[str, Any]]:
    """Envoy-made errors -> OpenAI-shaped JSON with a safe code. First match wins. `client_allowlist`: the
    bundled config's RBAC allowlist 403 mapper (an Envoy we are added to keeps its own RBAC answers)."""

    def mapper(filter_: dict[str, Any], status: int, message: str, code: str) -> dict[str, Any]:
        return {
            "filter": filter_,
            "status_code": status,
            # A client's own mistake (4xx) is an invalid request; the rest are the gateway's or upstream's errors.
            "body": {
                "inline_string": error_body(message, code, "invalid_request_error" if status < 500 else "server_error")
            },
            "body_format_override": {"text_format": "%LOCAL_REPLY_BODY%", "content_type": "application/json"},
        }

    def status_is(code: int) -> dict[str, Any]:
        return {
            "status_code_filter": {
                "comparison": {"op": "EQ", "value": {"default_value": code, "runtime_key": "pooler.unused"}}
            }
        }

    # A 403 that no gateway code answered (the ext_proc's replies carry pooler:error metadata) is the RBAC
    # client allowlist: give it a JSON body with a safe code.
    rbac_denied = {
        "and_filter": {
            "filters": [
                status_is(403),
                {
                    "metadata_filter": {
                        "matcher": {
                            "filter": gc.NS_ROUTING,
                            "path": [{"key": gc.ROUTING_ERROR}],
                            "value": {"present_match": False},  # key present: never matches
                        },
                        "match_if_key_not_found": True,
                    }
                },
            ]
        }
    }
    routed = pooler_requests()

    def ours(filter_: dict[str, Any]) -> dict[str, Any]:
        return {"and_filter": {"filters": [routed, filter_]}}

    allowlist = [mapper(rbac_denied, 403, "This address may not use this gateway.", "ip_not_allowed")]
    return [
        *(allowlist if client_allowlist else []),
        # The ext_proc is unreachable or failed (status_on_error = 500): fail closed, fast.
        mapper(ours(status_is(500)), 503, "The gateway is temporarily unavailable.", "gateway_unavailable"),
        mapper(
            ours({"response_flag_filter": {"flags": ["UT", "SI"]}}), 504, "The upstream timed out.", "upstream_timeout"
        ),
        mapper(
            ours({"response_flag_filter": {"flags": ["UF", "UH", "UO", "URX", "UC", "UR", "LR", "NC"]}}),
            502,
            "The upstream is unavailable.",
            "upstream_unavailable",
        ),
        mapper(
            ours(status_is(413)),
            413,
            "The request body is too large.",
            "request_too_large",
        ),
    ]


def pooler_requests() -> dict[str, Any]:
    """An access-log filter matching the requests of the pooler's routes only (an Envoy we are added to keeps its
    own error bodies and logs elsewhere): the route header every row sets (until the ext_proc removes it before
    the upstream), the routing metadata the ext_proc writes on every decision, or - for a body too large for the
    request scanner, which refuses it before the router runs - the scanner's mark."""

    def present(ns: str, key: str) -> dict[str, Any]:
        return {
            "metadata_filter": {"matcher": {"filter": ns, "path": [{"key": key}], "value": {"present_match": True}}}
        }

    return {
        "or_filter": {
            "filters": [
                {"header_filter": {"header": {"name": ROUTE_HEADER, "present_match": True}}},
                present(gc.NS_ROUTING, gc.ROUTING_ROUTE_FAMILY),
                present(gc.NS_REQUEST, gc.REQUEST_SCANNED),
            ]
        }
    }
