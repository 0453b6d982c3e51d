-- The upstream filter of every Codex cluster (after the ext_proc, before the codec), once per attempt:
-- - any response whose `x-codex-active-limit` names a family other than `codex`: that family's windows packed
--   into ACTIVE_LIMIT_HEADER (`<family> <slot> <used> <minutes> <reset-at> <reset-after>`, `-` for a missing
--   value), because the access log carries headers by fixed names only;
-- - a response of status >= 400 only: its (small) body is buffered and the `error` (or `detail`) object's
--   `type`, `code`, `plan_type`, `resets_at`, `resets_in_seconds` (or top-level `type`/`code`) go into
--   UPSTREAM_ERROR_HEADER for the per-attempt access log. A 2xx/101 body is never touched (no buffering: the
--   SSE stream flows as before; a Lua `body()` on a stream would hold it whole).
-- - an answer about the account's credentials (401; 402; 403 with a dead-account code) becomes a 503 with the
--   gateway's own `no_eligible_account` body and `retry-after`: the router retries it on another account (503
--   is retriable), and if none is left the client gets a retryable gateway error, never another account's 401.
--   The original status stays in UPSTREAM_ERROR_HEADER.
-- Runs after json.lua and error_fields.lua. The "${NAME}" strings are pooler.gateway_contract constants, filled in by the renderer;
-- the reply is extproc.responses' no_eligible_account (tests/unit/test_evidence_policy.py holds them equal).

local DEAD = {account_deactivated = true, deactivated_workspace = true, token_invalidated = true,
              app_session_terminated = true}
local MAX_READ = 16384

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
  if #packed > 0 then headers:replace("${ACTIVE_LIMIT_HEADER}", table.concat(packed, " ")) end
end

function envoy_on_response(handle)
  local headers = handle:headers()
  headers:remove("${UPSTREAM_ERROR_HEADER}")
  headers:remove("${ACTIVE_LIMIT_HEADER}")
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
  if status == 429 then
    -- The request scanner's model: a limit may belong to the model rather than the account.
    local request = handle:streamInfo():dynamicMetadata():get("${NS_REQUEST}")
    if request ~= nil then found.model = token(request["${REQUEST_MODEL}"]) end
  end
  headers:replace("${UPSTREAM_ERROR_HEADER}", error_summary(status, found))
  local dead = DEAD[found.code or ""] or DEAD[found.type or ""]
  if status == 401 or status == 402 or (status == 403 and dead) then
    local reply = '{"error":{"message":"No upstream account can serve this request right now.","type":"server_error","param":null,"code":"no_eligible_account"}}'
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
