"""Renders envoy/envoy.yaml: a pure function from a small typed input to the YAML text Envoy loads.

The template holds the shape; this module builds the parts that vary (addresses, the upstream's TLS and
protocol, routes, retry policy, the ext_proc filter, access logs, local-reply mappers) as plain data and
substitutes them as JSON, which is YAML flow syntax. Every name shared with the ext_proc comes from
pooler.gateway_contract, so the two can never disagree.
"""

from __future__ import annotations

import ipaddress
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pooler import gateway_contract as gc
from pooler.config import Config
from pooler.ratelimit_view import WS_VIEW_REQUEST_HEADER, WS_VIEW_RESPONSE_HEADER

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "envoy" / "envoy.yaml"
DEFAULT_UPSTREAM_URL = "https://chatgpt.com"
DEFAULT_NUM_RETRIES = 2  # PoolSettings.max_attempts defaults to 3

# Streaming timeouts. Codex itself gives up on a silent stream after 300 s, so Envoy waits as long.
SSE_IDLE_TIMEOUT = "300s"
# An attempt that sends nothing for this long is reset (and retried on another account while no byte has
# reached the client); long enough for a slow first token, short enough to fail over a stuck account.
PER_TRY_IDLE_TIMEOUT = "120s"
# Websockets idle between turns; Codex closes a connection after 60 minutes anyway.
WS_IDLE_TIMEOUT = "3600s"
RETRY_BASE_INTERVAL = "0.01s"  # failover is to another account: no reason to back off long
RETRY_MAX_INTERVAL = "0.05s"

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

# Response headers the gRPC access log carries to Python (quota evidence).
_QUOTA_WINDOW_HEADERS = tuple(
    f"x-codex-{slot}-{field_name}"
    for slot in ("primary", "secondary")
    for field_name in ("used-percent", "window-minutes", "reset-at", "reset-after-seconds")
)
QUOTA_RESPONSE_HEADERS = (*_QUOTA_WINDOW_HEADERS, "x-codex-active-limit", "x-codex-plan-type", "retry-after")
LOG_REQUEST_HEADERS = ("upgrade",)

# /v1 (pooler/v1): ext_proc processor name -> cluster. Deterministic 404 for every other /v1 path.
V1_CLUSTERS = {gc.PROCESSOR_V1_RESPONSES: "codex_upstream_v1_responses", gc.PROCESSOR_V1_CHAT: "codex_upstream_v1_chat"}
V1_UNSUPPORTED_MESSAGE = (
    "This endpoint is not supported by this gateway; supported: GET /v1/models, POST /v1/responses, "
    "POST /v1/chat/completions, POST /v1/files, POST /v1/audio/transcriptions, POST /v1/images/generations, "
    "POST /v1/images/edits."
)
# Issue 10 clusters whose ext_proc reads bodies: processor name -> (cluster, body modes).
SURFACE_CLUSTERS = {
    gc.PROCESSOR_FILES: "codex_upstream_files",
    gc.PROCESSOR_V1_FILES: "codex_upstream_v1_files",
    gc.PROCESSOR_V1_AUDIO: "codex_upstream_v1_audio",
}
# Lua, on JSON POST bodies only: a plain substring search first (memchr speed), the pattern only when a
# `"file_id"` key is present. Escaped quotes inside JSON strings (a prompt quoting JSON) do not match.
FILE_SCAN_LUA = """
function envoy_on_request(handle)
  local headers = handle:headers()
  if headers:get(":method") ~= "POST" then return end
  local ct = headers:get("content-type")
  if ct == nil or string.find(ct, "json", 1, true) == nil then return end
  local body = handle:body()
  if body == nil then return end
  local s = body:getBytes(0, body:length())
  if string.find(s, '"file_id"', 1, true) == nil then return end
  local ids, n = {}, 0
  for id in string.gmatch(s, '"file_id"%s*:%s*"([%w_%-]+)"') do
    n = n + 1
    ids[n] = id
    if n >= 16 then break end
  end
  if n > 0 then
    handle:streamInfo():dynamicMetadata():set("NS", "KEY", table.concat(ids, ","))
  end
end
""".replace('"NS"', json.dumps(gc.NS_REQUEST)).replace('"KEY"', json.dumps(gc.REQUEST_FILE_IDS))

