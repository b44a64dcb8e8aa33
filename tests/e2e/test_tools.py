"""Tools through the real gateway: the three types, schema errors, tenancy, stats and the
egress guard."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import assert_envelope, register


def _name(prefix="tool"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def owner(egress_mesh):
    return register(egress_mesh)


def _create(client, **tool):
    tool.setdefault("name", _name())
    tool.setdefault("status", "TOOL_STATUS_ACTIVE")
    reply = client.post("/api/v1/tools", json=tool)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_builtin_tool_through_its_whole_life(egress_mesh, owner):
    with egress_mesh.client(owner.token) as client:
        tool = _create(client, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "math"},
                       category="util", description="arithmetic")
        assert tool["status"] == "TOOL_STATUS_ACTIVE" and tool["version"] == 1
        assert client.get(f"/api/v1/tools/{tool['name']}").json()["id"] == tool["id"]
        run = client.post(f"/api/v1/tools/{tool['name']}/execute",
                          json={"arguments": {"expression": "6 * 7"}})
        assert run.status_code == 200, run.text
        body = run.json()
        assert body["status"] == "TOOL_EXECUTION_STATUS_COMPLETED" and body["output"] == {"result": 42}
        assert body["caller"] == owner.user_id
        assert body["correlation_id"] == run.headers["x-correlation-id"]
        failed = client.post(f"/api/v1/tools/{tool['id']}/execute",
                             json={"arguments": {"expression": "1/0"}}).json()
        assert failed["status"] == "TOOL_EXECUTION_STATUS_FAILED" and "division" in failed["error"]
        stats = client.get(f"/api/v1/tools/{tool['id']}/stats").json()
        assert stats["total_executions"] == 2 and stats["failed_executions"] == 1
        assert stats["error_rate"] == 0.5 and "p95_duration_ms" in stats
        test = client.post(f"/api/v1/tools/{tool['id']}/test", json={
            "arguments": {"expression": "2+2"}, "expected_output": {"result": 4}}).json()
        assert test["passed"] is True
        assert client.get(f"/api/v1/tools/{tool['id']}/stats").json()["total_executions"] == 2
        categories = client.get("/api/v1/tools/categories").json()
        assert {"name": "util", "count": 1} in [
            {k: c[k] for k in ("name", "count")} for c in categories["items"]]
        types = client.get("/api/v1/tools/types").json()
        assert [t["name"] for t in types["items"]] == ["http", "builtin", "mcp"]
        deployed = client.post(f"/api/v1/tools/{tool['id']}/deploy", json={}).json()
        assert deployed["status"] == "TOOL_STATUS_DEPLOYED"
        body = assert_envelope(client.delete(f"/api/v1/tools/{tool['id']}"), 409,
                               "FAILED_PRECONDITION")
        assert body["details"]["reason"] == "TOOL_DEPLOYED"


def test_arguments_not_matching_the_schema_are_400_naming_the_field(egress_mesh, owner):
    with egress_mesh.client(owner.token) as client:
        tool = _create(client, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"},
                       input_schema={"type": "object", "required": ["city"],
                                     "properties": {"city": {"type": "string"},
                                                    "days": {"type": "integer"}}})
        body = assert_envelope(client.post(f"/api/v1/tools/{tool['id']}/execute",
                                           json={"arguments": {"days": "three"}}),
                               400, "INVALID_ARGUMENT")
        fields = [v["field"] for v in body["details"]["field_violations"]]
        assert fields == ["arguments.city", "arguments.days"]
        assert "arguments.city" in body["message"]


def test_a_tool_of_another_tenant_is_404(egress_mesh, owner):
    stranger = register(egress_mesh, "globex")
    with egress_mesh.client(owner.token) as client:
        tool = _create(client, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"})
    with egress_mesh.client(stranger.token) as client:
        for key in (tool["id"], tool["name"]):
            assert_envelope(client.get(f"/api/v1/tools/{key}"), 404, "NOT_FOUND")
            assert_envelope(client.post(f"/api/v1/tools/{key}/execute", json={"arguments": {}}),
                            404, "NOT_FOUND")
            assert_envelope(client.get(f"/api/v1/tools/{key}/stats"), 404, "NOT_FOUND")


def test_http_tool_against_a_local_server(egress_mesh, owner, web):
    with egress_mesh.client(owner.token) as client:
        tool = _create(client, type="TOOL_TYPE_HTTP",
                       http={"url": web.url + "/orders/{order_id}", "method": "GET"},
                       input_schema={"type": "object", "required": ["order_id"],
                                     "properties": {"order_id": {"type": "string"}}})
        assert client.post(f"/api/v1/tools/{tool['id']}/validate", json={}).json() == {
            "valid": True, "errors": []}
        run = client.post(f"/api/v1/tools/{tool['id']}/execute",
                          json={"arguments": {"order_id": "A-1", "verbose": "yes"}}).json()
        assert run["status"] == "TOOL_EXECUTION_STATUS_COMPLETED", run
        assert run["output"]["path"] == "/orders/A-1" and run["output"]["query"] == {"verbose": "yes"}


def test_mcp_tool_against_a_real_mcp_server(egress_mesh, owner, mcp_server):
    with egress_mesh.client(owner.token) as client:
        tool = _create(client, type="TOOL_TYPE_MCP",
                       mcp={"server_url": mcp_server.url, "tool_name": "shout"},
                       input_schema={"type": "object", "properties": {"text": {"type": "string"}}})
        assert client.post(f"/api/v1/tools/{tool['id']}/validate", json={}).json()["valid"] is True
        run = client.post(f"/api/v1/tools/{tool['id']}/execute",
                          json={"arguments": {"text": "hello"}}).json()
        assert run["status"] == "TOOL_EXECUTION_STATUS_COMPLETED", run
        assert run["output"] == {"result": "HELLO"}


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/iam",
                                 "http://127.0.0.1:{port}/", "http://localhost:{port}/"])
def test_ssrf_targets_are_refused_without_allow_list(mesh, tenant, web, url):
    """The shared mesh has the default, empty AGENTMESH_EGRESS_ALLOW."""
    with mesh.client(tenant.token) as client:
        tool = _create(client, type="TOOL_TYPE_HTTP",
                       http={"url": url.format(port=web.port), "timeout": "2s"})
        body = assert_envelope(client.post(f"/api/v1/tools/{tool['id']}/execute",
                                           json={"arguments": {}}), 403, "PERMISSION_DENIED")
        assert body["details"]["reason"] == "EGRESS_DENIED"
        assert "refused" in body["message"] and body["details"]["range"] in (
            "link-local", "loopback")
        validation = client.post(f"/api/v1/tools/{tool['id']}/validate", json={}).json()
        assert validation["valid"] is False and validation["errors"][0]["field"] == "http.url"


def test_ssrf_redirect_to_loopback_is_refused(egress_mesh, owner, web):
    """127.0.0.1 is allowed on this mesh; the redirect goes to 127.0.0.2, loopback, not allowed."""
    before = len(web.requests)
    with egress_mesh.client(owner.token) as client:
        tool = _create(client, type="TOOL_TYPE_HTTP", http={
            "url": f"{web.url}/redirect?to=http://127.0.0.2:{web.port}/secret", "method": "GET"})
        body = assert_envelope(client.post(f"/api/v1/tools/{tool['id']}/execute",
                                           json={"arguments": {}}), 403, "PERMISSION_DENIED")
        assert body["details"]["reason"] == "EGRESS_DENIED" and body["details"]["range"] == "loopback"
    assert [r["path"] for r in web.requests[before:]] == ["/redirect"]


def test_math_results_no_answer_can_carry_are_400_naming_the_problem(egress_mesh, owner):
    """An infinite or complex result was a 502 / 500 (the answer could not be printed); it is
    the caller's expression, so a 400 naming it, and the execution is recorded as failed."""
    with egress_mesh.client(owner.token) as client:
        tool = _create(client, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "math"})
        for expression, problem in (("1e308*10", "not a finite number"),
                                    ("(-8)**0.5", "complex number"),
                                    ("10**1000", "past the range")):
            reply = client.post(f"/api/v1/tools/{tool['id']}/execute",
                                json={"arguments": {"expression": expression}})
            error = assert_envelope(reply, 400, "INVALID_ARGUMENT")
            assert error["details"]["reason"] == "RESULT_NOT_REPRESENTABLE"
            assert error["details"]["field_violations"][0]["field"] == "arguments.expression"
            assert problem in error["message"] and error["details"]["execution_id"]
            test = client.post(f"/api/v1/tools/{tool['id']}/test",
                               json={"arguments": {"expression": expression}})
            assert test.status_code == 200, test.text
            assert test.json()["passed"] is False and problem in test.json()["error"]
        stats = client.get(f"/api/v1/tools/{tool['id']}/stats").json()
        assert stats["total_executions"] == 3 and stats["failed_executions"] == 3
        fine = client.post(f"/api/v1/tools/{tool['id']}/execute",
                           json={"arguments": {"expression": "abs((-8)**0.5) ** 2"}})
        assert fine.status_code == 200 and round(fine.json()["output"]["result"]) == 8


