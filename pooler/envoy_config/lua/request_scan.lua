-- The request scanner (filter pooler.request_scan) on JSON POST bodies, replacing json_to_metadata: that filter
-- builds a full DOM of the ~40 KB Codex body and cost Envoy ~60% of its proxy throughput; this walk only visits
-- the top level. Writes into the request namespace (gateway_contract.NS_REQUEST):
-- - `model` and `prompt_cache_key`: the string values of those top-level keys (every member is visited and the
--   last of a repeated key wins, as in the upstream's parser; keys are compared after decoding escapes, so
--   `"mod\u0065l"` is `model`). Printable ASCII only (anything else becomes `?`, which no allow-list holds),
--   at most 256 bytes.
-- - `file_ids`: `"file_id": "..."` references anywhere (a plain substring search first, memchr speed; escaped
--   quotes inside strings, e.g. a prompt quoting JSON, do not match).
-- - `sealed_state`: "1" when the body has an `"encrypted_content"` key anywhere (reasoning or compaction items
--   sealed to the account that produced them; a plain substring search, like `file_ids`).
-- - `invalid_json`: "1" when an uncompressed body is not a JSON object (the top-level walk failed; nothing else
--   is set). A compressed body (`content-encoding` other than identity) is never marked: its bytes are not JSON.
-- - `scanned`: "1" on every request the filter sees, the ext_proc's proof that it ran.
-- Runs after json.lua. The "${NAME}" strings are gateway_contract constants, filled in by the renderer.

local FIELDS = {["${REQUEST_MODEL}"] = true, ["${REQUEST_PROMPT_CACHE_KEY}"] = true}

local function safe(value)
  return sub((string.gsub(value, '[^\32-\126]', '?')), 1, 256)
end

function envoy_on_request(handle)
  -- Proof for the ext_proc that this filter ran: a route whose row scans bodies is refused without it. (A
  -- wrapper object must not outlive the body() yield below: Lua objects are scoped to one resumption.)
  handle:streamInfo():dynamicMetadata():set("${NS_REQUEST}", "${REQUEST_SCANNED}", "1")
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
    if plain then metadata:set("${NS_REQUEST}", "${REQUEST_INVALID_JSON}", "1") end
    return
  end
  for key, value in pairs(found) do metadata:set("${NS_REQUEST}", key, safe(value)) end
  if find(s, '"encrypted_content"', 1, true) ~= nil then metadata:set("${NS_REQUEST}", "${REQUEST_SEALED_STATE}", "1") end
  if find(s, '"file_id"', 1, true) == nil then return end
  local ids, n = {}, 0
  for id in string.gmatch(s, '"file_id"%s*:%s*"([%w_%-]+)"') do
    n = n + 1
    ids[n] = id
    if n >= 16 then break end
  end
  if n > 0 then metadata:set("${NS_REQUEST}", "${REQUEST_FILE_IDS}", table.concat(ids, ",")) end
end