# Pooled view on websocket frames (issue 10, docs/GATEWAY_SURFACE.md): on the websocket route only, server ->
# client text frames whose top-level JSON `type` is `codex.rate_limits` get the pool's `plan_type` and
# `rate_limits` (from the WS_VIEW_RESPONSE_HEADER the downstream header_mutation put on the 101; this filter
# removes it). Streaming: frames are parsed across chunk boundaries; a small unfragmented text frame is held
# until complete (bytes of every other frame flow on as they come, payloads not even read); a rewritten frame
# is re-encoded with its new length. Everything else passes byte for byte. Compressed frames (RSV1) are never
# touched: the ext_proc drops the permessage-deflate offer when the view is on, and an upgrade that still
# negotiated an extension is left alone.
WS_VIEW_LUA = """
local MAX_INSPECT = 65536

local function skip_string(s, i)
  local j = i + 1
  while true do
    local q = string.find(s, '["\\\\]', j)
    if q == nil then return nil end
    if string.byte(s, q) == 34 then return q + 1 end
    j = q + 2
  end
end

local function skip_value(s, i)
  local c = string.byte(s, i)
  if c == 34 then return skip_string(s, i) end
  if c == 123 or c == 91 then
    local depth, j = 0, i
    while true do
      local k = string.find(s, '[%[%]{}"]', j)
      if k == nil then return nil end
      local d = string.byte(s, k)
      if d == 34 then
        j = skip_string(s, k)
        if j == nil then return nil end
      else
        if d == 123 or d == 91 then depth = depth + 1 else depth = depth - 1 end
        j = k + 1
        if depth == 0 then return j end
      end
    end
  end
  local _, e = string.find(s, '^[%w%.%+%-]+', i)
  if e == nil then return nil end
  return e + 1
end

-- The payload with the top-level plan_type and rate_limits values replaced; nil when it is not a
-- codex.rate_limits event (or not a JSON object this scanner understands: then it is left as it is).
local function rewrite_event(s, plan_json, limits)
  local i = string.find(s, '[^ \\t\\r\\n]')
  if i == nil or string.byte(s, i) ~= 123 then return nil end
  i = i + 1
  local is_event, spans = false, {}
  while true do
    i = string.find(s, '[^ \\t\\r\\n]', i)
    if i == nil then return nil end
    local c = string.byte(s, i)
    if c == 125 then break end
    if c == 44 then
      i = string.find(s, '[^ \\t\\r\\n]', i + 1)
      if i == nil then return nil end
    end
    if string.byte(s, i) ~= 34 then return nil end
    local ke = skip_string(s, i)
    if ke == nil then return nil end
    local key = string.sub(s, i + 1, ke - 2)
    i = string.find(s, '[^ \\t\\r\\n]', ke)
    if i == nil or string.byte(s, i) ~= 58 then return nil end
    local vs = string.find(s, '[^ \\t\\r\\n]', i + 1)
    if vs == nil then return nil end
    local ve = skip_value(s, vs)
    if ve == nil then return nil end
    if key == "type" then
      is_event = string.sub(s, vs, ve - 1) == '"codex.rate_limits"'
    elseif key == "rate_limits" then
      spans[#spans + 1] = {vs, ve, limits}
    elseif key == "plan_type" then
      spans[#spans + 1] = {vs, ve, plan_json}
    end
    i = ve
  end
  if not is_event or #spans == 0 then return nil end
  local out, pos = {}, 1
  for _, span in ipairs(spans) do
    out[#out + 1] = string.sub(s, pos, span[1] - 1)
    out[#out + 1] = span[3]
    pos = span[2]
  end
  out[#out + 1] = string.sub(s, pos)
  return table.concat(out)
end

-- reset_after_seconds as of this frame: the figures were computed when the connection opened.
local function fresh(limits)
  local now = os.time()
  return (string.gsub(limits, '"reset_after_seconds":%d+,"reset_at":(%d+)', function(at)
    local left = tonumber(at) - now
    if left < 0 then left = 0 end
    return string.format('"reset_after_seconds":%d,"reset_at":%s', left, at)
  end))
end

local function text_frame(payload)
  local n = #payload
  if n < 126 then return string.char(129, n) .. payload end
  if n < 65536 then return string.char(129, 126, math.floor(n / 256), n % 256) .. payload end
  local bytes = {}
  for k = 8, 1, -1 do
    bytes[k] = n % 256
    n = math.floor(n / 256)
  end
  return string.char(129, 127, unpack(bytes)) .. payload
end

function envoy_on_response(handle)
  local headers = handle:headers()
  local view = headers:get("WS_VIEW_HEADER")
  if view == nil then return end
  headers:remove("WS_VIEW_HEADER")
  if headers:get(":status") ~= "101" or headers:get("sec-websocket-extensions") ~= nil then return end
  local plan, limits = string.match(view, '^([%w_]+) ({.+})$')
  if plan == nil then return end
  local plan_json = '"' .. plan .. '"'
  local held = ""  -- an unfinished frame header or small text frame, not yet forwarded
  local skip = 0   -- payload bytes of the current pass-through frame still to come
  for chunk in handle:bodyChunks() do
    local n = chunk:length()
    if held == "" and skip >= n then
      skip = skip - n
    else
      local changed = held ~= ""
      local s = held .. chunk:getBytes(0, n)
      held = ""
      local out, pos, len = {}, 1, #s
      while pos <= len do
        local left = len - pos + 1
        if skip > 0 then
          local take = math.min(skip, left)
          out[#out + 1] = string.sub(s, pos, pos + take - 1)
          pos = pos + take
          skip = skip - take
        else
          local b0, b1 = string.byte(s, pos, pos + 1)
          local plen, hlen = 0, 2
          if b1 ~= nil then
            plen = b1 % 128
            if plen == 126 then hlen = 4 elseif plen == 127 then hlen = 10 end
            if b1 >= 128 then hlen = hlen + 4 end
          end
          if b1 == nil or left < hlen then
            held = string.sub(s, pos)
            changed = true
            break
          end
          if plen == 126 then
            local x, y = string.byte(s, pos + 2, pos + 3)
            plen = x * 256 + y
          elseif plen == 127 then
            plen = 0
            for k = pos + 2, pos + 9 do plen = plen * 256 + string.byte(s, k) end
          end
          if b0 == 129 and b1 < 128 and plen <= MAX_INSPECT then
            if left < hlen + plen then
              held = string.sub(s, pos)
              changed = true
              break
            end
            local payload = string.sub(s, pos + hlen, pos + hlen + plen - 1)
            local new = nil
            if string.find(payload, "codex.rate_limits", 1, true) then
              new = rewrite_event(payload, plan_json, fresh(limits))
            end
            if new ~= nil then
              out[#out + 1] = text_frame(new)
              changed = true
            else
              out[#out + 1] = string.sub(s, pos, pos + hlen + plen - 1)
            end
            pos = pos + hlen + plen
          else
            out[#out + 1] = string.sub(s, pos, pos + hlen - 1)
            pos = pos + hlen
            skip = plen
          end
        end
      end
      if changed then chunk:setBytes(table.concat(out)) end
    end
  end
end
""".replace("WS_VIEW_HEADER", WS_VIEW_RESPONSE_HEADER)
WS_VIEW_FILTER = "pooler.ws_rate_limits"
WS_VIEW_SCRIPT = "ws_view"


