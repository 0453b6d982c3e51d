"""The route table: every client-facing route of the gateway, one row each.

The bundled Envoy config, the fragments for an existing Envoy (`pooler envoy-config --fragments`), the Istio
and Kubernetes manifests are rendered from these rows (pooler/envoy_config/), and the ext_proc reads its
per-request facts from the row too: every rendered route sets `ROUTE_HEADER` to its row's name (overwriting any
client copy), the ext_proc looks the row up by that name and never re-parses the path. A request that reaches
the ext_proc without a known row, or on a cluster whose processor does not match the row's, is refused: a route
someone wrote by hand (or a missing piece of the fragments) can never forward a request the gateway would
process wrongly.

Adding an upstream endpoint: one row here, a processor if it needs one (extproc/processors.py), simulator
behaviour and tests. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from pooler import gateway_contract as gc

ROUTE_HEADER = "x-pooler-route"
"""Set by every rendered route (request_headers_to_add, overwrite) to the row's name; read by the ext_proc,
removed before the upstream with every other `x-pooler-` header."""


class Target(StrEnum):
    """Where a route's requests go."""

    CODEX = "codex"
    """The Codex backend over HTTP/2 where it offers it (SSE and JSON)."""
    CODEX_WS = "codex_ws"
    """The Codex backend over HTTP/1.1: websocket upgrades (an HTTP/2 upstream would need extended CONNECT)."""
    LOCAL = "local"
    """The gateway_local listener: the ext_proc answers after authenticating the key; never the real upstream."""
    DIRECT = "direct"
    """Envoy answers with a fixed body (no ext_proc)."""
    ADMIN = "admin"
    MCP = "mcp"
    METRICS = "metrics"
    """Services of the bundled deployment only (the admin app, the MCP server, the ext_proc's /metrics)."""


class Body(StrEnum):
    """What the data path does with a request body."""

    NONE = "none"
    """Headers only: the Lua request scanner is off on this route."""
    SCAN = "scan"
    """The Lua request scanner lifts the top-level `model`, `prompt_cache_key` and file ids of JSON bodies."""
    BUFFERED = "buffered"
    """The route's processor reads (and may replace) the buffered body in the ext_proc."""


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    """What an ext_proc processor needs from the filter in front of it (its cluster's processing mode)."""

    name: str
    request_body: bool = False
    """Request body BUFFERED to the processor."""
    response_headers: bool = False
    response_body: bool = False
    """Response body BUFFERED (a processor that streams sets it per response with a mode override)."""
    mode_override: bool = False
    receives_usage: bool = False
    """The processor writes NS_USAGE itself (it sees the upstream stream; sse_to_metadata sees the translation)."""
    first_event: bool = False
    """Response headers sent and the body STREAMED without waiting for the headers' answer: the processor holds
    an SSE answer's headers until its first meaningful event (extproc/first_event.py), within a deadline."""

    @property
    def headers_only(self) -> bool:
        return not (self.request_body or self.response_headers or self.response_body or self.first_event)


# Processors by name. Headers-only processors share one filter configuration, so their clusters need not name
# them; the others get a cluster (and filter) each.
PROCESSOR_CODEX = "codex"
PROCESSOR_READY = "ready"
PROCESSOR_USAGE = "usage"
PROCESSOR_V1_MODELS = "v1_models"
PROCESSOR_KEY_USAGE = "key_usage"
PROCESSOR_KEY_USAGE_PAGE = "key_usage_page"
PROCESSORS: Mapping[str, ProcessorSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ProcessorSpec(PROCESSOR_CODEX),
            ProcessorSpec(PROCESSOR_READY),
            ProcessorSpec(PROCESSOR_USAGE),
            ProcessorSpec(PROCESSOR_V1_MODELS),
            ProcessorSpec(PROCESSOR_KEY_USAGE),
            ProcessorSpec(PROCESSOR_KEY_USAGE_PAGE),
            ProcessorSpec(gc.PROCESSOR_FIRST_EVENT, first_event=True),
            ProcessorSpec(
                gc.PROCESSOR_V1_RESPONSES,
                request_body=True,
                response_headers=True,
                mode_override=True,
                receives_usage=True,
            ),
            ProcessorSpec(
                gc.PROCESSOR_V1_CHAT, request_body=True, response_headers=True, mode_override=True, receives_usage=True
            ),
            ProcessorSpec(gc.PROCESSOR_FILES, response_headers=True, response_body=True),
            ProcessorSpec(gc.PROCESSOR_V1_FILES, request_body=True, response_headers=True, response_body=True),
            ProcessorSpec(gc.PROCESSOR_V1_AUDIO, request_body=True),
        )
    }
)


