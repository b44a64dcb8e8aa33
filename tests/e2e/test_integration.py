"""The integration service through the real gateway, as a user: a tenant's whole setup exported,
imported into a new tenant and exported again (the same bundle, secrets as placeholders),
deploy-agent-workflow all or nothing, signed webhook deliveries to a local server with their
history, OpenAPI documents as tools, master-data sync, API connections under the SSRF guard,
batches, and no 5xx for empty, malformed or oversized input."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from mesh.runtime.webhooks import verify
from tests.conftest import assert_envelope, register

URL = "/api/v1/integration"


def _name(prefix="it"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(reply):
    assert reply.status_code == 200, reply.text
    return reply.json()


def _setup(client) -> None:
    """A tenant with one of everything: secret, skill, model, prompt with two versions and a
    label, tool, template with two versions, agent, workflow using the agent, connection."""
    _ok(client.post("/api/v1/master-data/secrets", json={
        "name": "search-key", "value": "s3cr3t-value-123", "secret_type": "SECRET_TYPE_API_KEY"}))
    _ok(client.post("/api/v1/master-data/skills", json={
        "name": "triage", "description": "sorts tickets", "category": "support"}))
    _ok(client.post("/api/v1/master-data/models", json={
        "name": "fast", "provider": "openai", "model_id": "gpt-4o-mini",
        "secret_ref": "search-key"}))
    prompt = _ok(client.post("/api/v1/master-data/prompts", json={
        "name": "greeter", "content": "Hello {{ who }}", "category": "support"}))
    _ok(client.post(f"/api/v1/master-data/prompts/{prompt['id']}/versions", json={
        "content": "Hi there {{ who }}", "changelog": "friendlier"}))
    _ok(client.put(f"/api/v1/master-data/prompts/{prompt['id']}/labels/production",
                   json={"version": 1}))
    tool = _ok(client.post("/api/v1/tools", json={
        "name": "lookup", "type": "TOOL_TYPE_HTTP", "description": "looks things up",
        "http": {"url": "https://api.example.com/items/{item}", "method": "GET"},
        "input_schema": {"type": "object", "properties": {"item": {"type": "string"}}},
        "secret_refs": ["search-key"]}))
    template = _ok(client.post("/api/v1/templates", json={
        "name": "support-agent", "kind": "TEMPLATE_KIND_AGENT",
        "content": {"name": "{{ name }}", "system_prompt": "Help {{ team }}."},
        "parameters": [{"name": "name", "required": True}, {"name": "team",
                                                           "default_value": "billing"}]}))
    _ok(client.post(f"/api/v1/templates/{template['id']}/versions", json={
        "content": {"name": "{{ name }}", "system_prompt": "Help the {{ team }} team."},
        "changelog": "clearer"}))
    agent = _ok(client.post("/api/v1/agents", json={
        "name": "helper", "model": "fast", "prompt_id": prompt["id"], "tools": [tool["id"]],
        "skills": ["triage"]}))
    _ok(client.post("/api/v1/workflows", json={
        "name": "Help flow", "slug": "help-flow", "steps": [
            {"id": "ask", "type": "STEP_TYPE_AGENT",
             "agent": {"agent_id": agent["id"], "prompt": "inputs.question"}},
            {"id": "done", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["ask"],
             "transform": {"expression": "steps.ask.output"}}]}))
    _ok(client.post(f"{URL}/api-connection", json={
        "name": "crm", "base_url": "https://crm.example.com/v1",
        "auth_type": "AUTH_TYPE_BEARER", "secret_ref": "search-key",
        "headers": {"X-Team": "support"}}))


def _export(client, **body) -> dict:
    reply = client.post(f"{URL}/export", json=body)
    assert reply.status_code == 200, reply.text
    assert "attachment" in reply.headers.get("content-disposition", "")
    return reply.json() if "json" in reply.headers["content-type"] else yaml.safe_load(reply.text)


def test_export_import_export_gives_the_same_bundle(mesh):
    source, target = register(mesh, "export-src"), register(mesh, "export-dst")
    with mesh.client(source.token) as client:
        _setup(client)
        bundle = _export(client)
        as_yaml = client.post(f"{URL}/export", json={"format": "EXPORT_FORMAT_YAML"})
        assert as_yaml.headers["content-type"].startswith("application/yaml")
        assert yaml.safe_load(as_yaml.text) == bundle
    assert bundle["version"] == 1 and bundle["kind"] == "agentmesh.bundle"
    text = json.dumps(bundle)
    assert "s3cr3t-value-123" not in text
    assert bundle["secrets"] == [{"name": "search-key", "secret_type": "SECRET_TYPE_API_KEY",
                                  "value": "<fill in>"}]
    prompt = bundle["prompts"][0]
    assert [v["content"] for v in prompt["versions"]] == ["Hello {{ who }}",
                                                         "Hi there {{ who }}"]
    assert prompt["labels"] == {"production": 1}
    assert len(bundle["templates"][0]["versions"]) == 2
    agent = bundle["agents"][0]
    # references are names, not the source tenant's ids
    assert agent["tools"] == ["lookup"] and agent["prompt_id"] == "greeter"
    assert bundle["workflows"][0]["steps"][0]["agent"]["agent_id"] == "helper"
    assert "id" not in agent and "created_at" not in agent

    with mesh.client(target.token) as client:
        # the placeholder must be filled: 400 naming the secret, nothing created
        refused = client.post(f"{URL}/import", json={"data": bundle})
        body = assert_envelope(refused, 400, "INVALID_ARGUMENT")
        assert [v["field"] for v in body["details"]["field_violations"]] == ["secrets[0].value"]
        assert client.get("/api/v1/agents").json()["total"] == 0
        filled = json.loads(json.dumps(bundle))
        filled["secrets"][0]["value"] = "another-value-456"
        result = _ok(client.post(f"{URL}/import", json={"data": filled}))
        assert result["failed"] == 0, result
        assert result["created"] == sum(len(v) for v in bundle.values() if isinstance(v, list))
        again = _export(client)
        assert again == bundle
        # importing again skips everything; rename makes copies with references following
        assert _ok(client.post(f"{URL}/import", json={"data": filled}))["skipped"] == \
            result["created"]
        renamed = _ok(client.post(f"{URL}/import", json={
            "data": {"kind": "agentmesh.bundle", "version": 1, "tools": bundle["tools"],
                     "agents": bundle["agents"]}, "mode": "IMPORT_MODE_RENAME"}))
        assert {(r["name"], r["original_name"]) for r in renamed["results"]} == {
            ("lookup-2", "lookup"), ("helper-2", "helper")}
        copy = client.get("/api/v1/agents/helper-2").json()
        assert copy["tools"] == ["lookup-2"]


def test_import_lists_every_problem_and_import_file_takes_raw_json_or_yaml(mesh, tenant):
    bad = {"kind": "agentmesh.bundle", "version": 2, "agents": [{"name": "ok-1"}, {"name": ""},
                                                               {"name": "x", "model": 5}],
           "tools": "nope", "extra": []}
    with mesh.client(tenant.token) as client:
        body = assert_envelope(client.post(f"{URL}/import", json={"data": bad}), 400,
                               "INVALID_ARGUMENT")
        fields = [v["field"] for v in body["details"]["field_violations"]]
        assert {"version", "extra", "tools", "agents[1].name", "agents[2]"} <= set(fields)
        name = _name("filed")
        document = {"kind": "agentmesh.bundle", "version": 1, "skills": [{"name": name}]}
        raw = client.post(f"{URL}/import-file", content=json.dumps(document).encode(),
                          headers={"Content-Type": "application/json"})
        assert _ok(raw)["created"] == 1
        as_yaml = yaml.safe_dump({**document, "skills": [{"name": name + "-y"}]})
        from_yaml = client.post(f"{URL}/import-file", content=as_yaml.encode(),
                                headers={"Content-Type": "application/json"},
                                params={"dry_run": "true"})
        assert _ok(from_yaml)["dry_run"] is True and from_yaml.json()["created"] == 1
        assert client.get(f"/api/v1/master-data/skills/{name}-y").status_code == 404
        assert_envelope(client.post(f"{URL}/import-file", content=b"{not: [valid",
                                    headers={"Content-Type": "application/json"}), 400,
                        "INVALID_ARGUMENT")


def test_deploy_agent_workflow_is_all_or_nothing(mesh, tenant):
    agent_name = _name("deploy")
    with mesh.client(tenant.token) as client:
        failing = client.post(f"{URL}/deploy-agent-workflow", json={
            "agent": {"name": agent_name, "model": "gpt-4o"},
            "workflow": {"name": "broken", "steps": [
                {"id": "a", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["missing"],
                 "transform": {"expression": "`1`"}}]}})
        assert_envelope(failing, 400, "INVALID_ARGUMENT")
        assert_envelope(client.get(f"/api/v1/agents/{agent_name}"), 404, "NOT_FOUND")
        done = _ok(client.post(f"{URL}/deploy-agent-workflow", json={
            "agent": {"name": agent_name, "model": "gpt-4o"},
            "environment": "staging",
            "workflow": {"name": "works", "slug": _name("flow"), "steps": [
                {"id": "ask", "type": "STEP_TYPE_AGENT",
                 "agent": {"agent_id": "{{agent}}", "prompt": "inputs.q"}}]}}))
        assert done["agent_status"] == "DEPLOYED" and done["workflow_status"] == "ACTIVE"
        assert done["agent_created"] and done["workflow_created"]
        assert client.get(f"/api/v1/agents/{agent_name}").json()["status"] == \
            "AGENT_STATUS_DEPLOYED"


def test_agent_from_template_and_batches(mesh, tenant):
    template, agent = _name("tpl"), _name("from-tpl")
    with mesh.client(tenant.token) as client:
        _ok(client.post("/api/v1/templates", json={
            "name": template, "kind": "TEMPLATE_KIND_AGENT",
            "content": {"name": "{{ name }}", "system_prompt": "Help {{ team }}."},
            "parameters": [{"name": "name", "required": True}, {"name": "team",
                                                               "required": True}]}))
        missing = client.post(f"{URL}/agent-from-template", json={
            "template_id": template, "name": agent})
        assert_envelope(missing, 400, "INVALID_ARGUMENT")
        made = _ok(client.post(f"{URL}/agent-from-template", json={
            "template_id": template, "name": agent, "parameters": {"team": "billing"},
            "deploy": True}))
        assert made["deployed"] and made["status"] == "DEPLOYED"
        assert client.get(f"/api/v1/agents/{agent}").json()["system_prompt"] == "Help billing."
        assert_envelope(client.post(f"{URL}/agent-from-template", json={
            "template_id": _name("none"), "name": _name()}), 404, "NOT_FOUND")

        a, b = _name("batch"), _name("batch")
        mixed = _ok(client.post(f"{URL}/batch/agents", json={"agents": [
            {"name": a}, {"name": agent}, {"name": "bad name!"}]}))
        assert [r["status"] for r in mixed["results"]] == ["created", "failed", "failed"]
        assert mixed["results"][1]["error"].startswith("ALREADY_EXISTS")
        atomic = _ok(client.post(f"{URL}/batch/agents", json={
            "atomic": True, "agents": [{"name": b}, {"name": agent}]}))
        assert [r["status"] for r in atomic["results"]] == ["rolled_back", "failed"]
        assert_envelope(client.get(f"/api/v1/agents/{b}"), 404, "NOT_FOUND")
        assert_envelope(client.post(f"{URL}/batch/agents", json={
            "agents": [{"name": _name()}] * 101}), 400, "INVALID_ARGUMENT")
        flows = _ok(client.post(f"{URL}/batch/workflows", json={"workflows": [
            {"name": "one", "slug": _name("wf"), "steps": [
                {"id": "s", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`1`"}}]},
            {"description": "no name"}]}))
        assert flows["results"][0]["status"] == "created" and flows["succeeded"] == 1


def test_connections_and_webhooks_obey_the_egress_guard(mesh, tenant):
    with mesh.client(tenant.token) as client:
        conn = _name("local")
        _ok(client.post(f"{URL}/api-connection", json={"name": conn,
                                                       "base_url": "http://127.0.0.1:9/x"}))
        assert_envelope(client.post(f"{URL}/api-connections/{conn}/test", json={}), 403,
                        "PERMISSION_DENIED")
        assert_envelope(client.post(f"{URL}/webhook", json={
            "name": _name("hook"), "url": "http://169.254.169.254/latest"}), 403,
            "PERMISSION_DENIED")
        assert_envelope(client.post(f"{URL}/api-connection", json={
            "name": _name(), "base_url": "https://x.example.com",
            "auth_type": "AUTH_TYPE_BEARER", "secret_ref": "no-such-secret"}), 404, "NOT_FOUND")
        listed = _ok(client.get(f"{URL}/api-connections", params={"search": conn}))
        assert listed["total"] == 1 and listed["items"][0]["name"] == conn
        status = _ok(client.get(f"{URL}/status"))
        assert status["status"] == "healthy" and status["api_connections"] >= 1


@pytest.mark.parametrize("route", [
    "agent-from-template", "deploy-agent-workflow", "external-tool", "sync-master-data",
    "export", "import", "import-file", "webhook", "api-connection", "batch/agents",
    "batch/workflows", "api-connections/x/test"])
def test_no_5xx_for_empty_malformed_or_oversized_input(mesh, tenant, route):
    with mesh.client(tenant.token) as client:
        for body in (b"", b"{", b"[]", b'{"a": ' + b"[" * 200 + b"]" * 200 + b"}",
                     json.dumps({"name": "x" * 5000, "agents": [{}] * 150,
                                 "data": {"version": 1, "agents": "x" * 600_000}}).encode(),
                     b"x" * (2 * 1024 * 1024)):
            reply = client.post(f"{URL}/{route}", content=body,
                                headers={"Content-Type": "application/json"})
            assert reply.status_code < 500, (route, body[:40], reply.status_code, reply.text)


def test_signed_webhook_delivery_from_a_real_event(egress_mesh, web):
    tenant = register(egress_mesh, "hooks")
    secret = "whsec_" + uuid.uuid4().hex
    with egress_mesh.client(tenant.token) as client:
        hook = _ok(client.post(f"{URL}/webhook", json={
            "name": "deploys", "url": f"{web.url}/hook", "events": ["agent.*"],
            "secret": secret}))
        assert not hook.get("secret"), hook
        assert hook["secret_hint"] == "****" + secret[-4:], hook
        _ok(client.post(f"{URL}/deploy-agent-workflow", json={
            "agent": {"name": "hooked"}, "workflow": {"name": "wf", "slug": "wf", "steps": [
                {"id": "ask", "type": "STEP_TYPE_AGENT",
                 "agent": {"agent_id": "{{agent}}", "prompt": "inputs.q"}}]}}))
        import time

        for _ in range(100):
            got = [r for r in web.requests if r["path"] == "/hook"]
            history = _ok(client.get(f"{URL}/webhooks/deploys/deliveries"))
            if got and history["total"] and history["items"][0]["status"] != "pending":
                break
            time.sleep(0.1)
        assert len(got) == 1, got
        request = got[0]
        assert request["headers"]["X-AgentMesh-Event"] == "agent.deployed"
        raw = json.dumps(request["body"], separators=(",", ":")).encode()
        assert verify(secret, request["headers"]["X-AgentMesh-Signature"], raw)
        from standardwebhooks import Webhook
        assert Webhook(secret).verify(raw, request["headers"]) == request["body"]
        assert request["body"]["data"]["name"] == "hooked"
        item = history["items"][0]
        assert item["status"] == "delivered" and item["status_code"] == 200
        assert item["attempts"] == 1 and item["event"] == "agent.deployed"

        # an OpenAPI document fetched through the guard: one tool per operation
        spec = {"openapi": "3.0.0", "servers": [{"url": web.url}], "paths": {
            "/items/{id}": {"get": {"operationId": "getItem", "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "verbose", "in": "query", "schema": {"type": "boolean"}}]}},
            "/items": {"post": {"operationId": "addItem", "requestBody": {"content": {
                "application/json": {"schema": {"type": "object", "required": ["title"],
                                                "properties": {"title": {"type": "string"}}}}}}}}}}
        tools = _ok(client.post(f"{URL}/external-tool", json={"name": "items", "openapi": spec,
                                                              "deploy": True}))
        assert sorted(t["name"] for t in tools["tools"]) == ["items.addItem", "items.getItem"]
        get_item = client.get("/api/v1/tools/items.getItem").json()
        assert get_item["http"]["url"] == f"{web.url}/items/{{id}}"
        assert get_item["input_schema"]["required"] == ["id"]
        ran = _ok(client.post("/api/v1/tools/items.getItem/execute",
                              json={"arguments": {"id": "42"}}))
        assert ran["output"]["path"] == "/items/42", ran

        # master data from a document: created, then unchanged, then updated
        doc = {"skills": [{"name": "s1", "description": "one"}]}
        first = _ok(client.post(f"{URL}/sync-master-data", json={"document": doc}))
        assert first["created"] == 1
        second = _ok(client.post(f"{URL}/sync-master-data", json={"document": doc}))
        assert second["results"][0]["action"] == "unchanged"
        doc["skills"][0]["description"] = "uno"
        third = _ok(client.post(f"{URL}/sync-master-data", json={"document": doc}))
        assert third["updated"] == 1

        # connection test reaches the allowed local server
        _ok(client.post(f"{URL}/api-connection", json={"name": "web", "base_url": web.url}))
        tested = _ok(client.post(f"{URL}/api-connections/web/test", json={"path": "/ping"}))
        assert tested["ok"] and tested["status_code"] == 200


def test_a_delivery_the_receiver_refused_is_listed_pending_then_delivered(egress_mesh, web):
    """What a user sees while a receiver is starting: the delivery listed as pending with its
    attempt, the receiver's answer and when it is tried next; then delivered on the retry,
    with the same delivery id."""
    import time
    from datetime import datetime

    tenant = register(egress_mesh, "flaky")
    path = f"/flaky/{uuid.uuid4().hex}"
    with egress_mesh.client(tenant.token) as client:
        _ok(client.post(f"{URL}/webhook", json={
            "name": "imports", "url": f"{web.url}{path}?times=1", "events": ["data.imported"]}))
        _ok(client.post(f"{URL}/import", json={"data": {"version": 1}}))
        pending = None
        for _ in range(100):
            items = _ok(client.get(f"{URL}/webhooks/imports/deliveries"))["items"]
            if items and items[0]["attempts"] >= 1:
                pending = pending or items[0]
                if items[0]["status"] != "pending":
                    break
            time.sleep(0.1)
        done = items[0]
    assert pending["status"] == "pending" and pending["attempts"] == 1, pending
    assert pending["status_code"] == 503 and pending["error"] == "HTTP 503"
    when = {k: datetime.fromisoformat(pending[k]) for k in ("next_attempt_at", "updated_at")}
    assert when["next_attempt_at"] > when["updated_at"]
    assert done["status"] == "delivered" and done["attempts"] == 2, done
    assert done["status_code"] == 200 and not done.get("error") and "next_attempt_at" not in done
    hits = [r for r in web.requests if r["path"] == path]
    assert len(hits) == 2 and {h["headers"]["X-AgentMesh-Delivery"] for h in hits} == {done["id"]}
    assert hits[1]["body"]["event"] == "data.imported"


def test_an_execution_that_ends_and_a_call_that_fails_reach_the_webhooks(egress_mesh, web):
    """Events of other services: the workflows service tells integration when an execution
    ends, the agents service when a call fails; each reaches the subscribed webhook, signed."""
    import time

    tenant = register(egress_mesh, "events")
    secret = "whsec_" + uuid.uuid4().hex
    with egress_mesh.client(tenant.token) as client:
        _ok(client.post(f"{URL}/webhook", json={
            "name": "runs", "url": f"{web.url}/runs", "events": ["execution.finished", "call.failed"],
            "secret": secret}))
        workflow = _ok(client.post("/api/v1/workflows", json={"name": _name("flow"), "steps": [
            {"id": "a", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}}]}))
        _ok(client.post(f"/api/v1/workflows/{workflow['id']}/activate", json={}))
        execution = _ok(client.post(f"/api/v1/workflows/{workflow['id']}/execute",
                                    json={"inputs": {"x": 1}}))
        # A model that cannot be reached: the call ends FAILED (200 with the reason).
        _ok(client.post("/api/v1/master-data/secrets", json={
            "name": "k", "value": "sk-nothing-here", "secret_type": "SECRET_TYPE_API_KEY"}))
        model = _ok(client.post("/api/v1/master-data/models", json={
            "name": _name("model"), "provider": "openai_compatible", "model_id": "m",
            "endpoint_url": "http://127.0.0.1:9/v1", "secret_ref": "k"}))
        agent = _ok(client.post("/api/v1/agents", json={"name": _name("agent"),
                                                        "model": model["name"]}))
        _ok(client.post(f"/api/v1/agents/{agent['id']}/activate", json={}))
        answer = _ok(client.post(f"/api/v1/agents/{agent['id']}/interact",
                                 json={"message": "hello"}))
        assert answer["status"] == "CALL_STATUS_FAILED", answer
        for _ in range(150):
            got = {r["headers"]["X-AgentMesh-Event"]: r for r in web.requests
                   if r["path"] == "/runs"}
            if len(got) == 2:
                break
            time.sleep(0.1)
    assert set(got) == {"execution.finished", "call.failed"}, list(got)
    finished, failed = got["execution.finished"], got["call.failed"]
    for request in (finished, failed):
        raw = json.dumps(request["body"], separators=(",", ":")).encode()
        assert verify(secret, request["headers"]["X-AgentMesh-Signature"], raw)
        assert request["body"]["tenant_id"] == tenant.tenant_id
    assert finished["body"]["data"]["execution_id"] == execution["id"]
    assert finished["body"]["data"]["status"] == "EXECUTION_STATUS_COMPLETED"
    assert failed["body"]["data"]["id"] == answer["call_id"]
    assert failed["body"]["data"]["status"] == "CALL_STATUS_FAILED"


def test_deeply_nested_import_files_are_400_not_500(mesh, tenant):
    """Past 32 levels a bundle is refused where it is parsed (it was an uncaught
    RecursionError, a 500), in JSON and in YAML."""
    deep_yaml = "kind: agentmesh.bundle\nversion: 1\nskills:\n" + \
        "".join("  " * i + "- a:\n" for i in range(1, 60)) + "  " * 60 + "b: 1\n"
    with mesh.client(tenant.token) as client:
        for content in (b"[" * 100_000 + b"]" * 100_000, b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}",
                        deep_yaml.encode(), b"[" * 100_000):
            reply = client.post(f"{URL}/import-file", content=content,
                                headers={"Content-Type": "application/json"})
            error = assert_envelope(reply, 400, "INVALID_ARGUMENT")
            assert error["details"]["field_violations"][0]["field"] == "file", error