@dataclass(frozen=True)
class Endpoint:
    """A TCP host:port or a unix socket path (exactly one)."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def tcp(cls, host: str, port: int) -> Endpoint:
        return cls(host=host, port=port)

    @classmethod
    def unix(cls, path: str | Path) -> Endpoint:
        return cls(path=str(path))

    @classmethod
    def parse(cls, spec: str) -> Endpoint:
        """`unix:/path`, `/path` or `host:port`."""
        if spec.startswith("unix:"):
            return cls.unix(spec[5:])
        if spec.startswith("/"):
            return cls.unix(spec)
        host, _, port = spec.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"endpoint must be host:port or unix:/path, got {spec!r}")
        return cls.tcp(host, int(port))

    def envoy_address(self) -> dict[str, Any]:
        if self.path is not None:
            return {"pipe": {"path": self.path}}
        if self.host is None or self.port is None:
            raise ValueError("endpoint needs host and port, or a path")
        return {"socket_address": {"address": self.host, "port_value": self.port}}


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Upstream:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL, got {url!r}")
        if parts.path not in ("", "/"):
            raise ValueError(f"upstream URL must have no path (routes keep the client's path), got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(scheme=parts.scheme, host=parts.hostname, port=port)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        default = 443 if self.tls else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        return all(part.isdigit() for part in self.host.split(".")) and self.host.count(".") == 3


@dataclass(frozen=True)
class GatewayConfig:
    """Everything that varies between deployments of the data plane."""

    listen: Endpoint
    admin: Endpoint
    extproc: Endpoint
    accesslog: Endpoint
    local: Endpoint
    """Unix socket of the internal listener behind gateway-answered routes (never reached in normal operation)."""
    admin_app: Endpoint
    upstream_url: str = DEFAULT_UPSTREAM_URL
    num_retries: int = DEFAULT_NUM_RETRIES
    access_log_path: str | None = None
    """A metadata-only JSON access log file (or /dev/stdout); None = gRPC access log only."""
    extproc_timeout_seconds: float = 2.0
    accesslog_flush_seconds: float = 0.5
    buffer_limit_bytes: int = 16 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)
    direct: bool = False
    """Benchmark baseline only: the same listener and routes with no ext_proc and no gRPC access log."""
    mcp_app: Endpoint = field(default_factory=lambda: Endpoint.tcp("127.0.0.1", 8082))
    """`python -m mcp_server` (served at /mcp; it checks its own tokens)."""
    metrics: Endpoint | None = None
    """The ext_proc's Prometheus endpoint; None = the unix socket beside the ext_proc socket (`<path>.metrics`)."""
    replicas: tuple[tuple[Endpoint, Endpoint], ...] = ()
    """Further ext_proc replicas as (ext_proc, access log) endpoints, beside `extproc`/`accesslog`. With any,
    both clusters get every replica plus gRPC health checks, so a draining replica stops receiving work."""
    replica_health_interval_seconds: float = 1.0
    client_allowlist: tuple[str, ...] = ()
    """Client IPs/CIDRs allowed on every route (empty: everyone). Checked against the derived client address."""
    trusted_proxies: tuple[str, ...] = ()
    """Peers whose x-forwarded-for is believed (empty: never; the TCP peer is the client)."""


