"""Authentication and authorization at the gateway, driven over HTTP like a user."""

from __future__ import annotations

import uuid

import jwt
import pytest

from tests.conftest import assert_envelope, new_user, register
from tests.support import tokens


def test_missing_token_is_401_in_the_envelope(mesh):
    with mesh.client() as client:
        reply = client.get("/api/v1/agents", headers={"X-Correlation-ID": "trace-me-1"})
    body = assert_envelope(reply, 401, "UNAUTHENTICATED")
    assert body["correlation_id"] == "trace-me-1"


@pytest.mark.parametrize("case", ["expired", "other_key", "alg_none", "wrong_audience",
                                  "no_exp", "wrong_issuer", "garbage"])
def test_bad_tokens_are_refused_with_401(mesh, tenant, case):
    kid, pem = tokens.signing_key(mesh)
    token = tokens.forged(case, tenant, kid, pem)
    with mesh.client(token) as client:
        assert_envelope(client.get("/api/v1/agents"), 401, "UNAUTHENTICATED")


def test_a_correctly_signed_token_passes(mesh, tenant):
    kid, pem = tokens.signing_key(mesh)
    token = tokens.signed(tenant, pem, kid)
    with mesh.client(token) as client:
        assert client.get("/api/v1/agents").status_code == 200


def test_token_in_query_parameter_is_not_accepted(mesh, tenant):
    with mesh.client() as client:
        reply = client.get("/api/v1/agents", params={"access_token": tenant.token})
    assert reply.status_code in (400, 401)
    assert_envelope(reply, reply.status_code, reply.json()["error"])


def test_client_sent_identity_headers_are_ignored(mesh, tenant, other_tenant):
    with mesh.client(tenant.token) as client:
        created = client.post("/api/v1/agents", json={"name": f"mine-{uuid.uuid4().hex[:6]}"})
        assert created.status_code == 200
    # The other tenant claims to be the first one through a forged header: still its own tenant.
    with mesh.client(other_tenant.token) as client:
        reply = client.get(f"/api/v1/agents/{created.json()['id']}",
                           headers={"x-agentmesh-tenant-id": tenant.tenant_id})
        assert_envelope(reply, 404, "NOT_FOUND")
    with mesh.client() as client:  # and without any token the header opens nothing
        reply = client.get("/api/v1/agents", headers={"x-agentmesh-tenant-id": tenant.tenant_id,
                                                      "x-agentmesh-scopes": "*"})
        assert_envelope(reply, 401, "UNAUTHENTICATED")


def test_login_refresh_rotation_and_logout(mesh, tenant):
    with mesh.client() as client:
        login = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                         "password": tenant.password})
        assert login.status_code == 200, login.text
        pair = login.json()
        assert pair["token_type"] == "Bearer" and pair["expires_in"] == 900
        refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200
        new = refreshed.json()
        assert new["refresh_token"] != pair["refresh_token"]
        # The old refresh token is spent; reusing it revokes the whole family, the new one too.
        reused = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert_envelope(reused, 401, "UNAUTHENTICATED")
        revoked = client.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
        assert_envelope(revoked, 401, "UNAUTHENTICATED")

        second = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                          "password": tenant.password}).json()
        out = client.post("/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]},
                          headers={"Authorization": f"Bearer {second['access_token']}"})
        assert out.status_code == 200 and out.json()["success"] is True
        after = client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert_envelope(after, 401, "UNAUTHENTICATED")


def test_wrong_password_is_401(mesh, tenant):
    with mesh.client() as client:
        reply = client.post("/api/v1/auth/login", json={"email": tenant.email, "password": "nope-nope"})
    assert_envelope(reply, 401, "UNAUTHENTICATED")


def test_me_answers_the_caller(mesh, tenant):
    with mesh.client(tenant.token) as client:
        me = client.get("/api/v1/auth/me").json()
    assert me["id"] == tenant.user_id and me["role"] == "ROLE_ADMIN"
    # A tenant's admin holds everything in the tenant, not the platform-wide system writes.
    assert "agents:*" in me["scopes"] and "apikeys:*" in me["scopes"]
    assert "system:read" in me["scopes"] and "system:write" not in me["scopes"]


