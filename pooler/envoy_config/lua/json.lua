-- JSON helpers the pooler's Envoy Lua scripts start with: the renderer (pooler/envoy_config/lua/__init__.py)
-- puts this file before each script, as one chunk, so these locals are in scope there. Positions are 1-based
-- byte indexes. Strings are skipped by finds that jump from quote to backslash (C speed); only the structure
-- between strings is walked in Lua.

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
  local i = find(s, '[^ \t\r\n]')
  if i == nil or byte(s, i) ~= 123 then return false end
  i = i + 1
  while true do
    i = find(s, '[^ \t\r\n]', i)
    if i == nil then return false end
    local c = byte(s, i)
    if c == 125 then return true end
    if c == 44 then
      i = find(s, '[^ \t\r\n]', i + 1)
      if i == nil then return false end
    end
    if byte(s, i) ~= 34 then return false end
    local ke = skip_string(s, i)
    if ke == nil then return false end
    local key = sub(s, i + 1, ke - 2)
    i = find(s, '[^ \t\r\n]', ke)
    if i == nil or byte(s, i) ~= 58 then return false end
    local vs = find(s, '[^ \t\r\n]', i + 1)
    if vs == nil then return false end
    local ve = skip_value(s, vs)
    if ve == nil then return false end
    visit(key, vs, ve)
    i = ve
  end
end

local ESCAPES = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t'}

local function utf8_char(cp)
  if cp < 128 then return string.char(cp) end
  if cp < 2048 then return string.char(192 + math.floor(cp / 64), 128 + cp % 64) end
  return string.char(224 + math.floor(cp / 4096), 128 + math.floor(cp / 64) % 64, 128 + cp % 64)
end

-- The text of a JSON string's raw contents, escapes decoded in one pass (so `\\u0041` stays `\u0041`); nil
-- for an invalid escape. Surrogate pairs are not joined: such text never equals a key or model name we know.
local function unescape(raw)
  local j = find(raw, '\\', 1, true)
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
    j = find(raw, '\\', i, true)
  end
  out[#out + 1] = sub(raw, i)
  return table.concat(out)
end
