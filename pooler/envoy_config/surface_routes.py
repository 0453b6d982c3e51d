"""Routes of the issue-10 surface (files, transcription, images) and of the OpenAI-compatible /v1 surface."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc
from pooler.envoy_config.clusters import SURFACE_CLUSTERS, V1_CLUSTERS
from pooler.envoy_config.fragments import disabled_filters
from pooler.envoy_config.timeouts import SSE_IDLE_TIMEOUT


def build_surface_routes(retry: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 10 (docs/GATEWAY_SURFACE.md): files, transcription, images on the Codex backend. /v1 flavours are
    path-rewritten here, so the ext_proc sees one family per backend route on every attempt."""
    no_scan = disabled_filters("envoy.filters.http.lua")
    upload = {"timeout": "300s", "retry_policy": retry}
    return [
        {
            "name": "files_create",
            "match": {"path": "/backend-api/files", "headers": _method("POST")},
            "route": {"cluster": SURFACE_CLUSTERS[gc.PROCESSOR_FILES], "timeout": "60s", "retry_policy": retry},
        },
        {
            "name": "files_item",
            "match": {"prefix": "/backend-api/files/"},
            "route": {"cluster": "codex_upstream", "timeout": "60s", "retry_policy": retry},
        },
        {
            "name": "transcribe",
            "match": {"path": "/backend-api/transcribe", "headers": _method("POST")},
            "route": {"cluster": "codex_upstream", **upload},
            "typed_per_filter_config": no_scan,
        },
        {
            "name": "images",
            "match": {"prefix": "/backend-api/images/", "headers": _method("POST")},
            "route": {"cluster": "codex_upstream", **upload},
        },
        {
            "name": "v1_files",
            "match": {"path": "/v1/files", "headers": _method("POST")},
            "route": {
                "cluster": SURFACE_CLUSTERS[gc.PROCESSOR_V1_FILES],
                "prefix_rewrite": "/backend-api/files",
                "timeout": "60s",
                "retry_policy": retry,
            },
        },
        {
            "name": "v1_audio_transcriptions",
            "match": {"path": "/v1/audio/transcriptions", "headers": _method("POST")},
            "route": {
                "cluster": SURFACE_CLUSTERS[gc.PROCESSOR_V1_AUDIO],
                "prefix_rewrite": "/backend-api/transcribe",
                **upload,
            },
            "typed_per_filter_config": no_scan,
        },
        *(
            {
                "name": f"v1_images_{kind}",
                "match": {"path": f"/v1/images/{kind}", "headers": _method("POST")},
                "route": {"cluster": "codex_upstream", "prefix_rewrite": f"/backend-api/images/{kind}", **upload},
            }
            for kind in ("generations", "edits")
        ),
    ]


def _method(method: str) -> list[dict[str, Any]]:
    return [{"name": ":method", "string_match": {"exact": method}}]


def build_v1_routes(retry: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAI-compatible surface (pooler/v1, extproc/v1.py). Models are answered by the ext_proc after the
    key is authenticated (gateway_local, like pooled usage); responses and chat completions go to their own
    clusters, whose ext_proc filter buffers the request body and may override the response body mode; the
    Codex routes' cluster stays headers-only. sse_to_metadata is off: the ext_proc reports the tokens itself
    (the chat stream Envoy sees downstream carries no `response.completed`)."""
    streaming = {"timeout": "0s", "idle_timeout": SSE_IDLE_TIMEOUT, "retry_policy": retry}
    no_sse_metadata = disabled_filters("envoy.filters.http.sse_to_metadata")
    return [
        {
            "name": "v1_models",
            "match": {"path": "/v1/models", "headers": _method("GET")},
            "route": {"cluster": "gateway_local", "timeout": "10s"},
        },
        {
            "name": "v1_model",
            "match": {"prefix": "/v1/models/", "headers": _method("GET")},
            "route": {"cluster": "gateway_local", "timeout": "10s"},
        },
        {
            "name": "v1_responses",
            "match": {"path": "/v1/responses", "headers": _method("POST")},
            "route": {"cluster": V1_CLUSTERS[gc.PROCESSOR_V1_RESPONSES], **streaming},
            "typed_per_filter_config": no_sse_metadata,
        },
        {
            "name": "v1_chat_completions",
            "match": {"path": "/v1/chat/completions", "headers": _method("POST")},
            "route": {"cluster": V1_CLUSTERS[gc.PROCESSOR_V1_CHAT], **streaming},
            "typed_per_filter_config": no_sse_metadata,
        },
    ]
