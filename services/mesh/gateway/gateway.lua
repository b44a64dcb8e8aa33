-- The gateway's own edge logic, run by Envoy's Lua filter (first in the chain).
-- Request:  drops client-sent identity headers (only jwt_authn / ext_authz may set them),
--           takes X-Correlation-ID from the client when it is sane or uses Envoy's request id,
--           flags X-API-Key requests so that ext_authz runs only for them.
-- Response: echoes X-Correlation-ID, adds security headers, hides gRPC plumbing headers from
--           REST clients, and turns a service's `x-agentmesh-error` trailer (JSON prepared by
--           mesh.runtime.errors) into the REST error envelope. Envoy's own errors get the same
--           envelope from local_reply_config instead.

-- Names shared with the Envoy config and the Python runtime are filled in by
-- mesh.gateway.config when it generates the bootstrap (each `__AGENTMESH_*__` below): they
-- are defined once, in mesh.runtime.context and mesh.runtime.errors.
local IDENTITY_HEADERS = __AGENTMESH_IDENTITY_HEADERS__
local ERROR_TRAILER = __AGENTMESH_ERROR_TRAILER__
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
  if reject_undeclared_method(handle, headers) then
    return
  end
  if headers:get("x-api-key") ~= nil and headers:get("authorization") == nil then
    metadata:set("agentmesh", "api_key", true)
  end
end

function envoy_on_response(handle)
  local headers = handle:headers()
  complete_method_not_allowed(headers)
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
    headers:remove(ERROR_TRAILER)
    return
  end
  headers:remove("grpc-status")
  headers:remove("grpc-message")
  headers:remove("grpc-accept-encoding")
  headers:remove("grpc-encoding")
  local err = headers:get(ERROR_TRAILER)
  if err == nil then
    return
  end
  headers:remove(ERROR_TRAILER)
  set_conflict_status(headers, err)
  local envelope = string.sub(err, 1, -2) .. ',"correlation_id":"' .. cid ..
      '","timestamp":"' .. timestamp .. '"}'
  handle:body():setBytes(envelope)
  headers:replace("content-type", "application/json")
end

-- 405 with an `Allow` header for a method the contract does not declare on a path it does
-- declare (TRACE, PATCH, ... on /api/v1/agents). The transcoder alone would answer 404.
-- ROUTES is generated from the contract: templates grouped by segment count and first three
-- segments, so a request compares a handful of patterns. CORS preflights pass to the cors filter.
local ROUTES = __AGENTMESH_ROUTES__
local WILDCARD_ROUTES = __AGENTMESH_WILDCARD_ROUTES__
local UNDECLARED_METHOD_HEADER = __AGENTMESH_UNDECLARED_METHOD_HEADER__

local function route_key(path)
  local count, head = 0, {}
  for segment in string.gmatch(path, "[^/]+") do
    count = count + 1
    if count <= 3 then
      head[count] = segment
    end
  end
  return count .. ":" .. table.concat(head, "/")
end

local function allowed_methods(path)
  local found, allow = false, {}
  local function visit(routes)
    for _, route in ipairs(routes or {}) do
      if string.find(path, route[1]) then
        found = true
        for _, method in ipairs(route[2]) do
          allow[method] = true
        end
      end
    end
  end
  visit(ROUTES[route_key(path)])
  visit(WILDCARD_ROUTES)
  return found, allow
end

function method_list(allow)
  local names = {}
  for name, _ in pairs(allow) do
    names[#names + 1] = name
  end
  table.sort(names)
  return table.concat(names, ", ")
end

function reject_undeclared_method(handle, headers)
  local method = headers:get(":method")
  if method == "OPTIONS" and headers:get("access-control-request-method") ~= nil then
    return false
  end
  local path = string.match(headers:get(":path") or "", "^[^?#]*")
  local found, allow = allowed_methods(path)
  if not found or allow[method] then
    return false
  end
  local names = method_list(allow)
  handle:respond({[":status"] = "405", ["allow"] = names},
                 "method " .. method .. " is not allowed here; allowed: " .. names)
  return true
end

-- Envoy's own 405 for QUERY (see mesh.gateway.config._query_method_mapper) names the path in
-- UNDECLARED_METHOD_HEADER; the `Allow` header is added here, where the routes are known.
function complete_method_not_allowed(headers)
  local path = headers:get(UNDECLARED_METHOD_HEADER)
  if path == nil then
    return
  end
  headers:remove(UNDECLARED_METHOD_HEADER)
  local _, allow = allowed_methods(string.match(path, "^[^?#]*"))
  headers:replace("allow", method_list(allow))
end

-- FAILED_PRECONDITION ("the state forbids the change": the last admin, a deployed agent) is a
-- 409 Conflict, as the OpenAPI document says; the transcoder's gRPC mapping would give 400,
-- which reads as "your request is malformed".
function set_conflict_status(headers, err)
  if string.find(err, '"error":"FAILED_PRECONDITION"', 1, true) then
    headers:replace(":status", "409")
  end
end
