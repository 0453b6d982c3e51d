"""The Lua sources Envoy runs: the request body scanner and the websocket pooled-view frame rewriter."""

from __future__ import annotations

import json

from pooler import gateway_contract as gc
from pooler.ratelimit_view import WS_VIEW_RESPONSE_HEADER

# JSON helpers both scripts start with; positions are 1-based byte indexes. Strings are skipped by finds that
# jump from quote to backslash (C speed); only the structure between strings is walked in Lua.
JSON_LUA = """
local find, byte, sub = string.find, string.byte, string.sub

-- One past the closing quote of the string opening at i: plain finds for '"' (memchr), then the quote counts
-- only after an even run of backslashes. (A pattern find walks byte by byte: 10x slower on a Codex body.)
local function skip_string(s, i)
  local j = i + 1
  while true do
    local q = find(s, '"', j, true)
    if q == nil then return nil end
    local k = q - 1
    while byte(s, k) == 92 do k = k - 1 end
    if (q - k) % 2 == 1 then return q + 1 end
    j = q + 1
  end
end

local function skip_value(s, i)
  local c = byte(s, i)
  if c == 34 then return skip_string(s, i) end
  if c == 123 or c == 91 then
    local depth, j = 0, i
    while true do
      local k = find(s, '[%[%]{}"]', j)
      if k == nil then return nil end
      local d = byte(s, k)
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
  local _, e = find(s, '^[%w%.%+%-]+', i)
  if e == nil then return nil end
  return e + 1
end

-- visit(raw_key, value_start, value_end) for every member of the top-level object in s, in order (raw_key: the
-- key between its quotes, escapes not decoded; value_end: one past the value). false when s is not a JSON
-- object this walk understands.
local function each_member(s, visit)
  local i = find(s, '[^ \\t\\r\\n]')
  if i == nil or byte(s, i) ~= 123 then return false end
  i = i + 1
  while true do
    i = find(s, '[^ \\t\\r\\n]', i)
    if i == nil then return false end
    local c = byte(s, i)
    if c == 125 then return true end
    if c == 44 then
      i = find(s, '[^ \\t\\r\\n]', i + 1)
      if i == nil then return false end
    end
    if byte(s, i) ~= 34 then return false end
    local ke = skip_string(s, i)
    if ke == nil then return false end
    local key = sub(s, i + 1, ke - 2)
    i = find(s, '[^ \\t\\r\\n]', ke)
    if i == nil or byte(s, i) ~= 58 then return false end
    local vs = find(s, '[^ \\t\\r\\n]', i + 1)
    if vs == nil then return false end
    local ve = skip_value(s, vs)
    if ve == nil then return false end
    visit(key, vs, ve)
    i = ve
  end
end

local ESCAPES = {['"'] = '"', ['\\\\'] = '\\\\', ['/'] = '/', b = '\\b', f = '\\f', n = '\\n', r = '\\r', t = '\\t'}

local function utf8_char(cp)
  if cp < 128 then return string.char(cp) end
  if cp < 2048 then return string.char(192 + math.floor(cp / 64), 128 + cp % 64) end
  return string.char(224 + math.floor(cp / 4096), 128 + math.floor(cp / 64) % 64, 128 + cp % 64)
end

-- The text of a JSON string's raw contents, escapes decoded in one pass (so `\\\\u0041` stays `\\u0041`); nil
-- for an invalid escape. Surrogate pairs are not joined: such text never equals a key or model name we know.
local function unescape(raw)
  local j = find(raw, '\\\\', 1, true)
  if j == nil then return raw end
  local out, i = {}, 1
  while j ~= nil do
    out[#out + 1] = sub(raw, i, j - 1)
    local c = sub(raw, j + 1, j + 1)
    if c == 'u' then
      local hex = sub(raw, j + 2, j + 5)
      if find(hex, '^%x%x%x%x$') == nil then return nil end
      out[#out + 1] = utf8_char(tonumber(hex, 16))
      i = j + 6
    else
      if ESCAPES[c] == nil then return nil end
      out[#out + 1] = ESCAPES[c]
      i = j + 2
    end
    j = find(raw, '\\\\', i, true)
  end
  out[#out + 1] = sub(raw, i)
  return table.concat(out)
end
"""

