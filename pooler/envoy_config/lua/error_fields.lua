-- Error-answer helpers the scripts that read upstream errors share (upstream_errors.lua: non-2xx bodies;
-- ws_usage.lua: websocket `error` frames): the renderer puts this file after json.lua and before them.

local ERROR_FIELDS = {type = "type", code = "code", plan_type = "plan", resets_at = "resets_at",
                      resets_in_seconds = "resets_in"}
local ERROR_PARTS = {"type", "code", "plan", "resets_at", "resets_in", "model"}

-- A safe token (letters, digits, _ . -) of at most 64 bytes, else nil: never free text from a body.
local function token(raw)
  if type(raw) ~= "string" then return nil end
  if byte(raw, 1) == 34 then raw = sub(raw, 2, -2) end
  if #raw == 0 or #raw > 64 or find(raw, '^[%w_%.%-]+$') == nil then return nil end
  return raw
end

local function read_object(s, found)
  each_member(s, function(key, vs, ve)
    local name = ERROR_FIELDS[key]
    if name ~= nil and found[name] == nil then found[name] = token(sub(s, vs, ve - 1)) end
  end)
end

-- The error's safe fields: the `error` (or `detail`) object's, over the top level's own `type`/`code`.
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

-- `status=<n> type=... code=...`: the error header's format (pooler.gateway.evidence.parse_upstream_error).
local function error_summary(status, found)
  local parts = {"status=" .. status}
  for _, name in ipairs(ERROR_PARTS) do
    if found[name] ~= nil then parts[#parts + 1] = name .. "=" .. found[name] end
  end
  return table.concat(parts, " ")
end
