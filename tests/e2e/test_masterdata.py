"""Master data through the real gateway as a user: CRUD and lists of every resource, tenant
isolation, prompt versions and labels, secrets that never come back in clear (responses, logs,
the SQLite file), ciphertexts bound to their tenant, rotation with `agentmesh secrets rotate`."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import uuid

import grpc
import pytest

from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.runtime import internal
from mesh.runtime.context import CORRELATION_HEADER, SCOPES_HEADER, TENANT_HEADER, USER_HEADER
from tests.conftest import assert_envelope

BASE = "/api/v1/master-data"


def _name(prefix="md"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _masterdata_port(mesh) -> str:
    logs = "".join(p.read_text() for p in (mesh.data_dir / "logs").glob("*.log"))
    return re.search(r"serving masterdata on 127\.0\.0\.1:(\d+)", logs).group(1)


def _reveal(mesh, tenant, secret_id):
    """What another service does: the internal RPC on masterdata's own port (never routed by
    the gateway), with the identity the gateway vouched for and the platform's internal token."""
    with grpc.insecure_channel(f"127.0.0.1:{_masterdata_port(mesh)}") as channel:
        return pb_grpc.SecretAccessServiceStub(channel).RevealSecret(
            pb.RevealSecretRequest(secret_id=secret_id, requested_by="e2e-test"),
            metadata=((TENANT_HEADER, tenant.tenant_id), (USER_HEADER, tenant.user_id),
                      (SCOPES_HEADER, "*"), (CORRELATION_HEADER, uuid.uuid4().hex),
                      (internal.HEADER, internal.token_in(mesh.data_dir))))


RESOURCES = {
    "skills": lambda n: {"name": n, "category": "language", "description": "summarize text"},
    "constraints": lambda n: {"name": n, "constraint_type": "CONSTRAINT_TYPE_MAX_STEPS",
                              "rules": {"max_steps": 12}},
    "prompts": lambda n: {"name": n, "content": "Hello {{name}}", "category": "system"},
    "models": lambda n: {"name": n, "provider": "ollama", "model_id": "llama3",
                         "context_window": 8192,
                         "pricing": {"input_per_1m_tokens": 0.5, "output_per_1m_tokens": 1.5}},
    "secrets": lambda n: {"name": n, "value": f"sk-{uuid.uuid4().hex}",
                          "secret_type": "SECRET_TYPE_API_KEY"},
}


@pytest.mark.parametrize("resource", sorted(RESOURCES))
def test_a_resource_is_managed_by_id_or_name_and_invisible_to_other_tenants(
        mesh, tenant, other_tenant, resource):
    name = _name(resource[:-1])
    url = f"{BASE}/{resource}"
    with mesh.client(tenant.token) as client:
        created = client.post(url, json=RESOURCES[resource](name))
        assert created.status_code == 200, created.text
        item = created.json()
        assert item["name"] == name and item["tenant_id"] == tenant.tenant_id
        assert item["created_at"] and item["updated_at"]
        assert client.get(f"{url}/{item['id']}").json()["id"] == item["id"]
        assert client.get(f"{url}/{name}").json()["id"] == item["id"]
        updated = client.put(f"{url}/{name}", json={"description": "changed"})
        assert updated.status_code == 200, updated.text
        assert updated.json()["description"] == "changed" and updated.json()["id"] == item["id"]
        listed = client.get(url, params={"search": name}).json()
        assert set(listed) == {"items", "total", "page", "page_size", "pages"}
        assert [i["id"] for i in listed["items"]] == [item["id"]] and listed["total"] == 1
        assert_envelope(client.post(url, json=RESOURCES[resource](name)), 409, "ALREADY_EXISTS")
    with mesh.client(other_tenant.token) as client:
        for key in (item["id"], name):
            assert_envelope(client.get(f"{url}/{key}"), 404, "NOT_FOUND")
            assert_envelope(client.put(f"{url}/{key}", json={"description": "x"}), 404,
                            "NOT_FOUND")
            assert_envelope(client.delete(f"{url}/{key}"), 404, "NOT_FOUND")
        assert client.get(url, params={"search": name}).json()["total"] == 0
    with mesh.client(tenant.token) as client:
        assert client.delete(f"{url}/{item['id']}").json() == {
            "success": True, "message": f"{resource[:-1]} '{name}' deleted"}
        assert_envelope(client.get(f"{url}/{item['id']}"), 404, "NOT_FOUND")


