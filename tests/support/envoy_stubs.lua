-- Test stand-ins for the parts of Envoy's Lua filter API the pooler's scripts call (handle, header map, buffer,
-- stream info), recording what a script does, and `emit` to report values back to the Python test.
-- tests/support/luajit.py runs this file, then a rendered script (pooler.envoy_config.lua), then the test's
-- driver code, as one chunk: the script's locals (each_member, unescape, ...) are in scope of the driver.

-- Single-valued headers, name -> value (the scripts only get and remove); removals show in `values`.
local function header_map(values)
  local map = {}
  function map:get(name) return values[name] end
  function map:remove(name) values[name] = nil end
  return map
end

local function buffer(bytes)
  local b = {bytes = bytes}
  function b:length() return #self.bytes end
  -- Envoy's index is 0-based.
  function b:getBytes(index, length) return string.sub(self.bytes, index + 1, index + length) end
  function b:setBytes(s) self.bytes = s end
  return b
end

-- Stream info whose dynamic metadata records what a script sets; returns it and the table
-- metadata[namespace][key] = value. Like Envoy's, a metadata object is valid only until the script yields for
-- its next body chunk (`scope()` tells which chunk the script is at; nil: it never yields).
local function stream_info(scope, initial)
  local metadata = initial or {}
  local info = {}
  function info:dynamicMetadata()
    local dynamic, at = {}, scope and scope()
    function dynamic:get(namespace) return metadata[namespace] end
    function dynamic:set(namespace, key, value)
      assert((scope and scope()) == at, "object used outside of proper scope")
      metadata[namespace] = metadata[namespace] or {}
      metadata[namespace][key] = value
    end
    return dynamic
  end
  return info, metadata
end

-- A request handle over `headers` and `body` (nil: a request without one), with the dynamic metadata `initial`
-- (optional) already set; returns it, the table metadata[namespace][key] = value of the stream's dynamic
-- metadata, and a function giving the body as the script left it.
local function request_handle(headers, body, initial)
  local info, metadata = stream_info(nil, initial)
  local handle = {}
  local buffered = nil
  function handle:headers() return header_map(headers) end
  function handle:body()
    if body == nil then return nil end
    buffered = buffered or buffer(body)
    return buffered
  end
  function handle:streamInfo() return info end
  -- A local reply: its status (the scripts send no headers beyond it) and body, kept on the handle.
  function handle:respond(reply_headers, reply_body)
    handle.replied = {status = reply_headers[":status"], body = reply_body}
  end
  return handle, metadata, function() return buffered and buffered.bytes or body end
end

-- A response handle over `headers` whose body arrives as the strings `chunks`; returns it, a function giving
-- what the client receives (every chunk as the script left it, concatenated) and the dynamic metadata table.
local function response_handle(headers, chunks)
  local buffers = {}
  for i, c in ipairs(chunks) do buffers[i] = buffer(c) end
  local i = 0
  local info, metadata = stream_info(function() return i end)
  local handle = {}
  function handle:headers() return header_map(headers) end
  function handle:streamInfo() return info end
  function handle:bodyChunks()
    return function()
      i = i + 1
      return buffers[i]
    end
  end
  local function received()
    local out = {}
    for i, b in ipairs(buffers) do out[i] = b.bytes end
    return table.concat(out)
  end
  return handle, received, metadata
end

-- Reports values, one record each: n (nil), t / f, i<integer>, s<length>:<bytes>, m<count> then that many
-- key, value pairs (a table with string keys, in key order).
local function emit(...)
  for k = 1, select("#", ...) do
    local v = select(k, ...)
    local t = type(v)
    if v == nil then
      io.write("n\n")
    elseif t == "boolean" then
      io.write(v and "t\n" or "f\n")
    elseif t == "number" then
      io.write("i", tostring(v), "\n")
    elseif t == "string" then
      io.write("s", #v, ":", v, "\n")
    elseif t == "table" then
      local keys = {}
      for key in pairs(v) do keys[#keys + 1] = key end
      table.sort(keys)
      io.write("m", #keys, "\n")
      for _, key in ipairs(keys) do emit(key, v[key]) end
    else
      error("emit: cannot report a " .. t)
    end
  end
end
