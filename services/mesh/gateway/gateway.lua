-- The gateway's own edge logic, run by Envoy's Lua filter (first in the chain).
-- Request:  drops client-sent identity headers (only jwt_authn / ext_authz may set them),
--           takes X-Correlation-ID from the client when it is sane or uses Envoy's request id,
--           flags X-API-Key requests so that ext_authz runs only for them, refuses REST bodies
--           that are not JSON (415), drains bodies over MAX_REQUEST_BYTES (413, see below), and
--           walks a JSON body against the route's message (unknown field, list or object in
--           the wrong place, invalid JSON: 400 naming the field; see check_body).
-- MAX_REQUEST_BYTES is prepended by mesh.gateway.config.
-- Response: echoes X-Correlation-ID (also as X-Request-ID), adds security headers, hides gRPC
--           plumbing headers from REST clients, turns a service's `x-agentmesh-error` trailer
--           (JSON prepared by mesh.runtime.errors) into the REST error envelope, rewrites the
--           transcoder's protobuf-speak into messages a person reads, and gives Server-Sent
--           Events an `id:` line (see sse_ids). Envoy's own errors get the same envelope from
--           local_reply_config instead.

-- Names shared with the Envoy config and the Python runtime are filled in by
-- mesh.gateway.config when it generates the bootstrap (each `__AGENTMESH_*__` below): they
-- are defined once, in mesh.runtime.context and mesh.runtime.errors.
local IDENTITY_HEADERS = __AGENTMESH_IDENTITY_HEADERS__
local ERROR_TRAILER = __AGENTMESH_ERROR_TRAILER__
local HTTP_STATUS_HEADER = __AGENTMESH_HTTP_STATUS_HEADER__
local OPENAI_PREFIX = __AGENTMESH_OPENAI_PREFIX__
local OPENAI_CHAT_PATH = __AGENTMESH_OPENAI_CHAT_PATH__
local OPENAI_CHAT_STREAM_PATH = __AGENTMESH_OPENAI_CHAT_STREAM_PATH__
-- The MCP endpoint (docs/mcp.md): JSON-RPC and Server-Sent Events of the MCP transport, passed
-- through untouched (no envelope, no SSE ids); its errors are JSON-RPC's.
local MCP_PATH = __AGENTMESH_MCP_PATH__
local GRPC_NAMES = {
  [1] = "CANCELLED", [2] = "INTERNAL", [3] = "INVALID_ARGUMENT", [4] = "DEADLINE_EXCEEDED",
  [5] = "NOT_FOUND", [6] = "ALREADY_EXISTS", [7] = "PERMISSION_DENIED", [8] = "RESOURCE_EXHAUSTED",
  [9] = "FAILED_PRECONDITION", [10] = "ABORTED", [11] = "OUT_OF_RANGE", [12] = "UNIMPLEMENTED",
  [13] = "INTERNAL", [14] = "UNAVAILABLE", [15] = "INTERNAL", [16] = "UNAUTHENTICATED",
}

-- A JSON string literal (quotes included) of ASCII text.
local function json_string(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c)
    if c == '"' or c == "\\" then
      return "\\" .. c
    end
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

-- The `details` members about one refused field: `field_violations` and the seeds' shape
-- (`field`, `issue`), as mesh.runtime.errors writes them.
local function field_details(field, problem)
  return '"field_violations":[{"field":' .. json_string(field) .. ',"description":' ..
      json_string(problem) .. '}],"field":' .. json_string(field) .. ',"issue":' ..
      json_string(problem)
end