# On JSON POST bodies (the HCM's request scanner, replacing json_to_metadata: that filter builds a full DOM of
# the ~40 KB Codex body and cost Envoy ~60% of its proxy throughput; this walk only visits the top level):
# - `model` and `prompt_cache_key`: the string values of those top-level keys (every member is visited and the
#   last of a repeated key wins, as in the upstream's parser; keys are compared after decoding escapes, so
#   `"mod\\u0065l"` is `model`). Printable ASCII only (anything else becomes `?`, which no allow-list holds),
#   at most 256 bytes.
# - `file_ids`: `"file_id": "..."` references anywhere (a plain substring search first, memchr speed; escaped
#   quotes inside strings, e.g. a prompt quoting JSON, do not match).
# - `invalid_json`: "1" when an uncompressed body is not a JSON object (the top-level walk failed; nothing else
#   is set). A compressed body (`content-encoding` other than identity) is never marked: its bytes are not JSON.
REQUEST_SCAN_LUA = (
    JSON_LUA
    + """
local FIELDS = {[REQUEST_MODEL] = true, [REQUEST_PROMPT_CACHE_KEY] = true}

local function safe(value)
  return sub((string.gsub(value, '[^\\32-\\126]', '?')), 1, 256)
end

function envoy_on_request(handle)
  -- Proof for the ext_proc that this filter ran: a route whose row scans bodies is refused without it. (A
  -- wrapper object must not outlive the body() yield below: Lua objects are scoped to one resumption.)
  handle:streamInfo():dynamicMetadata():set(NS_REQUEST, REQUEST_SCANNED, "1")
  local headers = handle:headers()
  if headers:get(":method") ~= "POST" then return end
  local ct = headers:get("content-type")
  if ct == nil or find(ct, "json", 1, true) == nil then return end
  -- Codex may send `content-encoding: zstd`: such bytes are not walked as JSON, so they are never called invalid.
  local encoding = headers:get("content-encoding")
  local plain = encoding == nil or encoding == "identity"
  local body = handle:body()
  if body == nil then return end
  local s = body:getBytes(0, body:length())
  local metadata = handle:streamInfo():dynamicMetadata()
  local found = {}
  local object = each_member(s, function(raw_key, vs, ve)
    local key = unescape(raw_key)
    if key ~= nil and FIELDS[key] then
      found[key] = byte(s, vs) == 34 and unescape(sub(s, vs + 1, ve - 2)) or nil
    end
  end)
  -- The walk above already covers every top-level byte, so its verdict is free: a body that is not a JSON
  -- object is refused by the ext_proc before any account is picked (never sent upstream on an account token).
  -- Only the top level is checked; a malformed nested value is the upstream's to reject.
  if not object then
    if plain then metadata:set(NS_REQUEST, REQUEST_INVALID_JSON, "1") end
    return
  end
  for key, value in pairs(found) do metadata:set(NS_REQUEST, key, safe(value)) end
  if find(s, '"file_id"', 1, true) == nil then return end
  local ids, n = {}, 0
  for id in string.gmatch(s, '"file_id"%s*:%s*"([%w_%-]+)"') do
    n = n + 1
    ids[n] = id
    if n >= 16 then break end
  end
  if n > 0 then metadata:set(NS_REQUEST, REQUEST_FILE_IDS, table.concat(ids, ",")) end
end
"""
)
for _name in (
    "NS_REQUEST",
    "REQUEST_MODEL",
    "REQUEST_PROMPT_CACHE_KEY",
    "REQUEST_FILE_IDS",
    "REQUEST_SCANNED",
    "REQUEST_INVALID_JSON",
):
    REQUEST_SCAN_LUA = REQUEST_SCAN_LUA.replace(_name, json.dumps(getattr(gc, _name)))