def test_facets_filters_and_search(mesh, tenant):
    with mesh.client(tenant.token) as client:
        tag = _name("tag")
        client.post(f"{BASE}/skills", json={"name": _name("sql"), "category": "data",
                                            "tags": [tag], "description": "writes SQL"})
        assert client.get(f"{BASE}/skills", params={"tag": tag}).json()["total"] == 1
        found = client.get(f"{BASE}/skills/search", params={"q": "sql"}).json()
        assert found["items"] and "sql" in found["items"][0]["name"]
        assert_envelope(client.get(f"{BASE}/skills/search", params={"q": ""}), 400,
                        "INVALID_ARGUMENT")
        categories = client.get(f"{BASE}/skills/categories").json()
        assert {"name": "data", "count": 1} in [
            {k: c[k] for k in ("name", "count")} for c in categories["items"]]
        types = client.get(f"{BASE}/constraints/types", params={"page_size": 100}).json()
        by_type = {t["name"]: t for t in types["items"]}
        assert "CONSTRAINT_TYPE_REQUIRE_APPROVAL_FOR" in by_type
        assert by_type["CONSTRAINT_TYPE_ALLOWED_TOOLS"]["rules_schema"]["required"] == ["tools"]
        providers = {p["name"]: p for p in client.get(f"{BASE}/models/providers").json()["items"]}
        assert set(providers) == {"openai", "azure_openai", "anthropic", "ollama",
                                  "openai_compatible"}
        assert providers["openai"]["requirements"]["secret_required"] is True
        assert providers["azure_openai"]["requirements"]["required_parameters"] == ["api_version"]
        client.post(f"{BASE}/prompts", json={"name": _name("p"), "content": "x",
                                             "category": "triage"})
        cats = client.get(f"{BASE}/prompts/categories").json()["items"]
        assert "triage" in [c["name"] for c in cats]


def test_bad_input_is_400_in_the_envelope_and_creates_nothing(mesh, tenant):
    with mesh.client(tenant.token) as client:
        cases = [
            ("constraints", {"name": _name("c"), "constraint_type":
                             "CONSTRAINT_TYPE_MAX_TOKENS_PER_CALL", "rules": {"max_tokens": "a lot"}},
             "rules.max_tokens"),
            ("constraints", {"name": _name("c"), "constraint_type": "CONSTRAINT_TYPE_ALLOWED_TOOLS",
                             "rules": {}}, "rules"),
            ("models", {"name": _name("m"), "provider": "skynet", "model_id": "t-800"},
             "provider"),
            ("models", {"name": _name("m"), "provider": "openai", "model_id": "gpt-4o",
                        "secret_ref": "no-such-secret"}, "secret_ref"),
            ("prompts", {"name": _name("p"), "content": "{{ ''.__class__ }}"}, "content"),
            ("secrets", {"name": _name("s")}, "value"),
            ("skills", {"name": "categories"}, "name"),
        ]
        for resource, body, field in cases:
            reply = client.post(f"{BASE}/{resource}", json=body)
            error = assert_envelope(reply, 400, "INVALID_ARGUMENT")
            assert field in [v["field"] for v in error["details"]["field_violations"]], error
            listed = client.get(f"{BASE}/{resource}", params={"search": body["name"]}).json()
            assert listed["total"] == 0, (resource, listed)