@dataclass(frozen=True, slots=True)
class Route:
    """One client-facing route. First match wins, in table order."""

    name: str
    family: str
    """The request log's route family."""
    target: Target
    path: str | None = None
    """Exact path (without query), or:"""
    prefix: str | None = None
    method: str | None = None
    websocket: bool = False
    """Matches websocket upgrades only."""
    processor: str = PROCESSOR_CODEX
    body: Body = Body.SCAN
    admission: str | None = None
    """Admission class (settings `admission_limit_<class>`); None = not admission-controlled."""
    retry_statuses: tuple[int, ...] = gc.RETRIABLE_STATUS_CODES
    """Upstream statuses retried on another account (with connect failures and resets); () = no retries."""
    pooled_view: bool = False
    """The pool's aggregate quota view may replace the upstream's x-codex-* headers (a pool setting)."""
    usage_events: bool = True
    """sse_to_metadata reads token usage from the SSE `response.completed` event."""
    timeout: str = "0s"
    idle_timeout: str | None = None
    prefix_rewrite: str | None = None
    """The upstream path replacing the matched path (the /v1 flavours of backend routes)."""
    status: int = 0
    """DIRECT: the status Envoy answers with (body: `message`/`code`, OpenAI-shaped)."""
    message: str = ""
    code: str = ""
    bundled_only: bool = False
    """Not part of the fragments for another Envoy (would capture paths that are not ours, or need our services)."""

    def __post_init__(self) -> None:
        if (self.path is None) == (self.prefix is None):
            raise ValueError(f"route {self.name}: exactly one of path and prefix")
        if self.processor not in PROCESSORS:
            raise ValueError(f"route {self.name}: unknown processor {self.processor!r}")
        if self.body is Body.BUFFERED and PROCESSORS[self.processor].headers_only:
            raise ValueError(f"route {self.name}: a buffered body needs a processor that reads it")

    @property
    def spec(self) -> ProcessorSpec:
        return PROCESSORS[self.processor]

    def admits(self, path: str, websocket: bool) -> bool:
        """Whether a request the ext_proc sees (path after any prefix_rewrite, query removed) can have come
        through this row's route. Only a check that a row name was not borrowed by a route written by hand: the
        row, not the path, says what the request is."""
        if self.websocket and not websocket:
            return False
        for candidate in (self.path, self.prefix_rewrite) if self.path is not None else (self.prefix,):
            if candidate is not None and (path == candidate if self.path is not None else path.startswith(candidate)):
                return True
        return self.prefix is not None and self.prefix_rewrite is not None and path.startswith(self.prefix_rewrite)

    @property
    def through_extproc(self) -> bool:
        return self.target in (Target.CODEX, Target.CODEX_WS, Target.LOCAL)


SSE_IDLE_TIMEOUT = "300s"
"""Codex itself gives up on a silent stream after 300 s, so Envoy waits as long."""
WS_IDLE_TIMEOUT = "3600s"
"""Websockets idle between turns; Codex closes a connection after 60 minutes anyway."""
UPLOAD_TIMEOUT = "300s"

V1_UNSUPPORTED_MESSAGE = (
    "This endpoint is not supported by this gateway; supported: GET /v1/models, POST /v1/responses, "
    "POST /v1/chat/completions, POST /v1/files, POST /v1/audio/transcriptions, POST /v1/images/generations, "
    "POST /v1/images/edits."
)

_CODEX = "/backend-api/codex"
KEY_USAGE_PATH = "/pooler/usage"
_NO_RETRY: tuple[int, ...] = ()

