"""Small Envoy config pieces more than one part of the renderer builds with."""

from __future__ import annotations

import json
from typing import Any

FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"


def error_body(message: str, code: str, kind: str = "server_error") -> str:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def duration(seconds: float) -> str:
    return f"{seconds:g}s"


def disabled_filters(*filters: str) -> dict[str, Any]:
    return {name: {"@type": FILTER_CONFIG, "disabled": True} for name in filters}


def json_content_type() -> dict[str, Any]:
    return {
        "header": {"key": "content-type", "value": "application/json"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