def test_viewer_can_read_but_writing_is_403_naming_the_scope(mesh, tenant):
    token = new_user(mesh, tenant, "ROLE_VIEWER")[2]
    with mesh.client(token) as client:
        assert client.get("/api/v1/agents").status_code == 200
        reply = client.post("/api/v1/agents", json={"name": "not-allowed"})
        body = assert_envelope(reply, 403, "PERMISSION_DENIED")
        assert body["details"]["required_scope"] == "agents:write"
        assert "agents:write" in body["message"]
        assert_envelope(client.get("/api/v1/auth/users"), 403, "PERMISSION_DENIED")


def test_developer_builds_agents_but_cannot_manage_users(mesh, tenant):
    token = new_user(mesh, tenant, "ROLE_DEVELOPER")[2]
    with mesh.client(token) as client:
        assert client.post("/api/v1/agents", json={"name": f"dev-{uuid.uuid4().hex[:6]}"}).status_code == 200
        assert_envelope(client.post("/api/v1/auth/users", json={
            "email": "x@example.com", "password": "whatever-1"}), 403, "PERMISSION_DENIED")


def test_api_key_with_and_without_the_needed_scope(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reader = client.post("/api/v1/auth/api-keys", json={"name": f"r-{uuid.uuid4().hex[:6]}",
                                                             "scopes": ["agents:read"]})
        assert reader.status_code == 200, reader.text
        key = reader.json()["key"]
        assert key.startswith("amk_")
        listed = client.get("/api/v1/auth/api-keys").json()
        assert all("key" not in item for item in listed["items"])  # shown once only
        client.post("/api/v1/agents", json={"name": f"k-{uuid.uuid4().hex[:6]}"})
    with mesh.client(api_key=key) as client:
        agents = client.get("/api/v1/agents")
        assert agents.status_code == 200 and agents.json()["total"] >= 1
        body = assert_envelope(client.post("/api/v1/agents", json={"name": "nope"}), 403,
                               "PERMISSION_DENIED")
        assert body["details"]["required_scope"] == "agents:write"
    with mesh.client(api_key="amk_not-a-real-key") as client:
        assert_envelope(client.get("/api/v1/agents"), 401, "UNAUTHENTICATED")
    with mesh.client(tenant.token) as client:
        key_id = reader.json()["id"]
        assert client.delete(f"/api/v1/auth/api-keys/{key_id}").json()["success"] is True
    with mesh.client(api_key=key) as client:
        assert_envelope(client.get("/api/v1/agents"), 401, "UNAUTHENTICATED")


def test_api_key_cannot_grant_more_than_its_creator_holds(mesh, tenant):
    token = new_user(mesh, tenant, "ROLE_DEVELOPER")[2]
    with mesh.client(token) as client:
        reply = client.post("/api/v1/auth/api-keys", json={"name": "too-much", "scopes": ["*"]})
    assert_envelope(reply, 403, "PERMISSION_DENIED")


def test_key_rotation_causes_no_401s(mesh, tenant):
    """The next key is published before it signs: tokens from before and after both pass."""
    import subprocess
    import sys
    import os

    before = tenant.token
    env = {**os.environ, "AGENTMESH_DATA_DIR": str(mesh.data_dir)}
    subprocess.run([sys.executable, "-m", "mesh.cli", "keys", "rotate"], check=True, env=env)
    after = register(mesh, "rotated").token
    assert jwt.get_unverified_header(before)["kid"] != jwt.get_unverified_header(after)["kid"]
    for token in (before, after):
        with mesh.client(token) as client:
            assert client.get("/api/v1/agents").status_code == 200


def test_a_token_that_passed_is_refused_once_it_expires(mesh, tenant):
    """The gateway keeps tokens it verified (Envoy's JWT cache, mesh.gateway.filters) but
    checks their expiry, with its clock skew, on every request: the same token is 200, then
    401 once past `exp`."""
    import time

    kid, pem = tokens.signing_key(mesh)
    expires = int(time.time()) + 2
    token = tokens.signed(tenant, pem, kid, exp=expires)
    with mesh.client(token) as client:
        assert client.get("/api/v1/agents").status_code == 200
        assert client.get("/api/v1/agents").status_code == 200  # the cached verification
        time.sleep(max(0.0, expires + 5 + 1.5 - time.time()))  # past exp and 5 s of skew
        assert_envelope(client.get("/api/v1/agents"), 401, "UNAUTHENTICATED")