def _error_body(message: str, code: str, kind: str = "server_error") -> str:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _disabled(*filters: str) -> dict[str, Any]:
    return {
        name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True} for name in filters
    }


def _retry_policy(num_retries: int) -> dict[str, Any]:
    return {
        "retry_on": gc.RETRY_ON,
        "num_retries": num_retries,
        "retriable_status_codes": list(gc.RETRIABLE_STATUS_CODES),
        "per_try_idle_timeout": PER_TRY_IDLE_TIMEOUT,
        "retry_back_off": {"base_interval": RETRY_BASE_INTERVAL, "max_interval": RETRY_MAX_INTERVAL},
    }


def _direct(status: int, body: str) -> dict[str, Any]:
    return {
        "direct_response": {"status": status, "body": {"inline_string": body}},
        "response_headers_to_add": [
            {
                "header": {"key": "content-type", "value": "application/json"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


def build_routes(config: GatewayConfig) -> list[dict[str, Any]]:
    retry = _retry_policy(config.num_retries)
    upstream = "codex_upstream"
    codex = "/backend-api/codex"
    return [
        {"name": "healthz", "match": {"path": "/healthz"}, **_direct(200, '{"status":"ok"}')},
        {"name": "readyz", "match": {"path": "/readyz"}, "route": {"cluster": "gateway_local", "timeout": "5s"}},
        {
            "name": "responses_ws",
            "match": {
                "path": f"{codex}/responses",
                "headers": [{"name": "upgrade", "string_match": {"exact": "websocket", "ignore_case": True}}],
            },
            "route": {
                "cluster": "codex_upstream_ws",
                "timeout": "0s",
                "idle_timeout": WS_IDLE_TIMEOUT,
                "retry_policy": retry,
            },
            # Headers-only on upgrades: body-processing filters on websocket routes are a known hang risk.
            "typed_per_filter_config": {
                **_disabled(
                    "envoy.filters.http.json_to_metadata",
                    "envoy.filters.http.sse_to_metadata",
                    "envoy.filters.http.lua",
                ),
                # Disabled everywhere else: the pooled view's frame rewriter (WS_VIEW_LUA) streams frames through.
                WS_VIEW_FILTER: {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
                        "name": WS_VIEW_SCRIPT,
                    },
                },
            },
        },
        {
            "name": "responses",
            "match": {"path": f"{codex}/responses"},
            "route": {"cluster": upstream, "timeout": "0s", "idle_timeout": SSE_IDLE_TIMEOUT, "retry_policy": retry},
        },
        {
            "name": "compact",
            "match": {"path": f"{codex}/responses/compact"},
            "route": {"cluster": upstream, "timeout": "0s", "idle_timeout": SSE_IDLE_TIMEOUT, "retry_policy": retry},
        },
        {
            "name": "models",
            "match": {"path": f"{codex}/models"},
            "route": {"cluster": upstream, "timeout": "60s", "retry_policy": retry},
        },
        {
            "name": "codex_other",
            "match": {"prefix": f"{codex}/"},
            "route": {"cluster": upstream, "timeout": "0s", "idle_timeout": SSE_IDLE_TIMEOUT, "retry_policy": retry},
        },
        *build_surface_routes(retry),
        {
            "name": "usage_wham",
            "match": {"path": "/backend-api/wham/usage"},
            "route": {"cluster": "gateway_local", "timeout": "10s"},
        },
        {
            "name": "usage_codex",
            "match": {"path": "/api/codex/usage"},
            "route": {"cluster": "gateway_local", "timeout": "10s"},
        },
        *build_v1_routes(retry),
        {
            "name": "v1",
            "match": {"prefix": "/v1/"},
            **_direct(404, _error_body(V1_UNSUPPORTED_MESSAGE, "unsupported_endpoint", "invalid_request_error")),
        },
        {"name": "admin", "match": {"prefix": "/admin"}, "route": {"cluster": "pooler_admin", "timeout": "60s"}},
        # Exact paths: the MCP server (its own bearer tokens) and the ext_proc's Prometheus exposition.
        {"name": "mcp", "match": {"path": "/mcp"}, "route": {"cluster": "pooler_mcp", "timeout": "60s"}},
        {"name": "metrics", "match": {"path": "/metrics"}, "route": {"cluster": "pooler_metrics", "timeout": "10s"}},
        {
            "name": "not_found",
            "match": {"prefix": "/"},
            **_direct(404, _error_body("Not found.", "not_found", "invalid_request_error")),
        },
    ]


def build_surface_routes(retry: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 10 (docs/GATEWAY_SURFACE.md): files, transcription, images on the Codex backend. /v1 flavours are
    path-rewritten here, so the ext_proc sees one family per backend route on every attempt."""
    no_scan = _disabled("envoy.filters.http.lua", "envoy.filters.http.json_to_metadata")
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
    no_sse_metadata = _disabled("envoy.filters.http.sse_to_metadata")
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


def build_local_reply_mappers() -> list[dict[str, Any]]:
    """Envoy-made errors -> OpenAI-shaped JSON with a safe code. First match wins."""

    def mapper(filter_: dict[str, Any], status: int, message: str, code: str) -> dict[str, Any]:
        return {
            "filter": filter_,
            "status_code": status,
            "body": {"inline_string": _error_body(message, code)},
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
    return [
        mapper(rbac_denied, 403, "This address may not use this gateway.", "ip_not_allowed"),
        # The ext_proc is unreachable or failed (status_on_error = 500): fail closed, fast.
        mapper(status_is(500), 503, "The gateway is temporarily unavailable.", "gateway_unavailable"),
        mapper({"response_flag_filter": {"flags": ["UT", "SI"]}}, 504, "The upstream timed out.", "upstream_timeout"),
        mapper(
            {"response_flag_filter": {"flags": ["UF", "UH", "UO", "URX", "UC", "UR", "LR", "NC"]}},
            502,
            "The upstream is unavailable.",
            "upstream_unavailable",
        ),
        mapper(status_is(413), 413, "The request body is too large.", "request_too_large"),
    ]


def build_upstream_http_filters(config: GatewayConfig) -> list[dict[str, Any]]:
    timeout = _duration(config.extproc_timeout_seconds)
    codec = {
        "name": "envoy.filters.http.upstream_codec",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
    }
    if config.direct:
        return [codec]
    return [
        {
            "name": "envoy.filters.http.ext_proc",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
                "grpc_service": {"envoy_grpc": {"cluster_name": "pooler_extproc"}, "timeout": timeout},
                # Fail closed: without the ext_proc's decision there is no account token to send, and the client
                # must get a fast JSON 503 (local_reply maps this 500), never the upstream with its Pool key.
                "failure_mode_allow": False,
                "message_timeout": timeout,
                # One synchronous message per attempt: request headers only.
                "processing_mode": {
                    "request_header_mode": "SEND",
                    "response_header_mode": "SKIP",
                    "request_body_mode": "NONE",
                    "response_body_mode": "NONE",
                    "request_trailer_mode": "SKIP",
                    "response_trailer_mode": "SKIP",
                },
                "metadata_options": {
                    # NS_ROUTING: the principal and tried accounts of earlier attempts; NS_REQUEST: json_to_metadata.
                    "forwarding_namespaces": {"untyped": [gc.NS_ROUTING, gc.NS_REQUEST]},
                    "receiving_namespaces": {"untyped": [gc.NS_ROUTING]},
                },
            },
        },
        codec,
    ]


def build_v1_http_filters(config: GatewayConfig, processor: str) -> list[dict[str, Any]]:
    """The upstream filters of a /v1 cluster: the same ext_proc (same auth and account pick on request headers)
    plus the body phases the translation needs. `processor` travels as gRPC initial metadata so the ext_proc
    picks the /v1 processor on every attempt (a retried attempt sees the rewritten Codex :path)."""
    filters = build_upstream_http_filters(config)
    if config.direct:  # the benchmark baseline has no ext_proc on any cluster
        return filters
    ext = filters[0]["typed_config"]
    ext["grpc_service"]["initial_metadata"] = [{"key": gc.PROCESSOR_METADATA_KEY, "value": processor}]
    ext["processing_mode"] = {
        **ext["processing_mode"],
        "request_body_mode": "BUFFERED",  # translated and replaced by the ext_proc
        "response_header_mode": "SEND",  # picks the response body mode (STREAMED or BUFFERED) per response
    }
    ext["allow_mode_override"] = True
    ext["metadata_options"]["receiving_namespaces"]["untyped"] = [gc.NS_ROUTING, gc.NS_USAGE]
    return filters


def build_surface_http_filters(config: GatewayConfig, processor: str) -> list[dict[str, Any]]:
    """Upstream filters of the issue-10 body clusters: the same ext_proc (auth, pick on request headers) plus the
    phases the processor needs - files: response headers + buffered response body (pin, URL check); /v1 files:
    also the request body; /v1 audio: the request body only."""
    filters = build_upstream_http_filters(config)
    if config.direct:
        return filters
    ext = filters[0]["typed_config"]
    ext["grpc_service"]["initial_metadata"] = [{"key": gc.PROCESSOR_METADATA_KEY, "value": processor}]
    mode = dict(ext["processing_mode"])
    if processor in (gc.PROCESSOR_FILES, gc.PROCESSOR_V1_FILES):
        mode.update(response_header_mode="SEND", response_body_mode="BUFFERED")
    if processor in (gc.PROCESSOR_V1_FILES, gc.PROCESSOR_V1_AUDIO):
        mode["request_body_mode"] = "BUFFERED"
    ext["processing_mode"] = mode
    return filters


def build_ingress(config: GatewayConfig) -> dict[str, Any]:
    """RBAC client allowlist (remote_ip = the derived client address) and the trusted-proxy XFF extension."""
    for cidr in (*config.client_allowlist, *config.trusted_proxies):
        ipaddress.ip_network(cidr, strict=False)  # ValueError here, not in Envoy
    rbac: dict[str, Any] = {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}
    if config.client_allowlist:
        ranges = [_cidr(c) for c in config.client_allowlist]
        rbac["rules"] = {
            "action": "ALLOW",
            "policies": {
                "client-allowlist": {
                    "permissions": [{"any": True}],
                    "principals": [{"remote_ip": r} for r in ranges],
                },
                # Liveness probes come from wherever the orchestrator runs.
                "healthz": {
                    "permissions": [{"url_path": {"path": {"exact": "/healthz"}}}],
                    "principals": [{"any": True}],
                },
            },
        }
    detection: list[dict[str, Any]] = []
    if config.trusted_proxies:
        detection.append(
            {
                "name": "envoy.http.original_ip_detection.xff",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.original_ip_detection.xff.v3.XffConfig",
                    "xff_trusted_cidrs": {"cidrs": [_cidr(c) for c in config.trusted_proxies]},
                },
            }
        )
    return {"rbac_config": rbac, "original_ip_detection": detection, "use_remote_address": not detection}


def _cidr(text: str) -> dict[str, Any]:
    net = ipaddress.ip_network(text.strip(), strict=False)
    return {"address_prefix": str(net.network_address), "prefix_len": net.prefixlen}


def build_request_mutations() -> list[dict[str, Any]]:
    """Strip client-sent Envoy control headers; set the derived client address (clients cannot choose it)."""
    return [
        *({"remove": name} for name in ENVOY_CONTROL_HEADERS),
        {
            "append": {
                "header": {"key": gc.CLIENT_IP_HEADER, "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        },
    ]


def build_view_response_mutations() -> list[dict[str, Any]]:
    """x-codex-* quota headers overwritten from NS_VIEW; an absent key gives an empty value, which Envoy drops
    (keep_empty_value false), leaving the upstream's header untouched."""
    return [
        {
            "append": {
                "header": {"key": header, "value": f"%REQ(x-pooler-view-{key.replace('_', '-')})%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                "keep_empty_value": False,
            }
        }
        for header, key in gc.VIEW_HEADERS.items()
    ] + [
        {
            # The websocket frame view, for WS_VIEW_LUA (which removes it); only upgrades carry the request header.
            "append": {
                "header": {"key": WS_VIEW_RESPONSE_HEADER, "value": f"%REQ({WS_VIEW_REQUEST_HEADER})%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                "keep_empty_value": False,
            }
        }
    ]


def _metadata(ns: str, key: str) -> str:
    return f"%DYNAMIC_METADATA({ns}:{key})%"


def build_grpc_access_log(config: GatewayConfig) -> dict[str, Any]:
    """The gRPC access log to the ext_proc process. Used for both the downstream and the upstream (per attempt)
    log with the identical config, so Envoy shares one logger: one buffer, one stream, entries in order."""
    return {
        "name": "envoy.access_loggers.http_grpc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "common_config": {
                "log_name": "pooler",
                "transport_api_version": "V3",
                "grpc_service": {"envoy_grpc": {"cluster_name": "pooler_accesslog"}},
                "buffer_flush_interval": _duration(config.accesslog_flush_seconds),
                "buffer_size_bytes": 65536,
            },
            "additional_request_headers_to_log": list(LOG_REQUEST_HEADERS),
            "additional_response_headers_to_log": list(QUOTA_RESPONSE_HEADERS),
        },
    }


def build_access_logs(config: GatewayConfig) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = [] if config.direct else [build_grpc_access_log(config)]
    if config.access_log_path:
        # Metadata only: no request/response headers beyond ids, never authorization or bodies.
        fmt = {
            "time": "%START_TIME%",
            "request_id": "%REQ(X-REQUEST-ID)%",
            "method": "%REQ(:METHOD)%",
            "path": "%REQ(:PATH)%",
            "status": "%RESPONSE_CODE%",
            "flags": "%RESPONSE_FLAGS%",
            "details": "%RESPONSE_CODE_DETAILS%",
            "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
            "ttfb_ms": "%RESPONSE_DURATION%",
            "duration_ms": "%DURATION%",
            "pool_id": _metadata(gc.NS_ROUTING, gc.ROUTING_POOL_ID),
            "key_prefix": _metadata(gc.NS_ROUTING, gc.ROUTING_KEY_PREFIX),
            "account_id": _metadata(gc.NS_ROUTING, gc.ROUTING_ACCOUNT_ID),
            "tried": _metadata(gc.NS_ROUTING, gc.ROUTING_TRIED),
            "error": _metadata(gc.NS_ROUTING, gc.ROUTING_ERROR),
            "model": _metadata(gc.NS_REQUEST, gc.REQUEST_MODEL),
            "total_tokens": _metadata(gc.NS_USAGE, "total_tokens"),
        }
        logs.append(
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": config.access_log_path,
                    "log_format": {"json_format": fmt},
                },
            }
        )
    return logs


def build_usage_rules() -> list[dict[str, Any]]:
    """sse_to_metadata rules: token counts of `response.completed` (`response.usage...`) into NS_USAGE."""
    paths = {
        "input_tokens": ("input_tokens",),
        "cached_tokens": ("input_tokens_details", "cached_tokens"),
        "output_tokens": ("output_tokens",),
        "reasoning_tokens": ("output_tokens_details", "reasoning_tokens"),
        "total_tokens": ("total_tokens",),
    }
    assert set(paths) == set(gc.USAGE_KEYS)
    return [
        {
            "rule": {
                "selectors": [{"key": k} for k in ("response", "usage", *path)],
                "on_present": {"metadata_namespace": gc.NS_USAGE, "key": key, "type": "NUMBER"},
            }
        }
        for key, path in paths.items()
    ]


def _upstream_parts(upstream: Upstream) -> dict[str, Any]:
    address = {"socket_address": {"address": upstream.host, "port_value": upstream.port}}
    raw = {
        "name": "envoy.transport_sockets.raw_buffer",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"},
    }

    def tls(alpn: list[str]) -> dict[str, Any]:
        return {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": upstream.host,
                "common_tls_context": {
                    "alpn_protocols": alpn,
                    "validation_context": {
                        "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"},
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": upstream.host}}],
                    },
                },
            },
        }

    if upstream.tls:
        return {
            "upstream_address": address,
            "upstream_transport_socket": tls(["h2", "http/1.1"]),
            "upstream_transport_socket_http1": tls(["http/1.1"]),
            "upstream_protocol_key": "auto_config",
            "upstream_protocol": {"http_protocol_options": {}, "http2_protocol_options": {}},
            "upstream_discovery": "STATIC" if upstream.is_ip else "LOGICAL_DNS",
        }
    return {
        "upstream_address": address,
        "upstream_transport_socket": raw,
        "upstream_transport_socket_http1": raw,
        "upstream_protocol_key": "explicit_http_config",
        "upstream_protocol": {"http_protocol_options": {}},
        "upstream_discovery": "STATIC" if upstream.is_ip else "LOGICAL_DNS",
    }