def test_prompt_versions_labels_and_render(mesh, tenant):
    name = _name("prompt")
    url = f"{BASE}/prompts/{name}"
    with mesh.client(tenant.token) as client:
        created = client.post(f"{BASE}/prompts", json={"name": name, "content": "v1 {{user}}"})
        assert created.json()["version"] == 1 and created.json()["placeholders"] == ["user"]
        assert client.put(url, json={"content": "v2 {{user}}"}).json()["version"] == 2
        v3 = client.post(f"{url}/versions", json={"content": "v3 {{user}} {{team}}",
                                                   "changelog": "adds team"})
        assert v3.status_code == 200 and v3.json()["version"] == 3
        versions = client.get(f"{url}/versions").json()
        assert [v["version"] for v in versions["items"]] == [3, 2, 1]
        assert client.put(f"{url}/labels/production", json={"version": 2}).json()["labels"] == {
            "production": 2}
        production = client.get(url, params={"label": "production"}).json()
        assert production["content"] == "v2 {{user}}" and production["served_version"] == 2
        moved = client.put(f"{url}/labels/production", json={"version": 3}).json()
        assert moved["labels"] == {"production": 3}
        assert client.get(url, params={"label": "production"}).json()["content"] == \
            "v3 {{user}} {{team}}"
        assert client.get(url, params={"version": 1}).json()["content"] == "v1 {{user}}"
        rendered = client.post(f"{url}/render", json={"label": "production", "variables": {
            "user": "Ada", "team": "ops"}})
        assert rendered.json() == {"prompt_id": created.json()["id"], "version": 3,
                                   "content": "v3 Ada ops"}
        missing = assert_envelope(client.post(f"{url}/render", json={"variables": {"user": "A"}}),
                                  400, "INVALID_ARGUMENT")
        assert missing["details"]["missing"] == "team"
        assert [v["field"] for v in missing["details"]["field_violations"]] == ["variables.team"]
        # Versions are immutable: none is deleted, labelled (3) or not (1).
        for version in (3, 1):
            refused = assert_envelope(client.delete(f"{url}/versions/{version}"), 409,
                                      "FAILED_PRECONDITION")
            assert refused["details"]["reason"] == "PROMPT_VERSION_IMMUTABLE", refused
        assert client.get(url, params={"version": 1}).json()["content"] == "v1 {{user}}"
        assert_envelope(client.get(url, params={"label": "staging"}), 404, "NOT_FOUND")


def test_secret_value_never_leaves_in_clear(mesh, tenant):
    value = f"sk-e2e-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    name = _name("openai-key")
    with mesh.client(tenant.token) as client:
        replies = [client.post(f"{BASE}/secrets", json={
            "name": name, "value": value, "secret_type": "SECRET_TYPE_API_KEY",
            "description": "the OpenAI key"})]
        secret = replies[0].json()
        assert secret["value_hint"] == "…" + value[-4:] and secret.get("value", "") == ""
        assert secret["fingerprint"].startswith("hmac-sha256:") and secret["key_id"]
        replies.append(client.get(f"{BASE}/secrets/{name}"))
        replies.append(client.get(f"{BASE}/secrets"))
        replies.append(client.put(f"{BASE}/secrets/{name}", json={"value": value + "x"}))
        assert replies[-1].json()["version"] == 2 and replies[-1].json()["id"] == secret["id"]
        replies.append(client.post(f"{BASE}/models", json={
            "name": _name("gpt"), "provider": "openai", "model_id": "gpt-4o",
            "secret_ref": name}))
        assert replies[-1].status_code == 200, replies[-1].text
        replies.append(client.delete(f"{BASE}/secrets/{name}"))
        assert_envelope(replies[-1], 409, "FAILED_PRECONDITION")
        replies.append(client.get("/api/v1/openapi.json"))
    for reply in replies:
        assert value not in reply.text
    assert _reveal(mesh, tenant, secret["id"]).value == value + "x"
    for path in mesh.data_dir.rglob("*"):
        if path.is_file() and "secrets-kek" not in path.name:
            data = path.read_bytes()
            assert value.encode() not in data, f"{path} holds the value in clear"
            assert value[:20].encode() not in data, f"{path} holds part of the value"


def test_reaching_masterdatas_port_without_the_internal_token_reveals_nothing(mesh, tenant):
    """Whatever reaches the service's port (a request the platform was tricked into making, a
    neighbour on the network) with made-up identity headers but not the internal token gets
    UNAUTHENTICATED, not the secret."""
    value = f"port-reachers-get-nothing-{uuid.uuid4().hex}"
    with mesh.client(tenant.token) as client:
        secret = client.post(f"{BASE}/secrets", json={"name": _name("s"), "value": value}).json()
    with grpc.insecure_channel(f"127.0.0.1:{_masterdata_port(mesh)}") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.SecretAccessServiceStub(channel).RevealSecret(
                pb.RevealSecretRequest(secret_id=secret["id"], requested_by="intruder"),
                metadata=((TENANT_HEADER, tenant.tenant_id), (USER_HEADER, tenant.user_id),
                          (SCOPES_HEADER, "*"), (CORRELATION_HEADER, uuid.uuid4().hex)))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert value not in str(refused.value)


