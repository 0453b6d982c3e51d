"""Names shared by the Envoy config, the ext_proc and the access-log receiver, so they can never disagree.

Like Envoy AI Gateway's `internalapi`: every header name, metadata namespace and metadata key the data path
uses is defined here once.
"""

from __future__ import annotations

# --- Dynamic metadata namespaces -------------------------------------------------------------------------
# Written by Envoy's Lua request scanner (pooler/envoy_config/lua/request_scan.lua, where these names are its
# "${NAME}" placeholders) from JSON request bodies: the top-level `model` and `prompt_cache_key` strings, and the
# files the body references (no Python body parsing).
NS_REQUEST = "pooler.request"
REQUEST_MODEL = "model"
REQUEST_PROMPT_CACHE_KEY = "prompt_cache_key"
REQUEST_FILE_IDS = "file_ids"  # comma-separated upstream file ids found as "file_id": "..." in the body
REQUEST_IMAGE_TOOL = "image_tool"  # "1" when the body asks for the image_generation tool
REQUEST_SCANNED = "scanned"  # "1" on every request the scanner ran for (the route table's `scan` rows need it)
REQUEST_INVALID_JSON = "invalid_json"  # "1" when a JSON POST body is not a JSON object the top-level walk reads
REQUEST_SEALED_STATE = "sealed_state"  # "1" when the body carries "encrypted_content" (account-bound items)

# Written by the upstream-filter ext_proc on each attempt; forwarded back to it on the next attempt and
# visible to the gRPC access log. Keys below.
NS_ROUTING = "pooler"
ROUTING_POOL_ID = "pool_id"
ROUTING_KEY_ID = "key_id"
ROUTING_KEY_PREFIX = "key_prefix"
ROUTING_SESSION = "session"  # keyed hash of the client's session id (never the raw id)
ROUTING_TRIED = "tried"  # account ids of every attempt so far, in order (list of numbers)
ROUTING_ACCOUNT_ID = "account_id"  # account of the current (last) attempt
ROUTING_ERROR = "error"  # safe error code of a gateway-made reply
ROUTING_SWITCH_CAUSE = "switch_cause"  # why the conversation is not on its sticky account (gateway.switch_causes)
ROUTING_ROUTE_FAMILY = "route_family"
ROUTING_ROUTE = "route"  # the route table row (attempts >= 2 no longer carry its header: it is never forwarded)
ROUTING_REQUEST_ID = "request_id"  # Envoy's x-request-id (removed before the upstream, so later attempts read it here)
ROUTING_INSTALLATION = "installation"  # keyed hash of the client's installation id (pooler.gateway.upstream_identity)
ROUTING_ACCOUNT_INSTALLATION = "account_installation"  # this attempt's account's installation id for the client
# (a derived UUID the upstream sees anyway; the Codex clusters' Lua puts it into the request body too)

# Written by envoy.filters.http.sse_to_metadata from the `response.completed` SSE event.
NS_USAGE = "pooler.usage"
USAGE_KEYS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "total_tokens")
USAGE_STREAM_ERROR = "stream_error"
USAGE_RESPONSE_STATUS = "response_status"
"""`response.status` of the stream's latest event that has one: `completed` once `response.completed` came."""
"""The code of a streamed turn's failure event (`response.failed`'s `response.error.code`, an `error` event's
`code`), by the same filter."""
USAGE_WS_ERROR = "ws_error"
"""Websocket route (Lua pooler.ws_usage): the connection's last `error` frame, as `status=429 type=... code=...`
(UPSTREAM_ERROR_HEADER's format), so the access log applies what the same status and body would."""
USAGE_WS_ERROR_HEADERS = "ws_error_headers"
"""The same frame's `headers` (quota windows, retry-after) as `name=value` words, safe tokens only."""

# Written by the ext_proc when the pool (or key) shows clients an aggregate quota view. The clusters' upstream
# filter chain copies it onto the attempt's response (VIEW_RESPONSE_PREFIX + key with dashes); Envoy's downstream
# header_mutation overwrites the x-codex-* response headers with those and removes them.
NS_VIEW = "pooler.view"
VIEW_RESPONSE_PREFIX = "x-pooler-view-"
VIEW_HEADERS = {
    "x-codex-primary-used-percent": "primary_used_percent",
    "x-codex-primary-window-minutes": "primary_window_minutes",
    "x-codex-primary-reset-at": "primary_reset_at",
    "x-codex-primary-reset-after-seconds": "primary_reset_after_seconds",
    "x-codex-secondary-used-percent": "secondary_used_percent",
    "x-codex-secondary-window-minutes": "secondary_window_minutes",
    "x-codex-secondary-reset-at": "secondary_reset_at",
    "x-codex-secondary-reset-after-seconds": "secondary_reset_after_seconds",
    "x-codex-plan-type": "plan_type",
}


def view_response_header(key: str) -> str:
    """The attempt response header carrying one NS_VIEW value to the downstream header_mutation."""
    return VIEW_RESPONSE_PREFIX + key.replace("_", "-")


