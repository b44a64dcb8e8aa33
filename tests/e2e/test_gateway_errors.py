"""Every error, whoever produced it, comes back in the one envelope with the right status."""

from __future__ import annotations

import hashlib
import json
import uuid

import httpx2
import pytest

from tests.conftest import assert_envelope


def test_malformed_json_is_400(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/agents", content=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert_envelope(reply, 400, "INVALID_ARGUMENT")


def test_unknown_query_parameter_is_400(mesh, tenant):
    with mesh.client(tenant.token) as client:
        body = assert_envelope(client.get("/api/v1/agents", params={"colour": "red"}), 400,
                               "INVALID_ARGUMENT")
    assert "colour" in body["message"]


def test_wrongly_typed_query_parameter_is_400(mesh, tenant):
    with mesh.client(tenant.token) as client:
        assert_envelope(client.get("/api/v1/agents", params={"page": "two"}), 400,
                        "INVALID_ARGUMENT")


def test_unknown_route_is_404(mesh, tenant):
    with mesh.client(tenant.token) as client:
        assert_envelope(client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
        assert_envelope(client.patch("/api/v1/nothing-here"), 404, "NOT_FOUND")


def test_undeclared_method_on_a_known_path_is_405_with_allow(mesh, tenant):
    with mesh.client(tenant.token) as client:
        for method in ("PATCH", "TRACE", "DELETE"):
            reply = client.request(method, "/api/v1/agents")
            assert_envelope(reply, 405, "METHOD_NOT_ALLOWED")
            assert reply.headers["allow"] == "GET, POST"
        reply = client.request("TRACE", "/api/v1/agents/some-agent")
        assert_envelope(reply, 405, "METHOD_NOT_ALLOWED")
        assert reply.headers["allow"] == "DELETE, GET, PUT"
        # Envoy itself refuses QUERY without Content-Type; it still ends as 405 with Allow.
        reply = client.request("QUERY", "/api/v1/auth/me")
        assert reply.status_code == 405 and reply.headers["allow"] == "GET"
        assert reply.json()["error"] == "METHOD_NOT_ALLOWED"
        # A CORS preflight is not an undeclared method.
        preflight = client.options("/api/v1/agents", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200


def test_body_cannot_override_path_bound_field(mesh, tenant, other_tenant):
    with mesh.client(tenant.token) as client:
        mine = client.post("/api/v1/agents", json={"name": f"a-{uuid.uuid4().hex[:6]}"}).json()
        client.post(f"/api/v1/agents/{mine['id']}/activate", json={})
        reply = client.post(f"/api/v1/agents/{mine['id']}/deploy",
                            json={"agent_id": "someone-else", "environment": "prod"})
    assert_envelope(reply, 400, "INVALID_ARGUMENT")


def test_body_too_large_is_413(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/agents", json={"name": "big", "system_prompt": "x" * 2_000_000})
    assert_envelope(reply, 413, "PAYLOAD_TOO_LARGE")


def test_not_built_service_is_501(mesh, tenant):
    """Any RPC of a service nobody has built yet answers 501 in the envelope."""
    from mesh import catalog, contract

    unbuilt = [(rpc, binding) for rpc in contract.default().rpcs if not catalog.is_built(rpc.backend)
               for binding in rpc.bindings if binding.method == "GET" and "{" not in binding.template]
    if not unbuilt:
        pytest.skip("every service is built")
    rpc, binding = unbuilt[0]
    with mesh.client(tenant.token) as client:
        body = assert_envelope(client.get(binding.template), 501, "UNIMPLEMENTED")
        assert body["details"]["method"] == f"/{rpc.full_service}/{rpc.name}"


def test_literal_paths_reach_their_own_rpc(mesh, tenant):
    """`/api/v1/tools/categories` sits beside `/api/v1/tools/{tool_id}`: the literal wins."""
    with mesh.client(tenant.token) as client:
        reply = client.get("/api/v1/tools/categories")
        assert reply.status_code == 200, reply.text
        assert set(reply.json()) == {"items", "total", "page", "page_size", "pages"}


def test_correlation_id_is_echoed_on_success_and_made_when_absent(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.get("/api/v1/agents", headers={"X-Correlation-ID": "abc-123"})
        assert reply.status_code == 200 and reply.headers["x-correlation-id"] == "abc-123"
        made = client.get("/api/v1/agents")
        assert len(made.headers["x-correlation-id"]) >= 16
        # An unsafe id is replaced, never reflected into the body.
        odd = client.get("/api/v1/nothing", headers={"X-Correlation-ID": 'x"}, "evil": "1'})
        assert odd.json()["correlation_id"] != 'x"}, "evil": "1'


def test_security_headers_and_cors(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.get("/api/v1/agents")
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["x-frame-options"] == "DENY"
        assert reply.headers["referrer-policy"] == "no-referrer"
        assert "grpc-status" not in reply.headers
        preflight = client.options("/api/v1/agents", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"


def test_health_openapi_and_docs_are_public(mesh):
    with mesh.client() as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "healthy"
        assert health.json()["services"] == []  # the detail needs system:read
        spec = client.get("/api/v1/openapi.json")
        assert spec.status_code == 200 and spec.json()["openapi"] == "3.1.0"
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
        bundle = client.get("/docs/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        # swagger-ui-dist, vendored (.ci/vendor-swagger-ui): served as the MANIFEST records it
        from mesh.system import docs as docs_module
        manifest = (docs_module._SWAGGER_DIR / "MANIFEST").read_text()
        assert hashlib.sha256(bundle.content).hexdigest() + "  swagger-ui-bundle.js" in manifest
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert client.get("/docs/swagger-ui.css").headers["content-type"].startswith("text/css")
        assert_envelope(client.get("/docs/index.html"), 404, "NOT_FOUND")
        jwks = client.get("/api/v1/auth/jwks").json()
        assert len(jwks["keys"]) >= 2 and all("kid" in k for k in jwks["keys"])


def test_native_grpc_clients_get_the_same_checks(mesh, tenant):
    import grpc

    from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc

    target = httpx2.URL(mesh.url).netloc.decode()
    with grpc.insecure_channel(target) as channel:
        stub = agents_pb2_grpc.AgentServiceStub(channel)
        try:
            stub.ListAgents(agents_pb2.ListAgentsRequest(), timeout=10)
            raise AssertionError("call without a token passed")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.ListAgents(agents_pb2.ListAgentsRequest(page_size=5), timeout=10,
                                metadata=(("authorization", f"Bearer {tenant.token}"),))
        assert reply.page_size == 5
        try:
            stub.GetAgent(agents_pb2.GetAgentRequest(agent_id="missing"), timeout=10,
                          metadata=(("authorization", f"Bearer {tenant.token}"),))
            raise AssertionError("missing agent found")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND


def test_search_path_reaches_search_not_get(mesh, tenant):
    """`/master-data/skills/search` beside `/skills/{skill_id}`: SearchSkills (not GetSkill's 404)
    answers that `q` is missing."""
    with mesh.client(tenant.token) as client:
        body = assert_envelope(client.get("/api/v1/master-data/skills/search"), 400,
                               "INVALID_ARGUMENT")
    assert body["details"]["field_violations"][0]["field"] == "q"


# ---- undefined enum numbers, on every enum field of every route --------------------------------
UNDEFINED_ENUM_NUMBER = 987654
_ENUM, _MESSAGE = 14, 11  # FieldDescriptorProto types
_INTEGERS = {3, 4, 5, 13}


def _enum_paths(contract, fields, seen: tuple[str, ...] = ()):
    """(JSON path, REST field name) of every enum among `fields` and below them in messages of
    the contract: a repeated field's first item, a map's key `k`."""
    for field in fields:
        target = field.type_name.lstrip(".")
        entry = contract.messages.get(target) if field.type == _MESSAGE else None
        if entry is not None and entry.options.map_entry:
            value = next(f for f in entry.field if f.name == "value")
            step, name = (field.name, "k"), f"{field.name}.k"
            field, target = value, value.type_name.lstrip(".")
        elif field.label == field.LABEL_REPEATED:
            step, name = (field.name, 0), f"{field.name}[0]"
        else:
            step, name = (field.name,), field.name
        if field.type == _ENUM:
            yield step, name
        elif field.type == _MESSAGE and target.startswith("agentmesh.") and target not in seen:
            for path, inner in _enum_paths(contract, contract.messages[target].field,
                                           (*seen, target)):
                yield (*step, *path), f"{name}.{inner}"


def _nest(path: tuple, value):
    for step in reversed(path):
        value = [value] if isinstance(step, int) else {step: value}
    return value


def _undefined_enum_requests():
    """One request per enum field a REST client can send, from the contract: the field set to
    a number its enum does not define, the rest left out; with the name the answer must give
    it, as the client wrote it (a `body: "agent"` route's fields at the top of its JSON)."""
    from mesh import catalog, contract as contract_mod

    contract = contract_mod.default()
    for rpc in contract.routed:
        if not catalog.is_built(rpc.backend):
            continue
        request = contract.messages[rpc.input_type]
        for binding in rpc.bindings:
            path = binding.openapi_path
            for variable in binding.variables:
                field = next((f for f in request.field if f.name == variable), None)
                filler = "1" if field is not None and field.type in _INTEGERS else "x"
                path = path.replace("{" + variable + "}", filler)
            for field in request.field:
                if field.name in binding.variables:
                    continue
                if binding.body == field.name:
                    below = contract.messages[field.type_name.lstrip(".")].field
                    for json_path, name in _enum_paths(contract, below):
                        yield binding.method, path, {}, _nest(json_path, UNDEFINED_ENUM_NUMBER), name
                    continue
                for json_path, name in _enum_paths(contract, [field]):
                    if binding.body == "*":
                        yield binding.method, path, {}, _nest(json_path, UNDEFINED_ENUM_NUMBER), name
                    elif all(isinstance(step, str) for step in json_path) and "k" not in json_path:
                        # A query parameter: a field of the request or of a singular message.
                        yield binding.method, path, {name: str(UNDEFINED_ENUM_NUMBER)}, None, name


def test_an_undefined_enum_number_is_400_naming_the_field_on_every_route(mesh, operator):
    """Generated from the contract, so a new enum field, or a new route with one, is covered
    without a new test. (Such a number was a 500 where a handler named its value, and stored
    where none did.)"""
    import asyncio

    cases = list(_undefined_enum_requests())
    names = {name for *_, name in cases}
    assert {"priority", "status", "steps[0].type"} <= names and len(cases) > 30

    async def send_all() -> list[httpx2.Response]:
        limit = asyncio.Semaphore(8)
        async with httpx2.AsyncClient(base_url=mesh.url, timeout=30, headers={
                "Authorization": f"Bearer {operator.token}"}) as client:
            async def one(method, path, params, body):
                async with limit:
                    return await client.request(method, path, params=params, json=body)
            return await asyncio.gather(*(one(m, p, q, b) for m, p, q, b, _ in cases))

    replies = asyncio.run(send_all())
    wrong = []
    for (method, path, params, body, name), reply in zip(cases, replies):
        named = False
        if reply.status_code == 400:
            answer = reply.json()
            fields = [v["field"] for v in answer["details"].get("field_violations", [])]
            # In a body the runtime names it in field_violations; in the query string the
            # transcoder refuses the number itself, naming the parameter in its message.
            named = fields == [name] or (params and not fields
                                         and answer["message"].startswith(f"{name}: invalid"))
        if not named:
            wrong.append(f"{method} {path} {params or body}: {reply.status_code} "
                         f"{reply.text[:300]} (wanted 400 naming {name})")
    assert not wrong, f"{len(wrong)} of {len(cases)}:\n" + "\n".join(wrong)
    for reply in replies:
        assert_envelope(reply, 400, "INVALID_ARGUMENT")


# ---- request bodies: unknown fields, wrong shapes, invalid JSON (gateway.lua check_body) ----
PROTOBUF_WORDS = ("Proto field", "type.googleapis.com", "TYPE_", "Unexpected token",
                  "invalid value", "\n")


def _body_routes():
    """Every REST route with a JSON body, its path variables filled in."""
    from mesh import contract
    from mesh.gateway.bodies import BodySchemas

    schemas = BodySchemas(contract.default())
    for rpc in contract.default().routed:
        for binding in rpc.bindings:
            if schemas.route_body(rpc, binding) is not None:
                path = binding.openapi_path
                for variable in binding.variables:
                    path = path.replace("{" + variable + "}", "x")
                yield binding.method, path


def test_unknown_body_field_is_400_naming_it_on_every_route(mesh, tenant):
    routes = list(_body_routes())
    assert len(routes) > 50
    with mesh.client(tenant.token) as client:
        for method, path in routes:
            reply = client.request(method, path, json={"zz_not_a_field": 1})
            body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
            assert body["details"]["reason"] == "UNKNOWN_FIELD", (method, path, body)
            assert body["details"]["field"] == "zz_not_a_field", (method, path, body)
        # The typo: nothing is created, and the answer says what was meant.
        typo = assert_envelope(client.post("/api/v1/agents", json={"name": "x",
                                                                   "modle": "gpt-4o"}),
                               400, "INVALID_ARGUMENT")
        assert typo["message"] == "modle: unknown field; did you mean 'model'?"
        streamed = assert_envelope(client.post(  # chunked, without a content-length
            "/api/v1/agents", content=iter([b'{"name": "x", ', b'"modle": "gpt-4o"}']),
            headers={"Content-Type": "application/json"}), 400, "INVALID_ARGUMENT")
        assert streamed["details"]["field"] == "modle"
        assert client.get("/api/v1/agents", params={"search": "x"}).json()["total"] == 0
        nested = assert_envelope(client.post("/api/v1/workflows", json={
            "name": "n", "steps": [{"id": "a", "type": "STEP_TYPE_TRANSFORM",
                                    "transform": {"expression": "inputs", "expresion": 1}}]}),
            400, "INVALID_ARGUMENT")
        assert nested["details"]["field_violations"][0]["field"] == \
            "steps[0].transform.expresion"
        # Free-form objects (a Struct, a map) take any key; lowerCamel names are the same field.
        made = client.post("/api/v1/agents", json={"name": f"free-{uuid.uuid4().hex[:6]}",
                                                  "config": {"anything": {"goes": [1]}},
                                                  "labels": {"team": "a"},
                                                  "systemPrompt": "be brief"})
        assert made.status_code == 200, made.text
        assert made.json()["system_prompt"] == "be brief"
        document = client.get("/api/v1/openapi.json").json()
    assert document["components"]["schemas"]["agentmesh.agents.v1.Agent"][
        "additionalProperties"] is False


def test_gateway_messages_name_the_field_in_plain_words(mesh, tenant):
    """What the transcoder says in protobuf terms reaches the client as the field and what it
    takes, in the envelope."""
    cases = [
        ({"name": ["x"]}, "name", "name: expected a string, not a list"),
        ("just a string", "", "the body: expected a JSON object, not a string"),
        ({"name": {"a": 1}}, "name", "name: expected a string, not an object"),
        ({"name": 5}, "name", "name: expected a string, not 5"),
        ({"version": "abc"}, "version", 'version: expected an integer (32 bits), not "abc"'),
        ({"config": [1]}, "config", "config: expected a JSON object, not a list"),
        ({"created_at": "yesterday"}, "created_at",
         "created_at: expected a date-time string such as 2026-01-31T12:00:00Z"),
        # Exactly what the OpenAPI document says (client generators read it): a list is a
        # list of items, an enum a value name, the body an object; the transcoder would take
        # the other forms too.
        ({"name": "s", "tools": "t1"}, "tools", "tools: expected a list of string values, "
                                                "not a string"),
        ({"name": "s", "tools": [None]}, "tools[0]", "tools[0]: a list item cannot be null"),
        ({"name": "s", "tools": [["t1"]]}, "tools[0]",
         "tools[0]: expected a string, not a list (lists do not nest)"),
        ({"name": "s", "status": 1}, "status", "status: expected a value name, not 1"),
        (None, "", "the body: the body must be a JSON object, not null"),
    ]
    with mesh.client(tenant.token) as client:
        for sent, field, message in cases:
            body = assert_envelope(client.post("/api/v1/agents", content=json.dumps(sent),
                                               headers={"Content-Type": "application/json"}),
                                   400, "INVALID_ARGUMENT")
            assert body["message"] == message, (sent, body)
            assert body["details"].get("field", "") == field, (sent, body)
        status = assert_envelope(client.post("/api/v1/agents", json={"name": "s",
                                                                     "status": "NOPE"}),
                                 400, "INVALID_ARGUMENT")
        assert status["message"].startswith("status: expected one of AGENT_STATUS_DRAFT, ")
        for raw in (b'{"name": }', b'{"name": "x",}', b'{"name": "x"} extra', b"{"):
            body = assert_envelope(client.post("/api/v1/agents", content=raw, headers={
                "Content-Type": "application/json"}), 400, "INVALID_ARGUMENT")
            assert body["message"].startswith("the body is not valid JSON: "), body
            assert body["details"]["reason"] == "MALFORMED_JSON"
            assert not any(word in body["message"] for word in PROTOBUF_WORDS), body
        query = assert_envelope(client.get("/api/v1/agents", params={"page": "two"}), 400,
                                "INVALID_ARGUMENT")
        assert query["message"] == 'page: expected an integer (32 bits), not "two"'
        colour = assert_envelope(client.get("/api/v1/agents", params={"colour": "red"}), 400,
                                 "INVALID_ARGUMENT")
        assert colour["message"] == "colour: unknown query parameter"


def test_a_space_in_a_query_value_sent_as_plus_is_a_space(mesh, tenant):
    """httpx2 (like requests and HTML forms) encodes a space in a query value as `+`."""
    name = f"tpl-{uuid.uuid4().hex[:6]}"
    with mesh.client(tenant.token) as client:
        agent = client.post("/api/v1/agents", json={"name": f"plus-{uuid.uuid4().hex[:6]}",
                                                    "description": "alpha beta"}).json()
        found = client.get("/api/v1/agents", params={"search": "alpha beta"})
        assert "search=alpha+beta" in str(found.request.url)
        assert [a["id"] for a in found.json()["items"]] == [agent["id"]]
        literal = client.get("/api/v1/agents", params={"search": "alpha+beta"})  # sent as %2B
        assert literal.json()["total"] == 0
        assert client.post("/api/v1/templates", json={
            "name": name, "kind": "TEMPLATE_KIND_AGENT",
            "content": {"name": "{{ agent_name }}", "system_prompt": "Hello {{ team }}."},
            "parameters": [{"name": "agent_name"}, {"name": "team"}]}).status_code == 200
        preview = client.get(f"/api/v1/templates/{name}/preview",
                             params={"parameters": json.dumps({"agent_name": "x",
                                                               "team": "red team"})})
    assert preview.status_code == 200, preview.text
    assert preview.json()["result"]["system_prompt"] == "Hello red team."


def test_every_answer_carries_x_request_id(mesh, tenant):
    with mesh.client(tenant.token) as client:
        ok = client.get("/api/v1/agents", headers={"X-Correlation-ID": "req-id-1"})
        missing = client.get("/api/v1/agents/nope")
        anonymous = httpx2.get(f"{mesh.url}/api/v1/agents")
    assert ok.headers["x-request-id"] == ok.headers["x-correlation-id"] == "req-id-1"
    for reply in (missing, anonymous):
        body = reply.json()
        assert reply.headers["x-request-id"] == body["request_id"] == body["correlation_id"]
