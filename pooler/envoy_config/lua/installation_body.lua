-- The Codex clusters' upstream filter (after the ext_proc), once per attempt: the client's installation id in a
-- JSON request body becomes the attempt's account's own, as the ext_proc makes it in the headers
-- (pooler/gateway/upstream_identity.py). Codex CLI 0.171.0 names it twice in `client_metadata`:
-- `x-codex-installation-id` and the `installation_id` inside the `x-codex-turn-metadata` string. The id of the
-- `x-codex-installation-id` member is replaced wherever the body repeats it, only when it and the
-- account's id (`${ROUTING_ACCOUNT_INSTALLATION}` in the routing metadata, set by the ext_proc for this attempt)
-- are both UUIDs: same length (no content-length change), and no short value that would match elsewhere. Any
-- other body (not JSON, compressed, no installation id, no account id) is not read. Runs after json.lua.

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

-- The UUID of the body's "x-codex-installation-id" member, else nil. A plain find, not a walk of the ~40 KB body
-- (measured: ~125 us per Codex body for the walk in LuaJIT, a few us for the find): the quoted key followed by a
-- colon cannot occur inside a JSON string (its quotes would be escaped), and Codex puts it only in
-- client_metadata; should another object carry it, its id is replaced as well, never anything else.
local function client_installation(s)
  local _, e = find(s, '"x-codex-installation-id"', 1, true)
  if e == nil then return nil end
  local value = string.match(s, '^%s*:%s*"([%x%-]+)"', e + 1)
  if value == nil or find(value, UUID) == nil then return nil end
  return value
end

local function replace_all(s, old, new)
  local parts, from = {}, 1
  while true do
    local i, j = find(s, old, from, true)
    if i == nil then break end
    parts[#parts + 1] = sub(s, from, i - 1)
    parts[#parts + 1] = new
    from = j + 1
  end
  if from == 1 then return s end
  parts[#parts + 1] = sub(s, from)
  return table.concat(parts)
end

function envoy_on_request(handle)
  local routing = handle:streamInfo():dynamicMetadata():get("${NS_ROUTING}")
  local mine = routing ~= nil and routing["${ROUTING_ACCOUNT_INSTALLATION}"] or nil
  if type(mine) ~= "string" or find(mine, UUID) == nil then return end
  local headers = handle:headers()
  local kind = headers:get("content-type")
  local encoding = headers:get("content-encoding")
  if kind == nil or find(kind, "json", 1, true) == nil or (encoding ~= nil and encoding ~= "identity") then
    return
  end
  local body = handle:body()
  if body == nil or body:length() == 0 then return end
  local s = body:getBytes(0, body:length())
  local theirs = client_installation(s)
  if theirs == nil or theirs == mine then return end
  body:setBytes(replace_all(s, theirs, mine))
end