RAW_KEYS = {"upstream_protocol_key"}


def metrics_endpoint(config: GatewayConfig) -> Endpoint:
    if config.metrics is not None:
        return config.metrics
    if config.extproc.path is not None:
        return Endpoint.unix(metrics_socket_for(config.extproc.path))
    return Endpoint.tcp("127.0.0.1", DEFAULT_METRICS_PORT)


DEFAULT_METRICS_PORT = 9464


def metrics_socket_for(extproc_socket: str | Path) -> str:
    """Where an ext_proc serves /metrics: beside its gRPC socket (no port to allocate, no network exposure)."""
    return f"{extproc_socket}.metrics"


def _static_cluster(name: str, endpoint: Endpoint) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": endpoint.envoy_address()}}]}],
        },
    }


def build_replica_parts(config: GatewayConfig) -> dict[str, Any]:
    """Endpoints of the ext_proc and access-log clusters: one per replica; health checks only with several (a
    lone replica gains nothing from them, and its config stays as it always was)."""
    pairs = [(config.extproc, config.accesslog), *config.replicas]
    interval = _duration(config.replica_health_interval_seconds)
    checks = (
        [
            {
                "timeout": interval,
                "interval": interval,
                # Envoy checks idle clusters only every 60 s by default: a restarted replica would wait that long.
                "no_traffic_interval": interval,
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ]
        if config.replicas
        else []
    )
    return {
        "extproc_endpoints": [{"endpoint": {"address": x.envoy_address()}} for x, _ in pairs],
        "accesslog_endpoints": [{"endpoint": {"address": a.envoy_address()}} for _, a in pairs],
        "replica_health_checks": checks,
        # Never send work to a replica known to be down ("panic mode" would, below 50% healthy).
        "replica_lb_config": {"healthy_panic_threshold": {"value": 0}} if config.replicas else {},
    }


def render(config: GatewayConfig, template: str | None = None) -> str:
    """The Envoy bootstrap YAML for `config`. Pure: same input, same text."""
    if config.num_retries < 0:
        raise ValueError("num_retries must be >= 0")
    upstream = Upstream.parse(config.upstream_url)
    values: dict[str, Any] = {
        "admin_address": config.admin.envoy_address(),
        "listen_address": config.listen.envoy_address(),
        "local_address": config.local.envoy_address(),
        **build_replica_parts(config),
        "mcp_cluster": _static_cluster("pooler_mcp", config.mcp_app),
        "metrics_cluster": _static_cluster("pooler_metrics", metrics_endpoint(config)),
        "admin_app_address": config.admin_app.envoy_address(),
        "buffer_limit_bytes": config.buffer_limit_bytes,
        "access_logs": build_access_logs(config),
        "upstream_logs": [] if config.direct else [build_grpc_access_log(config)],
        "local_reply_mappers": build_local_reply_mappers(),
        "strip_envoy_headers": build_request_mutations(),
        "view_response_mutations": build_view_response_mutations(),
        "file_scan_lua": FILE_SCAN_LUA,
        "ws_view_lua": WS_VIEW_LUA,
        "ws_view_filter": WS_VIEW_FILTER,
        **build_ingress(config),
        **{f"{name}_http_filters": build_surface_http_filters(config, name) for name in SURFACE_CLUSTERS},
        "ns_request": gc.NS_REQUEST,
        "request_model": gc.REQUEST_MODEL,
        "request_prompt_cache_key": gc.REQUEST_PROMPT_CACHE_KEY,
        "usage_rules": build_usage_rules(),
        "routes": _with_host_rewrite(build_routes(config), upstream),
        "local_fallback_body": _error_body("The gateway could not answer this request.", "internal_error"),
        "upstream_http_filters": build_upstream_http_filters(config),
        **{f"{name}_http_filters": build_v1_http_filters(config, name) for name in V1_CLUSTERS},
        **_upstream_parts(upstream),
    }
    rendered = {k: v if k in RAW_KEYS else json.dumps(v) for k, v in values.items()}
    text = string.Template(template if template is not None else TEMPLATE_PATH.read_text()).substitute(rendered)
    yaml.safe_load(text)  # fail here, not in Envoy, if a substitution broke the YAML
    return text


def _with_host_rewrite(routes: list[dict[str, Any]], upstream: Upstream) -> list[dict[str, Any]]:
    for route in routes:
        action = route.get("route")
        if action and action["cluster"].startswith("codex_upstream"):
            action["host_rewrite_literal"] = upstream.authority
    return routes


def config_from_env(
    config: Config,
    *,
    upstream_url: str = DEFAULT_UPSTREAM_URL,
    num_retries: int = DEFAULT_NUM_RETRIES,
    access_log_path: str | None = None,
    client_allowlist: tuple[str, ...] = (),
    trusted_proxies: tuple[str, ...] = (),
) -> GatewayConfig:
    """The GatewayConfig a process configuration (ports, socket paths) describes."""
    return GatewayConfig(
        listen=Endpoint.tcp(config.listen_host, config.listen_port),
        admin=Endpoint.tcp("127.0.0.1", config.envoy_admin_port),
        extproc=Endpoint.unix(config.extproc_socket.resolve()),
        accesslog=Endpoint.unix(config.accesslog_socket.resolve()),
        local=Endpoint.unix((config.data_dir / "gateway-local.sock").resolve()),
        admin_app=Endpoint.tcp("127.0.0.1", config.admin_port),
        mcp_app=Endpoint.tcp("127.0.0.1", config.mcp_port),
        upstream_url=upstream_url,
        num_retries=num_retries,
        access_log_path=access_log_path,
        client_allowlist=client_allowlist or config.client_allowlist,
        trusted_proxies=trusted_proxies or config.trusted_proxies,
    )


def num_retries_for(max_attempts: list[int]) -> int:
    """Envoy's retry count is the largest any pool needs; the ext_proc stops each pool at its own limit."""
    return max([DEFAULT_NUM_RETRIES + 1, *max_attempts]) - 1
