-- The Codex responses cluster's guard, right after its ext_proc. That ext_proc fails open, so that an answer it
-- holds for its first event goes on when the process holding it dies; the request side must still fail closed.
-- An attempt the ext_proc did not decide (its stream failed or timed out before answering: the request still
-- carries what the client sent) has no `${DECIDED_HEADER}` and is refused here with the 500 a fail-closed
-- ext_proc gives (the local reply turns it into a JSON 503 gateway_unavailable), never sent upstream. Every route
-- removes a client's copy of the header; this filter removes the ext_proc's, so the upstream never sees it and a
-- retried attempt (header changes carry over to the next attempt) needs its own decision. Runs after json.lua.

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  if headers:get("${DECIDED_HEADER}") == nil then
    request_handle:respond({[":status"] = "500"}, "")
    return
  end
  headers:remove("${DECIDED_HEADER}")
end
