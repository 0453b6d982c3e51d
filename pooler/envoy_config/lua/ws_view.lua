-- Pooled view on websocket frames (filter pooler.ws_rate_limits, docs/GATEWAY_SURFACE.md): on the websocket
-- route only, server -> client text frames whose top-level JSON `type` is `codex.rate_limits` get the pool's
-- `plan_type` and `rate_limits` (from the WS_VIEW_RESPONSE_HEADER the downstream header_mutation put on the
-- 101; this filter removes it). Streaming: frames are parsed across chunk boundaries; a small unfragmented text
-- frame is held until complete (bytes of every other frame flow on as they come, payloads not even read); a
-- rewritten frame is re-encoded with its new length. Everything else passes byte for byte. Compressed frames
-- (RSV1) are never touched: the ext_proc drops the permessage-deflate offer when the view is on, and an upgrade
-- that still negotiated an extension is left alone.
-- Runs after json.lua. The "${NAME}" strings are pooler.gateway.ratelimit_view constants, filled in by the renderer.

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
  local view = headers:get("${WS_VIEW_RESPONSE_HEADER}")
  if view == nil then return end
  headers:remove("${WS_VIEW_RESPONSE_HEADER}")
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
