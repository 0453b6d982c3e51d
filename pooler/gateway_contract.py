"""Names shared by the Envoy config, the ext_proc and the access-log receiver, so they can never disagree.

Like Envoy AI Gateway's `internalapi`: every header name, metadata namespace and metadata key the data path
uses is defined here once.
"""

from __future__ import annotations

# --- Dynamic metadata namespaces -------------------------------------------------------------------------
# Written by envoy.filters.http.json_to_metadata from the JSON request body (C++, no Python parsing).
NS_REQUEST = "pooler.request"
REQUEST_MODEL = "model"
REQUEST_PROMPT_CACHE_KEY = "prompt_cache_key"

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
ROUTING_ROUTE_FAMILY = "route_family"

# Written by envoy.filters.http.sse_to_metadata from the `response.completed` SSE event.
NS_USAGE = "pooler.usage"
USAGE_KEYS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "total_tokens")

# --- Headers ---------------------------------------------------------------------------------------------
INTERNAL_HEADER_PREFIX = "x-pooler-"
"""Client-sent headers with this prefix are removed before anything trusted is set."""
ACCOUNT_ID_HEADER = "chatgpt-account-id"
WEBSOCKET_BETA_HEADER = "openai-beta"
WEBSOCKET_BETA_VALUE = "responses_websockets=2026-02-06"
SESSION_HEADERS = ("session-id", "session_id", "thread-id", "x-codex-window-id", "x-codex-turn-state")
"""Stickiness keys in priority order; the body's prompt_cache_key is the fallback."""
QUOTA_HEADER_PREFIXES = ("x-codex-",)

# --- ext_proc processors ----------------------------------------------------------------------------------
PROCESSOR_METADATA_KEY = "x-pooler-processor"
"""gRPC initial metadata of an ext_proc filter naming the processor for its streams (absent: by path)."""
PROCESSOR_V1_RESPONSES = "v1_responses"
PROCESSOR_V1_CHAT = "v1_chat"

# --- Retry -----------------------------------------------------------------------------------------------
RETRIABLE_STATUS_CODES = (429, 502, 503)
RETRY_ON = "retriable-status-codes,connect-failure,reset-before-request"

# --- Route families (request log `route_family`) ---------------------------------------------------------
ROUTE_RESPONSES = "responses"
ROUTE_RESPONSES_WS = "responses_ws"
ROUTE_COMPACT = "compact"
ROUTE_MODELS = "models"
ROUTE_USAGE = "usage"
ROUTE_V1 = "v1"
ROUTE_OTHER = "other"
