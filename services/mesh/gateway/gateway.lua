-- The gateway's own edge logic, run by Envoy's Lua filter (first in the chain).
-- Request:  drops client-sent identity headers (only jwt_authn / ext_authz may set them),
--           takes X-Correlation-ID from the client when it is sane or uses Envoy's request id,
--           flags X-API-Key requests so that ext_authz runs only for them.
-- Response: echoes X-Correlation-ID, adds security headers, hides gRPC plumbing headers from
--           REST clients, and turns a service's `x-agentmesh-error` trailer (JSON prepared by
--           mesh.runtime.errors) into the REST error envelope. Envoy's own errors get the same
--           envelope from local_reply_config instead.

local IDENTITY_HEADERS = {"x-agentmesh-tenant-id", "x-agentmesh-user-id", "x-agentmesh-scopes"}
local SECURITY_HEADERS = {
  ["x-content-type-options"] = "nosniff",
  ["x-frame-options"] = "DENY",
  ["referrer-policy"] = "no-referrer",
}

function envoy_on_request(handle)
  local headers = handle:headers()
  for _, name in ipairs(IDENTITY_HEADERS) do
    headers:remove(name)
  end
  local cid = headers:get("x-correlation-id")
  if cid == nil or #cid == 0 or #cid > 128 or string.find(cid, "[^%w%-%._:]") then
    cid = headers:get("x-request-id") or ""
    headers:replace("x-correlation-id", cid)
  end
  local metadata = handle:streamInfo():dynamicMetadata()
  metadata:set("agentmesh", "correlation_id", cid)
  if headers:get("x-api-key") ~= nil and headers:get("authorization") == nil then
    metadata:set("agentmesh", "api_key", true)
  end
end

function envoy_on_response(handle)
  local headers = handle:headers()
  local meta = handle:streamInfo():dynamicMetadata():get("agentmesh") or {}
  local cid = meta["correlation_id"] or ""
  headers:replace("x-correlation-id", cid)
  for name, value in pairs(SECURITY_HEADERS) do
    headers:replace(name, value)
  end
  local timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ")
  if headers:get(":status") == "403" then
    -- jwt_authn answers 403 for a token with the wrong audience. A 403 from the scope check
    -- always follows a verified identity (jwt_authn or ext_authz metadata); without one the
    -- caller is not authenticated, which is a 401.
    local dynamic = handle:streamInfo():dynamicMetadata()
    if dynamic:get("envoy.filters.http.jwt_authn") == nil
        and dynamic:get("envoy.filters.http.ext_authz") == nil then
      headers:replace(":status", "401")
      headers:replace("content-type", "application/json")
      handle:body():setBytes('{"error":"UNAUTHENTICATED","message":"the token is not valid ' ..
          'for this API (audience)","details":{},"correlation_id":"' .. cid ..
          '","timestamp":"' .. timestamp .. '"}')
      return
    end
  end
  local content_type = headers:get("content-type") or ""
  if string.sub(content_type, 1, 16) == "application/grpc" then
    headers:remove("x-agentmesh-error")
    return
  end
  headers:remove("grpc-status")
  headers:remove("grpc-message")
  headers:remove("grpc-accept-encoding")
  headers:remove("grpc-encoding")
  local err = headers:get("x-agentmesh-error")
  if err == nil then
    return
  end
  headers:remove("x-agentmesh-error")
  local envelope = string.sub(err, 1, -2) .. ',"correlation_id":"' .. cid ..
      '","timestamp":"' .. timestamp .. '"}'
  handle:body():setBytes(envelope)
  headers:replace("content-type", "application/json")
end