def test_schema_references_outside_the_schema_are_refused_and_never_fetched(egress_mesh, owner):
    """A `$ref` to an address or a file made the server GET it (or read it) when a tool was
    tested or a workflow executed. Every resource holding a user JSON Schema refuses it when
    saved (400 naming the field); what is saved validates without fetching anything."""
    from tests.fakes.listener import Listener

    listener = Listener()
    remote = {"$ref": f"{listener.url}/internal-admin?probe=1"}
    key_file = {"$ref": f"file://{egress_mesh.data_dir}/secrets-kek.json#/keys"}
    local = {"type": "object", "properties": {"q": {"$ref": "#/$defs/text"}},
             "$defs": {"text": {"type": "string"}}}
    try:
        with egress_mesh.client(owner.token) as client:
            for schema in (remote, key_file, {"type": "object",
                                              "properties": {"q": {"$ref": "other.json"}}}):
                for field in ("input_schema", "output_schema"):
                    reply = client.post("/api/v1/tools", json={
                        "name": _name(), "type": "TOOL_TYPE_BUILTIN",
                        "builtin": {"builtin_name": "echo"}, field: schema})
                    error = assert_envelope(reply, 400, "INVALID_ARGUMENT")
                    assert error["details"]["field_violations"][0]["field"].startswith(field)
                reply = client.post("/api/v1/workflows", json={
                    "name": _name(), "input_schema": schema, "steps": [
                        {"id": "a", "type": "STEP_TYPE_TRANSFORM",
                         "transform": {"expression": "inputs"}}]})
                error = assert_envelope(reply, 400, "INVALID_ARGUMENT")
                assert error["details"]["field_violations"][0]["field"].startswith("input_schema")
                reply = client.post("/api/v1/master-data/skills", json={
                    "name": _name(), "parameters": schema})
                error = assert_envelope(reply, 400, "INVALID_ARGUMENT")
                assert error["details"]["field_violations"][0]["field"].startswith("parameters")
            # Saved with local references only: tested, executed, and updated to a remote one.
            tool = _create(client, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"},
                           input_schema=local)
            tested = client.post(f"/api/v1/tools/{tool['id']}/test",
                                 json={"arguments": {"q": 1}}).json()
            assert tested["passed"] is False and tested["errors"][0]["field"] == "arguments.q"
            ran = client.post(f"/api/v1/tools/{tool['id']}/execute",
                              json={"arguments": {"q": "x"}})
            assert ran.status_code == 200 and ran.json()["output"] == {"q": "x"}
            assert_envelope(client.put(f"/api/v1/tools/{tool['id']}",
                                       json={"input_schema": remote}), 400, "INVALID_ARGUMENT")
            workflow = client.post("/api/v1/workflows", json={
                "name": _name(), "input_schema": local, "steps": [
                    {"id": "a", "type": "STEP_TYPE_TRANSFORM",
                     "transform": {"expression": "inputs"}}]}).json()
            client.post(f"/api/v1/workflows/{workflow['id']}/activate", json={})
            error = assert_envelope(client.post(f"/api/v1/workflows/{workflow['id']}/execute",
                                                json={"inputs": {"q": 5}}), 400,
                                    "INVALID_ARGUMENT")
            assert error["details"]["field_violations"][0]["field"] == "inputs.q"
            assert_envelope(client.put(f"/api/v1/workflows/{workflow['id']}",
                                       json={"input_schema": key_file}), 400, "INVALID_ARGUMENT")
            assert client.get(f"/api/v1/tools/{tool['id']}").json()["input_schema"] == local
    finally:
        listener.close()
    assert listener.seen == []


