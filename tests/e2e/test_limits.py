"""Field bounds through the gateway: past a bound is 400 naming the field, in the envelope."""

from __future__ import annotations

import uuid

from tests.conftest import assert_envelope


def _field_violations(body: dict) -> list[str]:
    return [v["field"] for v in body["details"]["field_violations"]]


def test_a_900_kb_agent_description_is_400_naming_the_field(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/agents", json={"name": f"big-{uuid.uuid4().hex[:6]}",
                                                    "description": "d" * 900_000})
        body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
        assert _field_violations(body) == ["description"]
        created = client.post("/api/v1/agents", json={"name": f"ok-{uuid.uuid4().hex[:6]}",
                                                      "description": "d" * 2000})
        assert created.status_code == 200, created.text
        update = client.put(f"/api/v1/agents/{created.json()['id']}",
                            json={"tools": ["t"] * 101})
        assert _field_violations(assert_envelope(update, 400, "INVALID_ARGUMENT")) == ["tools"]


def test_identity_bounds(mesh, tenant):
    with mesh.client() as client:
        reply = client.post("/api/v1/auth/register", json={
            "tenant_name": "t" * 201, "email": "x@example.com", "password": "correct-horse-1"})
        assert _field_violations(assert_envelope(reply, 400, "INVALID_ARGUMENT")) == ["tenant_name"]
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/auth/api-keys", json={"name": "k" * 101,
                                                           "scopes": ["agents:read"]})
        assert _field_violations(assert_envelope(reply, 400, "INVALID_ARGUMENT")) == ["name"]


def test_input_only_and_unset_optional_fields_are_not_printed(mesh, tenant):
    with mesh.client(tenant.token) as client:
        me = client.get("/api/v1/auth/me").json()
        assert "password" not in me
        created = client.post("/api/v1/auth/api-keys", json={"name": "ci",
                                                             "scopes": ["agents:read"]})
        assert created.json()["key"].startswith("amk_")
        listed = client.get("/api/v1/auth/api-keys").json()["items"]
        assert listed and all("key" not in item for item in listed)