# Pooled view on websocket frames (issue 10, docs/GATEWAY_SURFACE.md): on the websocket route only, server ->
# client text frames whose top-level JSON `type` is `codex.rate_limits` get the pool's `plan_type` and
# `rate_limits` (from the WS_VIEW_RESPONSE_HEADER the downstream header_mutation put on the 101; this filter
# removes it). Streaming: frames are parsed across chunk boundaries; a small unfragmented text frame is held
# until complete (bytes of every other frame flow on as they come, payloads not even read); a rewritten frame
# is re-encoded with its new length. Everything else passes byte for byte. Compressed frames (RSV1) are never
# touched: the ext_proc drops the permessage-deflate offer when the view is on, and an upgrade that still
# negotiated an extension is left alone.
WS_VIEW_LUA = (
    JSON_LUA
    + """
local MAX_INSPECT = 65536

-- The payload with the top-level plan_type and rate_limits values replaced; nil when it is not a
-- codex.rate_limits event (or not a JSON object this scanner understands: then it is left as it is).
local function rewrite_event(s, plan_json, limits)
  local is_event, spans = false, {}
  local ok = each_member(s, function(key, vs, ve)
    if key == "type" then
      is_event = sub(s, vs, ve - 1) == '"codex.rate_limits"'
    elseif key == "rate_limits" then
      spans[#spans + 1] = {vs, ve, limits}
    elseif key == "plan_type" then
      spans[#spans + 1] = {vs, ve, plan_json}
    end
  end)
  if not ok or not is_event or #spans == 0 then return nil end
  local out, pos = {}, 1
  for _, span in ipairs(spans) do
    out[#out + 1] = sub(s, pos, span[1] - 1)
    out[#out + 1] = span[3]
    pos = span[2]
  end
  out[#out + 1] = sub(s, pos)
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
"""
).replace("WS_VIEW_HEADER", WS_VIEW_RESPONSE_HEADER)

WS_VIEW_SCRIPT = "ws_view"