def test_no_form_of_a_secret_reaches_an_answer_a_record_or_a_log(egress_mesh, owner, web):
    """A secret in an HTTP tool's host came back lower-cased in the error (`cannot resolve host
    'supersecretvalue123'`), past the exact-value mask. Its value, in any case and as the
    request path transforms it (percent-encoding, punycode, JSON escapes, Basic base64), is in
    no answer, no tool or workflow execution record and no log of the mesh."""
    import base64
    import json
    import time
    from urllib.parse import quote

    hex_ = uuid.uuid4().hex[:10]
    host_secret = f"SuperSecretValue{hex_}"  # letters a host can have, in mixed case
    path_secret = f"Geheim Välue-{hex_}X"    # a space and a non-ASCII letter
    with egress_mesh.client(owner.token) as client:
        for name, value in (("s1", host_secret), ("s2", path_secret)):
            reply = client.post("/api/v1/master-data/secrets", json={
                "name": f"{name}-{hex_}", "value": value, "secret_type": "SECRET_TYPE_API_KEY"})
            assert reply.status_code == 200, reply.text
        s1, s2 = f"s1-{hex_}", f"s2-{hex_}"
        in_host = _create(client, type="TOOL_TYPE_HTTP",
                          http={"url": "http://${secrets.%s}/" % s1, "method": "GET"})
        odd_host = _create(client, type="TOOL_TYPE_HTTP",
                           http={"url": "http://${secrets.%s}/" % s2, "method": "GET"})
        echoed = _create(client, type="TOOL_TYPE_HTTP", http={
            "url": web.url + "/echo/${secrets.%s}/${secrets.%s}" % (s1, s2), "method": "POST",
            "headers": {"X-Token": "${secrets.%s}" % s1}},
            config={"auth": {"type": "basic", "username": "user", "secret": s2},
                    "body": {"token": "${secrets.%s}" % s1}})
        answers = []
        for tool in (in_host, odd_host, echoed):
            for action in ("test", "execute"):
                reply = client.post(f"/api/v1/tools/{tool['id']}/{action}",
                                    json={"arguments": {}})
                assert reply.status_code < 500, reply.text
                answers.append(reply.text)
        assert "***" in answers[0] and "***" in answers[-1]  # the errors and echoes were masked
        assert json.loads(answers[-1])["status"] == "TOOL_EXECUTION_STATUS_COMPLETED"
        workflow = client.post("/api/v1/workflows", json={"name": _name("wf"), "steps": [
            {"id": "echo", "type": "STEP_TYPE_TOOL", "tool": {"tool_id": echoed["id"]}},
            {"id": "host", "type": "STEP_TYPE_TOOL", "depends_on": ["echo"],
             "tool": {"tool_id": in_host["id"]}}]}).json()
        client.post(f"/api/v1/workflows/{workflow['id']}/activate", json={})
        execution = client.post(f"/api/v1/workflows/{workflow['id']}/execute", json={}).json()
        deadline = time.monotonic() + 60
        while execution["status"] not in ("EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED"):
            assert time.monotonic() < deadline, execution
            time.sleep(0.2)
            execution = client.get(f"/api/v1/workflows/executions/{execution['id']}").json()
        assert execution["status"] == "EXECUTION_STATUS_FAILED"
        records = [json.dumps(execution),
                   client.get(f"/api/v1/workflow-status/{execution['id']}").text]
        records.append(client.get("/api/v1/observability/logs",
                                  params={"page_size": 100}).text)
    # The records as stored: tool executions, workflow executions and DBOS's step checkpoints.
    stored = sorted(egress_mesh.data_dir.glob("*.db"))
    assert {"tools.db", "workflows.db", "workflows.dbos.db"} <= {p.name for p in stored}
    records += [path.read_bytes().decode("utf-8", errors="replace") for path in stored
                if path.name.startswith(("tools", "workflows"))]
    logs = [path.read_text(errors="replace")
            for path in (egress_mesh.data_dir / "logs").glob("*.log")]
    assert logs
    forms = set()
    for value in (host_secret, path_secret):
        forms |= {value, quote(value, safe=""), quote(value), json.dumps(value)[1:-1],
                  base64.b64encode(f"user:{value}".encode()).decode()}
    forms.add("xn--" + path_secret.lower().encode("punycode").decode())
    for where, text in [("answer", a) for a in answers] + [("record", r) for r in records] + \
            [("log", text) for text in logs]:
        lowered = text.lower()
        for form in forms:
            assert form.lower() not in lowered, (where, form, text[:2000])
