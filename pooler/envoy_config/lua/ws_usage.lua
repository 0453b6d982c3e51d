-- Websocket token accounting (filter pooler.ws_usage, docs/ARCHITECTURE.md "Token counts of websocket turns"):
-- on the websocket route only, reads the server -> client frames without changing a byte and adds the usage of
-- every `response.completed` event to the connection's totals in the `${NS_USAGE}` namespace, the same keys the
-- SSE routes' sse_to_metadata writes; the downstream access log, written when the connection closes, carries
-- them into the request row. One connection is one row, its tokens the sum over its turns.
-- Cheap by construction: a text message's first HEAD bytes are searched for `"response.completed"` (a plain
-- substring; an escaped quote inside a string value cannot match) and every other message is not read further;
-- only a completed event's payload is kept (its last KEEP bytes: `usage` follows the output), and only its
-- `usage` object is matched, never the whole JSON parsed. Compressed frames (a negotiated extension) are not
-- read: such a connection has no token counts (the ext_proc drops the permessage-deflate offer of every upgrade).
-- An `error` frame (`{"type":"error","status":429,"error":{...},"headers":{...}}`, found the same way in a
-- message's head) is kept too (at most ERROR_MAX bytes): its status and error fields go to `${USAGE_WS_ERROR}` in
-- the error header's format, its limit headers to `${USAGE_WS_ERROR_HEADERS}`, so the access log learns from it
-- what it would from the same status and body. The connection's last error frame is the one logged.

local HEAD = 128
local KEEP = 262144
local ERROR_MAX = 16384
local ERROR_TYPE = '"type"%s*:%s*"error"'
local MAX_HEADERS = 32
local KEYS = {
  {"input_tokens", '"input_tokens"%s*:%s*(%d+)'},
  {"cached_tokens", '"cached_tokens"%s*:%s*(%d+)'},
  {"output_tokens", '"output_tokens"%s*:%s*(%d+)'},
  {"reasoning_tokens", '"reasoning_tokens"%s*:%s*(%d+)'},
  {"total_tokens", '"total_tokens"%s*:%s*(%d+)'},
}

-- The token counts of a completed event's payload (or its tail): the first `"usage":{...}` object holding
-- input_tokens; nil when there is none (usage null, or cut off).
local function usage_of(payload)
  local from = 1
  while true do
    local s, e = string.find(payload, '"usage"%s*:%s*{', from)
    if s == nil then return nil end
    local object = string.match(payload, "^%b{}", e)
    if object ~= nil and string.find(object, '"input_tokens"', 1, true) then
      local counts = {}
      for _, key in ipairs(KEYS) do
        local n = string.match(object, key[2])
        if n ~= nil then counts[key[1]] = tonumber(n) end
      end
      return counts
    end
    from = e + 1
  end
end

-- A text message being read: `parts` of its payload so far (nil once it is known to be neither a completed
-- event nor an error frame), `size` their length, `kind` nil until its first HEAD bytes were seen.
local function new_message()
  return {parts = {}, size = 0, kind = nil}
end

local function kind_of(head)
  if string.find(head, '"response.completed"', 1, true) then return "completed" end
  if string.find(head, ERROR_TYPE) then return "error" end
  return false
end

local function feed(message, bytes)
  if message.parts == nil then return end
  local parts = message.parts
  parts[#parts + 1] = bytes
  message.size = message.size + #bytes
  if message.kind == nil and message.size >= HEAD then
    message.kind = kind_of(string.sub(table.concat(parts), 1, HEAD))
    if not message.kind then message.parts = nil end
  elseif message.kind == "completed" and message.size > 2 * KEEP then
    message.parts = {string.sub(table.concat(parts), -KEEP)}
    message.size = KEEP
  elseif message.kind == "error" and message.size > ERROR_MAX then
    message.parts = nil  -- not an error frame the upstream sends (they are small): not read
  end
end

-- The frame's `headers` object as `name=value` words: quota windows (x-<family>-*) and retry-after, safe tokens.
local function error_headers(s)
  local words = {}
  each_member(s, function(key, vs, ve)
    local name = string.lower(key)
    local value = token(sub(s, vs, ve - 1))
    if #words < MAX_HEADERS and value ~= nil and (find(name, '^x%-[%w%-]+$') or name == "retry-after") then
      words[#words + 1] = name .. "=" .. value
    end
  end)
  return table.concat(words, " ")
end

-- An error frame's (summary, headers), nil when it names no status.
local function error_of(payload)
  local status, headers = nil, ""
  each_member(payload, function(key, vs, ve)
    if key == "status" then
      status = tonumber(string.match(sub(payload, vs, ve - 1), "^%d+$"))
    elseif key == "headers" and byte(payload, vs) == 123 then
      headers = error_headers(sub(payload, vs, ve - 1))
    end
  end)
  if status == nil then return nil end
  local found = error_fields(payload)
  if found.type == "error" then found.type = nil end  -- the frame's own type, not the error's
  return error_summary(status, found), headers
end

-- A finished message: ("completed", its usage) for a completed event, ("error", summary, headers) for an error
-- frame, else nil.
local function finish(message)
  if message.parts == nil then return nil end
  local payload = table.concat(message.parts)
  local kind = message.kind
  if kind == nil then kind = kind_of(payload) end
  if kind == "completed" then return kind, usage_of(payload) end
  if kind == "error" then return kind, error_of(payload) end
  return nil
end

function envoy_on_response(handle)
  local headers = handle:headers()
  if headers:get(":status") ~= "101" or headers:get("sec-websocket-extensions") ~= nil then return end
  local totals = {}
  local function add(counts)
    -- Fetched anew each time: Envoy's wrapper objects are only valid until the script next yields for a chunk.
    local metadata = handle:streamInfo():dynamicMetadata()
    for key, n in pairs(counts) do
      totals[key] = (totals[key] or 0) + n
      metadata:set("${NS_USAGE}", key, totals[key])
    end
  end
  local held = ""       -- an unfinished frame header
  local left = 0        -- payload bytes of the current frame still to come
  local message = nil   -- the text message being read (fragments continue it; control frames interleave)
  local reading = false -- the current frame's payload belongs to `message`
  local last = false    -- the current frame ends `message`
  local function end_message()
    if reading then
      local kind, value, headers = finish(message)
      if kind == "completed" and value ~= nil then
        add(value)
      elseif kind == "error" and value ~= nil then
        local metadata = handle:streamInfo():dynamicMetadata()
        metadata:set("${NS_USAGE}", "${USAGE_WS_ERROR}", value)
        metadata:set("${NS_USAGE}", "${USAGE_WS_ERROR_HEADERS}", headers)
      end
    end
    message, reading, last = nil, false, false
  end
  for chunk in handle:bodyChunks() do
    local n = chunk:length()
    if held == "" and left >= n and (not reading or message.parts == nil) then
      left = left - n  -- inside a payload nobody reads: the bytes are not even copied
    else
      local s = held .. chunk:getBytes(0, n)
      held = ""
      local pos, len = 1, #s
      while pos <= len do
        if left > 0 then
          local take = math.min(left, len - pos + 1)
          if reading then feed(message, string.sub(s, pos, pos + take - 1)) end
          pos = pos + take
          left = left - take
        else
          local b0, b1, hlen, plen = frame_head(s, pos)
          if b0 == nil then
            held = string.sub(s, pos)
            break
          end
          local opcode, fin = b0 % 16, b0 >= 128
          if opcode == 1 then
            message = new_message()
          elseif opcode == 2 then
            message = nil
          end
          -- Data frames (text, continuation) of a text message; a masked or compressed (RSV1) frame is not read.
          reading = opcode < 8 and message ~= nil and b1 < 128 and b0 % 128 < 64
          last = opcode < 8 and fin
          pos = pos + hlen
          left = plen
        end
        if left == 0 and last then end_message() end
      end
    end
    -- A frame whose payload ended exactly at a chunk's edge on the fast path.
    if left == 0 and last then end_message() end
  end
end
