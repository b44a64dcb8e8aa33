"""Templates through the real gateway as a user: CRUD and isolation, preview, instantiate (an
agent appears in /agents), export YAML and import it back as a copy with an identical body,
and bad templates refused with nothing created."""

from __future__ import annotations

import json
import uuid

import yaml

from tests.conftest import assert_envelope

URL = "/api/v1/templates"


def _name(prefix="tpl"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _agent_template(name):
    return {
        "name": name, "kind": "TEMPLATE_KIND_AGENT", "category": "support", "tags": ["e2e"],
        "description": "a support agent",
        "content": {"name": "{{ agent_name }}", "model": "{{ model }}",
                    "system_prompt": "You help the {{ team }} team.",
                    "config": {"max_steps": "{{ steps }}"}, "tools": ["search"]},
        "parameters": [
            {"name": "agent_name", "required": True, "description": "the agent's name"},
            {"name": "model", "default_value": "gpt-4o"},
            {"name": "team", "required": True},
            {"name": "steps", "type": "integer", "default_value": 5}],
    }


def test_a_template_through_its_versions_and_labels_for_its_tenant_only(mesh, tenant, other_tenant):
    name = _name()
    with mesh.client(tenant.token) as client:
        created = client.post(URL, json=_agent_template(name))
        assert created.status_code == 200, created.text
        template = created.json()
        assert template["version"] == 1 and template["kind"] == "TEMPLATE_KIND_AGENT"
        assert template["parameters"][3]["default_value"] == 5
        assert client.get(f"{URL}/{name}").json()["id"] == template["id"]
        changed = client.put(f"{URL}/{name}", json={"content": {"name": "{{ agent_name }}"},
                                                    "description": "smaller"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["version"] == 2 and changed.json()["description"] == "smaller"
        versions = client.get(f"{URL}/{name}/versions").json()
        assert [v["version"] for v in versions["items"]] == [2, 1]
        labelled = client.put(f"{URL}/{name}/labels/production", json={"version": 1})
        assert labelled.status_code == 200, labelled.text
        assert labelled.json()["labels"] == {"production": 1}
        stable = client.get(f"{URL}/{name}/export", params={"label": "production"}).json()
        assert stable["version"] == 1 and stable["content"]["tools"] == ["search"]
        preview = client.get(f"{URL}/{name}/preview", params={"label": "production"}).json()
        assert preview["version"] == 1
        listed = client.get(URL, params={"search": name, "kind": "TEMPLATE_KIND_AGENT"}).json()
        assert listed["total"] == 1 and listed["items"][0]["id"] == template["id"]
        assert client.get(URL, params={"tag": "e2e", "search": name}).json()["total"] == 1
    with mesh.client(other_tenant.token) as client:
        for key in (template["id"], name):
            assert_envelope(client.get(f"{URL}/{key}"), 404, "NOT_FOUND")
            assert_envelope(client.put(f"{URL}/{key}", json={"description": "x"}), 404,
                            "NOT_FOUND")
            assert_envelope(client.delete(f"{URL}/{key}"), 404, "NOT_FOUND")
            assert_envelope(client.get(f"{URL}/{key}/preview"), 404, "NOT_FOUND")
        assert client.get(URL, params={"search": name}).json()["total"] == 0
    with mesh.client(tenant.token) as client:
        assert client.delete(f"{URL}/{name}").json() == {
            "success": True, "message": f"template '{name}' deleted"}
        assert_envelope(client.get(f"{URL}/{name}"), 404, "NOT_FOUND")


def test_preview_then_instantiate_creates_an_agent(mesh, tenant):
    name, agent_name = _name(), _name("agent")
    with mesh.client(tenant.token) as client:
        client.post(URL, json=_agent_template(name))
        preview = client.get(f"{URL}/{name}/preview",
                             params={"parameters": json.dumps({"team": "billing"}, separators=(",", ":"))})
        assert preview.status_code == 200, preview.text
        body = preview.json()
        assert body["result"]["system_prompt"] == "You help the billing team."
        assert body["result"]["config"] == {"max_steps": 5}
        assert body["result"]["name"] == "{{ agent_name }}"
        assert body["missing_parameters"] == ["agent_name"]
        assert client.get("/api/v1/agents", params={"search": agent_name}).json()["total"] == 0
        made = client.post(f"{URL}/{name}/instantiate", json={
            "parameters": {"agent_name": agent_name, "team": "billing", "steps": 9},
            "create": True})
        assert made.status_code == 200, made.text
        assert made.json()["resource_kind"] == "TEMPLATE_KIND_AGENT"
        agents = client.get("/api/v1/agents", params={"search": agent_name}).json()
        assert [a["id"] for a in agents["items"]] == [made.json()["resource_id"]]
        agent = agents["items"][0]
        assert agent["model"] == "gpt-4o" and agent["config"] == {"max_steps": 9}
        assert agent["tenant_id"] == tenant.tenant_id and agent["created_by"] == tenant.user_id
        assert_envelope(client.post(f"{URL}/{name}/instantiate", json={
            "parameters": {"agent_name": agent_name, "team": "x"}, "create": True}),
            409, "ALREADY_EXISTS")


def test_workflow_template_instantiates_a_workflow(mesh, tenant):
    name = _name()
    steps = [{"id": "shape", "type": "STEP_TYPE_TRANSFORM",
              "transform": {"expression": "inputs"}}]
    with mesh.client(tenant.token) as client:
        client.post(URL, json={"name": name, "kind": "TEMPLATE_KIND_WORKFLOW",
                               "content": {"name": "{{ n }}", "steps": steps},
                               "parameters": [{"name": "n", "default_value": f"flow-{name}"}]})
        rendered = client.post(f"{URL}/{name}/instantiate", json={})
        assert rendered.json()["result"]["name"] == f"flow-{name}"
        created = client.post(f"{URL}/{name}/instantiate", json={"create": True})
        assert created.status_code == 200, created.text
        listed = client.get("/api/v1/workflows", params={"search": f"flow-{name}"}).json()
        assert [w["name"] for w in listed["items"]] == [f"flow-{name}"]


def test_export_yaml_and_import_a_copy_round_trips(mesh, tenant):
    name = _name()
    with mesh.client(tenant.token) as client:
        client.post(URL, json=_agent_template(name))
        exported = client.get(f"{URL}/{name}/export", params={"format": "TEMPLATE_FORMAT_YAML"})
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("application/yaml")
        document = yaml.safe_load(exported.text)
        assert document["name"] == name and document["version"] == 1
        assert "id" not in document and "tenant_id" not in document
        by_accept = client.get(f"{URL}/{name}/export", headers={"Accept": "application/yaml"})
        assert by_accept.headers["content-type"].startswith("application/yaml")
        as_json = client.get(f"{URL}/{name}/export")
        assert as_json.headers["content-type"].startswith("application/json")
        assert json.loads(as_json.text) == document
        copy = client.post(f"{URL}/import", json={"content": exported.text,
                                                  "name": name + "-copy"})
        assert copy.status_code == 200, copy.text
        assert copy.json()["id"] != client.get(f"{URL}/{name}").json()["id"]
        again = yaml.safe_load(client.get(f"{URL}/{name}-copy/export",
                                          params={"format": "TEMPLATE_FORMAT_YAML"}).text)
        assert {**again, "name": name} == document
        assert_envelope(client.post(f"{URL}/import", json={"content": exported.text}), 409,
                        "ALREADY_EXISTS")
        from_json = client.post(f"{URL}/import", json={
            "content": as_json.text, "format": "TEMPLATE_FORMAT_JSON", "name": name + "-j"})
        assert from_json.json()["content"] == document["content"]


def test_bad_templates_are_400_and_create_nothing(mesh, tenant):
    good = _agent_template("unused")
    cases = [
        (dict(good, content={"name": "{{ ''.__class__ }}"}, parameters=[]), "content.name"),
        (dict(good, content={"name": "{{ cycler.__init__.__globals__.os }}"}, parameters=[]),
         "content.name"),
        (dict(good, parameters=[{"name": "steps", "type": "integer", "default_value": "five"}],
              content={"n": "{{ steps }}"}), "parameters[0].default_value"),
        (dict(good, parameters=[{"name": "steps", "type": "decimal"}],
              content={"n": "{{ steps }}"}), "parameters[0].type"),
        (dict(good, kind="TEMPLATE_KIND_UNSPECIFIED"), "kind"),
    ]
    with mesh.client(tenant.token) as client:
        for body, field in cases:
            body = dict(body, name=_name("bad"))
            error = assert_envelope(client.post(URL, json=body), 400, "INVALID_ARGUMENT")
            assert [v["field"] for v in error["details"]["field_violations"]] == [field], error
            assert client.get(URL, params={"search": body["name"]}).json()["total"] == 0
        name = _name()
        client.post(URL, json=_agent_template(name))
        agent_name = _name("never")
        wrong = assert_envelope(client.post(f"{URL}/{name}/instantiate", json={
            "parameters": {"agent_name": agent_name, "team": "b", "steps": "many"},
            "create": True}), 400, "INVALID_ARGUMENT")
        assert wrong["details"]["field_violations"][0]["field"] == "parameters.steps"
        assert client.get("/api/v1/agents", params={"search": agent_name}).json()["total"] == 0
        bad_doc = yaml.safe_dump({"name": _name("imp"), "kind": "TEMPLATE_KIND_AGENT",
                                  "content": {"x": "{{ y }}"},
                                  "parameters": [{"name": "y", "type": "strng"}]})
        error = assert_envelope(client.post(f"{URL}/import", json={"content": bad_doc}), 400,
                                "INVALID_ARGUMENT")
        assert error["details"]["field_violations"][0]["field"] == "parameters[0].type"
        error = assert_envelope(client.post(f"{URL}/import", json={"content": "a: [b"}), 400,
                                "INVALID_ARGUMENT")
        assert error["details"]["field_violations"][0]["field"] == "content"


def _nested(depth: int) -> dict:
    value: object = "leaf"
    for _ in range(depth - 1):
        value = {"a": value}
    return {"x": value}


def test_deeply_nested_documents_are_400_not_500(mesh, tenant):
    """A document nested past 32 levels is refused where it is parsed (it was an uncaught
    RecursionError, a 500); one within the bound imports."""
    deep_json = "[" * 100_000 + "]" * 100_000
    deep_yaml = "content:\n" + "".join("  " * i + "a:\n" for i in range(1, 60)) + \
        "  " * 60 + "b: 1\n"
    with mesh.client(tenant.token) as client:
        for body in ({"content": deep_json, "format": "TEMPLATE_FORMAT_JSON"},
                     {"content": "[" * 100_000 + "]" * 100_000},
                     {"content": deep_yaml},
                     {"content": json.dumps({"name": _name(), "kind": "TEMPLATE_KIND_AGENT",
                                             "content": _nested(40)}),
                      "format": "TEMPLATE_FORMAT_JSON"}):
            error = assert_envelope(client.post(f"{URL}/import", json=body), 400,
                                    "INVALID_ARGUMENT")
            assert error["details"]["field_violations"][0]["field"] == "content", error
            assert "nested deeper than 32 levels" in error["message"]
        name = _name()
        client.post(URL, json=_agent_template(name))
        for parameters in ("[" * 3000 + "]" * 3000, json.dumps(_nested(40))):
            error = assert_envelope(client.get(f"{URL}/{name}/preview", params={
                "parameters": parameters}), 400, "INVALID_ARGUMENT")
            assert error["details"]["field_violations"][0]["field"] == "parameters"
        # Within the bound: the document travels and comes back as it was written.
        fine = {"name": _name(), "kind": "TEMPLATE_KIND_AGENT", "content": _nested(20)}
        made = client.post(f"{URL}/import", json={"content": json.dumps(fine),
                                                  "format": "TEMPLATE_FORMAT_JSON"})
        assert made.status_code == 200, made.text
        assert made.json()["content"] == fine["content"]