ROUTES: tuple[Route, ...] = (
    Route("healthz", "health", Target.DIRECT, path="/healthz", status=200, body=Body.NONE, bundled_only=True),
    Route(
        "readyz",
        "ready",
        Target.LOCAL,
        path="/readyz",
        processor=PROCESSOR_READY,
        body=Body.NONE,
        retry_statuses=_NO_RETRY,
        timeout="5s",
    ),
    # Codex over websockets: one upgrade = one pick; headers only (body filters on upgrades risk hangs).
    Route(
        "responses_ws",
        gc.ROUTE_RESPONSES_WS,
        Target.CODEX_WS,
        path=f"{_CODEX}/responses",
        websocket=True,
        body=Body.NONE,
        admission="responses_ws",
        pooled_view=True,
        usage_events=False,
        idle_timeout=WS_IDLE_TIMEOUT,
    ),
    # SSE turns: a turn that fails before its first output fails over to another account unseen.
    Route(
        "responses",
        gc.ROUTE_RESPONSES,
        Target.CODEX,
        path=f"{_CODEX}/responses",
        processor=gc.PROCESSOR_FIRST_EVENT,
        admission="responses",
        pooled_view=True,
        idle_timeout=SSE_IDLE_TIMEOUT,
    ),
    Route(
        "compact",
        gc.ROUTE_COMPACT,
        Target.CODEX,
        path=f"{_CODEX}/responses/compact",
        admission="compact",
        pooled_view=True,
        idle_timeout=SSE_IDLE_TIMEOUT,
    ),
    Route("models", gc.ROUTE_MODELS, Target.CODEX, path=f"{_CODEX}/models", timeout="60s"),
    Route("codex_other", gc.ROUTE_OTHER, Target.CODEX, prefix=f"{_CODEX}/", idle_timeout=SSE_IDLE_TIMEOUT),
    # Files, transcription, images on the Codex backend (docs/GATEWAY_SURFACE.md).
    Route(
        "files_create",
        gc.ROUTE_FILES,
        Target.CODEX,
        path="/backend-api/files",
        method="POST",
        processor=gc.PROCESSOR_FILES,
        admission="files",
        timeout="60s",
    ),
    Route("files_item", gc.ROUTE_FILES, Target.CODEX, prefix="/backend-api/files/", admission="files", timeout="60s"),
    Route(
        "transcribe",
        gc.ROUTE_TRANSCRIBE,
        Target.CODEX,
        path="/backend-api/transcribe",
        method="POST",
        body=Body.NONE,
        admission="media",
        timeout=UPLOAD_TIMEOUT,
    ),
    Route(
        "images",
        gc.ROUTE_IMAGES,
        Target.CODEX,
        prefix="/backend-api/images/",
        method="POST",
        admission="media",
        timeout=UPLOAD_TIMEOUT,
    ),
    # /v1 flavours of the backend routes, path-rewritten, so every attempt sees one backend route.
    Route(
        "v1_files",
        gc.ROUTE_FILES,
        Target.CODEX,
        path="/v1/files",
        method="POST",
        processor=gc.PROCESSOR_V1_FILES,
        body=Body.BUFFERED,
        admission="files",
        timeout="60s",
        prefix_rewrite="/backend-api/files",
    ),
    Route(
        "v1_audio_transcriptions",
        gc.ROUTE_TRANSCRIBE,
        Target.CODEX,
        path="/v1/audio/transcriptions",
        method="POST",
        processor=gc.PROCESSOR_V1_AUDIO,
        body=Body.BUFFERED,
        admission="media",
        timeout=UPLOAD_TIMEOUT,
        prefix_rewrite="/backend-api/transcribe",
    ),
    *(
        Route(
            f"v1_images_{kind}",
            gc.ROUTE_IMAGES,
            Target.CODEX,
            path=f"/v1/images/{kind}",
            method="POST",
            admission="media",
            timeout=UPLOAD_TIMEOUT,
            prefix_rewrite=f"/backend-api/images/{kind}",
        )
        for kind in ("generations", "edits")
    ),
    # Pooled usage: answered by the ext_proc from every account's windows (never the upstream).
    Route(
        "usage_wham",
        gc.ROUTE_USAGE,
        Target.LOCAL,
        path="/backend-api/wham/usage",
        processor=PROCESSOR_USAGE,
        body=Body.NONE,
        retry_statuses=_NO_RETRY,
        timeout="10s",
    ),
    Route(
        "usage_codex",
        gc.ROUTE_USAGE,
        Target.LOCAL,
        path="/api/codex/usage",
        processor=PROCESSOR_USAGE,
        body=Body.NONE,
        retry_statuses=_NO_RETRY,
        timeout="10s",
    ),
    # Self-service: a key's own usage, budgets and share, asked with the key itself (the page asks for the key
    # in the browser and calls the JSON route). Under /pooler/, a path the upstream does not serve.
    Route(
        "key_usage",
        gc.ROUTE_USAGE,
        Target.LOCAL,
        path=KEY_USAGE_PATH,
        method="GET",
        processor=PROCESSOR_KEY_USAGE,
        body=Body.NONE,
        retry_statuses=_NO_RETRY,
        timeout="10s",
    ),
    Route(
        "key_usage_page",
        gc.ROUTE_USAGE,
        Target.LOCAL,
        path=f"{KEY_USAGE_PATH}.html",
        method="GET",
        processor=PROCESSOR_KEY_USAGE_PAGE,
        body=Body.NONE,
        retry_statuses=_NO_RETRY,
        timeout="10s",
    ),
    # The OpenAI-compatible surface (pooler/v1): models answered locally, the rest translated by its processor.
    *(
        Route(
            name,
            gc.ROUTE_V1,
            Target.LOCAL,
            method="GET",
            processor=PROCESSOR_V1_MODELS,
            body=Body.NONE,
            retry_statuses=_NO_RETRY,
            timeout="10s",
            **match,  # type: ignore[arg-type]
        )
        for name, match in (("v1_models", {"path": "/v1/models"}), ("v1_model", {"prefix": "/v1/models/"}))
    ),
    *(
        Route(
            name,
            gc.ROUTE_V1,
            Target.CODEX,
            path=path,
            method="POST",
            processor=processor,
            body=Body.BUFFERED,
            admission="v1",
            pooled_view=True,
            usage_events=False,  # the processor reports tokens (downstream sees the translated stream)
            idle_timeout=SSE_IDLE_TIMEOUT,
        )
        for name, path, processor in (
            ("v1_responses", "/v1/responses", gc.PROCESSOR_V1_RESPONSES),
            ("v1_chat_completions", "/v1/chat/completions", gc.PROCESSOR_V1_CHAT),
        )
    ),
    Route(
        "v1",
        gc.ROUTE_V1,
        Target.DIRECT,
        prefix="/v1/",
        status=404,
        message=V1_UNSUPPORTED_MESSAGE,
        code="unsupported_endpoint",
        body=Body.NONE,
    ),
    Route("admin", "admin", Target.ADMIN, prefix="/admin", body=Body.NONE, timeout="60s", bundled_only=True),
    # Exact paths: the MCP server (its own bearer tokens) and the ext_proc's Prometheus exposition.
    Route("mcp", "mcp", Target.MCP, path="/mcp", body=Body.NONE, timeout="60s", bundled_only=True),
    Route("metrics", "metrics", Target.METRICS, path="/metrics", body=Body.NONE, timeout="10s", bundled_only=True),
    Route(
        "not_found",
        "not_found",
        Target.DIRECT,
        prefix="/",
        status=404,
        message="Not found.",
        code="not_found",
        body=Body.NONE,
        bundled_only=True,
    ),
)

