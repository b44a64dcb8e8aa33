-- The gateway's own edge logic, run by Envoy's Lua filter (first in the chain).
-- Request:  drops client-sent identity headers (only jwt_authn / ext_authz may set them),
--           takes X-Correlation-ID from the client when it is sane or uses Envoy's request id,
--           flags X-API-Key requests so that ext_authz runs only for them, refuses REST bodies
--           that are not JSON (415), and drains bodies over MAX_REQUEST_BYTES (413, see below).
-- MAX_REQUEST_BYTES is prepended by mesh.gateway.config.
-- Response: echoes X-Correlation-ID, adds security headers, hides gRPC plumbing headers from
--           REST clients, and turns a service's `x-agentmesh-error` trailer (JSON prepared by
--           mesh.runtime.errors) into the REST error envelope. Envoy's own errors get the same
--           envelope from local_reply_config instead.

-- Names shared with the Envoy config and the Python runtime are filled in by
-- mesh.gateway.config when it generates the bootstrap (each `__AGENTMESH_*__` below): they
-- are defined once, in mesh.runtime.context and mesh.runtime.errors.
local IDENTITY_HEADERS = __AGENTMESH_IDENTITY_HEADERS__
local ERROR_TRAILER = __AGENTMESH_ERROR_TRAILER__
local GRPC_NAMES = {
  [1] = "CANCELLED", [2] = "INTERNAL", [3] = "INVALID_ARGUMENT", [4] = "DEADLINE_EXCEEDED",
  [5] = "NOT_FOUND", [6] = "ALREADY_EXISTS", [7] = "PERMISSION_DENIED", [8] = "RESOURCE_EXHAUSTED",
  [9] = "FAILED_PRECONDITION", [10] = "ABORTED", [11] = "OUT_OF_RANGE", [12] = "UNIMPLEMENTED",
  [13] = "INTERNAL", [14] = "UNAVAILABLE", [15] = "INTERNAL", [16] = "UNAUTHENTICATED",
}

local function envelope(error, message, cid, timestamp)
  return '{"error":"' .. error .. '","message":"' .. message .. '","details":{},' ..
      '"correlation_id":"' .. cid .. '","timestamp":"' .. timestamp .. '"}'
end

-- A body over the limit: the buffer filter would answer 413 at once and close the connection
-- while the client is still sending, which the client sees as a reset. Instead the excess is
-- read and dropped here (the first dropped chunk becomes invalid JSON, so nothing downstream
-- can act on the truncated body) and envoy_on_response turns the answer into the 413 envelope.
local function drain_oversized(handle, headers)
  local length = tonumber(headers:get("content-length") or "")
  if length ~= nil and length <= MAX_REQUEST_BYTES then
    return
  end
  -- Too long, or of unknown length (chunked HTTP/1.1, HTTP/2 without content-length).
  local seen = 0
  local over = false
  for chunk in handle:bodyChunks() do
    seen = seen + chunk:length()
    if over then
      chunk:setBytes("")
    elseif seen > MAX_REQUEST_BYTES - 1024 then
      over = true
      -- Objects taken before a yield are out of scope after it: fetch the metadata anew.
      handle:streamInfo():dynamicMetadata():set("agentmesh", "too_large", true)
      chunk:setBytes("\0")
    end
  end
end
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
  local method = headers:get(":method")
  if method ~= "POST" and method ~= "PUT" and method ~= "PATCH" then
    return
  end
  local content_type = string.lower(headers:get("content-type") or "")
  if string.sub(content_type, 1, 16) == "application/grpc" then
    return
  end
  -- REST bodies are JSON: a declared other type is 415 (no type: parsed as JSON).
  local media = string.match(content_type, "^%s*([^;%s]+)") or ""
  if media ~= "" and media ~= "application/json"
      and not string.match(media, "^application/[%w%.%-]+%+json$") then
    handle:respond({[":status"] = "415", ["content-type"] = "text/plain"},
        "send the body as application/json")
    return
  end
  drain_oversized(handle, headers)
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
  -- Second precision, as local_reply_config writes Envoy's own errors.
  local timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local status = headers:get(":status")
  if meta["too_large"] then
    headers:replace(":status", "413")
    headers:replace("content-type", "application/json")
    headers:remove("x-agentmesh-error")
    handle:body():setBytes(envelope("PAYLOAD_TOO_LARGE", "the request body is larger than " ..
        MAX_REQUEST_BYTES .. " bytes", cid, timestamp))
    return
  end
  if status == "429" and headers:get("retry-after") == nil then
    local reset = tonumber(headers:get("x-ratelimit-reset") or "") or 1
    if reset < 1 then
      reset = 1
    end
    headers:replace("retry-after", tostring(math.floor(reset)))
  end
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
  local grpc_status = headers:get("grpc-status")
  headers:remove("grpc-status")
  headers:remove("grpc-message")
  headers:remove("grpc-accept-encoding")
  headers:remove("grpc-encoding")
  local err = headers:get(ERROR_TRAILER)
  if err == nil then
    -- A gRPC error that did not come through the runtime's error interceptor (the
    -- transcoder's {"code","message"} body): the envelope, and no internal text.
    local code = tonumber(grpc_status or "")
    if code ~= nil and code ~= 0 then
      local name = GRPC_NAMES[code] or "INTERNAL"
      local message = "the request failed"
      if name == "INTERNAL" then
        message = "internal error; quote the correlation id to support"
      end
      headers:replace("content-type", "application/json")
      handle:body():setBytes(envelope(name, message, cid, timestamp))
    end
    return
  end
  headers:remove(ERROR_TRAILER)
  set_conflict_status(headers, err)
  -- Headers first: handle:body() yields, and `headers` is out of scope after it.
  headers:replace("content-type", "application/json")
  local envelope = string.sub(err, 1, -2) .. ',"correlation_id":"' .. cid ..
      '","timestamp":"' .. timestamp .. '"}'
  handle:body():setBytes(envelope)
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
  -- Only the matching routes with the most literal segments count, as in the transcoder.
  local best, allow = -1, {}
  local function visit(routes)
    for _, route in ipairs(routes or {}) do
      if string.find(path, route[1]) then
        if route[3] > best then
          best, allow = route[3], {}
        end
        if route[3] == best then
          for _, method in ipairs(route[2]) do
            allow[method] = true
          end
        end
      end
    end
  end
  visit(ROUTES[route_key(path)])
  visit(WILDCARD_ROUTES)
  return best >= 0, allow
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