def test_the_gateway_does_not_route_the_internal_reveal_rpc(mesh, tenant):
    value = f"never-through-the-gateway-{uuid.uuid4().hex}"
    with mesh.client(tenant.token) as client:
        secret = client.post(f"{BASE}/secrets", json={"name": _name("s"), "value": value}).json()
        message = pb.RevealSecretRequest(secret_id=secret["id"],
                                         requested_by="outsider").SerializeToString()
        framed = b"\x00" + len(message).to_bytes(4, "big") + message
        for content_type in ("application/grpc", "application/grpc-web+proto"):
            reply = client.post("/agentmesh.masterdata.v1.SecretAccessService/RevealSecret",
                                content=framed, headers={"content-type": content_type})
            assert value.encode() not in reply.content
            assert reply.status_code != 200 or reply.headers.get("grpc-status", "") not in ("", "0")
        for method in ("GET", "POST"):
            reply = client.request(method, f"{BASE}/secrets/{secret['id']}/reveal")
            assert reply.status_code == 404 and value not in reply.text


def test_ciphertext_moved_to_another_tenants_row_fails_to_decrypt(mesh, tenant, other_tenant):
    with mesh.client(tenant.token) as client:
        mine = client.post(f"{BASE}/secrets", json={"name": _name("s"),
                                                    "value": "tenant-one-value-123"}).json()
    with mesh.client(other_tenant.token) as client:
        theirs = client.post(f"{BASE}/secrets", json={"name": _name("s"),
                                                      "value": "tenant-two-value-456"}).json()
    with sqlite3.connect(mesh.data_dir / "masterdata.db", timeout=30) as db:
        db.execute("UPDATE secrets SET key_id = s.key_id, wrapped_key = s.wrapped_key, "
                   "ciphertext = s.ciphertext FROM (SELECT key_id, wrapped_key, ciphertext "
                   "FROM secrets WHERE id = ?) AS s WHERE secrets.id = ?",
                   (mine["id"], theirs["id"]))
    with pytest.raises(grpc.RpcError) as caught:
        _reveal(mesh, other_tenant, theirs["id"])
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS
    assert "tenant-one" not in caught.value.details()
    assert _reveal(mesh, tenant, mine["id"]).value == "tenant-one-value-123"
    with mesh.client(other_tenant.token) as client:  # clean up the broken row
        assert client.delete(f"{BASE}/secrets/{theirs['id']}").json()["success"] is True


def test_rotation_rewraps_every_secret_and_each_still_decrypts(mesh, tenant, other_tenant):
    made = []
    for who in (tenant, tenant, other_tenant):
        value = f"rotate-me-{uuid.uuid4().hex}"
        with mesh.client(who.token) as client:
            made.append((who, value, client.post(f"{BASE}/secrets", json={
                "name": _name("r"), "value": value}).json()))
    before = {s["key_id"] for _, _, s in made}
    env = {**os.environ, "AGENTMESH_DATA_DIR": str(mesh.data_dir)}
    done = subprocess.run([sys.executable, "-m", "mesh.cli", "secrets", "rotate"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    active = re.search(r"every secret is under key (\S+)", done.stdout).group(1)
    assert active not in before
    for who, value, secret in made:
        with mesh.client(who.token) as client:
            now = client.get(f"{BASE}/secrets/{secret['id']}").json()
        assert now["key_id"] == active and now["fingerprint"] == secret["fingerprint"]
        assert _reveal(mesh, who, secret["id"]).value == value
    again = subprocess.run([sys.executable, "-m", "mesh.cli", "secrets", "rotate", "--resume"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "done: 0 data key(s) re-wrapped" in again.stdout
