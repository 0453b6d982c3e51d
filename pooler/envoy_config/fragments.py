"""Small Envoy config fragments more than one part of the config builds with."""

from __future__ import annotations

import json
from typing import Any


def error_body(message: str, code: str, kind: str = "server_error") -> str:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def duration(seconds: float) -> str:
    return f"{seconds:g}s"


def disabled_filters(*filters: str) -> dict[str, Any]:
    return {
        name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True} for name in filters
    }