# The upstream filter of every Codex cluster (after the ext_proc, before the codec), once per attempt:
# - any response whose `x-codex-active-limit` names a family other than `codex`: that family's windows packed
#   into ACTIVE_LIMIT_HEADER (`<family> <slot> <used> <minutes> <reset-at> <reset-after>`, `-` for a missing
#   value), because the access log carries headers by fixed names only;
# - a response of status >= 400 only: its (small) body is buffered and the `error` (or `detail`) object's
#   `type`, `code`, `plan_type`, `resets_at`, `resets_in_seconds` (or top-level `type`/`code`) go into
#   UPSTREAM_ERROR_HEADER for the per-attempt access log. A 2xx/101 body is never touched (no buffering: the
#   SSE stream flows as before; a Lua `body()` on a stream would hold it whole).
# - an answer about the account's credentials (401; 402; 403 with a dead-account code) becomes a 503 with the
#   gateway's own `no_eligible_account` body and `retry-after`: the router retries it on another account (503
#   is retriable), and if none is left the client gets a retryable gateway error, never another account's 401.
#   The original status stays in UPSTREAM_ERROR_HEADER.
_NO_ACCOUNT_REPLY = {
    "error": {
        "message": "No upstream account can serve this request right now.",
        "type": "server_error",
        "param": None,
        "code": "no_eligible_account",
    }
}
UPSTREAM_ERRORS_LUA = (
    JSON_LUA
    + """
local DEAD = {account_deactivated = true, deactivated_workspace = true, token_invalidated = true,
              app_session_terminated = true}
local FIELDS = {type = "type", code = "code", plan_type = "plan", resets_at = "resets_at",
                resets_in_seconds = "resets_in"}
local MAX_READ = 16384

-- A safe token (letters, digits, _ . -) of at most 64 bytes, else nil: never free text from a body.
local function token(raw)
  if type(raw) ~= "string" then return nil end
  if byte(raw, 1) == 34 then raw = sub(raw, 2, -2) end
  if #raw == 0 or #raw > 64 or find(raw, '^[%w_%.%-]+$') == nil then return nil end
  return raw
end

local function read_object(s, found)
  each_member(s, function(key, vs, ve)
    local name = FIELDS[key]
    if name ~= nil and found[name] == nil then found[name] = token(sub(s, vs, ve - 1)) end
  end)
end

local function error_fields(s)
  local found = {}
  local nested = {}
  each_member(s, function(key, vs, ve)
    if (key == "error" or key == "detail") and byte(s, vs) == 123 then
      nested[#nested + 1] = sub(s, vs, ve - 1)
    elseif key == "type" or key == "code" then
      found[key] = token(sub(s, vs, ve - 1))
    end
  end)
  for _, obj in ipairs(nested) do
    local inner = {}
    read_object(obj, inner)
    for k, v in pairs(inner) do found[k] = v end
  end
  return found
end

local function active_limit(headers)
  local family = headers:get("x-codex-active-limit")
  if family == nil or family == "codex" or #family > 64 or find(family, '^[%w_%.%-]+$') == nil then return end
  local packed = {}
  for _, slot in ipairs({"primary", "secondary"}) do
    local base = "x-" .. family .. "-" .. slot .. "-"
    local used = headers:get(base .. "used-percent")
    if used ~= nil then
      local parts = {family, slot, used}
      for _, f in ipairs({"window-minutes", "reset-at", "reset-after-seconds"}) do
        local v = headers:get(base .. f)
        parts[#parts + 1] = (v ~= nil and find(v, '^[%d%.]+$')) and v or "-"
      end
      if find(used, '^[%d%.]+$') then packed[#packed + 1] = table.concat(parts, " ") end
    end
  end
  if #packed > 0 then headers:replace("ACTIVE_LIMIT_HEADER", table.concat(packed, " ")) end
end

function envoy_on_response(handle)
  local headers = handle:headers()
  headers:remove("UPSTREAM_ERROR_HEADER")
  headers:remove("ACTIVE_LIMIT_HEADER")
  active_limit(headers)
  local status = tonumber(headers:get(":status")) or 0
  if status < 400 then return end
  local found = {}
  local body = handle:body()
  headers = handle:headers()  -- the earlier object is out of scope once body() has waited for the body
  if body ~= nil and body:length() > 0 then
    local encoding = headers:get("content-encoding")
    if encoding == nil or encoding == "identity" then
      found = error_fields(body:getBytes(0, math.min(body:length(), MAX_READ)))
    end
  end
  local parts = {"status=" .. status}
  if status == 429 then
    -- The request scanner's model: a limit may belong to the model rather than the account.
    local request = handle:streamInfo():dynamicMetadata():get("NS_REQUEST")
    if request ~= nil then found.model = token(request["REQUEST_MODEL"]) end
  end
  for _, name in ipairs({"type", "code", "plan", "resets_at", "resets_in", "model"}) do
    if found[name] ~= nil then parts[#parts + 1] = name .. "=" .. found[name] end
  end
  headers:replace("UPSTREAM_ERROR_HEADER", table.concat(parts, " "))
  local dead = DEAD[found.code or ""] or DEAD[found.type or ""]
  if status == 401 or status == 402 or (status == 403 and dead) then
    local reply = 'GATEWAY_REPLY'
    headers:replace(":status", "503")
    headers:replace("content-type", "application/json")
    headers:replace("retry-after", "1")
    headers:remove("content-encoding")
    headers:replace("content-length", tostring(#reply))
    if body ~= nil then
      body:setBytes(reply)
    end
  end
end
"""
)

UPSTREAM_ERRORS_LUA = (
    UPSTREAM_ERRORS_LUA.replace("UPSTREAM_ERROR_HEADER", gc.UPSTREAM_ERROR_HEADER)
    .replace("ACTIVE_LIMIT_HEADER", gc.ACTIVE_LIMIT_HEADER)
    .replace("NS_REQUEST", gc.NS_REQUEST)
    .replace("REQUEST_MODEL", gc.REQUEST_MODEL)
    .replace("GATEWAY_REPLY", json.dumps(_NO_ACCOUNT_REPLY, separators=(",", ":")))
)
