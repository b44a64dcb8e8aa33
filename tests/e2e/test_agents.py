"""The agents API through the real gateway: tenancy, lifecycle, pagination and errors."""

from __future__ import annotations

import uuid

from tests.conftest import assert_envelope


def _name(prefix="agent"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_an_agent_is_reached_by_id_or_name_through_its_whole_life(mesh, tenant):
    name = _name()
    with mesh.client(tenant.token) as client:
        created = client.post("/api/v1/agents", json={
            "name": name, "model": "gpt-4o", "tools": ["search"], "config": {"temperature": 0.2}})
        assert created.status_code == 200, created.text
        agent = created.json()
        assert agent["name"] == name and agent["status"] == "AGENT_STATUS_DRAFT"
        assert agent["tenant_id"] == tenant.tenant_id and agent["config"] == {"temperature": 0.2}
        assert agent["created_at"] and agent["updated_at"]
        assert client.get(f"/api/v1/agents/{agent['id']}").json()["id"] == agent["id"]
        assert client.get(f"/api/v1/agents/{name}").json()["id"] == agent["id"]
        # With update_mask: a partial update; untouched fields stay.
        updated = client.put(f"/api/v1/agents/{name}", json={"description": "triages tickets"},
                             params={"update_mask": "description"})
        assert updated.status_code == 200, updated.text
        assert updated.json()["description"] == "triages tickets"
        assert updated.json()["model"] == "gpt-4o"
        assert updated.json()["version"] == 2
        # Without one: the fields the body carries; the others stay.
        plain = client.put(f"/api/v1/agents/{name}", json={"model": "gpt-4o-mini"})
        assert plain.json()["model"] == "gpt-4o-mini" and plain.json()["version"] == 3
        assert plain.json()["description"] == "triages tickets"
        # The mask sets a field to its default, which a plain body cannot.
        cleared = client.put(f"/api/v1/agents/{name}", json={}, params={"update_mask": "description"})
        assert cleared.json()["description"] == "" and cleared.json()["model"] == "gpt-4o-mini"
        deleted = client.delete(f"/api/v1/agents/{agent['id']}")
        assert deleted.json() == {"success": True, "message": f"agent '{name}' deleted"}
        assert_envelope(client.get(f"/api/v1/agents/{agent['id']}"), 404, "NOT_FOUND")


def test_tenants_cannot_see_or_touch_each_others_agents(mesh, tenant, other_tenant):
    name = _name("private")
    with mesh.client(tenant.token) as client:
        agent = client.post("/api/v1/agents", json={"name": name}).json()
    with mesh.client(other_tenant.token) as client:
        for key in (agent["id"], name):
            assert_envelope(client.get(f"/api/v1/agents/{key}"), 404, "NOT_FOUND")
            assert_envelope(client.put(f"/api/v1/agents/{key}", json={"name": "x"}),
                            404, "NOT_FOUND")
            assert_envelope(client.delete(f"/api/v1/agents/{key}"), 404, "NOT_FOUND")
            assert_envelope(client.post(f"/api/v1/agents/{key}/activate", json={}),
                            404, "NOT_FOUND")
        listed = client.get("/api/v1/agents", params={"search": name}).json()
        assert listed["total"] == 0 and listed["items"] == []
        # The same name is free in another tenant.
        assert client.post("/api/v1/agents", json={"name": name}).status_code == 200
    with mesh.client(tenant.token) as client:
        assert client.get(f"/api/v1/agents/{name}").json()["description"] == ""


def test_duplicate_name_is_409(mesh, tenant):
    name = _name()
    with mesh.client(tenant.token) as client:
        assert client.post("/api/v1/agents", json={"name": name}).status_code == 200
        body = assert_envelope(client.post("/api/v1/agents", json={"name": name}), 409,
                               "ALREADY_EXISTS")
        assert body["details"]["agent"] == name


def test_invalid_name_names_the_field(mesh, tenant):
    with mesh.client(tenant.token) as client:
        body = assert_envelope(client.post("/api/v1/agents", json={"name": "bad name!"}), 400,
                               "INVALID_ARGUMENT")
        assert body["details"]["field_violations"][0]["field"] == "name"
        assert_envelope(client.post("/api/v1/agents", json={"description": "no name"}), 400,
                        "INVALID_ARGUMENT")


def test_lifecycle_transitions_and_refusals(mesh, tenant):
    name = _name()
    with mesh.client(tenant.token) as client:
        client.post("/api/v1/agents", json={"name": name})
        refused = client.post(f"/api/v1/agents/{name}/deploy", json={})
        body = assert_envelope(refused, 409, "FAILED_PRECONDITION")
        assert body["details"]["status"] == "AGENT_STATUS_DRAFT"
        assert client.post(f"/api/v1/agents/{name}/activate", json={}).json()["status"] == "AGENT_STATUS_ACTIVE"
        deployed = client.post(f"/api/v1/agents/{name}/deploy", json={"environment": "staging"}).json()
        assert deployed["status"] == "AGENT_STATUS_DEPLOYED" and deployed["environment"] == "staging"
        assert deployed["deployed_at"]
        assert_envelope(client.delete(f"/api/v1/agents/{name}"), 409, "FAILED_PRECONDITION")
        assert_envelope(client.post(f"/api/v1/agents/{name}/deactivate", json={}), 409,
                        "FAILED_PRECONDITION")
        assert client.post(f"/api/v1/agents/{name}/undeploy", json={}).json()["status"] == "AGENT_STATUS_ACTIVE"
        assert client.post(f"/api/v1/agents/{name}/deactivate", json={}).json()["status"] == "AGENT_STATUS_INACTIVE"
        stats = client.get(f"/api/v1/agents/{name}/stats").json()
        assert stats["deployments"] == 1 and stats["total_calls"] == 0


def test_list_pagination_filters_and_bounds(mesh, tenant):
    prefix = _name("page")
    with mesh.client(tenant.token) as client:
        for i in range(5):
            client.post("/api/v1/agents", json={"name": f"{prefix}-{i}"})
        client.post(f"/api/v1/agents/{prefix}-0/activate", json={})
        page = client.get("/api/v1/agents", params={"search": prefix, "page_size": 2, "page": 2,
                                                    "order_by": "name"}).json()
        assert page["total"] == 5 and page["pages"] == 3 and page["page"] == 2
        assert page["page_size"] == 2
        assert [a["name"] for a in page["items"]] == [f"{prefix}-2", f"{prefix}-3"]
        last = client.get("/api/v1/agents", params={"search": prefix, "page_size": 2, "page": 3}).json()
        assert len(last["items"]) == 1
        beyond = client.get("/api/v1/agents", params={"search": prefix, "page": 9}).json()
        assert beyond["items"] == [] and beyond["total"] == 5
        active = client.get("/api/v1/agents", params={"search": prefix,
                                                      "status": "AGENT_STATUS_ACTIVE"}).json()
        assert [a["name"] for a in active["items"]] == [f"{prefix}-0"]
        default = client.get("/api/v1/agents").json()
        assert default["page"] == 1 and default["page_size"] == 20
        for params in ({"page_size": 101}, {"page": -1}, {"page_size": -5}):
            body = assert_envelope(client.get("/api/v1/agents", params=params), 400,
                                   "INVALID_ARGUMENT")
            assert body["details"]["field_violations"]
        assert_envelope(client.get("/api/v1/agents", params={"order_by": "password"}), 400,
                        "INVALID_ARGUMENT")