-- The end of every envelope: the correlation id (also as seed 000's `request_id`) and the time.
local function envelope_tail(cid, timestamp)
  return ',"correlation_id":' .. json_string(cid) .. ',"request_id":' .. json_string(cid) ..
      ',"timestamp":"' .. timestamp .. '"}'
end

local function envelope(error, message, cid, timestamp, details)
  return '{"error":"' .. error .. '","message":' .. json_string(message) .. ',"details":' ..
      (details or "{}") .. envelope_tail(cid, timestamp)
end

-- A body over the limit: the buffer filter would answer 413 at once and close the connection
-- while the client is still sending, which the client sees as a reset. Instead the excess is
-- read and dropped here (the first dropped chunk becomes invalid JSON, so nothing downstream
-- can act on the truncated body) and envoy_on_response turns the answer into the 413 envelope.
-- A body of unknown length (chunked HTTP/1.1, HTTP/2 without content-length) is read here chunk
-- by chunk (Envoy allows no body() after bodyChunks()): past the limit the excess is dropped
-- (413), and a route's JSON (`body`, see check_body) is checked as it arrives; a refused body
-- is made invalid JSON from that chunk on, so the transcoder cannot act on it, and
-- envoy_on_response answers with the refusal. Returns (too large, read here).
local function drain_oversized(handle, headers, body)
  local length = tonumber(headers:get("content-length") or "")
  if length ~= nil and length <= MAX_REQUEST_BYTES then
    return false, false
  end
  local seen = 0
  local over, refused = false, false
  local parts = {}
  for chunk in handle:bodyChunks() do
    seen = seen + chunk:length()
    if over or refused then
      chunk:setBytes("")
    elseif seen > MAX_REQUEST_BYTES - 1024 then
      over = true
      -- Objects taken before a yield are out of scope after it: fetch the metadata anew.
      handle:streamInfo():dynamicMetadata():set("agentmesh", "too_large", true)
      chunk:setBytes("\0")
    elseif body ~= nil then
      parts[#parts + 1] = chunk:getBytes(0, chunk:length())
      local prepared = body_refusal(table.concat(parts), body, true)
      if prepared ~= nil then
        refused = true
        handle:streamInfo():dynamicMetadata():set("agentmesh", "bad_body", prepared)
        chunk:setBytes("\0")
      end
    end
  end
  return over, true
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
  local rejected, body = reject_undeclared_method(handle, headers)
  if rejected then
    return
  end
  if body ~= nil then  -- names the body's field in the transcoder's messages
    metadata:set("agentmesh", "body_field", body[2])
  end
  local path = headers:get(":path") or ""
  if string.sub(path, 1, #OPENAI_PREFIX) == OPENAI_PREFIX then
    openai_key(headers)
  end
  if string.match(path, "^[^?]*") == MCP_PATH then
    -- MCP clients often take one bearer token: an API key there is passed on as X-API-Key.
    openai_key(headers)
    metadata:set("agentmesh", "mcp", true)
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
  local _, read_here = drain_oversized(handle, headers, body)
  if not read_here and body ~= nil then
    check_body(handle, body)
  end
  if not read_here and string.match(path, "^[^?]*") == OPENAI_CHAT_PATH then
    openai_stream(handle)
  end
end

-- ---- the OpenAI-compatible door (/api/v1/openai/v1/...) ------------------------------------
-- OpenAI clients send the key as `Authorization: Bearer <key>`: a bearer that is not a JWT is
-- the tenant's API key, passed on as X-API-Key (ext_authz checks it, jwt_authn lets it by).
function openai_key(headers)
  local token = string.match(headers:get("authorization") or "", "^[Bb]earer%s+(%S+)%s*$")
  if token ~= nil and string.sub(token, 1, 3) ~= "eyJ" then
    headers:remove("authorization")
    headers:replace("x-api-key", token)
  end
end

-- `POST /chat/completions` with `"stream": true` is the streaming RPC's route: the transcoder
-- picks the RPC by path, and only a server-streaming one answers Server-Sent Events.
function openai_stream(handle)
  local buffered = handle:body()
  if buffered == nil or buffered:length() == 0 then
    return
  end
  if string.find(buffered:getBytes(0, buffered:length()), '"stream"%s*:%s*true') then
    handle:headers():replace(":path", OPENAI_CHAT_STREAM_PATH)
    pcall(function() handle:clearRouteCache() end)
  end
end

function envoy_on_response(handle)
  local headers = handle:headers()
  complete_method_not_allowed(headers)
  local meta = handle:streamInfo():dynamicMetadata():get("agentmesh") or {}
  local cid = meta["correlation_id"] or ""
  headers:replace("x-correlation-id", cid)
  headers:replace("x-request-id", cid)
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
  if meta["bad_body"] then  -- body_refusal's answer, prepared as {error, message, details}
    headers:replace(":status", "400")
    headers:replace("content-type", "application/json")
    headers:remove(ERROR_TRAILER)
    handle:body():setBytes(string.sub(meta["bad_body"], 1, -2) .. envelope_tail(cid, timestamp))
    return
  end
  if status == "429" and headers:get("retry-after") == nil then
    -- A service's delay (google.rpc.RetryInfo for gRPC clients) is in its envelope's
    -- `details.retry_after`; the rate limiter's, in x-ratelimit-reset.
    local said = string.match(headers:get(ERROR_TRAILER) or "", '"retry_after":"?(%d+)')
    local reset = tonumber(said or headers:get("x-ratelimit-reset") or "") or 1
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
      handle:body():setBytes(envelope("UNAUTHENTICATED",
          "the token is not valid for this API (audience)", cid, timestamp))
      return
    end
  end
  if meta["mcp"] then
    return  -- the MCP transport's own answers (JSON-RPC, Server-Sent Events)
  end
  local content_type = headers:get("content-type") or ""
  local http_status = headers:get(HTTP_STATUS_HEADER)
  if http_status ~= nil then
    headers:remove(HTTP_STATUS_HEADER)
  end
  if string.sub(content_type, 1, 16) == "application/grpc" then
    headers:remove(ERROR_TRAILER)
    return
  end
  if http_status == "202" and status == "200" and headers:get(ERROR_TRAILER) == nil then
    headers:replace(":status", "202")
  end
  local grpc_status = headers:get("grpc-status")
  headers:remove("grpc-status")
  headers:remove("grpc-message")
  headers:remove("grpc-accept-encoding")
  headers:remove("grpc-encoding")
  if string.sub(content_type, 1, 17) == "text/event-stream" then
    sse_ids(handle)
    return
  end
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
    elseif status == "400" and string.sub(content_type, 1, 16) == "application/json" then
      -- The transcoder's own 400 (local_reply_config made it an envelope): in plain words.
      readable_transcoder_error(handle, meta["body_field"] or "", cid, timestamp)
    end
    return
  end
  headers:remove(ERROR_TRAILER)
  set_conflict_status(headers, err)
  -- Headers first: handle:body() yields, and `headers` is out of scope after it.
  headers:replace("content-type", "application/json")
  handle:body():setBytes(string.sub(err, 1, -2) .. envelope_tail(cid, timestamp))
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

-- Whether a route matches, the methods allowed there, and the body shape of each
-- ({code, body field}, see check_body).
local function allowed_methods(path)
  -- Only the matching routes with the most literal segments count, as in the transcoder.
  local best, allow, bodies = -1, {}, {}
  local function visit(routes)
    for _, route in ipairs(routes or {}) do
      if string.find(path, route[1]) then
        if route[3] > best then
          best, allow, bodies = route[3], {}, {}
        end
        if route[3] == best then
          for _, method in ipairs(route[2]) do
            allow[method] = true
          end
          for method, body in pairs(route[4]) do
            bodies[method] = body
          end
        end
      end
    end
  end
  visit(ROUTES[route_key(path)])
  visit(WILDCARD_ROUTES)
  return best >= 0, allow, bodies
end

function method_list(allow)
  local names = {}
  for name, _ in pairs(allow) do
    names[#names + 1] = name
  end
  table.sort(names)
  return table.concat(names, ", ")
end

-- True when the method is refused (405); otherwise false and the route's body shape for it.
function reject_undeclared_method(handle, headers)
  local method = headers:get(":method")
  if method == "OPTIONS" and headers:get("access-control-request-method") ~= nil then
    return false
  end
  local path = string.match(headers:get(":path") or "", "^[^?#]*")
  local found, allow, bodies = allowed_methods(path)
  if not found or allow[method] then
    return false, bodies[method]
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

-- ---- JSON bodies: unknown fields and shapes (mesh.gateway.bodies) ---------------------------
-- The transcoder drops JSON fields its message lacks and speaks protobuf when a value has the
-- wrong shape. Here, where the JSON still exists, the body is walked once against the route's
-- message: BODY_TYPES[i] maps each field name (proto and lowerCamel) of message i to a code
-- (kind = code % 8, repeated = bit 8, index = code // 16: a message for MESSAGE and MAP, a
-- scalar's name in SCALAR_NAMES for SCALAR). Values are left to the transcoder.
local BODY_TYPES = __AGENTMESH_BODY_TYPES__
local SCALAR_NAMES = __AGENTMESH_SCALAR_NAMES__
local FREE, SCALAR, MESSAGE, MAP, FREE_OBJECT, FREE_LIST = 0, 1, 2, 3, 4, 5
local MAX_DEPTH = 100
local byte, find, sub = string.byte, string.find, string.sub

-- The path being walked, a stack of field names and `[i]`, joined only for a refusal.
local path = {}

local function show(name)  -- a field name as the client wrote it, made safe to echo
  return (string.gsub(sub(name, 1, 100), "[^%w_%-%.%[%]]", "?"))
end

local function path_text()
  local out = ""
  for _, segment in ipairs(path) do
    if byte(segment, 1) == 91 then  -- [i]
      out = out .. segment
    elseif out == "" then
      out = show(segment)
    else
      out = out .. "." .. show(segment)
    end
  end
  return out
end

-- A refusal of the walk, raised with error() and caught by body_refusal's pcall.
local function refuse(reason, problem)
  error({reason = reason, field = path_text(), problem = problem}, 0)
end

local function syntax(text, at, what)
  local shown = sub(text, at, at)
  if shown == "" then
    shown = "the end"
  else
    shown = "'" .. string.gsub(shown, "[^%w%p ]", "?") .. "'"
  end
  error({reason = "MALFORMED_JSON", field = "", incomplete = at > #text,
         problem = what .. ", found " .. shown .. " at character " .. at}, 0)
end

local function skip_space(text, at)
  return find(text, "[^ \t\r\n]", at) or (#text + 1)
end

-- A string token at `at` (a double quote): its raw content and the position after it.
local function read_string(text, at)
  local from = at + 1
  while true do
    local stop = find(text, '["\\]', from)
    if stop == nil then
      syntax(text, #text + 1, "a string is not closed")
    end
    if byte(text, stop) == 34 then
      return sub(text, at + 1, stop - 1), stop + 1
    end
    from = stop + 2  -- an escape: the next character is part of the string
  end
end

local LITERALS = {[116] = "true", [102] = "false", [110] = "null"}

-- A string, number, true, false or null at `at`: the position after it.
local function read_scalar(text, at)
  local c = byte(text, at)
  if c == 34 then
    local _, after = read_string(text, at)
    return after
  end
  local word = LITERALS[c]
  if word ~= nil and sub(text, at, at + #word - 1) == word then
    return at + #word
  end
  local _, stop = find(text, "^-?%d+%.?%d*[eE]?[-+]?%d*", at)
  if stop == nil then
    -- A value cut by the end of what has arrived so far (`tr`, `-`) is not yet an error.
    syntax(text, find(text, "[%s,%]}]", at) and at or #text + 1, "expected a value")
  end
  return stop + 1
end

-- A free-form value (a Struct's, a map's): only its end is looked for, strings skipped and
-- brackets counted; its syntax is the transcoder's to judge.
local function skip_free(text, at)
  local c = byte(text, at)
  if c ~= 123 and c ~= 91 then
    return read_scalar(text, at)
  end
  local depth, from = 0, at
  while true do
    local stop = find(text, '[%[%]{}"]', from)
    if stop == nil then
      syntax(text, #text + 1, "an object or list is not closed")
    end
    c = byte(text, stop)
    if c == 34 then
      local _, after = read_string(text, stop)
      from = after
    else
      depth = depth + ((c == 123 or c == 91) and 1 or -1)
      from = stop + 1
      if depth == 0 then
        return from
      end
    end
  end
end

-- The closest known field name (edit distance at most 2, and at most half the name), for
-- "did you mean".
local function closest(fields, name)
  local best, best_distance = nil, 3
  for known, _ in pairs(fields) do
    if not find(known, "%u") and math.abs(#known - #name) < best_distance then
      local previous = {}
      for j = 0, #known do
        previous[j] = j
      end
      for i = 1, #name do
        local current = {[0] = i}
        for j = 1, #known do
          local cost = (byte(name, i) == byte(known, j)) and 0 or 1
          current[j] = math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        end
        previous = current
      end
      if previous[#known] < best_distance then
        best, best_distance = known, previous[#known]
      end
    end
  end
  -- Two edits turn any two-letter name into another: a hint only for what is mostly right.
  if best ~= nil and best_distance * 2 > #name then
    return nil
  end
  return best
end

local function expected(kind, index)
  if kind == SCALAR then
    return SCALAR_NAMES[index + 1] or "a single value"
  elseif kind == FREE_LIST then
    return "a list"
  elseif kind == FREE then
    return "a value"
  end
  return "a JSON object"
end

local walk_value

-- An object at `at`: with `fields` (a message's table) every key must be one of them; without,
-- keys are free and each value is walked with `value_code` (a map of messages).
local function walk_object(text, at, fields, value_code, depth)
  at = skip_space(text, at + 1)
  if byte(text, at) == 125 then
    return at + 1
  end
  local level = #path + 1
  while true do
    if byte(text, at) ~= 34 then
      syntax(text, at, "expected a field name in double quotes")
    end
    local name
    name, at = read_string(text, at)
    path[level] = name
    local code = value_code
    if fields ~= nil then
      code = fields[name]
      if code == nil then
        local hint = closest(fields, name)
        refuse("UNKNOWN_FIELD", "unknown field" ..
            (hint and ("; did you mean '" .. hint .. "'?") or ""))
      end
    end
    at = skip_space(text, at)
    if byte(text, at) ~= 58 then
      syntax(text, at, "expected ':' after a field name")
    end
    at = skip_space(text, walk_value(text, skip_space(text, at + 1), code, depth))
    path[level] = nil
    local c = byte(text, at)
    if c == 44 then
      at = skip_space(text, at + 1)
    elseif c == 125 then
      return at + 1
    else
      syntax(text, at, "expected ',' or '}'")
    end
  end
end

-- A list at `at`: each item walked with `code` (a repeated field's). The transcoder would
-- flatten a nested list and skip a null item; both are refused here (walk_value), so a list
-- is exactly what the OpenAPI document says: an array of items.
local function walk_list(text, at, code, depth)
  at = skip_space(text, at + 1)
  if byte(text, at) == 93 then
    return at + 1
  end
  local level, item = #path + 1, 0
  while true do
    path[level] = "[" .. item .. "]"
    at = skip_space(text, walk_value(text, at, code, depth, true))
    path[level] = nil
    item = item + 1
    local c = byte(text, at)
    if c == 44 then
      at = skip_space(text, at + 1)
    elseif c == 93 then
      return at + 1
    else
      syntax(text, at, "expected ',' or ']'")
    end
  end
end

walk_value = function(text, at, code, depth, in_list)
  if depth > MAX_DEPTH then
    refuse("MALFORMED_JSON", "nested more than " .. MAX_DEPTH .. " levels deep")
  end
  depth = depth + 1
  local c = byte(text, at)
  local kind, repeated, index = code % 8, code % 16 >= 8, math.floor(code / 16)
  -- A repeated field takes a list, and only a list (or null: not set); the transcoder would
  -- also take one value in its place, which the OpenAPI document does not offer.
  local whole_list = repeated and not in_list
  if c == 91 then
    if whole_list then
      return walk_list(text, at, code, depth)
    elseif kind == FREE or kind == FREE_LIST then
      return skip_free(text, at)
    end
    refuse("WRONG_TYPE", "expected " .. expected(kind, index) .. ", not a list" ..
        (in_list and " (lists do not nest)" or ""))
  elseif c == 123 then
    if whole_list then
      refuse("WRONG_TYPE", "expected a list of " ..
          string.gsub(expected(kind, index), "^an? ", "") .. " values, not an object")
    elseif kind == MESSAGE then
      return walk_object(text, at, BODY_TYPES[index], nil, depth)
    elseif kind == MAP then
      return walk_object(text, at, nil, index * 16 + MESSAGE, depth)
    elseif kind == FREE or kind == FREE_OBJECT then
      return skip_free(text, at)
    end
    refuse("WRONG_TYPE", "expected " .. expected(kind, index) .. ", not an object")
  end
  local after = read_scalar(text, at)
  local is_null = sub(text, at, after - 1) == "null"
  local shown = c == 34 and "a string" or sub(text, at, math.min(after - 1, at + 20))
  if is_null then
    if in_list and kind ~= FREE then  -- (null is a value of google.protobuf.Value)
      refuse("WRONG_TYPE", "a list item cannot be null")
    elseif depth == 1 and kind == MESSAGE then
      refuse("WRONG_TYPE", "the body must be a JSON object, not null")
    end
    return after
  end
  if whole_list then
    refuse("WRONG_TYPE", "expected a list of " ..
        string.gsub(expected(kind, index), "^an? ", "") .. " values, not " .. shown)
  end
  if kind == MESSAGE or kind == MAP or kind == FREE_OBJECT or kind == FREE_LIST then
    refuse("WRONG_TYPE", "expected " .. expected(kind, index) .. ", not " .. shown)
  end
  -- An enum by its value name, as answers print it (the transcoder would also take a number).
  if kind == SCALAR and index == 4 and c ~= 34 then
    refuse("WRONG_TYPE", "expected a value name, not " .. shown)
  end
  return after
end

-- The whole body: one value, nothing after it.
local function walk_body(text, code)
  path = {}
  local at = skip_space(text, 1)
  if at > #text then
    return  -- no body: the transcoder reads it as {}
  end
  at = skip_space(text, walk_value(text, at, code, 0))
  if at <= #text then
    syntax(text, at, "expected the end of the body")
  end
end

-- The refusal of a JSON body that does not fit the route's message `body` ({code, body
-- field}), prepared as the start of the envelope ({error, message, details}), and its message;
-- nil when it fits, or when the walker itself failed (the transcoder then judges alone).
-- `partial`: more of the body may follow, so running out of text is no refusal yet.
function body_refusal(text, body, partial)
  local ok, problem = pcall(walk_body, text, body[1])
  if ok or type(problem) ~= "table" or (partial and problem.incomplete) then
    return nil
  end
  local message
  if problem.reason == "MALFORMED_JSON" then
    message = "the body is not valid JSON: " .. problem.problem
  else
    message = (problem.field == "" and "the body" or problem.field) .. ": " .. problem.problem
  end
  local violation = ""
  if problem.field ~= "" then
    violation = ',' .. field_details(problem.field, problem.problem)
  end
  return '{"error":"INVALID_ARGUMENT","message":' .. json_string(message) ..
      ',"details":{"reason":"' .. problem.reason .. '"' .. violation .. '}}', message
end

-- A body of known length: refused at once (400 in the envelope, via envoy_on_response) when its
-- JSON does not fit the route's message.
function check_body(handle, body)
  local buffered = handle:body()
  if buffered == nil or buffered:length() == 0 then
    return
  end
  local prepared, message = body_refusal(buffered:getBytes(0, buffered:length()), body, false)
  if prepared ~= nil then
    handle:streamInfo():dynamicMetadata():set("agentmesh", "bad_body", prepared)
    handle:respond({[":status"] = "400", ["content-type"] = "application/json"}, message)
  end
end

-- ---- the transcoder's words, in plain ones ---------------------------------------------------
-- What the transcoder says about a value it cannot convert ("agent.status: invalid value
-- \"NOPE\" for type type.googleapis.com/agentmesh.agents.v1.AgentStatus", "Unexpected
-- token.\n}\n^") names protobuf types and the body's wrapper field. Rewritten: the field as the
-- client wrote it and what it takes. ENUM_VALUES: an enum's full name -> its value names.
local ENUM_VALUES = __AGENTMESH_ENUM_VALUES__
local TYPE_WORDS = {
  STRING = "a string", BOOL = "true or false", DOUBLE = "a number", FLOAT = "a number",
  INT32 = "an integer (32 bits)", SINT32 = "an integer (32 bits)",
  SFIXED32 = "an integer (32 bits)",
  UINT32 = "a non-negative integer (32 bits)", FIXED32 = "a non-negative integer (32 bits)",
  INT64 = "an integer", SINT64 = "an integer", SFIXED64 = "an integer",
  UINT64 = "a non-negative integer", FIXED64 = "a non-negative integer",
  BYTES = "a base64 string", ENUM = "a value name",
}
local WELL_KNOWN_WORDS = {
  ["google.protobuf.Timestamp"] = "a date-time string such as 2026-01-31T12:00:00Z",
  ["google.protobuf.Duration"] = 'a duration such as "30s"',
  ["google.protobuf.FieldMask"] = "a comma-separated list of field names",
  ["google.protobuf.Struct"] = "a JSON object",
  ["google.protobuf.ListValue"] = "a list",
}

-- A field path of the transcoder's, without the body's own field ("agent.name" -> "name").
local function client_field(path, body_field)
  if body_field ~= "" then
    if path == body_field then
      return ""
    elseif sub(path, 1, #body_field + 1) == body_field .. "." then
      return sub(path, #body_field + 2)
    end
  end
  return path
end

local function unescape_json(text)
  return (string.gsub(text, "\\(.)", {n = "\n", t = "\t", r = "\r", ['"'] = '"',
                                       ["\\"] = "\\", ["/"] = "/"}))
end

-- (message, field) in plain words, or nil when the text is not one the transcoder makes.
local function readable(text, body_field)
  if find(text, "\n", 1, true) then  -- the JSON parser: a message, the line, a caret
    local first = string.match(text, "^[^\n]*")
    return "the body is not valid JSON: " .. string.lower(sub(first, 1, 1)) ..
        string.gsub(sub(first, 2), "%.$", ""), ""
  end
  local path, value, type_name = string.match(text, "^(.-): invalid value (.-) for type (.+)$")
  if path ~= nil then
    local field = client_field(path, body_field)
    local full = string.gsub(type_name, "^type%.googleapis%.com/", "")
    local words = TYPE_WORDS[string.match(full, "^TYPE_(%u+%d*)$") or ""] or WELL_KNOWN_WORDS[full]
    if words == nil and ENUM_VALUES[full] ~= nil then
      words = "one of " .. ENUM_VALUES[full]
    end
    words = words or ("a " .. (string.match(full, "([%w_]+)$") or full))
    -- Only a literal the client sent is worth quoting (not "Starting an object on ...").
    local quoted = ""
    if #value <= 60 and (sub(value, 1, 1) == '"' or not find(value, " ")) then
      quoted = ", not " .. value
    end
    return (field == "" and "the body" or field) .. ": expected " .. words .. quoted, field
  end
  local unknown = string.match(text, '^Could not find field "(.-)" in the type ".-"%.$')
  if unknown ~= nil then  -- a query parameter (the body's unknown fields are check_body's)
    return show(unknown) .. ": unknown query parameter", show(unknown)
  end
  path = string.match(text, "^(.-): Proto field is not repeating, cannot start list%.$")
  if path ~= nil then
    local field = client_field(path, body_field)
    return (field == "" and "the body" or ("a field of " .. field)) ..
        ": expected a single value, not a list", field
  end
  return nil
end

function readable_transcoder_error(handle, body_field, cid, timestamp)
  local body = handle:body()
  local text = body:getBytes(0, body:length())
  local quoted = string.match(text, '"message":"(.-)","request_id":')
  if quoted == nil then
    return
  end
  local message, field = readable(unescape_json(quoted), body_field)
  if message == nil then
    return
  end
  local details = "{}"
  if field ~= "" then
    details = "{" .. field_details(field, (string.gsub(message, "^[^:]*: ", ""))) .. "}"
  end
  handle:body():setBytes(envelope("INVALID_ARGUMENT", message, cid, timestamp, details))
end

-- ---- Server-Sent Events ---------------------------------------------------------------------
-- Each event of an execution's watch gets an `id:` line with its `event_id`, so that a
-- browser's EventSource sends it back as Last-Event-ID when it reconnects and the stream
-- resumes after it (WatchExecution reads the header). The transcoder writes one event per
-- message, `data: {...}\n\n`, fields in number order: `event_id` just before `session_id`.
function sse_ids(handle)
  for chunk in handle:bodyChunks() do
    local text = chunk:getBytes(0, chunk:length())
    local rewritten, count = string.gsub(text, "([^\n]*)\n\n", function(line)
      if sub(line, 1, 6) == "data: " then
        local id = string.match(line, ',"event_id":(%d+),"session_id":"')
        if id ~= nil then
          return "id: " .. id .. "\n" .. line .. "\n\n"
        end
      end
      return nil
    end)
    if count > 0 then
      chunk:setBytes(rewritten)
    end
  end
end