# --- Headers ---------------------------------------------------------------------------------------------
INTERNAL_HEADER_PREFIX = "x-pooler-"
"""The gateway's own headers: removed before the upstream on every attempt (pooler.gateway.upstream_identity),
client-sent copies included; never shown to a client."""
REQUEST_ID_HEADER = "x-request-id"
"""Envoy's id of a request (access log, admission, attempts): kept inside the gateway, never sent upstream."""
REQUEST_ID_FILTER_STATE = "pooler.request_id"
"""Filter state the connection manager sets from x-request-id before any attempt, so the access log still names
the request after the ext_proc removed the header (downstream entries read it directly)."""
ATTEMPT_OF_HEADER = "x-pooler-attempt-of"
"""Set on each attempt's response by the clusters' upstream filter chain: "<request id> <account id>" (from
REQUEST_ID_FILTER_STATE and the attempt's NS_ROUTING account). The per-attempt (upstream) log entries find their
request and account by it; removed before the client."""
ACCOUNT_ID_HEADER = "chatgpt-account-id"
WEBSOCKET_BETA_HEADER = "openai-beta"
WEBSOCKET_BETA_VALUE = "responses_websockets=2026-02-06"
TURN_STATE_HEADER = "x-codex-turn-state"
"""The upstream's per-account turn routing token: forwarded only to the account that issued it (bound_state.py)."""
SESSION_HEADERS = ("session-id", "session_id", "thread-id", "x-codex-window-id", TURN_STATE_HEADER)
"""Stickiness keys in priority order; the body's prompt_cache_key is the fallback."""
QUOTA_HEADER_PREFIXES = ("x-codex-",)
UPSTREAM_ERROR_HEADER = "x-pooler-upstream-error"
"""Set on an attempt's non-2xx response by the upstream Lua filter (pooler/envoy_config/lua/upstream_errors.lua) with
what its body said (`status=401 type=... code=...`, safe tokens only); the router's per-attempt access log
carries it to Python, and every route removes it before the client."""
ACTIVE_LIMIT_HEADER = "x-pooler-active-limit"
"""Set by the same filter when `x-codex-active-limit` names a family other than `codex`: that family's
`x-<family>-primary|secondary-*` windows packed under one fixed name (the access log logs headers by name)."""
CLIENT_IP_HEADER = "x-pooler-client-ip"
"""Set by Envoy's downstream header_mutation from the derived client address (trusted proxies honoured),
overwriting any client-sent copy; read by the ext_proc for per-key allowlists and removed before the upstream."""

# --- ext_proc processors ----------------------------------------------------------------------------------
PROCESSOR_METADATA_KEY = "x-pooler-processor"
"""gRPC initial metadata of an ext_proc filter naming the processor for its streams (absent: by path)."""
STREAM_CLOSE_METADATA_KEY = "x-pooler-stream-close"
STREAM_CLOSE_GRACEFUL = "graceful"
"""gRPC initial metadata of the ext_proc filters in our rendered Envoy config, whose runtime turns on
`ext_proc_graceful_grpc_close`: that Envoy half-closes each ext_proc stream and waits for our status instead of
resetting the stream, so the ext_proc may return at once (extproc/server.py explains the wait otherwise)."""
HOLD_METADATA_KEY = "x-pooler-hold-ms"
"""gRPC initial metadata of a first-event filter: how long (ms) the ext_proc may hold an SSE answer's headers
for its first meaningful event; rendered below the filter's `message_timeout` (extproc/first_event.py)."""
DECIDED_HEADER = "x-pooler-decided"
"""Set by the ext_proc on each attempt it decides behind a filter that fails open (the first-event hold's); the
decision guard after it (envoy_config/lua/decision_guard.lua) refuses an attempt without it and removes it.
Every route removes a client's copy, so only the ext_proc can have set it."""
PROCESSOR_FIRST_EVENT = "first_event"  # SSE answers held until their first event: a failed start fails over
PROCESSOR_V1_RESPONSES = "v1_responses"
PROCESSOR_V1_CHAT = "v1_chat"
PROCESSOR_FILES = "files"  # POST /backend-api/files: learns file id -> account, validates the upload URL
PROCESSOR_V1_FILES = "v1_files"  # POST /v1/files: JSON metadata -> backend create, reply in OpenAI shape
PROCESSOR_V1_AUDIO = "v1_audio"  # POST /v1/audio/transcriptions: multipart model alias -> backend form

# --- Retry -----------------------------------------------------------------------------------------------
# 401: the Pool key was already accepted, so an upstream 401 means this account's token was refused; another
# account can serve the request (the 401 also flags the account for refresh through the access log).
# 500/504: an upstream failure on one account says nothing about the others (README promises failover on 5xx).
# An upstream 401/402/403 about an account's credentials reaches the router as a 503 (the upstream Lua filter
# rewrites it, so the client never sees another account's credential error), hence retried too.
RETRIABLE_STATUS_CODES = (401, 429, 500, 502, 503, 504)
RETRY_ON = "retriable-status-codes,connect-failure,reset-before-request"

# --- Route families (request log `route_family`) ---------------------------------------------------------
ROUTE_RESPONSES = "responses"
ROUTE_RESPONSES_WS = "responses_ws"
ROUTE_COMPACT = "compact"
ROUTE_MODELS = "models"
ROUTE_USAGE = "usage"
ROUTE_V1 = "v1"
ROUTE_FILES = "files"
ROUTE_TRANSCRIBE = "transcribe"
ROUTE_IMAGES = "images"
ROUTE_OTHER = "other"