ROUTES_BY_NAME: Mapping[str, Route] = MappingProxyType({route.name: route for route in ROUTES})


def fragment_routes() -> tuple[Route, ...]:
    """The rows an existing Envoy gets: only paths that are ours, only our own clusters."""
    return tuple(route for route in ROUTES if not route.bundled_only)


def cluster_name(route: Route) -> str | None:
    """The Envoy cluster of a route: one per target and body-reading processor (an ext_proc filter's processing
    mode is per cluster), named as the data path has always named them."""
    if route.target is Target.CODEX_WS:
        return "codex_upstream_ws"
    if route.target is Target.LOCAL:
        return "gateway_local"
    if route.target is Target.CODEX:
        return "codex_upstream" if route.spec.headers_only else f"codex_upstream_{route.processor}"
    return {Target.ADMIN: "pooler_admin", Target.MCP: "pooler_mcp", Target.METRICS: "pooler_metrics"}.get(route.target)


def upstream_clusters(routes: tuple[Route, ...] | None = None) -> dict[str, str | None]:
    """Cluster name -> the body-reading processor it names (None: headers-only) for every upstream cluster the
    routes (default: the whole table) use, in first-use order."""
    clusters: dict[str, str | None] = {}
    for route in ROUTES if routes is None else routes:
        name = cluster_name(route)
        if name is not None and route.target in (Target.CODEX, Target.CODEX_WS):
            clusters.setdefault(name, None if route.spec.headers_only else route.processor)
    return clusters


def _check_table() -> None:
    names = [route.name for route in ROUTES]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"route names must be unique: {sorted(duplicates)}")


_check_table()
